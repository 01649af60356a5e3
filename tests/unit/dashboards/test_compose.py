"""docker-compose.yml (it cannot run here): generated, parses, references files that exist, and
matches the native stack's ports, topics, users and provisioning."""

from __future__ import annotations

import re
from pathlib import Path

from dashboards import compose, yamlout
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def _doc() -> dict:  # type: ignore[type-arg]
    return yamlout.load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_committed_file_equals_the_generated_one_and_parses() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert text == yamlout.dump(compose.compose(), compose.HEADER), (
        "run python -m dashboards.compose")
    assert _doc() == compose.compose()


def test_services_and_referenced_files() -> None:
    services = _doc()["services"]
    assert {"kafka", "clickhouse", "grafana", "prometheus", "alertmanager", "worker",
            "generator"} <= set(services)
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()
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


def test_same_ports_and_topics_as_the_native_stack() -> None:
    stack = (ROOT / "scripts" / "stack.sh").read_text()
    defaults = dict(re.findall(r"(\w+_PORT)=\$\{PEAKEND_\w+:-(\d+)\}", stack))
    published = {p.split(":")[0] for svc in _doc()["services"].values()
                 for p in svc.get("ports", [])}
    for name in ("KAFKA_PORT", "CLICKHOUSE_TCP_PORT", "CLICKHOUSE_HTTP_PORT", "PROMETHEUS_PORT",
                 "ALERTMANAGER_PORT"):
        assert defaults[name] in published, name
    settings = Settings.from_env({})
    assert str(settings.metrics_port) in published
    topics = set(compose.TOPICS)
    assert {settings.topic_touchpoints, settings.topic_dead_letters, settings.topic_journeys,
            settings.topic_metrics, settings.topic_alerts} == topics
    assert compose.TOPICS[settings.topic_touchpoints] == settings.partitions
    kafka = _doc()["services"]["kafka"]["environment"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_grafana_uses_the_provisioning_unchanged_and_no_literal_secrets() -> None:
    services = _doc()["services"]
    grafana = services["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    assert "./dashboards/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    provider = yamlout.load((ROOT / "dashboards/grafana/provisioning/dashboards/peakend.yml")
                            .read_text())
    path = provider["providers"][0]["options"]["path"]
    assert any(v.split(":")[1] == path for v in grafana["volumes"])
    for svc in services.values():
        for key, value in svc.get("environment", {}).items():
            if "PASSWORD" in key or ("_URL" in key and "@" in value):
                assert "${" in value, f"{key} must come from the environment"
    users = (ROOT / "dashboards/docker/clickhouse/users.xml").read_text()
    assert 'from_env="PEAKEND_CLICKHOUSE_READER_PASSWORD"' in users
    assert "<readonly>1</readonly>" in users
    prom = services["prometheus"]
    assert "./dashboards/prometheus:/etc/peakend/dashboards/prometheus:ro" in prom["volumes"]
