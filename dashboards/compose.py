"""docker-compose.yml for users with Docker, generated (`python -m dashboards.compose`).

Same topics and ports as scripts/stack.sh: Kafka 9092 (KRaft, auto-create off), ClickHouse 9000 /
8123 (current server, same users and profiles, passwords from the environment), Prometheus 9090,
Alertmanager 9093, worker metrics 9108, plus Grafana on 3000 provisioned from
dashboards/grafana/provisioning unchanged. Prometheus, Alertmanager and the worker share one
network namespace (`netns`), so scripts/prometheus/*.yml work unchanged (they address each other
as 127.0.0.1).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dashboards import yamlout

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docker-compose.yml"
TOPICS = {"cx.touchpoints": 12, "cx.dead-letters": 12, "cx.journeys": 12, "cx.metrics": 12,
          "cx.alerts": 1}

PASSWORD = "${PEAKEND_CLICKHOUSE_%s_PASSWORD:?set PEAKEND_CLICKHOUSE_%s_PASSWORD}"


def _password(role: str) -> str:
    return PASSWORD % (role, role)


def _peakend_env() -> dict[str, str]:
    writer = _password("WRITER")
    reader = _password("READER")
    return {
        "PEAKEND_KAFKA_BOOTSTRAP": "kafka:19092",
        "PEAKEND_CLICKHOUSE_URL": f"clickhouse://peakend_writer:{writer}@clickhouse:9000/peakend",
        "PEAKEND_CLICKHOUSE_READER_URL":
            f"clickhouse://peakend_reader:{reader}@clickhouse:9000/peakend",
        "PEAKEND_PARTITIONS": "12",
        "PEAKEND_METRICS_PORT": "9108",
        "PEAKEND_DATA_DIR": "/var/lib/peakend",
        "PEAKEND_PSEUDONYMISE_KEY": "${PEAKEND_PSEUDONYMISE_KEY:-}",
    }


def compose() -> dict[str, Any]:
    create_topics = " && ".join(
        f"/opt/kafka/bin/kafka-topics.sh --bootstrap-server kafka:19092 --create "
        f"--if-not-exists --topic {name} --partitions {n} --replication-factor 1"
        for name, n in TOPICS.items())
    peakend_build = {"context": ".", "dockerfile": "dashboards/docker/Dockerfile"}
    return {
        "name": "peakend",
        "services": {
            "kafka": {
                "image": "apache/kafka:3.9.1",
                "hostname": "kafka",
                "ports": ["9092:9092"],
                "environment": {
                    "KAFKA_NODE_ID": "1",
                    "KAFKA_PROCESS_ROLES": "broker,controller",
                    "KAFKA_LISTENERS":
                        "INTERNAL://:19092,EXTERNAL://:9092,CONTROLLER://:9097",
                    "KAFKA_ADVERTISED_LISTENERS":
                        "INTERNAL://kafka:19092,EXTERNAL://localhost:9092",
                    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":
                        "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
                    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9097",
                    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
                    "KAFKA_NUM_PARTITIONS": "1",
                    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                    "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "12",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
                },
                "volumes": ["kafka-data:/var/lib/kafka/data"],
                "healthcheck": {
                    "test": ["CMD-SHELL", "/opt/kafka/bin/kafka-topics.sh --bootstrap-server "
                             "kafka:19092 --list >/dev/null 2>&1"],
                    "interval": "5s", "timeout": "10s", "retries": 30,
                },
            },
            "kafka-topics": {
                "image": "apache/kafka:3.9.1",
                "depends_on": {"kafka": {"condition": "service_healthy"}},
                "entrypoint": ["/bin/sh", "-c"],
                "command": [create_topics],
                "restart": "no",
            },
            "clickhouse": {
                "image": "clickhouse/clickhouse-server:25.8",
                "ports": ["9000:9000", "8123:8123"],
                "environment": {
                    "CLICKHOUSE_DB": "peakend",
                    "CLICKHOUSE_USER": "default",
                    "CLICKHOUSE_PASSWORD": _password("ADMIN"),
                    "PEAKEND_CLICKHOUSE_WRITER_PASSWORD": _password("WRITER"),
                    "PEAKEND_CLICKHOUSE_READER_PASSWORD": _password("READER"),
                },
                "volumes": [
                    "./dashboards/docker/clickhouse/users.xml:"
                    "/etc/clickhouse-server/users.d/peakend.xml:ro",
                    "clickhouse-data:/var/lib/clickhouse",
                ],
                "ulimits": {"nofile": {"soft": 262144, "hard": 262144}},
                "healthcheck": {
                    "test": ["CMD-SHELL", "clickhouse-client --password \"$$CLICKHOUSE_PASSWORD\" "
                             "--query 'SELECT 1'"],
                    "interval": "5s", "timeout": "10s", "retries": 30,
                },
            },
            "netns": {
                "image": "busybox:1.36",
                "command": ["sleep", "infinity"],
                "ports": ["9090:9090", "9093:9093", "9108:9108"],
            },
            "migrate": {
                "build": dict(peakend_build),
                "image": "peakend:local",
                "command": ["migrate"],
                "environment": _peakend_env(),
                "depends_on": {"clickhouse": {"condition": "service_healthy"}},
                "restart": "no",
            },
            "worker": {
                "image": "peakend:local",
                "command": ["worker"],
                "network_mode": "service:netns",
                "environment": _peakend_env(),
                "volumes": ["worker-data:/var/lib/peakend"],
                "depends_on": {
                    "kafka-topics": {"condition": "service_completed_successfully"},
                    "migrate": {"condition": "service_completed_successfully"},
                    "netns": {"condition": "service_started"},
                },
                "restart": "unless-stopped",
            },
            "generator": {
                "image": "peakend:local",
                "command": ["generate", "--to", "kafka", "--events", "200000", "--span", "1d",
                            "--rate", "500", "--quiet"],
                "environment": _peakend_env(),
                "depends_on": {"worker": {"condition": "service_started"}},
                "restart": "no",
            },
            "prometheus": {
                "image": "prom/prometheus:v2.53.2",
                "network_mode": "service:netns",
                "working_dir": "/etc/peakend/scripts/prometheus",
                "command": [
                    "--config.file=/etc/peakend/scripts/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    "--web.listen-address=0.0.0.0:9090",
                    "--web.enable-lifecycle",
                    "--rules.alert.resend-delay=5s",
                ],
                "volumes": [
                    "./scripts/prometheus:/etc/peakend/scripts/prometheus:ro",
                    "./dashboards/prometheus:/etc/peakend/dashboards/prometheus:ro",
                    "prometheus-data:/prometheus",
                ],
                "depends_on": {"netns": {"condition": "service_started"}},
            },
            "alertmanager": {
                "image": "prom/alertmanager:v0.27.0",
                "network_mode": "service:netns",
                "command": [
                    "--config.file=/etc/peakend/scripts/prometheus/alertmanager.yml",
                    "--storage.path=/alertmanager",
                    "--web.listen-address=0.0.0.0:9093",
                    "--cluster.listen-address=",
                ],
                "volumes": ["./scripts/prometheus:/etc/peakend/scripts/prometheus:ro"],
                "depends_on": {"netns": {"condition": "service_started"}},
            },
            "grafana": {
                "image": "grafana/grafana:11.3.0",
                "ports": ["3000:3000"],
                "environment": {
                    "GF_INSTALL_PLUGINS": "grafana-clickhouse-datasource",
                    "GF_SECURITY_ADMIN_PASSWORD":
                        "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD}",
                    "PEAKEND_CLICKHOUSE_HOST": "clickhouse",
                    "PEAKEND_CLICKHOUSE_READER_PASSWORD": _password("READER"),
                    "PEAKEND_PROMETHEUS_URL": "http://netns:9090",
                    "PEAKEND_ALERT_WEBHOOK_URL":
                        "${PEAKEND_ALERT_WEBHOOK_URL:-http://netns:9119/alerts}",
                    "PEAKEND_CX_ALERT_EMAILS": "${PEAKEND_CX_ALERT_EMAILS:-cx-team@example.com}",
                },
                "volumes": [
                    "./dashboards/grafana/provisioning:/etc/grafana/provisioning:ro",
                    "./dashboards/grafana/dashboards:/var/lib/grafana/dashboards/peakend:ro",
                    "grafana-data:/var/lib/grafana",
                ],
                "depends_on": {"clickhouse": {"condition": "service_healthy"},
                               "prometheus": {"condition": "service_started"}},
            },
        },
        "volumes": {name: {} for name in ("kafka-data", "clickhouse-data", "worker-data",
                                          "prometheus-data", "grafana-data")},
    }


HEADER = """peakend for users with Docker: `docker compose up -d`. Needs
PEAKEND_CLICKHOUSE_ADMIN_PASSWORD, PEAKEND_CLICKHOUSE_WRITER_PASSWORD,
PEAKEND_CLICKHOUSE_READER_PASSWORD and GRAFANA_ADMIN_PASSWORD in the environment or an .env file.
Grafana: http://localhost:3000. See docs/dashboards.md.
Generated by dashboards/compose.py (python -m dashboards.compose); do not edit by hand."""


def main() -> int:
    OUTPUT.write_text(yamlout.dump(compose(), HEADER), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
