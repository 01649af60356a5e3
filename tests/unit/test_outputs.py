"""Safe outputs (`pipeline.outputs`) through `peakend replay --output`, `generate --output` and
`export --output`: all or nothing, never over the input, one line for an unusable path or a
full disk, earlier results left as they were when a run fails."""

from __future__ import annotations

import builtins
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from cli_util import NOW, cli, cli_process, valid_lines

import pipeline.outputs
from jobs.export import export_table
from pipeline.outputs import OutputDir, OutputError, atomic_file
from pipeline.replay import OUTPUT_FILES
from pipeline.storage.tables import TABLES

SMALL = b"\n".join(valid_lines(5)) + b"\n"
BIG = b"\n".join(valid_lines(60, seed=9)) + b"\n"


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


class _FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written, like a full disk."""

    def __init__(self, handle: Any, room: int) -> None:
        self.handle = handle
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return int(self.handle.write(data))

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def fill_disk(monkeypatch: pytest.MonkeyPatch, room: int = 200) -> None:
    """Every file `pipeline.outputs` opens runs out of space after `room` bytes."""
    def full_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> _FullDisk:
        return _FullDisk(builtins.open(path, mode, *args, **kwargs), room)
    monkeypatch.setattr(pipeline.outputs, "open", full_open, raising=False)


def fail_mkstemp(monkeypatch: pytest.MonkeyPatch, code: int, text: str) -> None:
    """The OS refuses to create files (what a read-only directory does to a non-root user:
    the tests run as root, whom chmod does not stop)."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, text)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # pipeline.outputs.tempfile: the one module


# replay

def replay(capsys: pytest.CaptureFixture[str], events: Path, out: Path) -> Any:
    return cli(capsys, "replay", str(events), "--output", str(out), "--now", NOW)


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(SMALL)
    return path


