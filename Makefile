# The two commands of the README: `make demo` and `make test`. Both set up what they need.
.PHONY: setup tools stack stack-stop demo test unit lint bench bench-quick faults clean

PY := .venv/bin/python

setup:
	bash scripts/setup-python.sh

# Node (Ajv), Go and chromium for the tests that drive them (scripts/setup-tools.sh).
tools: setup
	bash scripts/setup-tools.sh

stack: setup
	bash scripts/stack.sh start

stack-stop:
	bash scripts/stack.sh stop

# Starts the stack, streams synthetic journeys through the worker into ClickHouse, shows results.
demo: stack
	$(PY) -m pipeline.cli demo

# Lint, types, then the core's doctests and unit tests on the interpreted sources, then the whole
# suite (compiled core): the integration tests on the real servers (the fixtures start them
# through scripts/stack.sh and fail if they cannot), then unit tests and doctests, in a process of
# their own (a pytest process that ran the integration tests, with their in-process Faust, chdb
# and RocksDB objects, once died with a segmentation fault in the unit tests after them).
test: setup tools
	.venv/bin/ruff check pipeline jobs tests bench scripts conftest.py
	.venv/bin/mypy
	bash scripts/stack.sh start
	PEAKEND_PURE_CORE=1 .venv/bin/pytest -p no:cacheprovider pipeline/core tests/unit/core
	.venv/bin/pytest -p no:cacheprovider -m integration
	.venv/bin/pytest -p no:cacheprovider -m "not integration"

unit: setup tools
	PEAKEND_PURE_CORE=1 .venv/bin/pytest -p no:cacheprovider pipeline/core tests/unit/core
	.venv/bin/pytest -m "not integration"

lint: setup
	.venv/bin/ruff check pipeline jobs tests bench scripts conftest.py
	.venv/bin/mypy

# Benchmarks and fault runs write their reports into docs/ (benchmarks.md, reliability.md).
bench: setup
	bash scripts/stack.sh start kafka clickhouse
	$(PY) -m bench.run_all

bench-quick: setup
	bash scripts/stack.sh start kafka clickhouse
	$(PY) -m bench.run_all --quick

faults: setup
	$(PY) -m bench.faults

clean:
	bash scripts/stack.sh wipe
	rm -rf .venv

# The pipeline on a real cluster (scripts/cluster.sh: 3 Kafka brokers, ZooKeeper, 2 ClickHouse
# shards of 2 replicas behind Distributed tables) under faults while input arrives (broker
# SIGKILL, leader stop, ZooKeeper stop, worker SIGKILL, replica stop); about 30 minutes on 2
# cores, so not part of `make test`. The tests start the cluster and stop it at the end.
cluster-test: setup
	.venv/bin/pytest -p no:cacheprovider -m cluster tests/cluster
