"""The aggregator's reliability follower starts one consumer, however often it is started: the
aggregator starts it on every partition assignment, and each rebalance made a new consumer while
the old one, never stopped, kept its connections open."""

from __future__ import annotations

from typing import Any

import pytest

from tribunal.consumers.tables.reliability import ReliabilityTotals
from tribunal.core import kafka
from tribunal.core.settings import load_settings


class FakeConsumer:
    def __init__(self) -> None:
        self.started = self.stopped = 0
        self.topics: list[str] = []

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    def subscribe(self, topics: list[str]) -> None:
        self.topics = topics


async def test_starting_again_keeps_the_one_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeConsumer] = []

    def consumer(*args: Any, **kwargs: Any) -> FakeConsumer:
        made.append(FakeConsumer())
        return made[-1]

    monkeypatch.setattr(kafka, "consumer", consumer)  # the module reliability_feed calls through
    settings = load_settings(topics={"prefix": "rf-"})
    follower = ReliabilityTotals(settings, settings.tasks())

    await follower.start()
    await follower.start()  # a second assignment
    assert len(made) == 1 and made[0].started == 1
    assert made[0].topics == [settings.topics.reliability_topic]

    await follower.stop()
    await follower.start()  # stopped, then started again: a fresh one
    assert [c.stopped for c in made] == [1, 0] and len(made) == 2
