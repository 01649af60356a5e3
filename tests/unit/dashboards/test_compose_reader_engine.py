"""docker-compose's reader profile on a current ClickHouse engine (chdb, in-process; compose's
server cannot run here).

dashboards/docker/clickhouse/users.xml gives `peakend_reader` readonly=1, its limits and a
`changeable_in_readonly` constraint on max_execution_time, the one setting the Grafana plugin's
client sends with every query (tests/grafana_plugin/go/main.go). Loaded into chdb (clickhouse-local
authenticates as `default`, so the profile is given to `default` there), the engine shows:

- without the constraint, readonly=1 refuses the plugin's max_execution_time (Code 164, the
  failure issue 22 reported), while the limits and the refusal of writes hold: the constraint is
  needed;
- with it, the engine accepts the profile only when access_control_improvements'
  settings_constraints_replace_previous is on (clickhouse-local never turns it on), which compose
  therefore sets explicitly (dashboards/docker/clickhouse/config.xml).

Each engine runs in a subprocess of its own: chdb holds one engine per process, and a users file
it refuses stops the engine from starting.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from dashboards import build

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "dashboards" / "docker" / "clickhouse"
# clickhouse-go sends int(seconds left + 5) (its context.go, queryOptions): under the 25 s query
# timeout that is 29 (30, the profile's own value, would pass unchanged)
PLUGIN_SENDS = build.READER_QUERY_TIMEOUT_S + 4

PROBE = """
import json, sys
import chdb
try:
    conn = chdb.connect(f"file:{sys.argv[1]}?config-file={sys.argv[2]}")
except Exception as e:
    print(json.dumps({"start": str(e)}))
    raise SystemExit(0)
cur = conn.cursor()
out = {"start": None}
for name, sql in json.loads(sys.argv[3]).items():
    try:
        cur.execute(sql)
        out[name] = {"ok": True, "rows": [list(map(str, r)) for r in cur.fetchall()[:5]]}
    except Exception as e:
        out[name] = {"ok": False, "error": str(e)}
print(json.dumps(out))
"""

PROBES = {
    "effective": "SELECT name, value FROM system.settings WHERE name IN "
                 "('readonly', 'max_result_rows', 'max_execution_time') ORDER BY name",
    "plugin_timeout": f"SELECT 1 SETTINGS max_execution_time = {PLUGIN_SENDS}",
    "lift_result_rows": "SELECT 1 SETTINGS max_result_rows = 0",
    "too_many_rows": "SELECT number FROM system.numbers LIMIT 1000001",
    "create_table": "CREATE TABLE plugin_probe (x UInt8) ENGINE = Memory",
}


def reader_profile(with_constraints: bool) -> ET.Element:
    profile = ET.fromstring((DOCKER / "users.xml").read_text()).find("profiles/reader")
    assert profile is not None
    if not with_constraints:
        for constraints in profile.findall("constraints"):
            profile.remove(constraints)
    return profile


def run_engine(tmp_path: Path, profile: ET.Element) -> dict[str, Any]:
    """The probes' outcomes on chdb with `default` given `profile` (or {"start": error})."""
    users = ET.Element("clickhouse")
    profiles = ET.SubElement(users, "profiles")
    ET.SubElement(profiles, "default")
    profile.tag = "reader"
    profiles.append(profile)
    default = ET.SubElement(ET.SubElement(users, "users"), "default")
    ET.SubElement(default, "password")
    ET.SubElement(ET.SubElement(default, "networks"), "ip").text = "::/0"
    ET.SubElement(default, "profile").text = "reader"
    ET.SubElement(default, "quota").text = "default"
    ET.SubElement(ET.SubElement(users, "quotas"), "default")
    # not in the working directory: chdb reads a config.xml found there when it is imported
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "users.xml").write_bytes(ET.tostring(users))
    (conf / "config.xml").write_text(
        f"<clickhouse><users_config>{conf / 'users.xml'}</users_config></clickhouse>")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "data"), str(conf / "config.xml"),
         json.dumps(PROBES)],
        cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if out["start"] is not None:  # the engine's reason is on its stderr
        out["start"] += "\n" + done.stderr
    return out


def test_without_the_constraint_readonly_refuses_the_plugins_timeout(tmp_path: Path) -> None:
    out = run_engine(tmp_path, reader_profile(with_constraints=False))
    assert out["start"] is None, out["start"]
    assert dict(map(tuple, out["effective"]["rows"])) == {
        "max_execution_time": str(build.READER_MAX_EXECUTION_S), "max_result_rows": "1000000",
        "readonly": "1"}
    # what issue 22 saw with the plugin: Code 164 on the setting its client sends
    assert not out["plugin_timeout"]["ok"]
    assert "Code: 164" in out["plugin_timeout"]["error"]
    assert "max_execution_time" in out["plugin_timeout"]["error"]
    # the rest of the profile holds on a current engine
    assert not out["lift_result_rows"]["ok"] and "Code: 164" in out["lift_result_rows"]["error"]
    assert not out["too_many_rows"]["ok"] and "Limit for result" in out["too_many_rows"]["error"]
    assert not out["create_table"]["ok"] and "readonly" in out["create_table"]["error"].lower()


def test_the_constraint_needs_settings_constraints_replace_previous(tmp_path: Path) -> None:
    out = run_engine(tmp_path, reader_profile(with_constraints=True))
    assert out["start"] is not None, "chdb started: does it now enable the improvement itself?"
    assert "settings_constraints_replace_previous" in out["start"], out["start"]
    assert "changeable_in_readonly" in out["start"]


def test_compose_enables_settings_constraints_replace_previous() -> None:
    config = ET.fromstring((DOCKER / "config.xml").read_text())
    assert config.findtext(
        "access_control_improvements/settings_constraints_replace_previous") == "true"
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["clickhouse"]["volumes"]}
    assert mounts["./dashboards/docker/clickhouse/config.xml"].startswith(
        "/etc/clickhouse-server/config.d/")
    assert mounts["./dashboards/docker/clickhouse/users.xml"].startswith(
        "/etc/clickhouse-server/users.d/")
