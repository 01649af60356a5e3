"""The one protocol every accumulator of the core follows.

`update` folds in one item, `merge` combines two accumulators into a new one (associative, and
equal to accumulating the union), `result` reads the current value. All are deterministic, so
partial states computed on different partitions or workers add up to the same answer.
"""

from __future__ import annotations

from typing import Protocol, Self, TypeVar

ItemT_contra = TypeVar("ItemT_contra", contravariant=True)
ResultT_co = TypeVar("ResultT_co", covariant=True)


class Accumulator(Protocol[ItemT_contra, ResultT_co]):
    def update(self, item: ItemT_contra) -> None: ...

    def merge(self, other: Self) -> Self: ...

    def result(self) -> ResultT_co: ...


# -- the state contract (docs/core.md, State contract) ------------------------------------------

SnapshotT_co = TypeVar("SnapshotT_co", covariant=True)
KeyT_contra = TypeVar("KeyT_contra", contravariant=True)
KeySnapshotT = TypeVar("KeySnapshotT")


class Snapshotting(Protocol[SnapshotT_co]):
    """A stateful core object (after bytewax's `StatefulLogic.snapshot()` and its builder's
    `resume_state`).

    - `snapshot()` returns the object's whole state as plain JSON-able data (dicts with str
      keys, lists or tuples, str, int, float, bool, None): JSON writes it as it stands, and the
      state read back (tuples then lists) resumes the same object. Tuples are allowed so that
      immutable parts (a journey's entries) go out as they are held, without a copy per
      write. It never aliases live mutable state: mutating the object afterwards leaves an
      earlier snapshot unchanged.
    - The way back is the constructor: `Cls(<config...>, resume=snapshot)` builds an object that
      behaves exactly as the one snapshotted (same outputs for the same further inputs, same
      later snapshots); `resume=None` (the default) is a fresh object. Configuration is never
      part of a snapshot: the caller passes it again (bytewax's builder does the same).
    """

    def snapshot(self) -> SnapshotT_co: ...


class KeySnapshotting(Protocol[KeyT_contra, KeySnapshotT]):
    """Per-key state for a store that keeps one entry per key (the stream's Faust tables: a
    journey key, a customer, a drop series, a segment's bucket, an event_id).

    - `snapshot_key(key)` is that key's part of `snapshot()`, JSON-able, or None when the object
      holds nothing for the key (delete the table entry).
    - `restore_key(key, state)` replaces the object's state of that key by `state` (None removes
      it). Restoring every key of a snapshot into a fresh object is the same as resuming from the
      snapshot, except for what is not per key (each class says which, if anything).
    """

    def snapshot_key(self, key: KeyT_contra) -> KeySnapshotT | None: ...

    def restore_key(self, key: KeyT_contra, state: KeySnapshotT | None) -> None: ...
