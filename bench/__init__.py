"""Benchmarks, fault runs and what they share (`bench.host`). Each is a module of this package,
run from the repository root as `.venv/bin/python -m bench.NAME [options]` (`make bench`,
`make faults`): the repository's packages (`pipeline`, `jobs`, `tests.support`) and the other
bench modules then import as packages, with no edit of `sys.path`. `bench/peer_apps/` holds the
peer frameworks' stand-alone apps, which `bench.peers` runs as files."""
