"""The read-only user with what the Grafana ClickHouse plugin sends, on the real ClickHouse 18.16.

The plugin (grafana/clickhouse-datasource 4.14.1, the version docker-compose.yml pins) queries
through clickhouse-go v2.43.0, which adds `max_execution_time` = the query's remaining time + 5 s
to every query (its context.go, queryOptions) and, over HTTP, the URL parameters `database`,
`default_format=Native` and `client_protocol_version` (its conn_http.go, dialHttp).
The provisioned data source (dashboards/build.py) uses the native protocol with queryTimeout 25 s.

What 18.16 does, checked here: over the native protocol it ignores per-query settings from a
readonly=1 user (neither refusing nor applying them), so the plugin's queries run with the
reader's limits intact. Over HTTP it cannot serve this client at all, whatever the user: it takes
`client_protocol_version` for a setting it does not know. 18.16 has neither settings constraints
nor `changeable_in_readonly` (a `<constraints>` element in a profile makes it refuse the
profile), and readonly=2 would let the reader lift its own limits, so the native stack keeps
readonly=1 and Grafana uses the native protocol; docker-compose's current server gets the
constraint the plugin's docs ask for (dashboards/docker/clickhouse/users.xml).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from dashboards import build
from pipeline.urls import parse_clickhouse_url
from tests.support.stack import ROOT, ClickHouseUrls

pytestmark = pytest.mark.integration

PLUGIN_MAX_EXECUTION_TIME = build.READER_QUERY_TIMEOUT_S + 5  # the most clickhouse-go sends
CLICKHOUSE_GO_PROTOCOL_VERSION = 54460  # clickhouse-go v2.43.0 lib/proto DBMS_TCP_PROTOCOL_VERSION
EFFECTIVE = ("SELECT name, value FROM system.settings WHERE name IN "
             "('readonly', 'max_result_rows', 'max_execution_time', 'max_memory_usage')")
READER_LIMITS = {"readonly": "1", "max_result_rows": "1000000",
                 "max_execution_time": str(build.READER_MAX_EXECUTION_S),
                 "max_memory_usage": "2000000000"}


def _native(url: str, **settings: int) -> Client:
    parts = parse_clickhouse_url(url)
    return Client(parts.host, port=parts.port, user=parts.user, password=parts.password,
                  database=parts.database, settings=settings)


def _http(url: str, sql: str, params: dict[str, str]) -> tuple[int, str]:
    """(status, body) of an HTTP query sent the way clickhouse-go sends it (POST, X-ClickHouse-*
    headers, settings as URL parameters)."""
    parts = parse_clickhouse_url(url)
    port = os.environ.get("PEAKEND_CLICKHOUSE_HTTP_PORT", "8123")
    request = urllib.request.Request(
        f"http://{parts.host}:{port}/?{urllib.parse.urlencode(params)}", data=sql.encode(),
        headers={"X-ClickHouse-User": parts.user, "X-ClickHouse-Key": parts.password})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_native_plugin_queries_run_with_the_readers_limits(clickhouse_urls: ClickHouseUrls) -> None:
    for sent in (PLUGIN_MAX_EXECUTION_TIME, 65, 0):  # 65: the plugin's default 60 s timeout
        client = _native(clickhouse_urls.reader, max_execution_time=sent)
        try:
            assert client.execute("SELECT 1") == [(1,)], sent
            assert dict(client.execute(EFFECTIVE)) == READER_LIMITS, sent
            with pytest.raises(ServerException, match=r"(?i)limit for result"):
                client.execute("SELECT number FROM system.numbers LIMIT 1000001")
            with pytest.raises(ServerException, match=r"(?i)readonly"):
                client.execute("CREATE TABLE plugin_probe (x UInt8) ENGINE = Memory")
        finally:
            client.disconnect()


def test_http_plain_queries_work_and_the_reader_stays_read_only(
    clickhouse_urls: ClickHouseUrls,
) -> None:
    status, body = _http(clickhouse_urls.reader, "SELECT 1", {"database": "peakend"})
    assert (status, body.strip()) == (200, "1")
    # the setting at the profile's own value is accepted; lifting a limit is not
    status, body = _http(clickhouse_urls.reader, "SELECT 1",
                         {"max_execution_time": str(build.READER_MAX_EXECUTION_S)})
    assert status == 200, body
    for name, value in (("max_execution_time", str(PLUGIN_MAX_EXECUTION_TIME + 100)),
                        ("max_result_rows", "0"), ("readonly", "0")):
        status, body = _http(clickhouse_urls.reader, "SELECT 1", {name: value})
        assert status != 200 and "Code: 164" in body, (name, body)
    status, body = _http(clickhouse_urls.reader,
                         "CREATE TABLE plugin_probe (x UInt8) ENGINE = Memory", {})
    assert status != 200 and "Code: 164" in body, body


def test_http_as_the_plugin_sends_it_needs_a_newer_server(clickhouse_urls: ClickHouseUrls) -> None:
    """Not the reader's configuration: 18.16 refuses clickhouse-go's HTTP parameters for every
    user, the admin too. When the server is upgraded this test fails and says so: then give the
    native stack's reader the compose file's changeable_in_readonly constraint (and its
    settings_constraints_replace_previous, dashboards/docker/clickhouse/config.xml)."""
    params = {"database": "peakend", "default_format": "Native",
              "client_protocol_version": str(CLICKHOUSE_GO_PROTOCOL_VERSION),
              "max_execution_time": str(PLUGIN_MAX_EXECUTION_TIME)}
    status, body = _http(clickhouse_urls.admin, "SELECT 1", params)
    assert status != 200 and "Code: 115" in body and "client_protocol_version" in body, body
    # the reader is refused on the same parameter (its readonly check runs first)
    status, body = _http(clickhouse_urls.reader, "SELECT 1", params)
    assert status != 200 and "client_protocol_version" in body, body
    del params["client_protocol_version"]
    status, body = _http(clickhouse_urls.admin, "SELECT 1", params)
    assert status == 200 and "UInt8" in body, "only client_protocol_version is unknown"  # Native


# The plugin's own client: clickhouse-go v2.43.0 opened as plugin v4.14.1 opens it
# (tests/grafana_plugin/go/main.go; scripts/setup-tools.sh builds it from go.sum).
PLUGIN_CLIENT = ROOT / "build" / "plugin-client-go"


def _plugin_client(url: str, protocol: str, port: int) -> dict[str, dict[str, Any]]:
    """probe -> {"ok", "error", "rows"} as the plugin's client saw it, connected as the
    provisioned data source connects (its user, database, query timeout)."""
    assert PLUGIN_CLIENT.is_file(), (
        f"{PLUGIN_CLIENT.relative_to(ROOT)} is not built: run bash scripts/setup-tools.sh")
    parts = parse_clickhouse_url(url)
    done = subprocess.run(
        [str(PLUGIN_CLIENT), "-protocol", protocol, "-addr", f"{parts.host}:{port}",
         "-user", parts.user, "-database", parts.database,
         "-query-timeout", str(build.READER_QUERY_TIMEOUT_S)],
        env={"CLICKHOUSE_PASSWORD": parts.password}, capture_output=True, text=True,
        timeout=180, check=False)
    assert done.stdout, f"no output (exit {done.returncode}): {done.stderr[-2000:]}"
    return {line["probe"]: line for line in map(json.loads, done.stdout.splitlines())}


def test_the_plugins_own_client_over_native_keeps_the_readers_limits(
    clickhouse_urls: ClickHouseUrls,
) -> None:
    """What Grafana's queries meet over the protocol the data source is provisioned with."""
    out = _plugin_client(clickhouse_urls.reader, "native",
                         parse_clickhouse_url(clickhouse_urls.reader).port)
    assert out["ping"]["ok"], out["ping"]["error"]
    assert out["select_one"]["rows"] == [["1"]], out["select_one"]
    assert dict(map(tuple, out["effective_settings"]["rows"])) == READER_LIMITS
    too_many = out["too_many_rows"]
    assert not too_many["ok"] and "limit for result" in str(too_many["error"]).lower(), too_many
    create = out["create_table"]
    assert not create["ok"] and "readonly" in str(create["error"]).lower(), create


def test_the_plugins_own_client_over_http_needs_a_newer_server(
    clickhouse_urls: ClickHouseUrls,
) -> None:
    """The HTTP protocol fails on 18.16 for the reason test_http_as_the_plugin_sends_it_needs_a_
    newer_server shows with hand-made requests, here from the client itself."""
    port = int(os.environ.get("PEAKEND_CLICKHOUSE_HTTP_PORT", "8123"))
    out = _plugin_client(clickhouse_urls.reader, "http", port)
    failed = [probe for probe in out.values() if not probe["ok"]]
    assert failed, "the plugin's client works over HTTP on this server: update the docs"
    assert "client_protocol_version" in str(failed[0]["error"]), failed[0]
