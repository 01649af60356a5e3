"""Reading JSON-lines files of raw records, byte for byte, with their line numbers.

Accepted: UTF-8 JSON Lines, plain or gzip-compressed (recognised by its first bytes, whatever
the file is called), with a UTF-8 byte order mark at the start or not (it is dropped, and the
caller can say so). A file that as a whole is something else (UTF-16 or UTF-32 text, one JSON
document spread over lines, Parquet, zip, zstd...) gets one `NotJsonLines` error naming what it
is, before any record is read, instead of one error per line. Bad lines inside a JSON Lines file
stay records of their own: the contract rejects (and dead-letters) each, and the others count.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
HEAD_BYTES = 64 * 1024  # what is looked at to tell what the file is
_SAMPLE = 4096  # bytes whose NUL pattern tells UTF-16/32 and binary from text
_TO_JSONL = "peakend reads UTF-8 JSON Lines"

# (first bytes, what the file is, what to do); checked in order, so UTF-32 before UTF-16
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
    (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE"),
)
_MAGIC = (
    (GZIP_MAGIC, "gzip data compressed twice", "decompress it once with gunzip"),
    (b"PAR1", "a Parquet file", "load Parquet with peakend backfill"),
    (b"PK\x03\x04", "a zip archive", "unzip it first"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first with zstd -d"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first with xz -d"),
)
_BZIP2 = ("bzip2-compressed", "decompress it first with bunzip2")


class NotJsonLines(OSError):
    """The input as a whole cannot be read as JSON Lines; the message names the file and says
    what it is. An OSError (like `gzip.BadGzipFile`) so every command that reports unreadable
    files already reports this one in one line."""


@contextmanager
def open_binary(path: str) -> Iterator[BinaryIO]:
    """The file, or standard input for `-`; gzip data (magic bytes 1f 8b) is decompressed."""
    if path == "-":
        yield _gunzipped(sys.stdin.buffer)
    else:
        with open(path, "rb") as handle:
            yield _gunzipped(handle)


def _gunzipped(handle: BinaryIO) -> BinaryIO:
    if not hasattr(handle, "peek"):  # BytesIO and the like: add a buffer to look ahead with
        handle = cast(BinaryIO, io.BufferedReader(cast(io.RawIOBase, handle)))
    if handle.peek(2)[:2] == GZIP_MAGIC:  # type: ignore[attr-defined]
        return cast(BinaryIO, gzip.GzipFile(fileobj=handle, mode="rb"))
    return handle


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True


def _share(sample: bytes, size: int, zero: tuple[int, ...]) -> float:
    """Share of `size`-byte units of `sample` whose bytes at `zero` are NUL and whose other
    bytes are not all NUL: ASCII text in UTF-16 or UTF-32 of the given byte order."""
    units = len(sample) // size
    if not units:
        return 0.0
    hits = 0
    for i in range(0, units * size, size):
        unit = sample[i : i + size]
        if all(unit[k] == 0 for k in zero) and any(
                unit[k] for k in range(size) if k not in zero):
            hits += 1
    return hits / units


def sniff(head: bytes, complete: bool = True) -> str | None:
    """What the file whose first bytes are `head` is, if not JSON Lines; None if it may be.
    `complete`: `head` is the whole file (its last line is not cut).

    >>> sniff(b'{"a": 1}\\n{"b": 2}\\n') is None
    True
    >>> sniff("{}".encode("utf-16"))
    'UTF-16LE text; peakend reads UTF-8 JSON Lines (convert with iconv -f UTF-16 -t UTF-8)'
    >>> sniff(b'[\\n  {"a": 1},\\n  {"a": 2}\\n]\\n')[:40]
    'a JSON document spread over several line'
    """
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            family = encoding[:6]
            return f"{encoding} text; {_TO_JSONL} (convert with iconv -f {family} -t UTF-8)"
    for magic, what, advice in _MAGIC:
        if head.startswith(magic):
            return f"{what}; {_TO_JSONL} ({advice})"
    if head[:3] == b"BZh" and head[4:10] == b"1AY&SY":  # "BZh" alone could start a text line
        return f"{_BZIP2[0]}; {_TO_JSONL} ({_BZIP2[1]})"
    sample = head[:_SAMPLE]
    if sample.count(0) * 10 >= len(sample) > 0:  # JSON text has no NUL bytes at all
        for size, zero, encoding in ((4, (1, 2, 3), "UTF-32LE"), (4, (0, 1, 2), "UTF-32BE"),
                                     (2, (1,), "UTF-16LE"), (2, (0,), "UTF-16BE")):
            if _share(sample, size, zero) >= 0.9:
                return (f"{encoding} text; {_TO_JSONL} (convert with iconv -f {encoding} "
                        "-t UTF-8)")
    # Binary: a tenth of the sample is control characters or not UTF-8. One bad record (a
    # Latin-1 name, a stray NUL) stays far below that and is dead-lettered on its own.
    text = sample.decode("utf-8", errors="replace")
    odd = sum(1 for ch in text if ch == "\ufffd" or ch == "\x7f" or (
        ch < " " and ch not in "\t\n\r"))
    if odd * 10 >= len(text) > 0:
        return f"binary data, not text; {_TO_JSONL}"
    lines = [line.strip() for line in head.split(b"\n")]
    if not complete:
        lines.pop()  # may be cut in the middle
    filled = [line for line in lines if line]
    # A lone `{` or `[` is never a record. When the next line does not parse either, or the
    # whole file ends in the matching `]`/`}`, the file is one document over many lines, not
    # JSON Lines with a bad first line (those keep their per-line verdicts).
    if len(filled) > 1 and filled[0] in (b"{", b"[", b"[{") and (
            not _parses(filled[1]) or (complete and filled[-1] in (b"]", b"}"))):
        return ("a JSON document spread over several lines (or an array); JSON Lines needs "
                "one event per line (e.g. jq -c '.[]')")
    return None


def iter_records(handle: BinaryIO, name: str = "-",
                 note: Callable[[str], None] | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, record without its line ending); blank lines are skipped.

    The bytes are not decoded here so that a non-UTF-8 line is reported (and dead-lettered)
    like any other bad record instead of stopping the whole file. Raises `NotJsonLines` (before
    the first record) for a file that is not JSON Lines at all, and for gzip data that is
    truncated or corrupt (after the records read so far). `note` hears about a dropped UTF-8
    byte order mark.

    >>> list(iter_records(io.BytesIO(b'{"a":1}\\r\\n\\n  \\n[2]')))
    [(1, b'{"a":1}'), (4, b'[2]')]
    """
    number = 0
    try:
        head = handle.read(HEAD_BYTES)
        complete = len(head) < HEAD_BYTES
        bom = head.startswith(UTF8_BOM)
        if bom:
            # RFC 8259 lets a parser ignore it; Windows tools write it. Not part of any record.
            head = head[len(UTF8_BOM):]
        problem = sniff(head, complete)
        if problem is not None:
            raise NotJsonLines(f"{name}: {problem}")
        if bom and note is not None:
            note(f"{name}: starts with a UTF-8 byte order mark; ignored")
        for number, line in enumerate(_lines(head, handle), start=1):
            record = line.rstrip(b"\r\n")
            if record.strip():
                yield number, record
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise NotJsonLines(f"{name}: gzip data truncated or corrupt after line {number} "
                           f"({exc}); nothing after it was read") from None


def _lines(head: bytes, handle: BinaryIO) -> Iterator[bytes]:
    """The lines of `head` followed by the rest of `handle`, split at b"\\n" only (like
    iterating a binary file), the line cut at the end of `head` joined again."""
    pieces = head.split(b"\n")
    cut = pieces.pop()
    for piece in pieces:
        yield piece + b"\n"
    rest = handle.readline()
    if cut or rest:
        yield cut + rest
    yield from handle
