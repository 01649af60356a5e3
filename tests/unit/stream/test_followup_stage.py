"""The follow-up stage without Faust: stage one's outbox routes journey records and survey /
outcome events by customer; the stage, restarted from its persisted state half-way, ends with the
cases `peakend replay` writes (versions aside: the stream sees one journey record per flush)."""

from __future__ import annotations

import contextlib
import json
import random

from pipeline.contract import Rejected, parse_event
from pipeline.core.config import CoreConfig
from pipeline.core.followups import CaseRecord
from pipeline.core.partitioner import partition_for
from pipeline.followup_rules import horizon_ms, load_rules
from pipeline.replay import Replay, with_now
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream.followups import FollowupStage, event_input
from pipeline.stream.outbox import FOLLOWUP_INPUTS, FOLLOWUPS, Outbox
from pipeline.stream.partition import PartitionProcessor
from tests.unit.stream.test_outbox import events

SCORING_RULES = load_scoring_rules()

PARTITIONS = 3
NOW_MS = 1_830_000_000_000


def comparable(cases: dict[str, CaseRecord]) -> dict[str, CaseRecord]:
    return {k: c._replace(version=0) for k, c in cases.items() if c.status != "withdrawn"}


def test_stage_equals_replay_with_a_restart_and_counts_transitions() -> None:
    lines = events(3000)
    config = with_now(CoreConfig(), NOW_MS)
    rules = load_rules()
    horizon = horizon_ms(rules, config.journeys.max_length_ms,
                         config.journeys.allowed_lateness_ms)
    replay = Replay(config, PARTITIONS, "t", 65536, followup_rules=rules)
    for number, line in enumerate(lines, start=1):
        replay.line(number, line)
    replay.keep(replay.engine.finish())
    want = comparable(replay.cases)
    assert len(want) >= 10

    procs = [PartitionProcessor(p, config, SCORING_RULES) for p in range(PARTITIONS)]
    outbox = Outbox(PARTITIONS, rules)
    rng = random.Random(7)
    inputs: dict[int, list[dict[str, object]]] = {p: [] for p in range(PARTITIONS)}
    since_flush = 0

    def flush() -> None:
        for record in outbox.drain().records:
            if record.role == FOLLOWUP_INPUTS:
                # one batch record per partition and flush, on its customers' partition
                assert record.key is None and record.partition is not None
                assert record.value is not None
                batch = json.loads(record.value)["b"]
                for message in batch:
                    customer = (message.get("j") or message.get("e"))[1]  # customer_id
                    assert partition_for(customer, PARTITIONS) == record.partition
                inputs[record.partition].extend(batch)

    for line in lines:
        with contextlib.suppress(Rejected):
            event = parse_event(line)
            p = partition_for(event.journey_key, PARTITIONS)
            out = procs[p].process(event, NOW_MS)
            if out.reject is None and not out.duplicate:
                wanted = event_input(event)
                if wanted is not None:
                    outbox.add_followup_input(*wanted)
            outbox.add_journey_output(p, out)
            since_flush += 1
            if since_flush >= rng.randint(1, 200):
                flush()
                since_flush = 0
    flush()

    got: dict[str, CaseRecord] = {}
    opened = 0
    for messages in inputs.values():
        stage = FollowupStage(rules, horizon)
        half = len(messages) // 2
        cases = list(stage.apply(messages[:half]))
        state = stage.dirty_state()
        restarted = FollowupStage(rules, horizon)  # a restart: state from the table
        resent = restarted.restore_keys(((k, json.loads(json.dumps(v))) for k, v in state if v),
                                stage.watermark)
        held = {case_id for customer in stage.tracker.customers.values()
                for case_id in customer.emitted}
        assert {c.case_id for c in resent} == held  # a restart re-sends every case it holds
        cases += resent
        for i in range(half, len(messages), 50):
            cases += restarted.apply(messages[i:i + 50])
        outbox.add_cases(cases)
        sent = [r for r in outbox.drain().records if r.role == FOLLOWUPS]
        assert len({r.key for r in sent}) == len(sent)  # one record per case per flush
        for case in cases:
            old = got.get(case.case_id)
            if old is None or case.version >= old.version:
                got[case.case_id] = case
        opened += sum(n for (change, _), n in stage.transitions.items() if change == "opened")
        opened += sum(n for (change, _), n in restarted.transitions.items()
                      if change == "opened")
    assert comparable(got) == want
    assert opened >= len(want)  # every case counted opened (a restart may count one again)
