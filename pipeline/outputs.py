"""Safe output files for `peakend replay --output DIR`, `export --output` and `generate --output`.

Rules (docs/jobs.md, "Output files"):

- All or nothing. Every result is first written to a hidden temporary file in the destination
  directory (`.NAME.peakend-XXXX.tmp`, so the final rename never crosses a file system), flushed
  to disk, and renamed over the destination only when every file of the run is complete. A run
  that fails (disk full, Ctrl-C, a bad input) removes its temporary files and leaves the earlier
  files exactly as they were. Only a hard kill (SIGKILL, power loss) can leave a `.tmp` file
  behind, never a half-written result under its real name.
- A directory output owns a fixed set of names (replay: journeys.jsonl, metrics.jsonl,
  alerts.jsonl, dead_letters.jsonl). At commit, each name this run wrote replaces the earlier
  file; a known name this run did not write is removed, so no file of an earlier run is left
  beside the new ones. Other files in the directory are never touched.
- Never over the input: an output path that is the input file (same inode, so also through a
  link), or an output directory that holds the input file, is refused before any work.
- Problems with a path are found before the work starts where possible (a probe file is created
  and removed), and every failure is one line naming the path and the cause (`OutputError`).

We did not take `atomicwrites` (archived since 2022) or `safer` (one file or stream at a time):
replay needs one commit for a set of files, and pyarrow's writers need a path, not a stream.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

# Exit statuses: 2 = a path given on the command line is unusable, nothing was done;
# 1 = the run failed while writing (disk full...), earlier outputs are unchanged.
USAGE = 2
FAILED = 1

_TMP_SUFFIX = ".tmp"


class OutputError(Exception):
    """A one-line reason why an output cannot be written; `status` is the exit status."""

    def __init__(self, message: str, status: int = FAILED) -> None:
        super().__init__(message)
        self.status = status


def describe(exc: BaseException) -> str:
    """The cause of an OS error in words a user can act on (no errno numbers, no class names).

    >>> describe(OSError(errno.ENOSPC, "No space left on device"))
    'no space left on device (disk full)'
    >>> describe(OSError(errno.ENOTDIR, "Not a directory"))
    'a part of the path is a file, not a directory'
    """
    code = getattr(exc, "errno", None)
    reasons = {
        errno.ENOSPC: "no space left on device (disk full)",
        errno.EDQUOT: "disk quota exceeded",
        errno.EFBIG: "file too large for this file system",
        errno.EACCES: "permission denied (directory not writable)",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ENOTDIR: "a part of the path is a file, not a directory",
        errno.ENOENT: "no such directory",
        errno.EISDIR: "is a directory; give a file name",
        errno.ENAMETOOLONG: "file name too long",
        errno.EIO: "input/output error",
    }
    if code in reasons:
        return reasons[code]
    # pyarrow raises OSError without errno; keep its first line only
    text = str(getattr(exc, "strerror", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: nothing to overwrite
        return False


def check_not_input(targets: Iterable[Path], inputs: Iterable[str | Path],
                    directory: Path | None = None) -> None:
    """Refuse (status 2) when an output would overwrite an input file.

    `targets`: the files the run may write or remove. `directory`: an output directory, which
    must not hold an input file at all (its known names are replaced and removed wholesale).
    `-` (stdin) is not a file and never conflicts.
    """
    files = [Path(i) for i in inputs if str(i) != "-"]
    for source in files:
        for target in targets:
            if _same(source, target):
                raise OutputError(f"{target}: is the input file {source}; refusing to overwrite "
                                  "it (choose another output)", USAGE)
        if directory is not None and _same(source.resolve().parent, directory):
            raise OutputError(f"{directory}: holds the input file {source}; write the results "
                              "to another directory", USAGE)


def _probe(directory: Path, label: Path) -> None:
    """Create and remove a temporary file in `directory`, so an unwritable path fails before
    the work instead of after it."""
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".peakend-probe-", suffix=_TMP_SUFFIX)
    except OSError as exc:
        raise OutputError(f"{label}: cannot write there: {describe(exc)}", USAGE) from None
    os.close(fd)
    os.unlink(name)


def _umask_mode() -> int:
    """0o666 less the process umask: what `open()` would have given the file (mkstemp gives
    0o600, which would make results unreadable for the group where they used to be)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class _Staged:
    """One temporary file waiting to replace `target`.

    The temporary file goes beside the real file (links resolved), so renaming it replaces the
    file a symlink points at rather than the link. A target that exists and is not a regular
    file (/dev/null, a named pipe) cannot be replaced atomically: it is written directly.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(os.path.realpath(target))
        try:
            self.direct = not stat.S_ISREG(os.stat(self.target).st_mode)
        except FileNotFoundError:
            self.direct = False
        if self.direct:
            self.path = self.target
            return
        fd, name = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.peakend-",
                                    suffix=_TMP_SUFFIX)
        os.close(fd)
        self.path = Path(name)
        os.chmod(self.path, _umask_mode())

    def commit(self) -> None:
        """Flush to disk, then rename over the target."""
        if self.direct:
            return
        # fsync before rename: after a crash the new name never points at missing data
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self) -> None:
        if not self.direct:
            os.replace(self.path, self.target)

    def discard(self) -> None:
        if self.direct:
            return
        with suppress(FileNotFoundError):
            self.path.unlink()


class OutputDir:
    """A directory of result files replaced together; see the module docstring.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     out = OutputDir(Path(d) / "out", ("a.jsonl", "b.jsonl"))
    ...     out.prepare()
    ...     with out.transaction() as tx:
    ...         with tx.open("a.jsonl") as handle:
    ...             _ = handle.write(b"{}\\n")
    ...     sorted(p.name for p in (Path(d) / "out").iterdir())
    ['a.jsonl']
    """

    def __init__(self, directory: Path, names: Iterable[str],
                 inputs: Iterable[str | Path] = ()) -> None:
        self.directory = directory
        self.names = tuple(names)
        self.inputs = tuple(inputs)
        self._created: list[Path] = []

    def prepare(self) -> None:
        """Check the paths and create the directory (and missing parents); OutputError."""
        directory = self.directory
        if directory.exists() and not directory.is_dir():
            raise OutputError(f"{directory}: is a file, not a directory; give a directory "
                              "for --output", USAGE)
        check_not_input([directory / n for n in self.names], self.inputs,
                        directory if directory.is_dir() else None)
        missing = []
        for parent in (directory, *directory.parents):
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(f"{directory}: {parent} is a file, not a directory",
                                      USAGE)
                break
            missing.append(parent)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{directory}: cannot create the directory: {describe(exc)}",
                              USAGE) from None
        self._created = missing  # deepest first: removed again if the run fails
        _probe(directory, directory)

    def abandon(self) -> None:
        """The run failed before writing anything: remove the directories `prepare` made."""
        for made in self._created:
            try:
                made.rmdir()
            except OSError:  # not empty (someone else wrote there) or already gone
                break
        self._created = []

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        """Files opened with `tx.open(name)` replace the earlier ones when the block ends
        normally; known names not opened are removed. On any exception nothing changes."""
        tx = _Transaction(self)
        try:
            yield tx
            tx.commit()
        except OSError as exc:
            tx.discard()
            self.abandon()
            raise OutputError(f"{self.directory}: writing the results failed: "
                              f"{describe(exc)}; the earlier files are unchanged") from None
        except BaseException:
            tx.discard()
            self.abandon()
            raise
        self._created = []


class _Transaction:
    def __init__(self, owner: OutputDir) -> None:
        self.owner = owner
        self.staged: dict[str, _Staged] = {}

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if name not in self.owner.names:
            raise ValueError(f"{name} is not one of this output's files {self.owner.names}")
        staged = self.staged[name] = _Staged(self.owner.directory / name)
        with open(staged.path, "wb") as handle:
            yield handle

    def commit(self) -> None:
        for staged in self.staged.values():
            staged.commit()
        # Renames need no space and do not fail for lack of it: all of them last, together.
        for staged in self.staged.values():
            staged.rename()
        for name in self.owner.names:
            if name not in self.staged:
                with suppress(FileNotFoundError):
                    (self.owner.directory / name).unlink()

    def discard(self) -> None:
        for staged in self.staged.values():
            staged.discard()


def check_file(target: Path, inputs: Iterable[str | Path] = ()) -> None:
    """Check an output file path before the work (status 2 on a problem): its directory must
    exist and be writable, the path must not be a directory or an input file."""
    if target.is_dir():
        raise OutputError(f"{target}: is a directory; give a file name", USAGE)
    check_not_input([target], inputs)
    if target.exists() and not target.is_file():
        return  # /dev/null, a named pipe: written directly, see _Staged
    parent = Path(os.path.realpath(target)).parent
    for above in (parent, *parent.parents):
        if above.exists():
            if not above.is_dir():
                raise OutputError(f"{target}: {above} is a file, not a directory", USAGE)
            break
    if not parent.exists():
        raise OutputError(f"{target}: no such directory {parent} (create it first)", USAGE)
    _probe(parent, target)


@contextmanager
def atomic_path(target: Path, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """A temporary path beside `target` to write to; renamed over `target` when the block ends
    normally, removed on any exception (`target` is then unchanged). OSErrors become
    OutputError (status 1) naming `target`."""
    check_file(target, inputs)
    try:
        staged = _Staged(target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write: {describe(exc)}") from None
    try:
        yield staged.path
        staged.commit()
        staged.rename()
    except OSError as exc:
        staged.discard()
        raise OutputError(f"{target}: writing failed: {describe(exc)}; nothing was written"
                          ) from None
    except BaseException:
        staged.discard()
        raise


@contextmanager
def atomic_file(target: Path, inputs: Iterable[str | Path] = ()) -> Iterator[BinaryIO]:
    """`atomic_path`, opened for binary writing."""
    with atomic_path(target, inputs) as path, open(path, "wb") as handle:
        yield handle
