"""ClickHouse URLs: parsed, built and masked the same way everywhere.

`clickhouse://user:password@host:port/database` (`clickhouses://` for TLS). User and password
are percent-decoded, so a password can hold any character written percent-encoded (`%40` for
`@`, `%25` for `%`); `build_clickhouse_url` encodes them that way. Raw `@`, `:`, `/`, `?` and
`#` in a password are accepted too, because URLs are often pasted together from a generated
password (`docker-compose.yml` does so): the credentials end at the *last* `@`, which cannot be
part of a host name or of a database name (a plain identifier). That is also why this module
does not hand the whole URL to `urllib.parse.urlsplit`: it ends the credentials at the first
`/`, `?` or `#`, which may sit inside a raw password, and would then print part of it.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

SCHEMES = ("clickhouse", "clickhouses")
DEFAULT_PORT = 9000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class ClickHouseUrl:
    host: str
    port: int = DEFAULT_PORT
    user: str = "default"
    password: str = field(default="", repr=False)
    database: str = "default"
    secure: bool = False


def _split(text: str) -> tuple[str, str | None, str]:
    """(scheme, credentials or None, rest) of `scheme://credentials@rest`; scheme '' if none."""
    match = _SCHEME.match(text)
    if not match:
        return "", None, text
    scheme, rest = match.group(1), text[match.end() :]
    credentials, at, host = rest.rpartition("@")
    return scheme, (credentials if at else None), (host if at else rest)


def parse_clickhouse_url(url: str) -> ClickHouseUrl:
    """The parts of a clickhouse:// URL; ValueError (without the password) when it is not one.

    >>> parse_clickhouse_url("clickhouse://w:p%40ss@127.0.0.1:9001/peakend")
    ClickHouseUrl(host='127.0.0.1', port=9001, user='w', database='peakend', secure=False)
    >>> parse_clickhouse_url("clickhouse://w:a@b:c/d@db.example").password
    'a@b:c/d'
    >>> parse_clickhouse_url("http://x")
    Traceback (most recent call last):
    ...
    ValueError: the scheme must be clickhouse:// or clickhouses://, not 'http://'
    """
    scheme, credentials, rest = _split(url.strip())
    if scheme.lower() not in SCHEMES:
        shown = f"{scheme}://" if scheme else "none"
        raise ValueError(f"the scheme must be clickhouse:// or clickhouses://, not {shown!r}")
    user, _, password = (credentials or "").partition(":")
    # Only host, port and path go through urllib: no secret is left in them.
    try:
        location = urlsplit(f"//{rest}")
        port = location.port
    except ValueError:
        raise ValueError("the port must be an integer from 1 to 65535") from None
    if not location.hostname:
        raise ValueError("a host is required (clickhouse://user:password@host:9000/database)")
    if location.query or location.fragment:
        raise ValueError("query strings and fragments are not supported")
    if port == 0:
        raise ValueError("the port must be an integer from 1 to 65535")
    database = unquote(location.path.strip("/")) or "default"
    if not _IDENTIFIER.fullmatch(database):
        raise ValueError(f"the database {database!r} is not a plain identifier "
                         "([A-Za-z_][A-Za-z0-9_]*)")
    return ClickHouseUrl(
        host=location.hostname,
        port=port or DEFAULT_PORT,
        user=unquote(user) or "default",
        password=unquote(password),
        database=database,
        secure=scheme.lower() == "clickhouses",
    )


def build_clickhouse_url(url: ClickHouseUrl) -> str:
    """The URL of `url`'s parts, user and password percent-encoded so that any character
    survives `parse_clickhouse_url`.

    >>> build_clickhouse_url(ClickHouseUrl("h", 9000, "w", "p@ss%/:", "db"))
    'clickhouse://w:p%40ss%25%2F%3A@h:9000/db'
    """
    scheme = SCHEMES[1] if url.secure else SCHEMES[0]
    host = f"[{url.host}]" if ":" in url.host else url.host
    credentials = quote(url.user, safe="")
    if url.password:
        credentials += ":" + quote(url.password, safe="")
    return f"{scheme}://{credentials}@{host}:{url.port}/{url.database}"


def mask_url_password(text: str) -> str:
    """`text` with the password of a URL in it replaced by ***, for printing; other text as is.

    Everything between the user's `:` and the last `@` is hidden, so no character of a password
    shows, whatever it holds.

    >>> mask_url_password("clickhouse://peakend_writer:s3cret@127.0.0.1:9000/peakend")
    'clickhouse://peakend_writer:***@127.0.0.1:9000/peakend'
    >>> mask_url_password("clickhouse://w:p@ss/w:rd@h:9000/db")
    'clickhouse://w:***@h:9000/db'
    >>> mask_url_password("w:p@ss@h:9000")
    'w:***@h:9000'
    >>> mask_url_password("localhost:9092")
    'localhost:9092'
    """
    scheme, credentials, rest = _split(text)
    if not scheme and "@" in text:  # `user:password@host`, a URL missing its scheme
        credentials, _, rest = text.rpartition("@")
    if credentials is None or ":" not in credentials:
        return text
    user = credentials.partition(":")[0]
    head = f"{text[: len(scheme)]}://" if scheme else ""
    return f"{head}{user}:***@{rest}"


WAREHOUSE_URLS = "empty, chdb://path or clickhouse[s]://user:password@host:port/database"


def check_warehouse_url(text: str) -> str:
    """`text` stripped when it names a warehouse (`pipeline.storage.warehouse.connect`: empty for
    the embedded chdb, chdb://path, or a clickhouse URL); else ValueError saying what is accepted.

    >>> check_warehouse_url(" clickhouse://w:p@h/db ")
    'clickhouse://w:p@h/db'
    >>> check_warehouse_url("clickhouse://w:p@h:0/db")
    Traceback (most recent call last):
    ...
    ValueError: must be empty, chdb://path or clickhouse[s]://user:password@host:port/database: the port must be an integer from 1 to 65535
    """  # noqa: E501
    text = text.strip()
    if not text or text.startswith("chdb://"):
        return text
    try:
        parse_clickhouse_url(text)
    except ValueError as exc:
        raise ValueError(f"must be {WAREHOUSE_URLS}: {exc}") from None
    return text


def warehouse_url_argument(text: str) -> str:
    """argparse `type=` of the commands' `--url`: the same check as the settings, the password
    masked in the message (`argument --url: must be ..., not 'clickhouse://w:***@h:0/db'`)."""
    try:
        return check_warehouse_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; not {mask_url_password(text)!r}") from None


warehouse_url_argument.__name__ = "URL"  # argparse names the type in some messages
