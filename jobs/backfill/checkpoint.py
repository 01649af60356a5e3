"""The backfill's checkpoint: the position written so far and, now and then, the engine's
snapshot with the position it has consumed, bound to the run's inputs (files, partitions, batch
size, core settings, target) by a fingerprint; docs/jobs.md "Resume".

Two files, so that advancing the written position after every batch does not rewrite a large
snapshot: the checkpoint (`ck.json`, small, rewritten after every batch) and the engine state
(`ck.state-<file>-<row>.json`, written every `--snapshot-every` seconds). Both are replaced
atomically (temp file + rename); the checkpoint names the state file, so renaming the new
checkpoint over the old one is the moment a new snapshot counts. The state file is always of a
position the checkpoint's written position has reached: the writer thread saves it only after
inserting every batch up to it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from pipeline.core.config import CoreConfig
from pipeline.core_build import source_digest

# The layout of the checkpoint and state files. Raise it when either changes: a checkpoint of
# another format is refused (no guessing at old layouts).
STATE_FORMAT = 1

Position = tuple[int, int]  # (file index, rows of that file)


def fingerprint(files: Sequence[str], partitions: int, batch_rows: int, config: CoreConfig,
                target: str, raw_events: bool) -> str:
    # not `--now`: a resumed run keeps the first run's (Checkpoint.now_ms), whatever the clock
    config = replace(config, clock=replace(config.clock, now_ms=None))
    parts: list[Any] = [partitions, batch_rows, repr(config), target, raw_events]
    for name in files:
        stat = os.stat(name)
        parts.append((str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _refuse(path: Path, why: str) -> ValueError:
    return ValueError(f"checkpoint {path}: {why}; use --restart to start over")


def _replace_atomically(path: Path, data: bytes, sync: bool) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path` (`sync`: flushed to
    disk first, so a power loss cannot leave a renamed but empty file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        if sync:
            out.flush()
            os.fsync(out.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class EngineState:
    """A saved engine: the rows it has consumed (`position`) and `Backfill.snapshot()`."""

    position: Position
    backfill: dict[str, Any]


@dataclass
class Checkpoint:
    path: Path
    fingerprint: str
    file_index: int = 0  # next file to write
    row: int = 0  # rows of that file already written
    complete: bool = False
    now_ms: int | None = None  # when the events reached us (`--now`), fixed by the first run
    state_file: str | None = None  # the engine's snapshot (a name beside `path`), if any
    state_at: Position | None = None  # the rows that snapshot has consumed

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> Checkpoint | None:
        """The saved checkpoint, None when there is none; ValueError (one line, naming the file)
        when it is another run's, another format's or unreadable."""
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = orjson.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise _refuse(path, f"not a backfill checkpoint ({exc})") from None
        if data.get("format") != STATE_FORMAT:
            raise _refuse(path, f"state format {data.get('format', 0)}, this backfill reads "
                                f"format {STATE_FORMAT}")
        if data.get("fingerprint") != fingerprint:
            raise _refuse(path, "belongs to another backfill (other files, settings, "
                                "partitions or target)")
        now = data.get("now_ms")
        state_at = data.get("state_at")
        return cls(path, fingerprint, int(data["file_index"]), int(data["row"]),
                   bool(data["complete"]), None if now is None else int(now),
                   data.get("state_file"),
                   None if state_at is None else (int(state_at[0]), int(state_at[1])))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _replace_atomically(self.path, orjson.dumps({
            "format": STATE_FORMAT, "fingerprint": self.fingerprint,
            "file_index": self.file_index, "row": self.row, "complete": self.complete,
            "now_ms": self.now_ms, "state_file": self.state_file,
            "state_at": None if self.state_at is None else list(self.state_at)}), sync=False)

    def save_state(self, at: Position, backfill: bytes) -> None:
        """Make the engine state `backfill` (`encode_state`), which has consumed the rows up to
        `at`, the checkpoint's snapshot: state file first, then the checkpoint naming it, then
        the older state files go."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        name = f"{self.path.stem}.state-{at[0]}-{at[1]}.json"
        header = orjson.dumps({"format": STATE_FORMAT, "fingerprint": self.fingerprint,
                               "core": source_digest(), "position": list(at)})
        # the header on the first line: the checks read it before parsing a large snapshot
        _replace_atomically(self.path.with_name(name), header + b"\n" + backfill, sync=True)
        self.state_file, self.state_at = name, at
        self.save()
        self._remove_states(keep=name)

    def load_state(self) -> EngineState | None:
        """The engine state the checkpoint names, None when it names none; ValueError (one
        line, naming the state file) when it is another run's, another format's, of another
        core, or unreadable."""
        if self.state_file is None or self.state_at is None:
            return None
        path = self.path.with_name(self.state_file)
        try:
            with open(path, "rb") as src:
                header = orjson.loads(src.readline())
                if not isinstance(header, dict):
                    raise _refuse(path, "no engine state header")
                if header.get("format") != STATE_FORMAT:
                    raise _refuse(path, f"state format {header.get('format')}, this backfill "
                                        f"reads format {STATE_FORMAT}")
                if header.get("fingerprint") != self.fingerprint:
                    raise _refuse(path, "engine state of another backfill")
                if header.get("core") != source_digest():
                    raise _refuse(path, "engine state written by another version of the core "
                                        "(pipeline/core sources differ)")
                if tuple(header.get("position", ())) != self.state_at:
                    raise _refuse(path, f"engine state at {header.get('position')}, the "
                                        f"checkpoint expects {list(self.state_at)}")
                backfill = orjson.loads(src.read())
        except FileNotFoundError:
            raise _refuse(path, "engine state file missing") from None
        except orjson.JSONDecodeError as exc:
            raise _refuse(path, f"unreadable engine state ({exc})") from None
        return EngineState(self.state_at, backfill)

    def finished(self, files: int) -> None:
        """Record that every row of the run's `files` files is written (a finished run needs
        no engine state)."""
        self.file_index, self.row, self.complete = files, 0, True
        self.state_file = self.state_at = None
        self.save()
        self._remove_states(keep=None)

    def _remove_states(self, keep: str | None) -> None:
        for old in self.path.parent.glob(f"{self.path.stem}.state-*"):
            if old.name != keep:
                old.unlink(missing_ok=True)

    def covers(self, file_index: int, row_end: int) -> bool:
        """Were rows up to `row_end` of file `file_index` written by an earlier run?"""
        return self.complete or file_index < self.file_index or (
            file_index == self.file_index and row_end <= self.row)


def encode_state(backfill: dict[str, Any]) -> bytes:
    """`Backfill.snapshot()` as the bytes of a state file (after its header line); ValueError
    (one line) for a value JSON cannot hold, which the core's state contract rules out."""
    try:
        return orjson.dumps(backfill)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"engine state is not JSON-able ({exc}); --snapshot-every never "
                         "runs without saving it") from None
