"""Entry point of the peakend image (docker-compose.yml): builds the ClickHouse URLs from the host
and the raw passwords compose passes, then runs `peakend` with the given arguments.

Compose puts variables into values verbatim, so a password with `/`, `%`, `@` or `#` written into
a URL there would break it; here each is percent-encoded by the pipeline's own
`build_clickhouse_url`, which `parse_clickhouse_url` reads back exactly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from pipeline.urls import ClickHouseUrl, build_clickhouse_url

URL_USERS = {  # URL variable -> (ClickHouse user, its password variable)
    "PEAKEND_CLICKHOUSE_URL": ("peakend_writer", "PEAKEND_CLICKHOUSE_WRITER_PASSWORD"),
    "PEAKEND_CLICKHOUSE_READER_URL": ("peakend_reader", "PEAKEND_CLICKHOUSE_READER_PASSWORD"),
}


def clickhouse_urls(env: Mapping[str, str]) -> dict[str, str]:
    """The URL variables for the passwords set in `env` (a URL already set is kept)."""
    host = env.get("PEAKEND_CLICKHOUSE_HOST", "clickhouse")
    port = int(env.get("PEAKEND_CLICKHOUSE_PORT", "9000"))
    database = env.get("PEAKEND_CLICKHOUSE_DATABASE", "peakend")
    # docker-compose.tls.yml: `clickhouses://` on the secure native port
    secure = env.get("PEAKEND_CLICKHOUSE_SECURE", "").lower() in ("1", "true", "yes", "on")
    return {
        name: build_clickhouse_url(ClickHouseUrl(host, port, user, env[secret], database, secure))
        for name, (user, secret) in URL_USERS.items()
        if env.get(secret) and not env.get(name)
    }


def main() -> None:
    os.environ.update(clickhouse_urls(os.environ))
    os.execvp("peakend", ["peakend", *sys.argv[1:]])


if __name__ == "__main__":
    main()
