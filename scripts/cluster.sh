#!/usr/bin/env bash
# A real cluster on loopback, natively (no Docker), beside the single-node stack of stack.sh:
# three Kafka 4.1 brokers in KRaft mode (each also a controller voter; replication factor 3,
# min.insync.replicas 2), one ZooKeeper (Maven Central) and two ClickHouse 18.16 servers as the
# two replicas of each of two shards (cluster `peakend`, Replicated tables behind Distributed
# ones; PEAKEND_CLUSTER_SHARDS=1 for one shard).
#
#   scripts/cluster.sh start [SERVICE...]   install what is missing, start (a running one is kept)
#   scripts/cluster.sh stop  [SERVICE...]   stop cleanly (SIGTERM; data kept)
#   scripts/cluster.sh kill  SERVICE...     SIGKILL (a crash: no flush, no clean shutdown)
#   scripts/cluster.sh status               what runs where
#   scripts/cluster.sh env                  export lines for the pipeline (bootstrap list, URLs)
#   scripts/cluster.sh wipe                 stop everything and delete the cluster's directory
#
# SERVICE: zookeeper kafka1 kafka2 kafka3 clickhouse1 ... clickhouse4 (default: all, in that
# order).
# State, data and logs: $PEAKEND_CLUSTER_DIR (default .stack/cluster). Ports: from
# $PEAKEND_CLUSTER_PORT_BASE (default 24000): Kafka 24092-24094 (controllers 24192-24194),
# ZooKeeper 24181, ClickHouse server N native 24000+N-1, http 24122+N, replication 24209+N;
# none collides with stack.sh's defaults, and all lie below Linux's ephemeral range (32768-60999),
# where a busy machine's outgoing connections once took a broker's port (kafka3: address in use). Each JVM gets -Xmx$PEAKEND_CLUSTER_JVM_HEAP (512m).
# ClickHouse: $PEAKEND_CLUSTER_SHARDS shards (default 2) of two replicas each: servers 1 and 2
# are shard 1, 3 and 4 shard 2 (PEAKEND_CLUSTER_SHARDS=1: one shard, servers 1 and 2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER_DIR=${PEAKEND_CLUSTER_DIR:-$ROOT/.stack/cluster}
STACK_DIR=${PEAKEND_STACK_DIR:-$ROOT/.stack}
BASE=${PEAKEND_CLUSTER_PORT_BASE:-24000}
HEAP=${PEAKEND_CLUSTER_JVM_HEAP:-512m}
CLUSTER_NAME=${PEAKEND_CLUSTER_NAME:-peakend}
DATABASE=${PEAKEND_CLICKHOUSE_DATABASE:-peakend}
ZK_PORT=$((BASE + 181))
BROKERS=(1 2 3)
SHARDS=${PEAKEND_CLUSTER_SHARDS:-2}
[[ $SHARDS =~ ^[1-4]$ ]] || { echo "[cluster] ERROR: PEAKEND_CLUSTER_SHARDS must be 1 to 4, not '$SHARDS'" >&2; exit 1; }
REPLICAS_PER_SHARD=2
# ClickHouse servers 1..SHARDS*2; server N is replica r<N> of shard shard_of N
mapfile -t REPLICAS < <(seq 1 $((SHARDS * REPLICAS_PER_SHARD)))
shard_of() { echo $((($1 - 1) / REPLICAS_PER_SHARD + 1)); }
ALL_SERVICES=(zookeeper kafka1 kafka2 kafka3)
for j in "${REPLICAS[@]}"; do ALL_SERVICES+=("clickhouse$j"); done
kafka_port() { echo $((BASE + 91 + $1)); }
kafka_controller_port() { echo $((BASE + 191 + $1)); }
ch_tcp_port() { echo $((BASE + $1 - 1)); }
ch_http_port() { echo $((BASE + 122 + $1)); }
ch_interserver_port() { echo $((BASE + 209 + $1)); }

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }
# port_open, pid_alive, wait_port, render (shared with stack.sh)
# shellcheck source=scripts/lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"
sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

