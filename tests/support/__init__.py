"""What the tests and the benchmarks both use: the local stack (`stack`) and real workers against
it (`stream`). A plain package, importable wherever the repository root is on the path (pytest's
rootdir; the current directory of `python -m bench.NAME`), so neither imports the other's test
modules or conftest."""
