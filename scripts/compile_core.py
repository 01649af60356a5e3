"""Compile the pure core (pipeline/core) and the pure per-event adapter modules with mypyc.

    .venv/bin/python scripts/compile_core.py [--out build/core-compiled] [--check]

The modules are `pipeline.core_build.COMPILED_GROUPS` (package, modules), compiled together as
one mypyc group, so calls between them (adapter into core) are native calls. The sources stay
the single truth: plain, typed Python that imports and runs without this step. The compiled
modules go to a separate directory with a manifest holding the SHA-256 of all the sources they
came from; `pipeline/core_build.py` puts them in front of each package's path only while that
digest still matches (an edited source silently falls back to the interpreted modules, never
to a stale binary), and `PEAKEND_PURE_CORE=1` turns them off. docs/core.md, Performance, has the
core's figures (about 1.6x fewer instructions per event on the journey path); docs/streaming.md,
issue 15, the adapters'.

`--check` exits 0 when the compiled build is current and 1 when it is missing or stale.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core_build import (  # noqa: E402
    COMPILED_GROUPS,
    DEFAULT_BUILD,
    PIPELINE_DIR,
    source_digest,
)

SETUP = """
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="peakend-core-compiled",
    ext_modules=mypycify({paths!r}, opt_level="3", group_name="peakend_core"),
    script_args=["-q", "build_ext", "--build-lib", {out!r}],
)
"""


def build(out: Path) -> None:
    digest = source_digest()
    started = time.perf_counter()
    paths = [f"{package.replace('.', '/')}/{name}.py"
             for package, modules in COMPILED_GROUPS for name in modules]
    with tempfile.TemporaryDirectory(prefix="peakend-mypyc-") as tmp:
        # Build from a copy: mypyc's setuptools run would otherwise read the project's
        # pyproject.toml, and the build directory stays out of the source tree. The copy holds
        # every module of the package (mypyc type-checks what the compiled modules import; those
        # it does not compile stay interpreted).
        work = Path(tmp)
        for source in PIPELINE_DIR.rglob("*.py"):
            target = work / "pipeline" / source.relative_to(PIPELINE_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        staging = work / "out"
        (work / "setup.py").write_text(SETUP.format(paths=paths, out=str(staging)))
        env = {**os.environ, "PEAKEND_PURE_CORE": "1"}
        result = subprocess.run([sys.executable, "setup.py"], cwd=work, env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
            raise SystemExit(f"mypyc build failed (exit {result.returncode})")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staging, out)
    manifest = {"digest": digest,
                "modules": [f"{package}.{name}" for package, modules in COMPILED_GROUPS
                            for name in modules],
                "python": sys.version.split()[0]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"compiled {len(paths)} modules into {out} "
          f"in {time.perf_counter() - started:.0f} s")


def is_current(out: Path) -> bool:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest.get("digest") == source_digest()
                and manifest.get("python") == sys.version.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_BUILD)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the compiled build is missing or stale")
    args = parser.parse_args()
    if args.check:
        raise SystemExit(0 if is_current(args.out) else 1)
    if is_current(args.out):
        print(f"compiled build in {args.out} is current")
        return
    build(args.out)


if __name__ == "__main__":
    main()
