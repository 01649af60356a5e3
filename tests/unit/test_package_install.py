"""`pip install .` (not editable) gives a working `peakend`: schemas and SQL are package data.

The package is built and installed into a new virtualenv under a temporary directory; its
dependencies come from the project's .venv through a .pth line added after the install (so pip
never sees, let alone touches, the project's own installation), which keeps the test at about
half a minute and off the network except for pip's build backend (setuptools, from its cache
after the first run). Then `peakend generate`, `validate` and `replay` run outside the source
tree, and the scoring rules and the migrations load from the installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stdout}{done.stderr}"
    return done


def test_pip_install_then_replay_works_outside_the_source_tree(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PEAKEND_"))}
    env["PEAKEND_PURE_CORE"] = "1"  # the compiled build lives in the source tree only
    wheels = tmp_path / "wheels"
    run([str(bin_dir / "pip"), "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        tmp_path, env)
    (wheel,) = wheels.glob("peakend-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {f"pipeline/schemas/{p.relative_to(ROOT / 'schemas')}"
                for p in (ROOT / "schemas").rglob("*") if p.suffix in (".json", ".sql")}
    assert expected and expected <= names, sorted(expected - names)
    run([str(bin_dir / "pip"), "install", "--no-deps", "-q", str(wheel)], tmp_path, env)

    # Dependencies (faust, chdb, pyarrow...) from the project's environment, after the install.
    site = Path(run([str(bin_dir / "python"), "-c",
                     "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    tmp_path, env).stdout.strip())
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    located = run([str(bin_dir / "python"), "-c", "import pipeline; print(pipeline.__file__)"],
                  tmp_path, env).stdout.strip()
    assert Path(located).is_relative_to(env_dir), located

    peakend = str(bin_dir / "peakend")
    run([peakend, "generate", "--events", "300", "--invalid-fraction", "0.02", "--quiet",
         "--output", "events.jsonl"], tmp_path, env)
    validated = subprocess.run([peakend, "validate", "events.jsonl"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300, check=False)
    assert validated.returncode == 1 and "invalid" in validated.stdout + validated.stderr
    run([peakend, "replay", "events.jsonl", "--output", "out"], tmp_path, env)
    journeys = (tmp_path / "out" / "journeys.jsonl").read_text().splitlines()
    assert journeys and all(json.loads(line)["journey_id"] for line in journeys)
    # The scoring rules and the migrations are read from the installed package.
    check = ("from pipeline.scoring_rules import DEFAULT_RULES_PATH, load_scoring_rules; "
             "from pipeline.storage import migrate; "
             "print(DEFAULT_RULES_PATH); print(len(load_scoring_rules().rules)); "
             "print(len(migrate.load()))")
    rules_path, rules, migrations = run([str(bin_dir / "python"), "-c", check], tmp_path,
                                        env).stdout.split()
    assert Path(rules_path).is_relative_to(env_dir) and int(rules) > 0
    assert int(migrations) == len(list((ROOT / "schemas" / "clickhouse").glob("*.sql")))
