"""`release` (pipeline/stream/faust_private.py): events of a batch that a rebalance overtook
stop holding Faust's revocation, and acked ones are left alone. Also checks the one private name
it relies on."""

from __future__ import annotations

from types import SimpleNamespace
from weakref import WeakSet

from faust.transport.consumer import Consumer

from pipeline.stream.faust_private import release


class Message:
    def __init__(self, acked: bool) -> None:
        self.acked = acked


def test_unacked_events_of_a_dropped_batch_no_longer_hold_the_revocation() -> None:
    waiting, done = Message(acked=False), Message(acked=True)
    consumer = SimpleNamespace(_unacked_messages=WeakSet([waiting, done]))
    release(consumer, [SimpleNamespace(message=waiting), SimpleNamespace(message=done)])
    assert set(consumer._unacked_messages) == {done}


def test_faust_still_tracks_unacked_messages_the_way_release_expects() -> None:
    """Fails when a Faust release renames or retypes the set `release` edits."""
    assert "_unacked_messages" in Consumer.__annotations__
    assert "self._unacked_messages = WeakSet()" in open(  # noqa: SIM115
        Consumer.__init__.__code__.co_filename).read()
