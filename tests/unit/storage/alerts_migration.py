"""Alert rows stored before migration 004 still read after it, on either engine: the columns
`threshold` and `message` come in empty (NULL, ''), `alerts_latest` shows both old and new rows,
and the latest version of an old alert written after the migration carries them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.core.drops import describe
from pipeline.core.records import AlertRecord
from pipeline.storage import migrate, tables
from pipeline.storage.warehouse import Warehouse

T = 1_795_367_409_123


def _before_004() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="peakend-mig-before-004-"))
    for m in migrate.load():
        if m.version < 4:
            (directory / m.name).write_text(m.text)
    return directory


def check_alerts_before_004(writer: Warehouse, reader: Warehouse) -> None:
    """`writer`'s database is empty (no migration yet); `reader` reads it."""
    assert migrate.migrate(writer, cluster="", directory=_before_004())
    old = AlertRecord("window_drop:nps:all=all:x", "window_drop", "nps", "all", "all",
                      "firing", "warning", T, None, T - 3_600_000, T, 20.0, 35.0, 150, 2000,
                      8.0, 32.0, -15.0, 0.0001, 1)
    columns, data = tables.rows("alerts", [old.to_dict()])
    keep = [i for i, c in enumerate(columns) if c not in ("threshold", "message")]
    assert len(keep) == len(columns) - 2
    writer.insert("alerts", tuple(columns[i] for i in keep),
                  [tuple(row[i] for i in keep) for row in data])
    applied = migrate.migrate(writer, cluster="")
    assert "004_alert_evidence.sql" in applied
    assert migrate.migrate(writer, cluster="") == []
    query = ("SELECT alert_id, state, p_value, threshold, message, version FROM alerts_latest "
             "ORDER BY alert_id")
    assert reader.query(query) == [(old.alert_id, "firing", 0.0001, None, "", 1)]
    # the same alert resolves after the migration, and a new one fires: both with evidence
    resolved = old._replace(state="resolved", resolved_at=T + 7_200_000, version=2,
                            threshold=3.1e-4)
    resolved = resolved._replace(message=describe(resolved))
    new = old._replace(alert_id="window_drop:nps:all=all:y", threshold=4.2e-5,
                       severity="critical")
    new = new._replace(message=describe(new))
    columns, data = tables.rows("alerts", [resolved.to_dict(), new.to_dict()])
    writer.insert("alerts", columns, data)
    assert reader.query(query) == [
        (old.alert_id, "resolved", 0.0001, 3.1e-4, resolved.message, 2),
        (new.alert_id, "firing", 0.0001, 4.2e-5, new.message, 1)]
    assert "resolved at" in resolved.message and "< 4.2e-05" in new.message
    (count,) = reader.query("SELECT count() FROM alerts WHERE threshold IS NULL AND message = ''")
    assert count == (1,)
