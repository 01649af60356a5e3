#!/usr/bin/env bash
# The real local stack, natively (no Docker): Apache Kafka (KRaft, jars from Maven Central),
# ClickHouse (Debian's clickhouse-server), Prometheus and Alertmanager (Debian).
#
#   scripts/stack.sh install [SERVICE...]   install what is missing (idempotent, quick when done)
#   scripts/stack.sh start   [SERVICE...]   install if needed, then start; a running one is left alone
#   scripts/stack.sh stop    [SERVICE...]   stop (data is kept under $PEAKEND_STACK_DIR)
#   scripts/stack.sh status                 what runs where
#   scripts/stack.sh env                    export lines for the pipeline (URLs with credentials)
#   scripts/stack.sh tls                    generate the CA and server certificate (PEAKEND_STACK_TLS)
#   scripts/stack.sh wipe                   stop everything and delete the data directory
#
# SERVICE: kafka clickhouse prometheus alertmanager (default: all). Ports and the data directory
# come from the environment (defaults below). Logs: $PEAKEND_STACK_DIR/<service>/logs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR=${PEAKEND_STACK_DIR:-$ROOT/.stack}
KAFKA_PORT=${PEAKEND_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${PEAKEND_KAFKA_CONTROLLER_PORT:-9097}
KAFKA_SASL_PORT=${PEAKEND_KAFKA_SASL_PORT:-$((KAFKA_PORT + 4))}
KAFKA_HEAP=${PEAKEND_KAFKA_HEAP:-1G}
CLICKHOUSE_TCP_PORT=${PEAKEND_CLICKHOUSE_TCP_PORT:-9000}
CLICKHOUSE_HTTP_PORT=${PEAKEND_CLICKHOUSE_HTTP_PORT:-8123}
PROMETHEUS_PORT=${PEAKEND_PROMETHEUS_PORT:-9090}
ALERTMANAGER_PORT=${PEAKEND_ALERTMANAGER_PORT:-9093}
METRICS_PORT=${PEAKEND_METRICS_PORT:-9108}  # the worker's /metrics, which Prometheus scrapes
ALL_SERVICES=(kafka clickhouse prometheus alertmanager)
# TLS (PEAKEND_STACK_TLS=1): a CA and a server certificate are generated on first start under
# $PEAKEND_STACK_DIR/tls (nothing secret in git); Kafka then also listens with SSL and SASL_SSL,
# ClickHouse on its secure native and HTTPS ports. Clients verify with tls/ca.pem.
STACK_TLS=${PEAKEND_STACK_TLS:-0}
KAFKA_SSL_PORT=${PEAKEND_KAFKA_SSL_PORT:-$((KAFKA_PORT + 6))}
KAFKA_SASL_SSL_PORT=${PEAKEND_KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 7))}
CLICKHOUSE_TCP_SECURE_PORT=${PEAKEND_CLICKHOUSE_TCP_SECURE_PORT:-$((CLICKHOUSE_TCP_PORT + 440))}
CLICKHOUSE_HTTPS_PORT=${PEAKEND_CLICKHOUSE_HTTPS_PORT:-$((CLICKHOUSE_HTTP_PORT + 320))}

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# port_open, pid_alive, wait_port, render
# shellcheck source=scripts/lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"

