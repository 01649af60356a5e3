"""Counts the worker's JSON encodings (bench/worker_json_calls.py puts this directory first on
PYTHONPATH of a `bench_pipeline` run; Python imports `sitecustomize` at start-up). Inactive
unless PEAKEND_JSON_CALLS_OUT is set and the process is `peakend worker`: then it wraps
`pipeline.stream.outbox.to_json`, `pipeline.stream.state_writer.encode` (and the journal's
import of it) and `pipeline.stream.claims`' orjson, counts calls, bytes and the thread's CPU
time per call (`time.thread_time_ns`, the clock's own cost measured at start and taken off),
keeps a sample of the values, and writes both every 2 s to the directory named."""

from __future__ import annotations

import os
import sys


def _install(out: str) -> None:
    import collections
    import pickle
    import threading
    import time
    from typing import Any

    import orjson

    import pipeline.stream.claims as claims
    import pipeline.stream.journal as journal
    import pipeline.stream.outbox as outbox
    import pipeline.stream.state_writer as state_writer

    clock = time.thread_time_ns
    start = clock()
    for _ in range(2000):
        clock()
    overhead = (clock() - start) / 2001
    stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0])
    samples: dict[str, list[Any]] = collections.defaultdict(list)
    dumps = orjson.dumps

    def counted(kind: str, value: Any, out: bytes, took: int) -> bytes:
        name = f"{kind}:{type(value).__name__}"
        if isinstance(value, dict) and value:
            name += f"[{next(iter(value))}]"
        entry = stats[name]
        entry[0] += 1
        entry[1] += max(0.0, took - overhead)
        entry[2] += len(out)
        if entry[0] % 7 == 0 and len(samples[name]) < 2000:
            samples[name].append(value)
        return out

    original_to_json, original_encode = outbox.to_json, state_writer.encode

    def to_json(value: Any) -> bytes:
        began = clock()
        out = original_to_json(value)
        return counted("to_json", value, out, clock() - began)

    def encode(value: Any) -> bytes:
        began = clock()
        out = original_encode(value)
        return counted("encode", value, out, clock() - began)

    class ClaimsJson:
        JSONDecodeError = orjson.JSONDecodeError
        loads = staticmethod(orjson.loads)

        @staticmethod
        def dumps(value: Any, default: Any = None) -> bytes:
            began = clock()
            out = dumps(value, default=default)
            return counted("claims", value, out, clock() - began)

    outbox.to_json = to_json
    state_writer.encode = encode
    # The journal's and the claims' own bindings of names they import and do not export (the
    # journal calls `encode` by its module global, the claims module `orjson.dumps`): patched on
    # purpose, outside what their modules declare.
    journal.encode = encode  # type: ignore[attr-defined]
    claims.orjson = ClaimsJson  # type: ignore[attr-defined, assignment]

    def write() -> None:
        while True:
            time.sleep(2)
            with open(os.path.join(out, f"calls.{os.getpid()}.json"), "wb") as f:
                f.write(orjson.dumps({k: v for k, v in stats.items()}))
            with open(os.path.join(out, f"samples.{os.getpid()}.pickle"), "wb") as f:
                pickle.dump(dict(samples), f)

    threading.Thread(target=write, daemon=True, name="json-calls").start()


_OUT = os.environ.get("PEAKEND_JSON_CALLS_OUT")
if _OUT and "pipeline.cli" in sys.orig_argv and "worker" in sys.orig_argv:
    _install(_OUT)
