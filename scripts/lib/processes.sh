# Process and port helpers shared by scripts/stack.sh and scripts/cluster.sh (sourced; the caller
# defines log). No side effects when sourced.

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Alive and still ours: after a reboot a stale pid file may name another process (it once named
# this stack's own ClickHouse as its Prometheus), so the command line must mention the service's dir.
pid_alive() {
  [ -f "$1" ] || return 1
  local pid; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$(dirname "$1")"
}

wait_port() { # port seconds name logfile
  local deadline=$((SECONDS + $2))
  while ! port_open "$1"; do
    if [ $SECONDS -ge "$deadline" ]; then
      log "$3 did not open port $1 within $2 s; last log lines:"
      tail -n 30 "$4" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

render() { # template output KEY=VALUE...
  local template=$1 out=$2; shift 2
  local text; text=$(cat "$template")
  for kv in "$@"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
  printf '%s\n' "$text" >"$out"
}
