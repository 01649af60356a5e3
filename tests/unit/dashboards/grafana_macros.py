"""Expand the Grafana ClickHouse data source macros and template variables the way the plugin
does, so panel and alert SQL can run on a plain ClickHouse in tests."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

_TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")


def expand(sql: str, start: datetime, end: datetime, interval_s: int,
           variables: Mapping[str, str | Sequence[str]]) -> str:
    frm = int(start.replace(tzinfo=UTC).timestamp())
    to = int(end.replace(tzinfo=UTC).timestamp())
    out = _TIME_FILTER.sub(
        lambda m: f"{m.group(1)} >= toDateTime({frm}) AND {m.group(1)} <= toDateTime({to})", sql)
    out = out.replace("$__fromTime", f"toDateTime({frm})").replace("$__toTime", f"toDateTime({to})")
    out = out.replace("$__interval_s", str(interval_s))
    for name, value in variables.items():
        values = [value] if isinstance(value, str) else list(value)
        out = out.replace(f"${{{name}:singlequote}}", ",".join(f"'{v}'" for v in values))
        out = out.replace(f"${{{name}}}", ",".join(values)).replace(f"${name}", ",".join(values))
    leftover = re.search(r"\$\{?\w+", out)
    assert leftover is None, f"unexpanded macro or variable {leftover.group(0)!r} in {out}"
    return out
