"""Which changelog partitions a table recovery waits on with nothing coming: read them again.

Faust restores a table by reading its changelog partitions up to the highwater it noted when the
recovery began, and the worker waits until it has (no agent runs meanwhile). It only logs when
no record arrives ("No event received for active tp ... since recovery start"), and goes on
waiting. A CI run of the two-worker test (2026-12-06, docs/reliability.md) had a worker wait
so for the two changelog partitions it took over from the worker that stopped: five minutes,
nothing read, its Faust consumer still fetching (no aiokafka warning), until the test gave
up. Faust's fetch loop can lose a record it fetched without handing it on (a read offset past
it, a queue cleared by a flow-control resume, a partition paused between fetch and hand-on),
and the fetch position has then moved past it: nothing else reads it again. A partition with
records still to read and none read for `stall_seconds` is therefore read again from the offset
the recovery has reached; a record read twice is passed over by Faust's recovery (it applies
only offsets past the last one it applied), so the seek costs nothing when it was not needed.

No Faust object here: `faust_private.PeakendConsumer` hands the recovery's progress in and
seeks what this returns.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

STALL_SECONDS = 30.0  # a recovery that reads nothing for this long with records left is stuck


@dataclass(frozen=True)
class RecoveryProgress:
    """Faust's active recovery as seen at one moment (`faust_private.recovery_progress`)."""

    started_at: float  # monotonic seconds when this recovery began
    remaining: Mapping[Hashable, int]  # changelog partition -> records still to read (> 0)
    last_event_at: Mapping[Hashable, float]  # partition -> when its last record came
    applied: Mapping[Hashable, int]  # partition -> the last offset applied (-1: none)

    def resume_offset(self, tp: Hashable) -> int:
        """Where reading `tp` again starts: after the last offset the recovery applied."""
        return max(self.applied.get(tp, -1), -1) + 1


@dataclass
class RecoveryWatch:
    stall_seconds: float = STALL_SECONDS
    # when each partition was last sought again: the next seek waits stall_seconds from there
    _sought_at: dict[Hashable, float] = field(default_factory=dict)

    def stalled(self, progress: RecoveryProgress, now: float) -> list[Hashable]:
        """The partitions to read again now: records left, none read (nor sought) for
        `stall_seconds` since the recovery began.

        >>> watch = RecoveryWatch(stall_seconds=30)
        >>> progress = RecoveryProgress(100.0, {"a": 5, "b": 3}, {"b": 125.0}, {"a": -1})
        >>> watch.stalled(progress, 129.0)
        []
        >>> watch.stalled(progress, 131.0)  # "b" read a record at 125
        ['a']
        >>> watch.stalled(progress, 150.0)  # "a" was sought at 131
        []
        >>> watch.stalled(progress, 161.0)
        ['a', 'b']
        """
        stuck = []
        for tp in sorted(progress.remaining, key=repr):
            since = max(progress.started_at, progress.last_event_at.get(tp, progress.started_at),
                        self._sought_at.get(tp, progress.started_at))
            if now - since >= self.stall_seconds:
                self._sought_at[tp] = now
                stuck.append(tp)
        return stuck
