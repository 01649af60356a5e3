"""`peakend validate` and `peakend replay` on files that are not plain UTF-8 JSON Lines: gzip is
read, a UTF-8 byte order mark is dropped (and said), everything else that is not JSON Lines gets
one line saying what the file is, exit status 2 and no per-line errors."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import zipfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_util import NOW, Outcome, cli, cli_process, valid_lines

from pipeline.contract.jsonl import iter_records, open_binary, sniff

LINES = valid_lines(6)
TEXT = b"\n".join(LINES) + b"\n"
DOCS = [json.loads(line) for line in LINES]


def _parquet() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"event_id": ["a", "b"]}), sink)
    return sink.getvalue()


def _zip() -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        archive.writestr("events.jsonl", TEXT)
    return sink.getvalue()


UTF16 = "UTF-16LE text; peakend reads UTF-8 JSON Lines (convert with iconv"
SPREAD = ("a JSON document spread over several lines (or an array); JSON Lines needs one event "
          "per line (e.g. jq -c '.[]')")

# (case id, file bytes, file name, the words the one-line message must contain)
REFUSED: list[tuple[str, bytes, str, str]] = [
    ("utf16-bom", TEXT.decode().encode("utf-16"), "e.jsonl", UTF16),
    ("utf16le-no-bom", TEXT.decode().encode("utf-16-le"), "e.jsonl", UTF16),
    ("utf16be-bom", b"\xfe\xff" + TEXT.decode().encode("utf-16-be"), "e.jsonl",
     "UTF-16BE text; peakend reads UTF-8 JSON Lines (convert with iconv -f UTF-16"),
    ("utf16be-no-bom", TEXT.decode().encode("utf-16-be"), "e.jsonl", "UTF-16BE text"),
    ("utf32-bom", TEXT.decode().encode("utf-32"), "e.jsonl",
     "UTF-32LE text; peakend reads UTF-8 JSON Lines (convert with iconv -f UTF-32"),
    ("utf32le-no-bom", TEXT.decode().encode("utf-32-le"), "e.jsonl", "UTF-32LE text"),
    ("utf16-gzipped", gzip.compress(TEXT.decode().encode("utf-16")), "e.jsonl.gz", UTF16),
    ("pretty-object", json.dumps(DOCS[0], indent=2).encode() + b"\n", "e.json", SPREAD),
    ("pretty-array", json.dumps(DOCS, indent=2).encode(), "e.json", SPREAD),
    ("array-one-per-line", b"[\n" + b",\n".join(LINES) + b"\n]\n", "e.jsonl", SPREAD),
    ("array-of-one", b"[\n" + LINES[0] + b"\n]\n", "e.jsonl", SPREAD),
    ("pretty-after-blank-lines", b"\n\n" + json.dumps(DOCS[:2], indent=4).encode(),
     "e.jsonl", SPREAD),
    ("pretty-with-utf8-bom", b"\xef\xbb\xbf" + json.dumps(DOCS, indent=1).encode(), "e.json",
     SPREAD),
    ("parquet", _parquet(), "e.jsonl", "a Parquet file; peakend reads UTF-8 JSON Lines "
                                       "(load Parquet with peakend backfill)"),
    ("zip", _zip(), "e.zip", "a zip archive; peakend reads UTF-8 JSON Lines (unzip it first)"),
    ("xz", lzma.compress(TEXT), "e.jsonl.xz", "xz-compressed; peakend reads UTF-8 JSON Lines"),
    ("zstd-magic", b"\x28\xb5\x2f\xfd" + bytes(range(64)), "e.zst", "zstd-compressed"),
    ("gzip-twice", gzip.compress(gzip.compress(TEXT)), "e.jsonl.gz",
     "gzip data compressed twice"),
    ("binary-all-bytes", bytes(range(256)) * 8, "e.bin",
     "binary data, not text; peakend reads UTF-8 JSON Lines"),
    ("binary-nul", b"\x00" * 5000, "e.bin", "binary data, not text"),
    ("binary-random-no-nul", bytes((i * 7919 + 13) % 255 + 1 for i in range(3000)), "e.bin",
     "binary data, not text"),
    ("truncated-gzip", gzip.compress(TEXT * 50)[:-40], "e.jsonl.gz",
     "gzip data truncated or corrupt after line"),
]


def _run(command: str, path: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    if command == "validate":
        return cli(capsys, "validate", str(path))
    return cli(capsys, "replay", str(path), "--output", str(path.parent / "out"), "--now", NOW)


@pytest.mark.parametrize("command", ["validate", "replay"])
@pytest.mark.parametrize(("data", "name", "words"),
                         [pytest.param(d, n, w, id=i) for i, d, n, w in REFUSED])
def test_a_file_that_is_not_json_lines_gets_one_message(
        command: str, data: bytes, name: str, words: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    outcome = _run(command, path, capsys)
    assert outcome.status == 2
    line = outcome.one_line_error()
    assert line.startswith(f"peakend {command}: {path}: ")
    assert words in line
    assert outcome.out == ""  # no per-line verdicts, no summary
    assert not (tmp_path / "out").exists()  # replay made no output directory


# (case id, file bytes, file name): read like the plain file TEXT
READABLE: list[tuple[str, bytes, str]] = [
    ("gzip", gzip.compress(TEXT), "e.jsonl.gz"),
    ("gzip-without-suffix", gzip.compress(TEXT), "e.jsonl"),
    ("gzip-two-members", gzip.compress(TEXT[:300]) + gzip.compress(TEXT[300:]), "e.gz"),
    ("gz-suffix-plain-text", TEXT, "e.jsonl.gz"),
    ("crlf", TEXT.replace(b"\n", b"\r\n"), "e.jsonl"),
    ("no-final-newline", TEXT.rstrip(b"\n"), "e.jsonl"),
]


@pytest.mark.parametrize(("data", "name"), [pytest.param(d, n, id=i) for i, d, n in READABLE])
def test_validate_reads_gzip_and_plain_alike(data: bytes, name: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    outcome = cli(capsys, "validate", str(path))
    assert (outcome.status, outcome.out.strip()) == (0, "6 records: 6 valid, 0 rejected")
    assert "Traceback" not in outcome.err


def test_replay_of_gzip_equals_replay_of_the_plain_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain, packed = tmp_path / "e.jsonl", tmp_path / "e.jsonl.gz"
    plain.write_bytes(TEXT)
    packed.write_bytes(gzip.compress(TEXT))
    for path, out in ((plain, "a"), (packed, "b")):
        outcome = cli(capsys, "replay", str(path), "--output", str(tmp_path / out), "--now", NOW)
        assert outcome.status == 0, outcome.err
        assert "read 6 records" in outcome.out
    for name in ("journeys.jsonl", "metrics.jsonl", "alerts.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "journeys.jsonl").read_bytes()


@pytest.mark.parametrize("command", ["validate", "replay"])
def test_a_utf8_byte_order_mark_is_dropped_and_said(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + TEXT)
    outcome = _run(command, path, capsys)
    assert outcome.status == 0
    assert outcome.err.strip() == (f"peakend {command}: {path}: starts with a UTF-8 byte order "
                                   "mark; ignored")
    if command == "validate":
        assert outcome.out.strip() == "6 records: 6 valid, 0 rejected"
    else:
        assert "dead letters: 0" in outcome.out


# Bad lines inside JSON Lines keep their own verdicts: the file is not refused as a whole.
MIXED: list[tuple[str, bytes, str]] = [
    ("stray-brace-first", b"{\n" + TEXT, "7 records: 6 valid, 1 rejected (not_json 1)"),
    ("stray-bracket-first", b"[\n" + TEXT, "7 records: 6 valid, 1 rejected (not_json 1)"),
    ("one-nul-in-a-line", LINES[0][:-1] + b',"x":"\x00"}\n' + TEXT,
     "7 records: 6 valid, 1 rejected"),
    ("latin1-line", b'{"event_id":"caf\xe9"}\n' + TEXT, "7 records: 6 valid, 1 rejected"),
    ("one-line-array", b"[" + b",".join(LINES) + b"]\n",
     "1 records: 0 valid, 1 rejected (not_object 1)"),
]


@pytest.mark.parametrize(("data", "summary"), [pytest.param(d, s, id=i) for i, d, s in MIXED])
def test_bad_lines_in_json_lines_are_judged_one_by_one(
        data: bytes, summary: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(data)
    outcome = cli(capsys, "validate", str(path))
    assert outcome.status == 1
    assert outcome.out.strip().splitlines()[-1].startswith(summary)
    assert "Traceback" not in outcome.err


def test_gzip_on_stdin_end_to_end() -> None:
    outcome = cli_process("validate", "-", stdin=gzip.compress(TEXT))
    assert (outcome.status, outcome.out.strip()) == (0, "6 records: 6 valid, 0 rejected")


def test_utf16_on_stdin_end_to_end() -> None:
    outcome = cli_process("validate", "-", stdin=TEXT.decode().encode("utf-16"))
    assert outcome.status == 2
    assert outcome.one_line_error().startswith(f"peakend validate: -: {UTF16}")


def test_replay_of_a_pretty_file_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "pretty.json"
    path.write_bytes(json.dumps(DOCS, indent=2).encode())
    outcome = cli_process("replay", str(path), "--output", str(tmp_path / "o"), "--now", NOW)
    assert outcome.status == 2
    assert outcome.one_line_error() == f"peakend replay: {path}: {SPREAD}"


@pytest.mark.parametrize("wrap", [lambda b: io.BytesIO(b), lambda b: io.BufferedReader(
    io.BytesIO(b))], ids=["bytesio", "buffered"])
def test_lines_across_the_look_ahead_are_joined(wrap: Callable[[bytes], io.IOBase]) -> None:
    # lines of ~1 KiB so that the 64 KiB look-ahead ends inside a line
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (1000 + i % 7)) for i in range(200)]
    handle = wrap(b"\n".join(lines) + b"\n")
    got = list(iter_records(handle))  # type: ignore[arg-type]
    assert got == list(enumerate(lines, start=1))


def test_open_binary_decompresses_by_magic_bytes(tmp_path: Path) -> None:
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(TEXT))
    with open_binary(str(path)) as handle:
        assert [r for _, r in iter_records(handle)] == LINES


def test_sniff_leaves_ordinary_json_lines_alone() -> None:
    assert sniff(TEXT) is None
    assert sniff(b"") is None
    assert sniff(b"   \n\n") is None
    assert sniff(b"BZh9 is not bzip2 without its block magic\n") is None
