"""`bench.conflict_parity --streams`: drawn streams kept in a file and read back as they were,
so two trees judge the same streams; a file it did not write is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.conflict_parity import Stream, saved


def test_streams_are_written_once_and_read_back_as_drawn(tmp_path: Path) -> None:
    drawn: list[Stream] = [([b'{"event_id":"e1"}', b'{"event_id":"\xc3\xa9"}'], 3, 7, None, False),
                           ([b"{}"], 1, 1, 5, True)]
    calls: list[int] = []

    def make() -> list[Stream]:
        calls.append(1)
        return drawn

    path = tmp_path / "streams.jsonl"
    assert saved(path, make) == drawn
    assert saved(path, make) == drawn  # read back, not drawn again
    assert calls == [1]


@pytest.mark.parametrize(("text", "says"), [
    ("not json\n", "line 1 is not a stream"),
    ('[["{}"], 1, 1, null, false]\n[1, 2]\n', "line 2 is not a stream"),
    ('[["{}"], "x", 1, null, false]\n', "line 1 is not a stream"),
])
def test_a_file_it_did_not_write_is_a_one_line_error(tmp_path: Path, text: str,
                                                      says: str) -> None:
    path = tmp_path / "streams.jsonl"
    path.write_text(text)
    with pytest.raises(SystemExit, match=says):
        saved(path, list)


def test_an_unwritable_path_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cannot write it"):
        saved(tmp_path / "missing" / "streams.jsonl", list)
