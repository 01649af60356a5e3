"""docker-compose.yml (it cannot run here: no Docker daemon): generated, accepted by a real Compose
CLI's `config` (with passwords that break URLs), referencing files that exist, and matching the
native stack (scripts/stack.sh): images, ports, users and topics."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build, compose
from dashboards.docker import entrypoint
from pipeline.settings import Settings
from pipeline.stream.topics import followups_topic
from pipeline.urls import parse_clickhouse_url

ROOT = Path(__file__).resolve().parents[3]
STACK = (ROOT / "scripts" / "stack.sh").read_text()
# Passwords that break a URL written verbatim: `/` and `=` (base64), `@` and `#`, and `%41`.
AWKWARD = {"PEAKEND_CLICKHOUSE_ADMIN_PASSWORD": "adm1n/+=",
           "PEAKEND_CLICKHOUSE_WRITER_PASSWORD": "Xy/9+Zq=",
           "PEAKEND_CLICKHOUSE_READER_PASSWORD": "p@ss#1%41",
           "PEAKEND_KAFKA_SASL_PASSWORD": "k@fka/1",
           "GRAFANA_ADMIN_PASSWORD": "gr@f#na"}


def _doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _compose_cli() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("no Compose CLI: `bash scripts/setup-python.sh` installs Debian's docker-compose",
                pytrace=False)


def test_committed_file_equals_the_generated_one_and_parses() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert text == build.dump_yaml(compose.compose(), compose.HEADER), (
        "run python -m dashboards.compose")
    assert _doc() == compose.compose()


def test_a_real_compose_cli_accepts_the_file(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **AWKWARD}
    proc = subprocess.run([*_compose_cli(), "--project-directory", str(ROOT), "-f",
                           str(ROOT / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)["services"]
    # the passwords arrive verbatim, in plain variables, never inside a URL
    grafana = resolved["grafana"]["environment"]
    assert grafana["PEAKEND_CLICKHOUSE_READER_PASSWORD"] == AWKWARD[
        "PEAKEND_CLICKHOUSE_READER_PASSWORD"]
    worker = resolved["worker"]["environment"]
    assert worker["PEAKEND_CLICKHOUSE_WRITER_PASSWORD"] == AWKWARD[
        "PEAKEND_CLICKHOUSE_WRITER_PASSWORD"]
    for name, svc in resolved.items():
        for key, value in (svc.get("environment") or {}).items():
            if "URL" in key:
                assert "@" not in str(value), f"{name}: {key} carries credentials"
    # and a missing password is a one-line error naming it, not a broken stack
    env.pop("PEAKEND_CLICKHOUSE_READER_PASSWORD")
    proc = subprocess.run([*_compose_cli(), "--project-directory", str(ROOT), "-f",
                           str(ROOT / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode != 0 and "PEAKEND_CLICKHOUSE_READER_PASSWORD" in proc.stderr


@pytest.mark.parametrize("password", [*AWKWARD.values(), "a:b@c/d?e#f%g h"])
def test_the_image_entry_point_builds_urls_any_password_survives(password: str) -> None:
    env = {"PEAKEND_CLICKHOUSE_HOST": "clickhouse",
           "PEAKEND_CLICKHOUSE_WRITER_PASSWORD": password,
           "PEAKEND_CLICKHOUSE_READER_PASSWORD": password[::-1]}
    urls = entrypoint.clickhouse_urls(env)
    writer = parse_clickhouse_url(urls["PEAKEND_CLICKHOUSE_URL"])
    reader = parse_clickhouse_url(urls["PEAKEND_CLICKHOUSE_READER_URL"])
    assert (writer.user, writer.password, writer.host, writer.port, writer.database) == (
        "peakend_writer", password, "clickhouse", 9000, "peakend")
    assert (reader.user, reader.password) == ("peakend_reader", password[::-1])
    assert Settings.from_env(urls).clickhouse_url == urls["PEAKEND_CLICKHOUSE_URL"]


def test_services_and_referenced_files() -> None:
    services = _doc()["services"]
    assert {"kafka", "clickhouse", "grafana", "prometheus", "alertmanager", "worker",
            "generator", "alert-webhook"} <= set(services)
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
        build_ = svc.get("build")
        if build_:
            assert (ROOT / build_["context"] / build_["dockerfile"]).is_file()
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        mode = svc.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.removeprefix("service:") in services
    volumes = set(_doc()["volumes"])
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("./", "/")):
                assert source in volumes
    dockerfile = (ROOT / "dashboards/docker/Dockerfile").read_text()
    assert "dashboards/docker/entrypoint.py" in dockerfile


def test_kafka_keeps_its_data_in_the_volume() -> None:
    kafka = _doc()["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert any(v.split(":")[1] == log_dirs for v in kafka["volumes"]), (
        "KAFKA_LOG_DIRS must be the mounted volume, or the data is lost with the container")


def _stack_default(name: str) -> str:
    match = re.search(rf"\b{name}=\$\{{PEAKEND_\w+:-([^}}]+)\}}", STACK)
    assert match, name
    return match.group(1)


def test_same_ports_and_topics_as_the_native_stack() -> None:
    published = {p.split(":")[0] for svc in _doc()["services"].values()
                 for p in svc.get("ports", [])}
    for name in ("KAFKA_PORT", "CLICKHOUSE_TCP_PORT", "CLICKHOUSE_HTTP_PORT", "PROMETHEUS_PORT",
                 "ALERTMANAGER_PORT"):
        assert _stack_default(name) in published, name
    kafka = int(_stack_default("KAFKA_PORT"))
    assert str(kafka + 4) in published, "KAFKA_SASL_PORT (KAFKA_PORT + 4 in scripts/stack.sh)"
    kafka_env = _doc()["services"]["kafka"]["environment"]
    assert f"CONTROLLER://:{_stack_default('KAFKA_CONTROLLER_PORT')}" in kafka_env[
        "KAFKA_LISTENERS"]
    settings = Settings.from_env({})
    assert str(settings.metrics_port) in published
    topics = set(compose.TOPICS)
    assert {settings.topic_touchpoints, settings.topic_dead_letters, settings.topic_journeys,
            settings.topic_metrics, settings.topic_alerts, followups_topic(settings)} == topics
    assert compose.TOPICS[settings.topic_touchpoints] == settings.partitions
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_same_kafka_version_as_the_native_stack() -> None:
    pom = ET.parse(ROOT / "scripts" / "kafka" / "pom.xml").getroot()
    version = next(e.text for e in pom.iter() if e.tag.endswith("kafka.version"))
    images = {svc["image"] for name, svc in _doc()["services"].items() if "kafka" in name}
    assert images == {f"apache/kafka:{version}"}


def _users(path: Path) -> dict[str, dict[str, str]]:
    """user -> its profile's settings (constraints aside)."""
    root = ET.fromstring(path.read_text())
    profiles = {p.tag: {s.tag: (s.text or "").strip() for s in p if s.tag != "constraints"}
                for p in root.find("profiles") or []}
    return {u.tag: profiles[u.findtext("profile", "")] for u in root.find("users") or []}


