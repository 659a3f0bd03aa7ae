"""The judge budget: a token bucket and a backlog bound; past them, fallback labels, never a queue."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from tribunal.consumers.aggregator.judge_budget import JudgeBudget, KafkaBacklogProbe, TokenBucket
from tribunal.consumers.aggregator.processor import AggregatorProcessor, PartitionState
from tribunal.core import kafka
from tribunal.core.errors import BrokerUnavailableError
from tribunal.core.records import Record
from tribunal.core.settings import Settings, load_settings
from tribunal.schemas import Item, Verdict, decode
from tribunal.schemas.messages import VoteBatch

T0 = 5_000.0


@pytest.mark.parametrize(
    ("rate", "burst", "times", "expected"),
    [
        (1.0, 1.0, [0.0, 0.1, 0.9, 1.0, 1.5, 2.0], [True, False, False, True, False, True]),
        (2.0, 2.0, [0.0, 0.0, 0.0, 0.5, 0.5], [True, True, False, True, False]),
        (10.0, 1.0, [0.0, 0.05, 0.1, 0.1], [True, False, True, False]),
    ],
)
def test_token_bucket(rate: float, burst: float, times: list[float], expected: list[bool]) -> None:
    """Tokens refill at `rate` per second up to `burst`; each admitted request spends one."""
    bucket = TokenBucket(rate, burst, updated_at=0.0)
    assert [bucket.take(t) for t in times] == expected


def test_token_bucket_rejects_nonsense() -> None:
    """A zero rate or a burst below one token is a configuration error."""
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(0.0, 1.0)


class Probe:
    def __init__(self, backlog: int) -> None:
        self.backlog = backlog
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        return self.backlog

    async def close(self) -> None:
        return None


async def test_gate_refuses_while_backlog_is_full_and_probes_at_most_once_a_second() -> None:
    """At max backlog nothing more is admitted until a probe shows the judge caught up."""
    probe = Probe(backlog=3)
    gate = JudgeBudget(load_settings(aggregator={"judge_max_backlog": 3}).aggregator, probe)
    await gate.refresh(T0)
    assert not gate.admit(T0)
    probe.backlog = 2
    await gate.refresh(T0 + 0.5)
    assert probe.calls == 1 and not gate.admit(T0 + 0.5)
    await gate.refresh(T0 + 1.0)
    assert gate.admit(T0 + 1.0) and not gate.admit(T0 + 1.0), "admitted requests count until the next probe"


def _settings(**aggregator: object) -> Settings:
    return load_settings(topics={"prefix": "b-"}, aggregator=aggregator)


async def _aggregator(settings: Settings) -> AggregatorProcessor:
    async def restore(numbers: set[int]) -> dict[int, PartitionState]:
        return {n: PartitionState() for n in numbers}

    processor = AggregatorProcessor(settings, settings.tasks(), restore=restore)
    await processor.assigned({TopicPartition("b-items", 0), TopicPartition("b-votes", 0)})
    return processor


def _vote(item_id: str, worker: str, label: str, confidence: float) -> Record[VoteBatch]:
    batch = VoteBatch(
        worker=worker, model="m", next_offset=0, votes=((item_id, "sentiment3", label, confidence, 0.0, None),)
    )
    return Record("b-votes", 0, 0, None, batch, 0, b"")


def _disagreement(item_id: str) -> list[Record[Item] | Record[VoteBatch]]:
    item = Item(id=item_id, text="t", task="sentiment3", produced_at=T0)
    votes = [
        _vote(item_id, w, label, c)
        for w, label, c in (("w1", "positive", 0.9), ("w2", "negative", 0.6), ("w3", "neutral", 0.5))
    ]
    return [Record("b-items", 0, 0, None, item, 0, b""), *votes]


async def test_over_budget_escalations_become_flagged_fallback_labels() -> None:
    """With a budget of 1/s, the second disagreement in the same second is labelled by plurality, flagged fallback."""
    processor = await _aggregator(_settings(judge_budget_per_s=1.0))
    first = await processor.process(_disagreement("a"), T0)
    second = await processor.process(_disagreement("b"), T0)
    assert [o.topic for o in first] == ["b-judge"]
    [label] = [decode(o.value, Verdict) for o in second]
    assert (label.decided_by.value, label.label, label.reason and label.reason.value) == (
        "fallback",
        "positive",
        "disagreement",
    )
    later = await processor.process(_disagreement("c"), T0 + 1.0)
    assert [o.topic for o in later] == ["b-judge"], "the budget refills"


async def test_weighted_policy_at_cold_start_decides_like_criterion1() -> None:
    """The weighted vote with only its prior accepts a 2-1 split and escalates a three-way split."""
    processor = await _aggregator(_settings(policy="weighted"))
    agreeing = _disagreement("x")[:3]  # item, w1 positive, w2 negative ...
    outputs = await processor.process(agreeing, T0)
    assert outputs == []
    [accepted] = await processor.process([_vote("x", "w3", "positive", 0.5)], T0)
    assert decode(accepted.value, Verdict).label == "positive" and decode(accepted.value, Verdict).policy == "weighted"
    [escalated] = await processor.process(_disagreement("y"), T0)
    assert escalated.topic == "b-judge"


class Hanging:
    """A client whose start never returns (a broker that accepts and then says nothing)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stops = 0

    async def start(self) -> None:
        self.started.set()
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.stops += 1


async def test_a_start_cancelled_midway_closes_its_client() -> None:
    """A task torn down while its client starts (the backlog probe at shutdown) leaves no
    half-open client behind: the cause of an "Unclosed AIOKafkaConnection" warning in CI."""
    client = Hanging()
    task = asyncio.create_task(kafka.start(client, load_settings().kafka))
    await asyncio.wait_for(client.started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.stops == 1


async def test_the_backlog_probe_never_replaces_a_started_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer whose start fails must not make the next call build (and leak) a second admin."""
    made: list[str] = []

    class Fake:
        def __init__(self, kind: str, fail: bool) -> None:
            self.kind, self.fail, self.closed = kind, fail, False
            made.append(kind)

        async def start(self) -> None:
            if self.fail:
                raise KafkaConnectionError("refused")

        async def stop(self) -> None:
            self.closed = True

        close = stop

    failures = iter([True, False])
    monkeypatch.setattr(kafka, "admin_client", lambda *a, **k: Fake("admin", False))
    monkeypatch.setattr(kafka, "consumer", lambda *a, **k: Fake("consumer", next(failures)))
    probe = KafkaBacklogProbe(load_settings(), "judges")
    with pytest.raises(BrokerUnavailableError):
        await probe._clients()
    await probe._clients()
    assert made == ["admin", "consumer", "consumer"]
    await probe.close()
