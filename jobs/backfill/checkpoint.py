"""The backfill's checkpoint: the position written so far, bound to the run's inputs (files,
partitions, batch size, core settings, target) by a fingerprint; docs/jobs.md "Resume"."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.core.config import CoreConfig


def fingerprint(files: Sequence[str], partitions: int, batch_rows: int, config: CoreConfig,
                target: str, raw_events: bool) -> str:
    # not `--now`: a resumed run keeps the first run's (Checkpoint.now_ms), whatever the clock
    config = replace(config, clock=replace(config.clock, now_ms=None))
    parts: list[Any] = [partitions, batch_rows, repr(config), target, raw_events]
    for name in files:
        stat = os.stat(name)
        parts.append((str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


@dataclass
class Checkpoint:
    path: Path
    fingerprint: str
    file_index: int = 0  # next file to write
    row: int = 0  # rows of that file already written
    complete: bool = False
    now_ms: int | None = None  # when the events reached us (`--now`), fixed by the first run

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> Checkpoint | None:
        """The saved checkpoint, None when there is none; ValueError when it is another run's."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if data.get("fingerprint") != fingerprint:
            raise ValueError(f"checkpoint {path} belongs to another backfill (other files, "
                             "settings, partitions or target); use --restart to start over")
        now = data.get("now_ms")
        return cls(path, fingerprint, int(data["file_index"]), int(data["row"]),
                   bool(data["complete"]), None if now is None else int(now))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "file_index": self.file_index,
                                   "row": self.row, "complete": self.complete,
                                   "now_ms": self.now_ms}),
                       encoding="utf-8")
        os.replace(tmp, self.path)

    def finished(self, files: int) -> None:
        """Record that every row of the run's `files` files is written."""
        self.file_index, self.row, self.complete = files, 0, True
        self.save()

    def covers(self, file_index: int, row_end: int) -> bool:
        """Were rows up to `row_end` of file `file_index` written by an earlier run?"""
        return self.complete or file_index < self.file_index or (
            file_index == self.file_index and row_end <= self.row)

