"""Reading JSON-lines files of raw records, byte for byte, with their line numbers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO


@contextmanager
def open_binary(path: str) -> Iterator[BinaryIO]:
    """The file, or standard input for `-`."""
    if path == "-":
        yield sys.stdin.buffer
    else:
        with open(path, "rb") as handle:
            yield handle


def iter_records(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, record without its line ending); blank lines are skipped.

    The bytes are not decoded here so that a non-UTF-8 line is reported (and dead-lettered)
    like any other bad record instead of stopping the whole file.

    >>> import io
    >>> list(iter_records(io.BytesIO(b'{"a":1}\\r\\n\\n  \\n[2]')))
    [(1, b'{"a":1}'), (4, b'[2]')]
    """
    for number, line in enumerate(handle, start=1):
        record = line.rstrip(b"\r\n")
        if record.strip():
            yield number, record
