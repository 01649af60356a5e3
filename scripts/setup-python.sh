#!/usr/bin/env bash
# Creates .venv and installs peakend with its test tools; quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.peakend-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
# The core compiled with mypyc (docs/core.md, Performance); a no-op while the build is current.
# PEAKEND_PURE_CORE=1 skips it (the interpreted core gives the same results, slower).
case "$(echo "${PEAKEND_PURE_CORE:-false}" | tr 'A-Z' 'a-z')" in
  1|true|yes|on) ;;
  *) .venv/bin/python scripts/compile_core.py ;;
esac
# A Compose CLI for the test that checks docker-compose.yml with `docker-compose config`
# (tests/unit/dashboards/test_compose.py): Debian's docker-compose needs no Docker daemon.
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
