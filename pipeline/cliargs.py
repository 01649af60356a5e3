"""argparse `type=` functions with range checks, shared by the sub-commands.

A wrong value stops the command before any work with argparse's one-line error naming the option
(`peakend export: error: argument --chunk-rows: must be a whole number from 1 to ..., not '0'`)
and exit status 2, instead of a hang, a traceback or a silently odd result later.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high] (no upper bound when `high` is None).

    >>> whole(1)("12")
    12
    >>> whole(1)("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a whole number of at least 1, not '0'
    """
    wanted = (f"a whole number of at least {low}" if high is None
              else f"a whole number from {low:,} to {high:,}")

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def number(low: float, high: float | None = None, *,
           low_open: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] ((low, high] with `low_open`); NaN and inf are refused.

    >>> number(0, 1)("0.25")
    0.25
    >>> number(0, low_open=True)("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a number greater than 0, not '0'
    """
    if high is None:
        wanted = f"a number greater than {low:g}" if low_open else f"a number of at least {low:g}"
    else:
        wanted = f"a number from {low:g} to {high:g}"
        if low_open:
            wanted = f"a number greater than {low:g} and at most {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}") from None
        if (not math.isfinite(value) or value < low or (low_open and value == low)
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}")
        return value

    parse.__name__ = "number"
    return parse
