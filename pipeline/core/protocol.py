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