def test_replay_over_an_earlier_bigger_run_leaves_only_this_runs_files(
        tmp_path: Path, events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.jsonl"
    big.write_bytes(BIG)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert replay(capsys, big, out).status == 0
    earlier = snapshot(out)
    (out / "notes.txt").write_text("mine")  # not a replay file: never touched
    assert replay(capsys, events, out).status == 0
    assert replay(capsys, events, fresh).status == 0
    assert listing(out) == sorted([*OUTPUT_FILES, "notes.txt"])
    for name in OUTPUT_FILES:
        assert (out / name).read_bytes() == (fresh / name).read_bytes()
    assert snapshot(out)["journeys.jsonl"] != earlier["journeys.jsonl"]
    assert len((out / "journeys.jsonl").read_bytes()) < len(earlier["journeys.jsonl"])


def test_a_full_disk_leaves_the_earlier_run_unchanged(
        tmp_path: Path, events: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    big = tmp_path / "big.jsonl"
    big.write_bytes(BIG)
    assert replay(capsys, big, out).status == 0
    earlier = snapshot(out)
    fill_disk(monkeypatch)
    outcome = replay(capsys, events, out)
    assert outcome.status == 1
    assert outcome.one_line_error() == (
        f"peakend replay: {out}: writing the results failed: no space left on device (disk "
        "full); the earlier files are unchanged")
    assert snapshot(out) == earlier  # no temporary file left, nothing replaced
    assert outcome.out == ""


@pytest.mark.parametrize(("code", "text", "words"), [
    (errno.EACCES, "Permission denied", "cannot write there: permission denied"),
    (errno.EROFS, "Read-only file system", "cannot write there: read-only file system"),
    (errno.EDQUOT, "Disk quota exceeded", "cannot write there: disk quota exceeded"),
    (errno.ENOSPC, "No space left on device", "no space left on device (disk full)"),
])
def test_an_unwritable_output_directory_is_found_before_the_work(
        code: int, text: str, words: str, tmp_path: Path, events: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fail_mkstemp(monkeypatch, code, text)
    outcome = replay(capsys, events, tmp_path / "out")
    assert outcome.status == 2
    line = outcome.one_line_error()
    assert line.startswith(f"peakend replay: {tmp_path / 'out'}: ") and words in line
    assert "read " not in outcome.out  # nothing was computed


def test_output_that_is_a_file(tmp_path: Path, events: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "results"
    target.write_text("keep me")
    outcome = replay(capsys, events, target)
    assert outcome.status == 2
    assert outcome.one_line_error() == (f"peakend replay: {target}: is a file, not a directory; "
                                        "give a directory for --output")
    assert target.read_text() == "keep me"


def test_output_below_a_file(tmp_path: Path, events: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "plain"
    blocker.write_text("x")
    outcome = replay(capsys, events, blocker / "sub" / "out")
    assert outcome.status == 2
    assert outcome.one_line_error() == (f"peakend replay: {blocker / 'sub' / 'out'}: {blocker} "
                                        "is a file, not a directory")


@pytest.mark.parametrize("name", ["events.jsonl", "journeys.jsonl", "dead_letters.jsonl"])
def test_an_output_directory_holding_the_input_is_refused(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    source = out / name
    source.write_bytes(SMALL)
    outcome = replay(capsys, source, out)
    assert outcome.status == 2
    if name in OUTPUT_FILES:  # the more precise reason comes first
        assert outcome.one_line_error() == (
            f"peakend replay: {source}: is the input file {source}; refusing to overwrite it "
            "(choose another output)")
    else:
        assert outcome.one_line_error() == (
            f"peakend replay: {out}: holds the input file {source}; write the results to "
            "another directory")
    assert source.read_bytes() == SMALL
    assert listing(out) == [name]


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_an_output_file_that_is_the_input_under_another_name_is_refused(
        link: str, tmp_path: Path, events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    alias = out / "metrics.jsonl"
    if link == "hard":
        os.link(events, alias)
    else:
        alias.symlink_to(events)
    outcome = replay(capsys, events, out)
    assert outcome.status == 2
    assert outcome.one_line_error() == (
        f"peakend replay: {alias}: is the input file {events}; refusing to overwrite it "
        "(choose another output)")
    assert events.read_bytes() == SMALL


def test_a_bad_input_leaves_no_new_output_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "deeper"
    outcome = replay(capsys, tmp_path / "absent.jsonl", out)
    assert outcome.status == 2
    assert outcome.one_line_error().startswith(
        f"peakend replay: cannot read {tmp_path / 'absent.jsonl'}: No such file")
    assert listing(tmp_path) == []


def test_replay_creates_missing_parents(tmp_path: Path, events: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a" / "b"
    assert replay(capsys, events, out).status == 0
    assert listing(out) == sorted(OUTPUT_FILES)


def test_replay_from_stdin_into_a_directory_end_to_end(tmp_path: Path) -> None:
    outcome = cli_process("replay", "-", "--output", str(tmp_path), "--now", NOW, stdin=SMALL)
    assert outcome.status == 0, outcome.err
    assert listing(tmp_path) == sorted(OUTPUT_FILES)


def test_replay_into_a_file_end_to_end(tmp_path: Path, events: Path) -> None:
    outcome = cli_process("replay", str(events), "--output", str(events), "--now", NOW)
    assert outcome.status == 2
    assert "is a file, not a directory" in outcome.one_line_error()


# the helper itself

def test_known_names_not_written_are_removed_others_kept(tmp_path: Path) -> None:
    for name in ("a.jsonl", "b.jsonl", "mine.txt"):
        (tmp_path / name).write_text("old")
    out = OutputDir(tmp_path, ("a.jsonl", "b.jsonl"))
    out.prepare()
    with out.transaction() as tx, tx.open("a.jsonl") as handle:
        handle.write(b"new\n")
    assert snapshot(tmp_path) == {"a.jsonl": b"new\n", "mine.txt": b"old"}


def test_an_interrupted_write_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("old")
    out = OutputDir(tmp_path, ("a.jsonl", "b.jsonl"))
    out.prepare()
    with pytest.raises(KeyboardInterrupt), out.transaction() as tx:
        with tx.open("b.jsonl") as handle:
            handle.write(b"half")
        raise KeyboardInterrupt
    assert snapshot(tmp_path) == {"a.jsonl": b"old"}


def test_files_get_the_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "x.jsonl"
    old = os.umask(0o022)
    try:
        with atomic_file(target) as handle:
            handle.write(b"{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_symlinked_output_replaces_the_file_it_points_at(tmp_path: Path) -> None:
    real, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    real.write_text("old")
    link.symlink_to(real)
    with atomic_file(link) as handle:
        handle.write(b"new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_device_is_written_directly() -> None:
    with atomic_file(Path(os.devnull)) as handle:
        handle.write(b"gone")
    assert Path(os.devnull).exists()


def test_writing_outside_a_transaction_name_is_a_programming_error(tmp_path: Path) -> None:
    out = OutputDir(tmp_path, ("a.jsonl",))
    out.prepare()
    with pytest.raises(ValueError, match="not one of"), out.transaction() as tx, \
            tx.open("b.jsonl"):
        pass
    assert listing(tmp_path) == []


# generate

def generate(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    return cli(capsys, "generate", "--quiet", "--events", "40", *argv)


@pytest.mark.parametrize("to", ["jsonl", "parquet"])
def test_generate_writes_atomically(to: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / f"e.{to}"
    target.write_bytes(b"earlier")
    assert generate(capsys, "--to", to, "--output", str(target)).status == 0
    assert listing(tmp_path) == [target.name]
    if to == "parquet":
        assert pq.read_table(target).num_rows == 40
    else:
        assert len(target.read_bytes().splitlines()) == 40


def test_generate_on_a_full_disk_keeps_the_earlier_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "e.jsonl"
    target.write_bytes(b"earlier")
    fill_disk(monkeypatch, room=100)
    outcome = generate(capsys, "--output", str(target))
    assert outcome.status == 1
    assert outcome.one_line_error() == (f"peakend generate: {target}: writing failed: no space "
                                        "left on device (disk full); nothing was written")
    assert snapshot(tmp_path) == {"e.jsonl": b"earlier"}


def test_generate_parquet_on_a_full_disk_leaves_no_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import jobs.generate

    def half_then_full(records: Any, path: Path, progress: Any = None) -> int:
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(jobs.generate, "write_parquet", half_then_full)
    target = tmp_path / "e.parquet"
    outcome = generate(capsys, "--to", "parquet", "--output", str(target))
    assert outcome.status == 1
    assert "no space left on device (disk full); nothing was written" in outcome.one_line_error()
    assert listing(tmp_path) == []


@pytest.mark.parametrize(("make", "words"), [
    (lambda d: d, "is a directory; give a file name"),
    (lambda d: d / "missing" / "e.jsonl", "no such directory"),
    (lambda d: d / "plain" / "e.jsonl", "is a file, not a directory"),
])
def test_generate_refuses_an_unusable_output_path(
        make: Any, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain").write_text("x")
    target = make(tmp_path)
    outcome = generate(capsys, "--output", str(target))
    assert outcome.status == 2
    line = outcome.one_line_error()
    assert line.startswith(f"peakend generate: {target}: ") and words in line
    assert (tmp_path / "plain").read_text() == "x"


# export (a fake warehouse: the paging and file handling do not need a server)

class FakeWarehouse:
    database = "peakend"

    def __init__(self, rows: int, fail_at_offset: int | None = None) -> None:
        self.columns = TABLES["alerts"].columns
        self.rows = [tuple(f"{c}-{i}" for c in self.columns) for i in range(rows)]
        self.fail_at_offset = fail_at_offset

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        params = params or {}
        if "count()" in sql:
            return [(len(self.rows),)]
        offset = int(params["offset"])
        if offset == self.fail_at_offset:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.rows[offset : offset + int(params["limit"])]

    def query_with_columns(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return [], [(c, "String") for c in self.columns]


def test_export_writes_every_page_into_one_file(tmp_path: Path) -> None:
    target = tmp_path / "alerts.parquet"
    count = export_table(FakeWarehouse(25), "alerts", target, chunk_rows=10)  # type: ignore[arg-type]
    assert count == 25 and pq.read_table(target).num_rows == 25
    assert listing(tmp_path) == ["alerts.parquet"]


def test_a_failed_export_keeps_the_earlier_file(tmp_path: Path) -> None:
    target = tmp_path / "alerts.parquet"
    target.write_bytes(b"earlier")
    with pytest.raises(OutputError, match="no space left on device") as caught:
        export_table(FakeWarehouse(25, fail_at_offset=20), "alerts", target,  # type: ignore[arg-type]
                     chunk_rows=10)
    assert caught.value.status == 1
    assert snapshot(tmp_path) == {"alerts.parquet": b"earlier"}


def test_export_refuses_zero_rows_per_page(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        export_table(FakeWarehouse(3), "alerts", tmp_path / "a.parquet",  # type: ignore[arg-type]
                     chunk_rows=0)
    assert listing(tmp_path) == []
