"""Shared helpers of the aggregator's unit tests: settings, a processor without Kafka, records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aiokafka import TopicPartition

from tribunal.consumers.aggregator.processor import AggregatorProcessor, PartitionState
from tribunal.consumers.verdicts import verdict_for
from tribunal.core.batches import Output
from tribunal.core.records import Record
from tribunal.core.settings import Settings, load_settings
from tribunal.schemas.codec import decode, encode
from tribunal.schemas.messages import (
    AggregatorLog,
    DeadLetter,
    DecidedBy,
    Item,
    JudgeRequest,
    Verdict,
    VoteBatch,
)
from tribunal.schemas.tasks import BUNDLED_TASKS_FILE

T0 = 1_000_000.0
ITEMS, VOTES, VERDICTS = TopicPartition("u-items", 0), TopicPartition("u-votes", 0), TopicPartition("u-verdicts", 0)


def aggregator_settings(**aggregator: object) -> Settings:
    """Criterion 1 unless said otherwise: these tests are about the bookkeeping around a policy."""
    return load_settings(
        topics={"prefix": "u-"},
        aggregator={
            "policy": "criterion1",
            "deadline_ms": 1_000,
            "ceiling_ms": 10_000,
            "max_wait_ms": 30_000,
            "decided_window_s": 60,
            **aggregator,
        },
    )


class Members:
    """Group membership as a test scripts it: the workers with a live member on every partition."""

    def __init__(self, live: set[str]) -> None:
        self.alive = live

    def live(self, worker: str, partition: int) -> bool | None:
        return worker in self.alive

    async def refresh(self, now: float) -> None:
        return None

    async def close(self) -> None:
        return None


async def new_processor(
    settings: Settings | None = None, restored: dict[int, PartitionState] | None = None, members: Members | None = None
) -> AggregatorProcessor:
    async def restore(numbers: set[int]) -> dict[int, PartitionState]:
        states = restored or {}
        return {n: states.get(n, PartitionState()) for n in numbers}

    settings = settings or aggregator_settings()
    processor = AggregatorProcessor(settings, settings.tasks(), restore=restore, members=members, clock=lambda: T0)
    await processor.assigned({ITEMS, VOTES, VERDICTS})
    return processor


def item_record(item_id: str = "a", gold: str | None = None, offset: int = 0) -> Record[Item]:
    item = Item(id=item_id, text="text", task="sentiment", metadata={"label": gold} if gold else {}, produced_at=T0)
    return Record("u-items", 0, offset, item_id.encode(), item, 0, b"")


def batch_record(
    worker: str,
    rows: Sequence[tuple[str, str | None, float]],
    offset: int = 0,
    position: int = 0,
    task: str = "sentiment",
) -> Record[VoteBatch]:
    """A worker's VoteBatch at votes offset `offset`, claiming items below `position`."""
    votes = tuple((item_id, task, label, confidence, 1.0, None) for item_id, label, confidence in rows)
    batch = VoteBatch(worker=worker, model=f"m-{worker}", next_offset=position, votes=votes, voted_at=T0)
    return Record("u-votes", 0, offset, worker.encode(), batch, 0, encode(batch))


def vote_record(
    worker: str,
    label: str | None,
    item_id: str = "a",
    confidence: float = 0.8,
    offset: int = 0,
    task: str = "sentiment",
) -> Record[VoteBatch]:
    return batch_record(worker, [(item_id, label, confidence)], offset, task=task)


def verdict_record(request: JudgeRequest, label: str = "positive", ticket: str | None = "same") -> Record[Verdict]:
    verdict = verdict_for(request, label, 0.9, DecidedBy.JUDGE, 10.0)
    if ticket != "same":
        verdict = verdict.model_copy(update={"ticket": ticket})
    return Record("u-verdicts", request.partition or 0, 5, request.item.id.encode(), verdict, 0, encode(verdict))


def letters_on(outputs: list[Output], topic: str) -> list[DeadLetter]:
    return [decode(o.value, DeadLetter) for o in outputs_on(outputs, f"{topic}.dlq")]


async def tick(processor: AggregatorProcessor, now: float) -> list[Output]:
    """The runtime's end of a batch: every input read to its end, then the tick."""
    processor.read_to_end({ITEMS, VOTES}, now)
    return await processor.tick(now)


def outputs_on(outputs: list[Output], topic: str) -> list[Output]:
    return [o for o in outputs if o.topic == topic]


def requests_in(outputs: list[Output]) -> list[JudgeRequest]:
    return [decode(o.value, JudgeRequest) for o in outputs_on(outputs, "u-judge")]


async def escalated(processor: AggregatorProcessor, item_id: str = "a") -> JudgeRequest:
    outputs = await processor.process(
        [
            item_record(item_id),
            vote_record("w1", "negative", item_id),
            vote_record("w2", None, item_id),
            vote_record("w3", "positive", item_id),
        ],
        T0,
    )
    [request] = requests_in(outputs)
    return request


def replayed_state(outputs: list[Output], logged_at: float = T0) -> PartitionState:
    """A partition's state restored from the log records among `outputs`."""
    state = PartitionState()
    for entry in outputs_on(outputs, "u-aggregator-decided"):
        state.replay(decode(entry.value, AggregatorLog), T0 - 60, logged_at)
    return state


def tasks_with(tmp_path: Path, extra: str) -> Path:
    """The bundled tasks file with `extra` lines added to the sentiment task."""
    text = BUNDLED_TASKS_FILE.read_text().replace("[tasks.sentiment]\n", f"[tasks.sentiment]\n{extra}\n", 1)
    # The shipped calibrations stay where they are (their paths are relative to the tasks file).
    text = text.replace('calibration = "calibrations/', f'calibration = "{BUNDLED_TASKS_FILE.parent}/calibrations/')
    path = tmp_path / "tasks.toml"
    path.write_text(text)
    return path