def test_same_clickhouse_users_and_limits_as_the_native_stack() -> None:
    native = _users(ROOT / "scripts" / "clickhouse" / "users.xml.in")
    docker = _users(ROOT / "dashboards" / "docker" / "clickhouse" / "users.xml")
    native.pop("default")  # compose's image makes `default` from CLICKHOUSE_USER / _PASSWORD
    assert docker == native
    env = _doc()["services"]["clickhouse"]["environment"]
    assert env["CLICKHOUSE_USER"] == "default"
    root = ET.fromstring((ROOT / "dashboards/docker/clickhouse/users.xml").read_text())
    for user in root.find("users") or []:
        password = user.find("password")
        assert password is not None and password.get("from_env") in env, user.tag
    assert re.search(r"SASL_USER=(\w+)", STACK).group(1) == compose.KAFKA_SASL_USER  # type: ignore[union-attr]


def test_the_reader_lets_the_grafana_plugin_set_its_timeout_within_the_limit() -> None:
    """clickhouse-go sends max_execution_time = query timeout + 5 s; on a current server
    readonly=1 refuses it unless a constraint marks it changeable_in_readonly (the plugin's docs,
    docs/sources/configure.md). The constraint's max is the reader's limit, and the data source's
    queryTimeout keeps what the plugin sends within it."""
    root = ET.fromstring((ROOT / "dashboards/docker/clickhouse/users.xml").read_text())
    reader = root.find("profiles/reader")
    assert reader is not None and reader.findtext("readonly") == "1"
    constraint = reader.find("constraints/max_execution_time")
    assert constraint is not None and constraint.find("changeable_in_readonly") is not None
    limit = int(reader.findtext("max_execution_time", ""))
    assert int(constraint.findtext("max", "")) == limit == build.READER_MAX_EXECUTION_S
    assert {c.tag for c in reader.find("constraints") or []} == {"max_execution_time"}
    ch = next(d for d in build.datasources()["datasources"]
              if d["type"] == "grafana-clickhouse-datasource")
    assert int(ch["jsonData"]["queryTimeout"]) + 5 <= limit