apt_install() { # packages...
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- secrets
secrets_file="$STACK_DIR/secrets.env"
ensure_secrets() {
  mkdir -p "$STACK_DIR"
  if [ ! -f "$secrets_file" ]; then
    umask 077
    {
      echo "CH_ADMIN_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
      echo "CH_WRITER_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
      echo "CH_READER_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    } >"$secrets_file"
  fi
  if ! grep -q '^KAFKA_SASL_PASSWORD=' "$secrets_file"; then
    (umask 077; echo "KAFKA_SASL_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" \
      >>"$secrets_file")
  fi
  # shellcheck disable=SC1090
  . "$secrets_file"
}
sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# ---------------------------------------------------------------- tls
tls_dir="$STACK_DIR/tls"
ensure_tls() {
  [ -f "$tls_dir/server.pem" ] && return 0
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$tls_dir"
  log "generating a local CA and a server certificate for 127.0.0.1/localhost under $tls_dir"
  (
    umask 077; cd "$tls_dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 825 \
      -subj "/CN=peakend local CA $(hostname)" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" \
      2>/dev/null
    # kafka and clickhouse: the service names of docker-compose.tls.yml
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kafka,DNS:clickhouse" \
      "basicConstraints=CA:FALSE" \
      "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt \
      -days 825 -extfile server.ext 2>/dev/null
    # PKCS#12 with a generated password, for the apache/kafka image (docker-compose.tls.yml)
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >keystore_creds
    cp keystore_creds key_creds
    openssl pkcs12 -export -in server.crt -inkey server.key -certfile ca.pem -name kafka \
      -out server.p12 -passout "file:keystore_creds"
    cat server.key server.crt >server.pem.tmp && mv server.pem.tmp server.pem
  ) || die "could not generate the TLS certificates under $tls_dir"
  chmod 644 "$tls_dir/ca.pem"  # public: what clients verify with
}
kafka_tls() { # rendered server.properties: add the SSL and SASL_SSL listeners
  local props=$1
  sed -i -e "s|^listeners=\(.*\)$|listeners=\1,SSL://127.0.0.1:$KAFKA_SSL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT|" \
    -e "s|^advertised.listeners=\(.*\)$|advertised.listeners=\1,SSL://127.0.0.1:$KAFKA_SSL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT|" \
    -e "s|^listener.security.protocol.map=\(.*\)$|listener.security.protocol.map=\1,SSL:SSL,SASL_SSL:SASL_SSL|" \
    "$props"
  {
    echo "ssl.keystore.type=PEM"
    echo "ssl.keystore.location=$tls_dir/server.pem"
    echo "ssl.truststore.type=PEM"
    echo "ssl.truststore.location=$tls_dir/ca.pem"
    grep '^listener.name.sasl_plaintext.plain.sasl.jaas.config=' "$props" \
      | sed 's/^listener.name.sasl_plaintext/listener.name.sasl_ssl/'
  } >>"$props"
}
clickhouse_tls() { # conf dir: config.d/tls.xml with the secure ports, or none
  mkdir -p "$1/config.d"
  if [ "$STACK_TLS" != 1 ]; then rm -f "$1/config.d/tls.xml"; return 0; fi
  cat >"$1/config.d/tls.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <tcp_port_secure>$CLICKHOUSE_TCP_SECURE_PORT</tcp_port_secure>
    <https_port>$CLICKHOUSE_HTTPS_PORT</https_port>
    <openSSL>
        <server>
            <certificateFile>$tls_dir/server.crt</certificateFile>
            <privateKeyFile>$tls_dir/server.key</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
</yandex>
XML
}

# ---------------------------------------------------------------- kafka
kafka_dir="$STACK_DIR/kafka"
install_kafka() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  local stamp="$kafka_dir/libs/.complete"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/scripts/kafka/pom.xml" ]; then return 0; fi
  command -v mvn >/dev/null || apt_install maven
  log "fetching Apache Kafka jars from Maven Central (scripts/kafka/pom.xml)"
  rm -rf "$kafka_dir/libs"; mkdir -p "$kafka_dir/libs"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$kafka_dir/libs" >"$kafka_dir/mvn.log" 2>&1 \
    || { tail -n 40 "$kafka_dir/mvn.log" >&2; die "mvn could not fetch the Kafka jars (log: $kafka_dir/mvn.log)"; }
  touch "$stamp"
}
kafka_java() { java -cp "$kafka_dir/libs/*" "$@"; }
start_kafka() {
  local pidf="$kafka_dir/kafka.pid"
  if pid_alive "$pidf"; then log "kafka already running (pid $(cat "$pidf"), 127.0.0.1:$KAFKA_PORT)"; return 0; fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; set PEAKEND_KAFKA_PORT"
  install_kafka
  ensure_secrets
  mkdir -p "$kafka_dir/logs" "$kafka_dir/data"
  (umask 077; render "$ROOT/scripts/kafka/server.properties.in" "$kafka_dir/server.properties" \
    PORT="$KAFKA_PORT" CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" DATA_DIR="$kafka_dir/data" \
    SASL_PORT="$KAFKA_SASL_PORT" SASL_USER=peakend SASL_PASSWORD="$KAFKA_SASL_PASSWORD")
  if [ "$STACK_TLS" = 1 ]; then ensure_tls; kafka_tls "$kafka_dir/server.properties"; fi
  if [ ! -f "$kafka_dir/data/meta.properties" ]; then
    local cluster_id; cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    kafka_java -Dkafka.logs.dir="$kafka_dir/logs" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$kafka_dir/server.properties" \
      >"$kafka_dir/logs/format.log" 2>&1 || { cat "$kafka_dir/logs/format.log" >&2; die "kafka storage format failed"; }
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dkafka.logs.dir="$kafka_dir/logs" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$kafka_dir/libs/*" kafka.Kafka "$kafka_dir/server.properties" \
    </dev/null >"$kafka_dir/logs/stdout.log" 2>&1 &
  echo $! >"$pidf"
  # A broker that holds thousands of partitions (a long-lived dev stack keeps every test's topics)
  # loads its logs for minutes after an unclean stop; a fresh one listens within seconds.
  wait_port "$KAFKA_PORT" 300 kafka "$kafka_dir/logs/server.log" || die "kafka did not start"
  # The port opens before the broker has registered with its controller: wait until it serves.
  local deadline=$((SECONDS + 60))
  until kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list \
      >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "kafka opened its port but does not answer (log: $kafka_dir/logs/server.log)"
    sleep 0.5
  done
}

# ---------------------------------------------------------------- clickhouse
ch_dir="$STACK_DIR/clickhouse"
install_clickhouse() { apt_install clickhouse-server clickhouse-client; }
start_clickhouse() {
  local pidf="$ch_dir/clickhouse.pid"
  if pid_alive "$pidf"; then log "clickhouse already running (pid $(cat "$pidf"), 127.0.0.1:$CLICKHOUSE_TCP_PORT)"; return 0; fi
  port_open "$CLICKHOUSE_TCP_PORT" && die "port $CLICKHOUSE_TCP_PORT is taken by another process; set PEAKEND_CLICKHOUSE_TCP_PORT"
  install_clickhouse
  ensure_secrets
  mkdir -p "$ch_dir/conf" "$ch_dir/data/tmp" "$ch_dir/logs"
  render "$ROOT/scripts/clickhouse/config.xml.in" "$ch_dir/conf/config.xml" \
    LOG_DIR="$ch_dir/logs" HTTP_PORT="$CLICKHOUSE_HTTP_PORT" TCP_PORT="$CLICKHOUSE_TCP_PORT" \
    DATA_DIR="$ch_dir/data" CONF_DIR="$ch_dir/conf"
  render "$ROOT/scripts/clickhouse/users.xml.in" "$ch_dir/conf/users.xml" \
    ADMIN_SHA256="$(sha256 "$CH_ADMIN_PASSWORD")" WRITER_SHA256="$(sha256 "$CH_WRITER_PASSWORD")" \
    READER_SHA256="$(sha256 "$CH_READER_PASSWORD")"
  chmod 600 "$ch_dir/conf/users.xml"
  [ "$STACK_TLS" != 1 ] || ensure_tls
  clickhouse_tls "$ch_dir/conf"
  log "starting clickhouse on 127.0.0.1:$CLICKHOUSE_TCP_PORT (http $CLICKHOUSE_HTTP_PORT)"
  (cd "$ch_dir" && exec /usr/sbin/clickhouse-server --config-file="$ch_dir/conf/config.xml" \
    </dev/null >"$ch_dir/logs/stdout.log" 2>&1) &
  echo $! >"$pidf"
  wait_port "$CLICKHOUSE_TCP_PORT" 60 clickhouse "$ch_dir/logs/clickhouse-server.err.log" || die "clickhouse did not start"
  local deadline=$((SECONDS + 30))
  until clickhouse-client --port "$CLICKHOUSE_TCP_PORT" --user default --password "$CH_ADMIN_PASSWORD" \
      --query "SELECT 1" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "clickhouse does not answer queries (log: $ch_dir/logs)"
    sleep 0.3
  done
  clickhouse-client --port "$CLICKHOUSE_TCP_PORT" --user default --password "$CH_ADMIN_PASSWORD" \
    --query "CREATE DATABASE IF NOT EXISTS ${PEAKEND_CLICKHOUSE_DATABASE:-peakend}"
}

# ---------------------------------------------------------------- prometheus / alertmanager
prom_dir="$STACK_DIR/prometheus"
am_dir="$STACK_DIR/alertmanager"
install_prometheus() { apt_install prometheus; }
install_alertmanager() { apt_install prometheus-alertmanager; }
start_prometheus() {
  local pidf="$prom_dir/prometheus.pid"
  if pid_alive "$pidf"; then log "prometheus already running (pid $(cat "$pidf"), 127.0.0.1:$PROMETHEUS_PORT)"; return 0; fi
  port_open "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT is taken by another process; set PEAKEND_PROMETHEUS_PORT"
  install_prometheus
  mkdir -p "$prom_dir/data" "$prom_dir/logs"
  local config; config=$(prometheus_config)
  log "starting prometheus on 127.0.0.1:$PROMETHEUS_PORT ($config)"
  (cd "$ROOT/scripts/prometheus" && exec prometheus --config.file="$config" \
    --storage.tsdb.path="$prom_dir/data" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
    --web.enable-lifecycle --rules.alert.resend-delay=5s \
    </dev/null >"$prom_dir/logs/prometheus.log" 2>&1) &
  echo $! >"$pidf"
  wait_port "$PROMETHEUS_PORT" 60 prometheus "$prom_dir/logs/prometheus.log" || die "prometheus did not start"
}
# The config Prometheus runs with: PEAKEND_PROMETHEUS_CONFIG, else the repository's; with
# PEAKEND_STACK_TLS=1 a copy rendered under $prom_dir whose worker job scrapes https, the worker's
# certificate verified against the stack's CA (verification is never switched off), and whose
# addresses follow this stack's ports (rule files by absolute path: the copy lives elsewhere).
prometheus_config() {
  local config=${PEAKEND_PROMETHEUS_CONFIG:-$ROOT/scripts/prometheus/prometheus.yml}
  if [ "$STACK_TLS" != 1 ] || [ -n "${PEAKEND_PROMETHEUS_CONFIG:-}" ]; then echo "$config"; return 0; fi
  ensure_tls
  local rendered="$prom_dir/prometheus-tls.yml"
  sed -e "s|\.\./\.\./dashboards/|$ROOT/dashboards/|" \
    -e "s|127\.0\.0\.1:9093|127.0.0.1:$ALERTMANAGER_PORT|" \
    -e "s|127\.0\.0\.1:9108|127.0.0.1:$METRICS_PORT|" \
    -e "s|^\(  - job_name: peakend-worker\)$|\1\n    scheme: https\n    tls_config:\n      ca_file: $tls_dir/ca.pem|" \
    "$config" >"$rendered"
  grep -q '^    scheme: https$' "$rendered" || die "could not add TLS to the peakend-worker job of $config"
  echo "$rendered"
}
start_alertmanager() {
  local pidf="$am_dir/alertmanager.pid"
  if pid_alive "$pidf"; then log "alertmanager already running (pid $(cat "$pidf"), 127.0.0.1:$ALERTMANAGER_PORT)"; return 0; fi
  port_open "$ALERTMANAGER_PORT" && die "port $ALERTMANAGER_PORT is taken by another process; set PEAKEND_ALERTMANAGER_PORT"
  install_alertmanager
  mkdir -p "$am_dir/data" "$am_dir/logs"
  local config=${PEAKEND_ALERTMANAGER_CONFIG:-$ROOT/scripts/prometheus/alertmanager.yml}
  log "starting alertmanager on 127.0.0.1:$ALERTMANAGER_PORT ($config)"
  nohup prometheus-alertmanager --config.file="$config" --storage.path="$am_dir/data" \
    --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" --cluster.listen-address="" \
    </dev/null >"$am_dir/logs/alertmanager.log" 2>&1 &
  echo $! >"$pidf"
  wait_port "$ALERTMANAGER_PORT" 60 alertmanager "$am_dir/logs/alertmanager.log" || die "alertmanager did not start"
}

# ---------------------------------------------------------------- generic
pidfile_of() {
  case $1 in
    kafka) echo "$kafka_dir/kafka.pid" ;;
    clickhouse) echo "$ch_dir/clickhouse.pid" ;;
    prometheus) echo "$prom_dir/prometheus.pid" ;;
    alertmanager) echo "$am_dir/alertmanager.pid" ;;
    *) die "unknown service '$1' (known: ${ALL_SERVICES[*]})" ;;
  esac
}
port_of() {
  case $1 in
    kafka) echo "$KAFKA_PORT" ;; clickhouse) echo "$CLICKHOUSE_TCP_PORT" ;;
    prometheus) echo "$PROMETHEUS_PORT" ;; alertmanager) echo "$ALERTMANAGER_PORT" ;;
  esac
}
stop_service() {
  local pidf; pidf=$(pidfile_of "$1")
  if ! pid_alive "$pidf"; then rm -f "$pidf"; log "$1 not running"; return 0; fi
  local pid; pid=$(cat "$pidf")
  log "stopping $1 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then log "$1 ignored SIGTERM for 30 s; SIGKILL"; kill -9 "$pid" 2>/dev/null || true; fi
    sleep 0.2
  done
  rm -f "$pidf"
}
status() {
  printf '%-13s %-8s %-8s %-22s %s\n' SERVICE STATE PID ADDRESS "RSS(MiB)"
  for s in "${ALL_SERVICES[@]}"; do
    local pidf; pidf=$(pidfile_of "$s")
    if pid_alive "$pidf"; then
      local pid rss; pid=$(cat "$pidf"); rss=$(($(ps -o rss= -p "$pid" | tr -d ' ') / 1024))
      printf '%-13s %-8s %-8s %-22s %s\n' "$s" running "$pid" "127.0.0.1:$(port_of "$s")" "$rss"
    else
      printf '%-13s %-8s %-8s %-22s %s\n' "$s" stopped - - -
    fi
  done
  echo "data and logs: $STACK_DIR"
}
env_lines() {
  ensure_secrets
  local db=${PEAKEND_CLICKHOUSE_DATABASE:-peakend}
  echo "export PEAKEND_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
  echo "export PEAKEND_TEST_KAFKA_SASL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_PORT"
  echo "export PEAKEND_TEST_KAFKA_SASL_USERNAME=peakend"
  echo "export PEAKEND_TEST_KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD"
  echo "export PEAKEND_CLICKHOUSE_URL=clickhouse://peakend_writer:$CH_WRITER_PASSWORD@127.0.0.1:$CLICKHOUSE_TCP_PORT/$db"
  echo "export PEAKEND_CLICKHOUSE_READER_URL=clickhouse://peakend_reader:$CH_READER_PASSWORD@127.0.0.1:$CLICKHOUSE_TCP_PORT/$db"
  echo "export PEAKEND_CLICKHOUSE_ADMIN_URL=clickhouse://default:$CH_ADMIN_PASSWORD@127.0.0.1:$CLICKHOUSE_TCP_PORT/$db"
  echo "export PEAKEND_PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT"
  echo "export PEAKEND_ALERTMANAGER_URL=http://127.0.0.1:$ALERTMANAGER_PORT"
  if [ "$STACK_TLS" = 1 ]; then
    echo "export PEAKEND_TEST_TLS_CAFILE=$tls_dir/ca.pem"
    echo "export PEAKEND_TEST_KAFKA_SSL_BOOTSTRAP=127.0.0.1:$KAFKA_SSL_PORT"
    echo "export PEAKEND_TEST_KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_SSL_PORT"
    echo "export PEAKEND_TEST_CLICKHOUSE_SECURE_URL=clickhouses://peakend_writer:$CH_WRITER_PASSWORD@127.0.0.1:$CLICKHOUSE_TCP_SECURE_PORT/$db"
    echo "export PEAKEND_TEST_CLICKHOUSE_HTTPS_URL=https://127.0.0.1:$CLICKHOUSE_HTTPS_PORT"
    # the worker serves /metrics over HTTPS: the stack's Prometheus scrapes it with the CA
    echo "export PEAKEND_METRICS_TLS_CERTFILE=$tls_dir/server.crt"
    echo "export PEAKEND_METRICS_TLS_KEYFILE=$tls_dir/server.key"
  fi
}

cmd=${1:-status}; shift || true
services=("$@"); [ ${#services[@]} -gt 0 ] || services=("${ALL_SERVICES[@]}")
case $cmd in
  install) for s in "${services[@]}"; do pidfile_of "$s" >/dev/null; "install_$s"; done ;;
  start) for s in "${services[@]}"; do pidfile_of "$s" >/dev/null; "start_$s"; done ;;
  stop) for s in "${services[@]}"; do stop_service "$s"; done ;;
  restart) for s in "${services[@]}"; do stop_service "$s"; "start_$s"; done ;;
  status) status ;;
  env) env_lines ;;
  tls) ensure_tls; echo "$tls_dir" ;;
  wipe) for s in "${ALL_SERVICES[@]}"; do stop_service "$s"; done; rm -rf "$STACK_DIR" ;;
  *) die "unknown command '$cmd' (install start stop restart status env wipe)" ;;
esac
