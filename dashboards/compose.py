"""docker-compose.yml for users with Docker, generated (`python -m dashboards.compose`).

Same versions, topics, ports and users as scripts/stack.sh: Kafka 4.1.1 on 9092 and SASL/PLAIN on
9096 (KRaft, auto-create off), ClickHouse 9000 / 8123 (same users and profiles, passwords from
the environment), Prometheus 9090 and Alertmanager 9093 (Debian 12's versions), worker metrics
9108, plus Grafana on 3000 provisioned from dashboards/grafana/provisioning unchanged.
Prometheus, Alertmanager, the worker and the placeholder alert webhook share one network
namespace (`netns`), so scripts/prometheus/*.yml work unchanged (they address each other as
127.0.0.1, and Alertmanager's receiver is the webhook on 127.0.0.1:9119).

ClickHouse is the one deliberate difference: Debian ships only 18.16, whose HTTP interface refuses
the `client_protocol_version` parameter the Grafana plugin's client sends with every query
(docs/dashboards.md), so compose runs a current server.

Passwords never go into a URL here: compose substitutes variables verbatim, so a password with
`/`, `%` or `@` would break one. The peakend image's entry point (dashboards/docker/entrypoint.py)
builds the URLs from the raw passwords, percent-encoded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dashboards.build import dump_yaml
from pipeline.settings import Settings
from pipeline.stream.topics import topic_partitions

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docker-compose.yml"
KAFKA_IMAGE = "apache/kafka:4.1.1"  # scripts/kafka/pom.xml kafka.version
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:25.8"
PROMETHEUS_IMAGE = "prom/prometheus:v2.42.0"  # Debian 12's prometheus, the native stack's
ALERTMANAGER_IMAGE = "prom/alertmanager:v0.25.0"  # Debian 12's prometheus-alertmanager
GRAFANA_IMAGE = "grafana/grafana:11.3.0"
# The last plugin release for Grafana < 11.6 (4.15.0 raised grafanaDependency to >=11.6.0)
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource 4.14.1"
# A placeholder alert receiver: logs every request it gets (body included) to its stdout.
WEBHOOK_IMAGE = "mendhak/http-https-echo:35"
WEBHOOK_PORT = 9119  # scripts/prometheus/alertmanager.yml sends every alert to 127.0.0.1:9119
KAFKA_DATA = "/var/lib/kafka/data"
KAFKA_SASL_USER = "peakend"  # scripts/stack.sh SASL_USER
# The topics users produce to and read from, with the partitions the worker would create them
# with (pipeline/stream/topics.py, declared once); the worker creates its internal ones itself.
_DEFAULTS = Settings.from_env({})
TOPICS = {name: n for name, n in topic_partitions(_DEFAULTS).items()
          if not name.startswith(f"{_DEFAULTS.app_id}-")}

PASSWORD = "${PEAKEND_CLICKHOUSE_%s_PASSWORD:?set PEAKEND_CLICKHOUSE_%s_PASSWORD}"


def _password(role: str) -> str:
    return PASSWORD % (role, role)


def _peakend_env() -> dict[str, str]:
    # entrypoint.py turns these into PEAKEND_CLICKHOUSE_URL / _READER_URL
    return {
        "PEAKEND_KAFKA_BOOTSTRAP": "kafka:19092",
        "PEAKEND_CLICKHOUSE_HOST": "clickhouse",
        "PEAKEND_CLICKHOUSE_WRITER_PASSWORD": _password("WRITER"),
        "PEAKEND_CLICKHOUSE_READER_PASSWORD": _password("READER"),
        "PEAKEND_PARTITIONS": "12",
        "PEAKEND_METRICS_PORT": "9108",
        "PEAKEND_DATA_DIR": "/var/lib/peakend",
        "PEAKEND_PSEUDONYMISE_KEY": "${PEAKEND_PSEUDONYMISE_KEY:-}",
    }


def _sasl_password() -> str:
    return "${PEAKEND_KAFKA_SASL_PASSWORD:?set PEAKEND_KAFKA_SASL_PASSWORD}"


def compose() -> dict[str, Any]:
    create_topics = " && ".join(
        f"/opt/kafka/bin/kafka-topics.sh --bootstrap-server kafka:19092 --create "
        f"--if-not-exists --topic {name} --partitions {n} --replication-factor 1"
        for name, n in TOPICS.items())
    peakend_build = {"context": ".", "dockerfile": "dashboards/docker/Dockerfile"}
    # No top-level `name:`: Debian's docker-compose (1.29, the CLI CI checks the file with) refuses
    # it; the project takes the directory's name (`docker compose -p peakend` to choose).
    return {
        "services": {
            "kafka": {
                "image": KAFKA_IMAGE,
                "hostname": "kafka",
                "ports": ["9092:9092", "9096:9096"],
                "environment": {
                    "KAFKA_NODE_ID": "1",
                    "KAFKA_PROCESS_ROLES": "broker,controller",
                    "KAFKA_LISTENERS":
                        "INTERNAL://:19092,EXTERNAL://:9092,CONTROLLER://:9097,SASL://:9096",
                    "KAFKA_ADVERTISED_LISTENERS":
                        "INTERNAL://kafka:19092,EXTERNAL://localhost:9092,SASL://localhost:9096",
                    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":
                        "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                        "SASL:SASL_PLAINTEXT",
                    "KAFKA_SASL_ENABLED_MECHANISMS": "PLAIN",
                    # listener.name.sasl.plain.sasl.jaas.config, as scripts/stack.sh writes it
                    "KAFKA_LISTENER_NAME_SASL_PLAIN_SASL_JAAS_CONFIG":
                        "org.apache.kafka.common.security.plain.PlainLoginModule required "
                        f'username="{KAFKA_SASL_USER}" password="{_sasl_password()}" '
                        f'user_{KAFKA_SASL_USER}="{_sasl_password()}";',
                    "KAFKA_LOG_DIRS": KAFKA_DATA,
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
                "volumes": [f"kafka-data:{KAFKA_DATA}"],
                "healthcheck": {
                    "test": ["CMD-SHELL", "/opt/kafka/bin/kafka-topics.sh --bootstrap-server "
                             "kafka:19092 --list >/dev/null 2>&1"],
                    "interval": "5s", "timeout": "10s", "retries": 30,
                },
            },
            "kafka-topics": {
                "image": KAFKA_IMAGE,
                "depends_on": {"kafka": {"condition": "service_healthy"}},
                "entrypoint": ["/bin/sh", "-c"],
                "command": [create_topics],
                "restart": "no",
            },
            "clickhouse": {
                "image": CLICKHOUSE_IMAGE,
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
                    # settings_constraints_replace_previous, which the reader's constraint needs
                    "./dashboards/docker/clickhouse/config.xml:"
                    "/etc/clickhouse-server/config.d/peakend.xml:ro",
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
                "ports": ["9090:9090", "9093:9093", "9108:9108", f"{WEBHOOK_PORT}:{WEBHOOK_PORT}"],
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
                "image": PROMETHEUS_IMAGE,
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
                "image": ALERTMANAGER_IMAGE,
                "network_mode": "service:netns",
                "command": [
                    "--config.file=/etc/peakend/scripts/prometheus/alertmanager.yml",
                    "--storage.path=/alertmanager",
                    "--web.listen-address=0.0.0.0:9093",
                    "--cluster.listen-address=",
                ],
                "volumes": ["./scripts/prometheus:/etc/peakend/scripts/prometheus:ro"],
                "depends_on": {"netns": {"condition": "service_started"},
                               "alert-webhook": {"condition": "service_started"}},
            },
            "alert-webhook": {
                "image": WEBHOOK_IMAGE,
                "network_mode": "service:netns",
                "environment": {"HTTP_PORT": str(WEBHOOK_PORT), "LOG_IGNORE_PATH": "/health"},
                "depends_on": {"netns": {"condition": "service_started"}},
            },
            "grafana": {
                "image": GRAFANA_IMAGE,
                "ports": ["3000:3000"],
                "environment": {
                    "GF_INSTALL_PLUGINS": CLICKHOUSE_PLUGIN,
                    "GF_SECURITY_ADMIN_PASSWORD":
                        "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD}",
                    "PEAKEND_CLICKHOUSE_HOST": "clickhouse",
                    "PEAKEND_CLICKHOUSE_READER_PASSWORD": _password("READER"),
                    "PEAKEND_PROMETHEUS_URL": "http://netns:9090",
                    "PEAKEND_ALERT_WEBHOOK_URL":
                        f"${{PEAKEND_ALERT_WEBHOOK_URL:-http://netns:{WEBHOOK_PORT}/oncall}}",
                    "PEAKEND_CX_ALERT_WEBHOOK_URL":
                        f"${{PEAKEND_CX_ALERT_WEBHOOK_URL:-http://netns:{WEBHOOK_PORT}/cx}}",
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
PEAKEND_CLICKHOUSE_READER_PASSWORD, PEAKEND_KAFKA_SASL_PASSWORD and GRAFANA_ADMIN_PASSWORD in the
environment or an .env file (any characters; not `"` or `\\` in the Kafka one, which goes into a
JAAS line).
Grafana: http://localhost:3000. See docs/dashboards.md.
Generated by dashboards/compose.py (python -m dashboards.compose); do not edit by hand."""


def main() -> int:
    OUTPUT.write_text(dump_yaml(compose(), HEADER), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
