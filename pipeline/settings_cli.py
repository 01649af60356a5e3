"""`peakend settings`: the effective configuration, one variable a line.

`--docs` adds what each variable does and accepts; `--markdown` prints the configuration table of
docs/configuration.md instead. All three come from the one declaration in `pipeline.settings`.
"""

from __future__ import annotations

import argparse

from pipeline.settings import VARIABLES, Settings, markdown_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--docs", action="store_true",
                        help="also print what each variable does and accepts")
    parser.add_argument("--markdown", action="store_true",
                        help="print the documentation table of every variable (defaults, not "
                             "the effective values): docs/configuration.md")


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    accepts = {var.name: var.accepts for var in VARIABLES}
    # Raises SettingsError on a bad variable; pipeline.cli prints it as one line and exits 2.
    for name, value, doc in Settings.from_env().describe():
        print(f"{name}={value}" + (f"    # {doc} Accepts: {accepts[name]}." if args.docs else ""))
    return 0
