"""Every reference to the design notes points into the repository's own copy (docs/design.md),
and to a section that exists there: the code relies on them, so the repository carries them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "docs" / "design.md"
SCANNED = [p for top in ("pipeline", "jobs", "dashboards", "bench", "scripts", "tests", "docs",
                         "schemas")
           for p in (ROOT / top).rglob("*")
           if p.suffix in {".py", ".md", ".json", ".sql"} and p.is_file()
           and p != Path(__file__).resolve() and "node_modules" not in p.parts]


def sections() -> tuple[set[str], set[str]]:
    numbered, titled = set(), set()
    for line in NOTES.read_text().splitlines():
        if match := re.match(r"## (\d+)\. ", line):
            numbered.add(match.group(1))
        elif match := re.match(r"### (.+)", line):
            titled.add(match.group(1).strip())
    return numbered, titled


def test_no_reference_leaves_the_repository() -> None:
    outside = [f"{p.relative_to(ROOT)}" for p in SCANNED
               if p != NOTES and re.search(r"shared/DESIGN|\bDESIGN\.md", p.read_text())]
    assert outside == []


def test_every_numbered_or_titled_reference_names_a_section_of_the_notes() -> None:
    numbered, titled = sections()
    assert numbered and titled
    wrong = []
    for path in SCANNED:
        text = path.read_text()
        for match in re.finditer(r"design\.md,? (\d+)(?:,? \"([^\"]+)\")?", text):
            number, title = match.group(1), match.group(2)
            if number not in numbered or (title and not any(t.startswith(title) for t in titled)):
                wrong.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert wrong == []
