"""Progress on stderr for the batch jobs: rows done, rate, time left.

On a terminal one line is rewritten in place; otherwise (CI logs, files) a line is printed every
`every_s` seconds so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    """
    >>> _duration(5.2), _duration(125), _duration(7300)
    ('5s', '2m05s', '2h01m')
    """
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """`update(done)` as work advances, `finish()` at the end; silent when `enabled` is False."""

    def __init__(self, label: str, total: int | None = None, *, stream: TextIO | None = None,
                 enabled: bool = True, every_s: float | None = None, start_at: int = 0) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.every_s = every_s if every_s is not None else (0.5 if self.tty else 5.0)
        self.started = time.monotonic()
        self.start_at = start_at  # rows already done before this run (resume): not in the rate
        self.done = start_at
        self._next = self.started + self.every_s

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = (self.done - self.start_at) / elapsed
        text = f"{self.label}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} rows ({100 * self.done / self.total:.1f}%)"
        else:
            text += " rows"
        text += f", {rate:,.0f}/s, {_duration(elapsed)} elapsed"
        if self.total and rate > 0 and self.done < self.total:
            text += f", {_duration((self.total - self.done) / rate)} left"
        return text

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every_s
            self._show(self.line(now))

    def _show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> float:
        """Print the final line; the elapsed seconds."""
        elapsed = time.monotonic() - self.started
        if self.enabled:
            self._show(self.line())
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
        return elapsed
