"""The tables as schemas/clickhouse/ leaves them, read from the migrations' text."""

from __future__ import annotations

import re

from pipeline.storage import migrate


def final_columns() -> dict[str, tuple[tuple[str, str], ...]]:
    """Each table's (column, type) as the migrations leave it: the last CREATE TABLE of the
    name, or of the table renamed to it (003 swaps a rebuilt touchpoint_events in), with the
    columns ALTER TABLE added."""
    final: dict[str, tuple[tuple[str, str], ...]] = {}
    for migration in migrate.load():
        for statement, _ in migrate.split(migration.text):
            name = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", statement)
            rename = re.match(r"RENAME TABLE (.*)$", statement, re.S)
            added = re.match(r"ALTER TABLE (\w+) ADD COLUMN (\w+) (\S+).*?(?: AFTER (\w+))?;?$",
                             statement, re.S)
            if added:
                table, column, kind, after = added.groups()
                names = [c for c, _ in final[table]]
                at = names.index(after) + 1 if after else len(names)
                final[table] = (*final[table][:at], (column, kind), *final[table][at:])
            elif name:
                body = statement[statement.index("(") + 1 : statement.index("\nENGINE")]
                final[name.group(1)] = tuple(
                    (line.split()[0], line.split()[1]) for line in body.splitlines()
                    if line.strip() and line.strip() != ")")
            elif rename:
                pairs = [p.split() for p in rename.group(1).split(",")]
                moved = {new: final.pop(old) for old, _, new in pairs}
                final.update(moved)
    return final
