# The two commands of the README: `make demo` and `make test`. Both set up what they need.
.PHONY: setup tools stack stack-stop demo test unit lint bench bench-quick faults fuzz clean

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
# Property tests draw the same examples on every run (`--hypothesis-profile=ci`, conftest.py);
# `make fuzz` draws new ones.
PYTEST := .venv/bin/pytest -p no:cacheprovider --hypothesis-profile=ci

test: setup tools
	.venv/bin/ruff check pipeline jobs tests bench scripts conftest.py
	.venv/bin/mypy
	bash scripts/stack.sh start
	PEAKEND_PURE_CORE=1 $(PYTEST) pipeline/core tests/unit/core
	$(PYTEST) -m integration
	$(PYTEST) -m "not integration"

unit: setup tools
	PEAKEND_PURE_CORE=1 $(PYTEST) pipeline/core tests/unit/core
	$(PYTEST) -m "not integration"

# The property tests (every test module with a Hypothesis @given, server-free ones) with a new
# random seed each round, FUZZ_ROUNDS rounds (default 5). A failing example is printed with the
# seed to rerun it and kept in .hypothesis/, where every later run tries it first.
# Then the two differential fuzzers, FUZZ_SECONDS each (default 120) with a random seed: the
# parser's fast path against the strict parser, and mutated internal records through the agents.
FUZZ_ROUNDS ?= 5
FUZZ_SECONDS ?= 120
fuzz: setup
	for round in $$(seq $(FUZZ_ROUNDS)); do \
	  .venv/bin/pytest -q -m "not integration" $$(grep -rl --include='test_*.py' '@given' tests) \
	    || exit 1; \
	done
	$(PY) -m bench.fuzz_fast_path --seconds $(FUZZ_SECONDS) --seed $$(od -An -N2 -tu2 /dev/urandom)
	$(PY) -m bench.fuzz_internal --seconds $(FUZZ_SECONDS) --seed $$(od -An -N2 -tu2 /dev/urandom)

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
