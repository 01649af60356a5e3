"""`YoungPacer` moves the young threshold towards a young collection every `every` events."""

from __future__ import annotations

import gc

import pytest

from pipeline.core import gcpolicy
from pipeline.core.gcpolicy import YoungPacer


@pytest.fixture
def thresholds():  # type: ignore[no-untyped-def]
    previous = gc.get_threshold()
    gc.set_threshold(1_000, 50_000, 100)
    yield
    gc.set_threshold(*previous)


def test_follows_the_events_per_collection(monkeypatch: pytest.MonkeyPatch,
                                           thresholds: None) -> None:
    made = [0]
    monkeypatch.setattr(gcpolicy, "_young_collections", lambda: made[0])
    pacer = YoungPacer(every=100, lowest=100)
    made[0] += 30  # 20,000 events, 30 young collections: one every ~670 events
    pacer.pace(20_000)
    assert gc.get_threshold() == (150, 50_000, 100)
    made[0] += 190  # within 20% below the 200 wanted: left alone
    pacer.pace(20_000)
    assert gc.get_threshold()[0] == 150
    made[0] += 0  # none at all: down to the floor
    pacer.pace(20_000)
    assert gc.get_threshold()[0] == 100
    made[0] += 5_000  # far too often: back up, never above the threshold at creation
    pacer.pace(20_000)
    assert gc.get_threshold() == (1_000, 50_000, 100)
    made[0] += 77  # collections outside the core's work are left out
    pacer.skip()
    made[0] += 200
    pacer.pace(20_000)
    assert gc.get_threshold()[0] == 1_000


def test_short_runs_keep_the_threshold(monkeypatch: pytest.MonkeyPatch, thresholds: None
                                       ) -> None:
    made = [0]
    monkeypatch.setattr(gcpolicy, "_young_collections", lambda: made[0])
    pacer = YoungPacer()
    made[0] += 116  # a 1-day replay: one every ~86 events
    pacer.pace(10_000)
    assert gc.get_threshold()[0] == 1_000
