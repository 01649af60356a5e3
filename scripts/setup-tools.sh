#!/usr/bin/env bash
# The tools some tests drive besides Python (quick when nothing changed):
# - the Node (Ajv) and Go (santhosh-tekuri/jsonschema) validators of the portable contract check
#   (tests/portable_contract/, test_contract_portable.py): npm ci from the lockfile, go build from
#   go.sum (npm registry and Go module proxy needed once);
# - Debian's chromium, headless, for the HTML report test (test_report_html.py) and the README's
#   screenshot (scripts/report_screenshot.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
need() { command -v "$1" >/dev/null || { echo "setup-tools: $1 not found ($2)" >&2; exit 2; }; }
need node "Node.js 18 or later, e.g. Debian's nodejs and npm"
need npm "Debian's npm"
need go "Go 1.24 or later"

node_dir=tests/portable_contract/node
if [ ! -f "$node_dir/node_modules/.package-lock.json" ] \
   || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
fi

go_bin=build/contract-check-go
go_dir=tests/portable_contract/go
if [ ! -x "$go_bin" ] || [ -n "$(find "$go_dir" -newer "$go_bin" -type f)" ]; then
  mkdir -p build
  (cd "$go_dir" && GOFLAGS=-mod=readonly go build -o "../../../$go_bin" .)
fi

plugin_bin=build/plugin-client-go
plugin_dir=tests/grafana_plugin/go
if [ ! -x "$plugin_bin" ] || [ -n "$(find "$plugin_dir" -newer "$plugin_bin" -type f)" ]; then
  mkdir -p build
  (cd "$plugin_dir" && GOFLAGS=-mod=readonly go build -o "../../../$plugin_bin" .)
fi

if ! command -v chromium >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "setup-tools: apt-get install chromium" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
