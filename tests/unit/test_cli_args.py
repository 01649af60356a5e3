"""Wrong option values of `generate`, `export`, `validate` and `replay`: exit status 2, one line
naming the option, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_util import NOW, cli, cli_process, valid_lines

from jobs.generate import parse_duration

# (argv after `peakend generate --quiet --events 5 --output FILE`, words of the message)
GENERATE: list[tuple[list[str], str]] = [
    (["--span", "0"], "--span: must be longer than 0, not '0'"),
    (["--span", "0s"], "--span: must be longer than 0"),
    (["--span=-1d"], "--span: '-1d' is not a duration"),
    (["--span", "nan"], "--span: 'nan' is not a duration"),
    (["--span", "inf"], "--span: 'inf' is not a duration"),
    (["--span", "1e400"], "--span: '1e400' is not a duration"),
    (["--span", "7x"], "--span: '7x' is not a duration (e.g. 90s, 15m, 36h, 7d, 2w)"),
    (["--span", "40000d"], "--span: '40000d' is longer than 100 years"),
    (["--span", "3w", "--start", "2099-10-10T00:00:00Z"],
     "--span: journeys would start until 2099-10-31T00:00:00.000Z, after 2099-10-20"),
    (["--start", "9999-12-31T23:59:59-01:00"], "--start: 9999-12-31T23:59:59-01:00 is outside "
                                               "2000-01-01 .. 2099-10-20"),
    (["--start", "0001-01-01T00:00:00+14:00"], "--start: 0001-01-01T00:00:00+14:00 is outside"),
    (["--start", "1999-12-31T23:59:59Z"], "the event contract accepts the years 2000-2099 UTC"),
    (["--start", "2026-11-01"], "--start: '2026-11-01' is not an RFC 3339 time with offset"),
    (["--start", "yesterday"], "--start: 'yesterday' is not an RFC 3339 time"),
    (["--events", "0"], "argument --events: must be a whole number of at least 1, not '0'"),
    (["--events", "-3"], "argument --events: must be a whole number of at least 1, not '-3'"),
    (["--events", "ten"], "argument --events: must be a whole number of at least 1, not 'ten'"),
    (["--rate", "0"], "argument --rate: must be a number greater than 0, not '0'"),
    (["--rate", "-5"], "argument --rate: must be a number greater than 0"),
    (["--rate", "nan"], "argument --rate: must be a number greater than 0, not 'nan'"),
    (["--late-fraction", "2"], "argument --late-fraction: must be a number from 0 to 1, not '2'"),
    (["--late-fraction", "-0.1"], "argument --late-fraction: must be a number from 0 to 1"),
    (["--invalid-fraction", "nan"], "argument --invalid-fraction: must be a number from 0 to 1"),
    (["--invalid-fraction", "1.5"], "argument --invalid-fraction: must be a number from 0 to 1"),
    (["--max-delay", "-5"], "--max-delay: '-5' is not a duration"),
    (["--max-delay", "soon"], "--max-delay: 'soon' is not a duration"),
    (["--mix", "shop=1"], "--mix: unknown persona 'shop'; known: ecommerce, bank"),
    (["--mix", "bank=x"], "--mix: the weight of bank must be a number of at least 0, not 'x'"),
    (["--mix", "bank=-1"], "--mix: the weight of bank must be a number of at least 0"),
    (["--mix", "bank=inf"], "--mix: the weight of bank must be a number of at least 0"),
    (["--mix", "bank=1,bank=2"], "--mix: bank is given twice"),
    (["--mix", "bank=0"], "the persona mix has no positive weight"),
    (["--drop", "points=101"], "--drop: points must be a number from 0 to 100, not '101'"),
    (["--drop", "points=nan"], "--drop: points must be a number from 0 to 100, not 'nan'"),
    (["--decline", "points_per_week=-3"], "--decline: points_per_week must be a number from 0"),
    (["--drop", "at=tomorrow"], "--drop: 'tomorrow' is not an RFC 3339 time with offset"),
    (["--drop", "at=soon"], "--drop: 'soon' is not a duration"),
    (["--drop", "segment=colour:red"], "--drop: segment dimension 'colour' is not one of"),
    (["--drop", "points=3,points=4"], "--drop 'points=3,points=4': a key is given twice"),
    (["--drop", "nonsense"], "expected key=value pairs"),
    (["--id-prefix", "p" * 65], "--id-prefix: at most 64 characters"),
    (["--span", "1d", "--rate", "10"], "give --span or --rate, not both"),
]


@pytest.mark.parametrize(("argv", "words"),
                         [pytest.param(a, w, id=" ".join(a)[:40]) for a, w in GENERATE])
def test_generate_option_errors(argv: list[str], words: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "e.jsonl"
    outcome = cli(capsys, "generate", "--quiet", "--events", "5", "--output", str(target), *argv)
    assert outcome.status == 2
    line = outcome.one_line_error()
    assert line.startswith("peakend generate: ")
    assert words in line
    assert list(tmp_path.iterdir()) == []


def test_generate_kafka_has_no_output_file(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = cli(capsys, "generate", "--to", "kafka", "--output", "x.jsonl")
    assert outcome.status == 2
    assert outcome.one_line_error() == ("peakend generate: --output is not used with --to kafka "
                                        "(events go to --topic)")


@pytest.mark.parametrize("start", ["2000-01-01T00:00:00Z", "2099-10-19T00:00:00Z"])
def test_generate_at_the_edges_of_the_range_gives_events_our_reader_accepts(
        start: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "e.jsonl"
    assert cli(capsys, "generate", "--quiet", "--events", "300", "--span", "1d", "--start",
               start, "--output", str(target)).status == 0
    outcome = cli(capsys, "validate", str(target))
    assert (outcome.status, outcome.out.strip()) == (0, "300 records: 300 valid, 0 rejected")


def test_generate_span_zero_end_to_end() -> None:
    outcome = cli_process("generate", "--span", "0")
    assert outcome.status == 2 and outcome.out == ""
    assert outcome.one_line_error() == "peakend generate: --span: must be longer than 0, not '0'"


def test_parse_duration_accepts_the_documented_forms() -> None:
    assert [parse_duration(t) for t in ("90s", "15m", "36h", "7d", "2w", "250ms", ".5s", "3")] \
        == [90_000, 900_000, 129_600_000, 604_800_000, 1_209_600_000, 250, 500, 3000]


# export: the option checks come before any connection (the URL leads nowhere)

EXPORT: list[tuple[list[str], str]] = [
    (["--chunk-rows", "0"], "argument --chunk-rows: must be a whole number from 1 to "
                            "10,000,000, not '0'"),
    (["--chunk-rows", "-1"], "argument --chunk-rows: must be a whole number from 1 to"),
    (["--chunk-rows", "many"], "argument --chunk-rows: must be a whole number"),
    (["--chunk-rows", "100000000000"], "argument --chunk-rows: must be a whole number from 1"),
    (["--table", "users"], "argument --table: invalid choice: 'users'"),
    (["--since", "7x"], "--since: '7x' is not a duration"),
    (["--since", "2026-13-01T00:00:00Z"], "--since: '2026-13-01T00:00:00Z' is not an RFC 3339"),
    (["--since", "nan"], "--since: 'nan' is not a duration"),
]


@pytest.mark.parametrize(("argv", "words"),
                         [pytest.param(a, w, id=" ".join(a)[:40]) for a, w in EXPORT])
def test_export_option_errors(argv: list[str], words: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    outcome = cli(capsys, "export", "--table", "alerts", "--output", str(tmp_path / "a.parquet"),
                  "--url", "clickhouse://nobody@127.0.0.1:1/none", "--quiet", *argv)
    assert outcome.status == 2
    line = outcome.one_line_error()
    assert line.startswith("peakend export: ") and words in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("where", "words"), [
    ("dir", "is a directory; give a file name"),
    ("missing/a.parquet", "no such directory"),
    ("plain/a.parquet", "is a file, not a directory"),
])
def test_export_output_errors_before_connecting(where: str, words: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "plain").write_text("x")
    outcome = cli(capsys, "export", "--table", "alerts", "--output", str(tmp_path / where),
                  "--url", "clickhouse://nobody@127.0.0.1:1/none")
    assert outcome.status == 2
    line = outcome.one_line_error()
    assert line.startswith(f"peakend export: {tmp_path / where}: ") and words in line


def test_export_chunk_rows_zero_end_to_end(tmp_path: Path) -> None:
    outcome = cli_process("export", "--table", "alerts", "--output", str(tmp_path / "a.parquet"),
                          "--chunk-rows", "0")
    assert outcome.status == 2
    assert "argument --chunk-rows: must be a whole number from 1" in outcome.one_line_error()


# validate and replay

@pytest.mark.parametrize("value", ["0", "-5", "big", "1.5"])
def test_validate_max_bytes_must_be_positive(value: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join(valid_lines(2)))
    outcome = cli(capsys, "validate", "--max-bytes", value, str(path))
    assert outcome.status == 2
    assert (f"argument --max-bytes: must be a whole number of at least 1, not '{value}'"
            in outcome.one_line_error())


@pytest.mark.parametrize("value", ["0", "-2"])
def test_replay_partitions_must_be_positive(value: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join(valid_lines(2)))
    outcome = cli(capsys, "replay", str(path), "--output", str(tmp_path / "o"), "--now", NOW,
                  "--partitions", value)
    assert outcome.status == 2
    assert "--partitions must be at least 1" in outcome.one_line_error()
    assert not (tmp_path / "o").exists()
