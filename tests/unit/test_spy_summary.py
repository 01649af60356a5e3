"""bench/spy_summary.py: py-spy's raw stacks turned into the stage shares docs/benchmarks.md
prints (`bench/run_all.py`, "Where the time goes")."""

from __future__ import annotations

from pathlib import Path

from bench import spy_summary

ROOT = "/work/main"
LOOP = "BaseEventLoop._run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:80)"
ROUTE = f"EntryStage._run_once ({ROOT}/pipeline/stream/entry.py:218);Router.route ({ROOT}/pipeline/stream/entry.py:115)"  # noqa: E501
PROFILE = "\n".join([
    # the entry stage validating: peakend's own work, under the entry stage's rule
    f"{LOOP};{ROUTE};parse_event ({ROOT}/pipeline/contract/parser.py:443) 30",
    # the entry stage in aiokafka (no Router.route on the stack): not peakend's own work
    f"{LOOP};EntryStage._run_once ({ROOT}/pipeline/stream/entry.py:230);"
    "AIOKafkaConsumer.getmany (aiokafka/consumer/consumer.py:1200) 10",
    # stage one's state write: the state-writes stage comes first in the rules
    f"{LOOP};AgentLoop.settle ({ROOT}/pipeline/stream/agent_loop.py:171);"
    f"JourneysAgent.write_state ({ROOT}/pipeline/stream/agents.py:149);"
    f"encode ({ROOT}/pipeline/stream/state_writer.py:51) 20",
    # the segment stage computing the state it writes, under Faust's agent frame: a state write
    f"{LOOP};Agent._execute_actor (faust/agents/agent.py:698);"
    f"AgentLoop.run ({ROOT}/pipeline/stream/agent_loop.py:199);"
    f"AgentLoop.settle ({ROOT}/pipeline/stream/agent_loop.py:171);"
    f"SegmentsAgent.write_state ({ROOT}/pipeline/stream/agents.py:217);"
    f"SegmentStage.dirty_state ({ROOT}/pipeline/stream/segments.py:243) 5",
    # the event loop waiting
    f"{LOOP};EpollSelector.select (selectors.py:468) 40",
    "",
])


def test_samples_go_to_the_first_stage_on_their_stack_and_peakend_work_is_counted(
        tmp_path: Path) -> None:
    path = tmp_path / "worker.txt"
    path.write_text(PROFILE)
    summary = spy_summary.read(path)
    assert summary.total == 105
    assert summary.stages == {
        "entry stage: validate, place, encode (peakend)": 30,
        "entry stage: aiokafka consume, produce, commit": 10,
        "state writes: dump state, Faust tables, RocksDB": 25,
        spy_summary.EPOLL: 40,
    }
    assert summary.own["pipeline.contract.parser"] == 30
    assert summary.own["aiokafka"] == 10
    # validation and the state writes; not the aiokafka read, not the event loop
    assert spy_summary.peakend_share(summary) == 55 / 105
    assert summary.inclusive["pipeline.stream.entry.Router.route"] == 30
    # self time by the function a sample ends in
    assert summary.functions["pipeline.stream.state_writer.encode"] == 20
    assert summary.functions["pipeline.stream.segments.SegmentStage.dirty_state"] == 5
    assert summary.functions["pipeline.contract.parser.parse_event"] == 30
