"""The lag the benchmarks wait on (`wait_caught_up`) and the worker reports covers every topic
the pipeline's consumer groups read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.app import create_app
from pipeline.settings import Settings
from pipeline.stream.lag import consumer_groups


def test_every_agent_topic_is_in_its_consumer_group(tmp_path: Path) -> None:
    settings = Settings.from_env({"PEAKEND_DATA_DIR": str(tmp_path), "PEAKEND_APP_ID": "lagged"})
    app: Any = create_app(settings, migrate=False)
    read = {topic for agent in app.agents.values() for topic in agent.channel.topics}
    assert len(read) == 4  # journey events, contributions, follow-up inputs, claims
    assert set(consumer_groups(settings)[settings.app_id]) == read
    assert consumer_groups(settings)["lagged-entry"] == [settings.topic_touchpoints]