def test_images_are_pinned_and_the_plugin_fits_the_pinned_grafana() -> None:
    services = _doc()["services"]
    for name, svc in services.items():
        if "image" in svc and svc["image"] != "peakend:local":
            assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", svc["image"]), f"{name}: unpinned"
    grafana = services["grafana"]
    assert grafana["image"] == "grafana/grafana:11.3.0"
    plugin, version = grafana["environment"]["GF_INSTALL_PLUGINS"].split(" ")
    assert plugin == "grafana-clickhouse-datasource"
    # 4.15.0 raised the plugin's grafanaDependency to >=11.6.0 (its CHANGELOG.md, #1753)
    assert tuple(map(int, version.split("."))) < (4, 15, 0)


def test_alertmanager_and_grafana_send_alerts_to_a_receiver_compose_starts() -> None:
    services = _doc()["services"]
    am_config = yaml.safe_load((ROOT / "scripts/prometheus/alertmanager.yml").read_text())
    urls = [w["url"] for r in am_config["receivers"] for w in r.get("webhook_configs", [])]
    assert urls
    webhook = services["alert-webhook"]
    assert services["alertmanager"]["network_mode"] == webhook["network_mode"]
    for url in urls:  # Alertmanager addresses 127.0.0.1 in the namespace it shares
        assert re.match(rf"http://127\.0\.0\.1:{webhook['environment']['HTTP_PORT']}/", url)
    grafana = services["grafana"]["environment"]
    for key in ("PEAKEND_ALERT_WEBHOOK_URL", "PEAKEND_CX_ALERT_WEBHOOK_URL"):
        assert f"http://netns:{compose.WEBHOOK_PORT}/" in grafana[key]
    contact_types = {r["type"] for c in build.contact_points()["contactPoints"]
                     for r in c["receivers"]}
    assert contact_types == {"webhook"}, "e-mail needs SMTP settings compose does not have"


def test_grafana_uses_the_provisioning_unchanged_and_no_literal_secrets() -> None:
    services = _doc()["services"]
    grafana = services["grafana"]
    assert "./dashboards/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    provider = yaml.safe_load((build.PROVISIONING / "dashboards" / "peakend.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert any(v.split(":")[1] == path for v in grafana["volumes"])
    referenced = set(re.findall(r"\$\{(\w+)\}", (build.PROVISIONING / "alerting" /
                                                 "contact-points.yml").read_text()))
    referenced |= set(re.findall(r"\$\{(\w+)\}", (build.PROVISIONING / "datasources" /
                                                  "clickhouse.yml").read_text()))
    assert referenced <= set(grafana["environment"]), "provisioning reads unset variables"
    for svc in services.values():
        for key, value in svc.get("environment", {}).items():
            if "PASSWORD" in key or "JAAS" in key:
                assert "${" in value, f"{key} must come from the environment"
    prom = services["prometheus"]
    assert "./dashboards/prometheus:/etc/peakend/dashboards/prometheus:ro" in prom["volumes"]