secrets_file="$CLUSTER_DIR/secrets.env"
ensure_secrets() {
  mkdir -p "$CLUSTER_DIR"
  if [ ! -f "$secrets_file" ]; then
    (umask 077
     for who in ADMIN WRITER READER; do
       echo "CH_${who}_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
     done >"$secrets_file")
  fi
  # shellcheck disable=SC1090
  . "$secrets_file"
}

# ---------------------------------------------------------------- installation
libs_dir="$CLUSTER_DIR/kafka-libs"
zk_libs_dir="$CLUSTER_DIR/zookeeper-libs"
install_kafka() {
  # the jars of stack.sh (same pom): hard links to the stack's copy when it has one, else
  # stack.sh installs them into the cluster's directory
  [ -f "$libs_dir/.complete" ] && return 0
  local from="$STACK_DIR/kafka/libs"
  if [ ! -f "$from/.complete" ]; then
    PEAKEND_STACK_DIR="$CLUSTER_DIR/stack" bash "$ROOT/scripts/stack.sh" install kafka
    from="$CLUSTER_DIR/stack/kafka/libs"
  fi
  rm -rf "$libs_dir"; mkdir -p "$libs_dir"
  cp -l "$from"/*.jar "$libs_dir"/ 2>/dev/null || cp "$from"/*.jar "$libs_dir"/
  touch "$libs_dir/.complete"
}
install_zookeeper() {
  command -v java >/dev/null || die "java is missing (scripts/stack.sh install kafka installs it)"
  local stamp="$zk_libs_dir/.complete"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/scripts/zookeeper/pom.xml" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn is missing (scripts/stack.sh install kafka installs it)"
  log "fetching Apache ZooKeeper from Maven Central (scripts/zookeeper/pom.xml)"
  rm -rf "$zk_libs_dir"; mkdir -p "$zk_libs_dir"
  mvn -q -B -f "$ROOT/scripts/zookeeper/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$zk_libs_dir" >"$CLUSTER_DIR/zookeeper-mvn.log" 2>&1 \
    || { tail -n 40 "$CLUSTER_DIR/zookeeper-mvn.log" >&2; die "mvn could not fetch ZooKeeper"; }
  touch "$stamp"
}
install_clickhouse() {
  command -v clickhouse-server >/dev/null && return 0
  bash "$ROOT/scripts/stack.sh" install clickhouse
}

# ---------------------------------------------------------------- zookeeper
start_zookeeper() {
  local dir="$CLUSTER_DIR/zookeeper" pidf="$CLUSTER_DIR/zookeeper/zookeeper.pid"
  if pid_alive "$pidf"; then log "zookeeper already running (pid $(cat "$pidf"))"; return 0; fi
  port_open "$ZK_PORT" && die "port $ZK_PORT is taken; set PEAKEND_CLUSTER_PORT_BASE"
  install_zookeeper
  mkdir -p "$dir/data" "$dir/logs"
  render "$ROOT/scripts/cluster/zoo.cfg.in" "$dir/zoo.cfg" DATA_DIR="$dir/data" PORT="$ZK_PORT"
  log "starting zookeeper on 127.0.0.1:$ZK_PORT"
  nohup java -Xms64m -Xmx"$HEAP" -XX:+UseSerialGC -Dzookeeper.admin.enableServer=false \
    -cp "$zk_libs_dir/*" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
    </dev/null >"$dir/logs/zookeeper.log" 2>&1 &
  echo $! >"$pidf"
  wait_port "$ZK_PORT" 60 zookeeper "$dir/logs/zookeeper.log" || die "zookeeper did not start"
  # the port opens before the database is loaded (and stays open if loading fails): ask it
  local deadline=$((SECONDS + 60))
  until zk_serving; do
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$dir/logs/zookeeper.log" >&2; die "zookeeper does not serve"; }
    sleep 0.5
  done
}
zk_serving() { # the four-letter command srvr answers with the server's mode once it serves
  local reply
  reply=$(exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf srvr >&3 && timeout 5 cat <&3) 2>/dev/null || return 1
  [[ $reply == *"Mode:"* ]]
}

# ---------------------------------------------------------------- kafka
voters() {
  local out=() i
  for i in "${BROKERS[@]}"; do out+=("$i@127.0.0.1:$(kafka_controller_port "$i")"); done
  local IFS=,; echo "${out[*]}"
}
bootstrap() {
  local out=() i
  for i in "${BROKERS[@]}"; do out+=("127.0.0.1:$(kafka_port "$i")"); done
  local IFS=,; echo "${out[*]}"
}
kafka_java() { java -cp "$libs_dir/*" "$@"; }
start_kafka_node() { # node id
  local id=$1 dir="$CLUSTER_DIR/kafka$1" pidf="$CLUSTER_DIR/kafka$1/kafka.pid"
  local port; port=$(kafka_port "$id")
  if pid_alive "$pidf"; then log "kafka$id already running (pid $(cat "$pidf"))"; return 0; fi
  port_open "$port" && die "port $port is taken; set PEAKEND_CLUSTER_PORT_BASE"
  install_kafka
  mkdir -p "$dir/logs" "$dir/data"
  render "$ROOT/scripts/cluster/kafka.properties.in" "$dir/server.properties" NODE_ID="$id" \
    VOTERS="$(voters)" PORT="$port" CONTROLLER_PORT="$(kafka_controller_port "$id")" \
    DATA_DIR="$dir/data"
  if [ ! -f "$dir/data/meta.properties" ]; then
    # one cluster id for the three: the first formatted broker writes it
    local idf="$CLUSTER_DIR/kafka-cluster-id"
    [ -f "$idf" ] || kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$idf"
    kafka_java -Dkafka.logs.dir="$dir/logs" \
      -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
      kafka.tools.StorageTool format -t "$(cat "$idf")" -c "$dir/server.properties" \
      >"$dir/logs/format.log" 2>&1 || { cat "$dir/logs/format.log" >&2; die "kafka$id format failed"; }
  fi
  log "starting kafka$id on 127.0.0.1:$port"
  nohup java -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$libs_dir/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$pidf"
}
wait_kafka_node() { # node id: the port is open and the broker answers metadata requests
  local id=$1 dir="$CLUSTER_DIR/kafka$1" port; port=$(kafka_port "$1")
  wait_port "$port" 300 "kafka$id" "$dir/logs/server.log" || die "kafka$id did not start"
  # (a restart loads every partition's log first: minutes on a busy 2-core machine)
  local deadline=$((SECONDS + 300))
  until kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list \
      >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "kafka$id opened its port but does not answer ($dir/logs)"
    sleep 1
  done
}

# ---------------------------------------------------------------- clickhouse
shards_xml() { # every shard with its replicas (the Replicated tables copy rows between the
  # replicas of a shard, so a Distributed insert goes to one replica of each: internal_replication)
  local out="" j
  for j in "${REPLICAS[@]}"; do
    [ $(((j - 1) % REPLICAS_PER_SHARD)) = 0 ] && out+="<shard><internal_replication>true</internal_replication>"
    out+="<replica><host>127.0.0.1</host><port>$(ch_tcp_port "$j")</port>"
    out+="<user>default</user><password>$CH_ADMIN_PASSWORD</password></replica>"
    [ $((j % REPLICAS_PER_SHARD)) = 0 ] && out+="</shard>"
  done
  echo "$out"
}
start_clickhouse_node() { # replica number
  local j=$1 dir="$CLUSTER_DIR/clickhouse$1" pidf="$CLUSTER_DIR/clickhouse$1/clickhouse.pid"
  local tcp; tcp=$(ch_tcp_port "$j")
  if pid_alive "$pidf"; then log "clickhouse$j already running (pid $(cat "$pidf"))"; return 0; fi
  port_open "$tcp" && die "port $tcp is taken; set PEAKEND_CLUSTER_PORT_BASE"
  install_clickhouse
  ensure_secrets
  mkdir -p "$dir/conf/conf.d" "$dir/conf/users.d" "$dir/data/tmp" "$dir/logs"
  render "$ROOT/scripts/clickhouse/config.xml.in" "$dir/conf/config.xml" \
    LOG_DIR="$dir/logs" HTTP_PORT="$(ch_http_port "$j")" TCP_PORT="$tcp" \
    DATA_DIR="$dir/data" CONF_DIR="$dir/conf"
  (umask 077; render "$ROOT/scripts/cluster/clickhouse-cluster.xml.in" "$dir/conf/conf.d/cluster.xml" \
    INTERSERVER_PORT="$(ch_interserver_port "$j")" ZK_PORT="$ZK_PORT" REPLICA="r$j" \
    SHARD="$(printf %02d "$(shard_of "$j")")" CLUSTER="$CLUSTER_NAME" SHARDS="$(shards_xml)")
  render "$ROOT/scripts/clickhouse/users.xml.in" "$dir/conf/users.xml" \
    ADMIN_SHA256="$(sha256 "$CH_ADMIN_PASSWORD")" WRITER_SHA256="$(sha256 "$CH_WRITER_PASSWORD")" \
    READER_SHA256="$(sha256 "$CH_READER_PASSWORD")"
  chmod 600 "$dir/conf/users.xml"
  cp "$ROOT/scripts/cluster/users-cluster.xml.in" "$dir/conf/users.d/cluster.xml"
  log "starting clickhouse$j on 127.0.0.1:$tcp (shard $(shard_of "$j"), replica r$j)"
  (cd "$dir" && exec /usr/sbin/clickhouse-server --config-file="$dir/conf/config.xml" \
    </dev/null >"$dir/logs/stdout.log" 2>&1) &
  echo $! >"$pidf"
  wait_port "$tcp" 60 "clickhouse$j" "$dir/logs/clickhouse-server.err.log" \
    || die "clickhouse$j did not start"
  local deadline=$((SECONDS + 30))
  until clickhouse-client --port "$tcp" --user default --password "$CH_ADMIN_PASSWORD" \
      --query "SELECT 1" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "clickhouse$j does not answer queries ($dir/logs)"
    sleep 0.3
  done
  clickhouse-client --port "$tcp" --user default --password "$CH_ADMIN_PASSWORD" \
    --query "CREATE DATABASE IF NOT EXISTS $DATABASE"
}

# ---------------------------------------------------------------- generic
pidfile_of() {
  case $1 in
    zookeeper) echo "$CLUSTER_DIR/zookeeper/zookeeper.pid" ;;
    kafka[1-3]) echo "$CLUSTER_DIR/$1/kafka.pid" ;;
    clickhouse[1-9])
      # (or one a run with more shards left: stop and wipe find it)
      [ "${1#clickhouse}" -le "${#REPLICAS[@]}" ] || [ -d "$CLUSTER_DIR/$1" ] \
        || die "unknown service '$1' (known: ${ALL_SERVICES[*]})"
      echo "$CLUSTER_DIR/$1/clickhouse.pid" ;;
    *) die "unknown service '$1' (known: ${ALL_SERVICES[*]})" ;;
  esac
}
port_of() {
  case $1 in
    zookeeper) echo "$ZK_PORT" ;;
    kafka*) kafka_port "${1#kafka}" ;;
    clickhouse*) ch_tcp_port "${1#clickhouse}" ;;
  esac
}
start_services() {
  local s started_kafka=()
  for s in "$@"; do
    case $s in
      zookeeper) start_zookeeper ;;
      kafka*) pidfile_of "$s" >/dev/null; start_kafka_node "${s#kafka}"; started_kafka+=("${s#kafka}") ;;
      clickhouse*) pidfile_of "$s" >/dev/null; start_clickhouse_node "${s#clickhouse}" ;;
      *) pidfile_of "$s" >/dev/null ;;
    esac
    # the brokers start together (each waits for a controller quorum of two), then are awaited
    if [[ $s != kafka* ]] || [ "$s" = kafka3 ]; then
      for id in "${started_kafka[@]}"; do wait_kafka_node "$id"; done
      started_kafka=()
    fi
  done
  for id in "${started_kafka[@]}"; do wait_kafka_node "$id"; done
}
signal_service() { # service signal: send it; prints the pid signalled (nothing if not running)
  local pidf; pidf=$(pidfile_of "$1")
  if ! pid_alive "$pidf"; then rm -f "$pidf"; log "$1 not running"; return 0; fi
  local pid; pid=$(cat "$pidf")
  log "stopping $1 (pid $pid, SIG$2)"
  kill "-$2" "$pid" 2>/dev/null || true
  echo "$pid"
}
wait_gone() { # service pid
  local deadline=$((SECONDS + 60))
  while kill -0 "$2" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then log "$1 ignored SIGTERM for 60 s; SIGKILL"; kill -9 "$2" 2>/dev/null || true; fi
    sleep 0.2
  done
  rm -f "$(pidfile_of "$1")"
}
stop_services() { # signal services...: signal all first (the brokers leave together: one left
  # alone without a controller quorum would wait for it), then wait for each
  local sig=$1 s pid; shift
  local -a pids=()
  for s in "$@"; do pid=$(signal_service "$s" "$sig"); pids+=("${pid:-}"); done
  local i=0
  for s in "$@"; do [ -z "${pids[$i]}" ] || wait_gone "$s" "${pids[$i]}"; i=$((i + 1)); done
}
status() {
  printf '%-12s %-8s %-8s %-22s %s\n' SERVICE STATE PID ADDRESS "RSS(MiB)"
  local s
  for s in "${ALL_SERVICES[@]}"; do
    local pidf; pidf=$(pidfile_of "$s")
    if pid_alive "$pidf"; then
      local pid rss; pid=$(cat "$pidf"); rss=$(($(ps -o rss= -p "$pid" | tr -d ' ') / 1024))
      printf '%-12s %-8s %-8s %-22s %s\n' "$s" running "$pid" "127.0.0.1:$(port_of "$s")" "$rss"
    else
      printf '%-12s %-8s %-8s %-22s %s\n' "$s" stopped - - -
    fi
  done
  echo "data and logs: $CLUSTER_DIR"
}
env_lines() {
  ensure_secrets
  local j
  echo "export PEAKEND_KAFKA_BOOTSTRAP=$(bootstrap)"
  echo "export PEAKEND_KAFKA_REPLICATION_FACTOR=3"
  echo "export PEAKEND_CLICKHOUSE_CLUSTER=$CLUSTER_NAME"
  echo "export PEAKEND_CLICKHOUSE_DATABASE=$DATABASE"
  for j in "${REPLICAS[@]}"; do
    local at="127.0.0.1:$(ch_tcp_port "$j")/$DATABASE" suffix=""
    [ "$j" = 1 ] || suffix="_$j"
    echo "export PEAKEND_CLICKHOUSE_URL$suffix=clickhouse://peakend_writer:$CH_WRITER_PASSWORD@$at"
    echo "export PEAKEND_CLICKHOUSE_READER_URL$suffix=clickhouse://peakend_reader:$CH_READER_PASSWORD@$at"
    echo "export PEAKEND_CLICKHOUSE_ADMIN_URL$suffix=clickhouse://default:$CH_ADMIN_PASSWORD@$at"
  done
}

cmd=${1:-status}; shift || true
services=("$@"); [ ${#services[@]} -gt 0 ] || services=("${ALL_SERVICES[@]}")
case $cmd in
  start) mkdir -p "$CLUSTER_DIR"; start_services "${services[@]}" ;;
  stop) stop_services TERM "${services[@]}" ;;
  kill) [ $# -gt 0 ] || die "kill needs a service"; stop_services KILL "${services[@]}" ;;
  status) status ;;
  env) env_lines ;;
  wipe)
    for d in "$CLUSTER_DIR"/clickhouse*; do # servers of a run with more shards, too
      [ -d "$d" ] && [[ " ${ALL_SERVICES[*]} " != *" ${d##*/} "* ]] && ALL_SERVICES+=("${d##*/}")
    done
    stop_services TERM "${ALL_SERVICES[@]}"; rm -rf "$CLUSTER_DIR" ;;
  *) die "unknown command '$cmd' (start stop kill status env wipe)" ;;
esac
