"""The judge's outputs without Kafka: verdicts, fallbacks that still label, audits kept apart."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import orjson
import pytest

from tribunal.consumers.classifiers.base import Prediction
from tribunal.consumers.judge import JudgeProcessor, wilson_interval
from tribunal.consumers.verdicts import fallback_verdict
from tribunal.consumers.worker import WorkerProcessor
from tribunal.core.errors import FatalError, ServerUnavailableError
from tribunal.core.records import Record
from tribunal.core.settings import load_settings
from tribunal.schemas import Item, JudgeRequest, Vote, decode, encode, load_tasks
from tribunal.schemas.messages import DeadLetter, EscalationReason, Verdict, VoteBatch

TASKS = load_tasks()
SETTINGS = load_settings(topics={"prefix": "j-"}, runtime={"retries": 0, "retry_backoff_ms": 0})


class Scripted:
    """Answers per item text: a label, or raises for 'poison'."""

    model_id = "judge-model"

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        if any(i.text == "poison" for i in items):
            raise RuntimeError("engine hiccup")
        return [Prediction("negative", 0.95, latency_ms=40.0) for _ in items]

    async def close(self) -> None:
        return None


def _vote(worker: str, label: str | None, confidence: float = 0.8) -> Vote:
    return Vote(item_id="i", worker=worker, model="m", task="sentiment", label=label, confidence=confidence)


def _record(
    text: str, reason: EscalationReason, votes: tuple[Vote, ...] = (), partition: int | None = 4
) -> Record[JudgeRequest]:
    ticket = "t1" if partition is not None else None
    request = JudgeRequest(item=Item(id="i", text=text, task="sentiment", metadata={"label": "negative"}),
                           votes=votes, reason=reason, policy="criterion1", policy_version=1,
                           partition=partition, ticket=ticket)  # fmt: skip
    return Record("j-judge", 1, 7, b"i", request, 0, encode(request))


async def test_judge_verdict_carries_votes_and_latency() -> None:
    """A judged item gets decided_by=judge with the workers' votes and the judge's latency."""
    votes = (_vote("w1", "positive"), _vote("w2", "negative"))
    outputs = await JudgeProcessor(SETTINGS, Scripted(), TASKS).process(
        [_record("fine", EscalationReason.DISAGREEMENT, votes)], 0
    )
    [output] = [o for o in outputs if o.topic == "j-verdicts"]
    verdict = decode(output.value, Verdict)
    assert (output.partition, output.key, verdict.ticket) == (4, b"i", "t1"), "back to the escalating aggregator"
    assert (verdict.label, verdict.decided_by.value, verdict.gold, verdict.judge_latency_ms) == (
        "negative",
        "judge",
        "negative",
        40.0,
    )
    assert verdict.votes == votes and verdict.reason == EscalationReason.DISAGREEMENT


async def test_permanent_failure_dead_letters_and_still_labels_by_plurality() -> None:
    """A request the judge cannot settle goes to judge.dlq with its bytes AND gets a fallback label."""
    votes = (_vote("w1", "positive"), _vote("w2", "positive", 0.6), _vote("w3", "negative"))
    record = _record("poison", EscalationReason.DEADLINE, votes)
    outputs = await JudgeProcessor(SETTINGS, Scripted(), TASKS).process([record], 0)
    by_topic = {o.topic: o for o in outputs}
    letter = decode(by_topic["j-judge.dlq"].value, DeadLetter)
    assert letter.value_b64 is not None and base64.b64decode(letter.value_b64) == record.raw
    assert (letter.partition, letter.offset, letter.error_kind) == (1, 7, "judge_failed")
    verdict = decode(by_topic["j-verdicts"].value, Verdict)
    assert (verdict.label, verdict.decided_by.value, verdict.ticket) == ("positive", "fallback", "t1")


async def test_a_request_naming_no_partition_gets_a_verdict_routed_by_key() -> None:
    """A request without partition or ticket (a judge-only run) is still judged; the key routes its verdict."""
    outputs = await JudgeProcessor(SETTINGS, Scripted(), TASKS).process(
        [_record("fine", EscalationReason.DISAGREEMENT, partition=None)], 0
    )
    [output] = [o for o in outputs if o.topic == "j-verdicts"]
    assert output.partition is None and decode(output.value, Verdict).ticket is None


async def test_a_request_naming_a_partition_that_does_not_exist_is_dead_lettered_unjudged() -> None:
    """A request routed beyond the verdicts topic's partitions would fail the transaction: it is poison."""
    partitions = SETTINGS.topics.partitions
    outputs = await JudgeProcessor(SETTINGS, Scripted(), TASKS).process(
        [_record("fine", EscalationReason.DISAGREEMENT, partition=partitions)], 0
    )
    [letter] = [decode(o.value, DeadLetter) for o in outputs if o.topic == "j-judge.dlq"]
    assert letter.error_kind == "bad_partition"
    assert not [o for o in outputs if o.topic == "j-verdicts"]


def test_fallback_without_votes_is_marked_as_carrying_no_information() -> None:
    """With no usable vote, the fallback still labels the item, with confidence 0."""
    request = _record("x", EscalationReason.DEADLINE, (_vote("w1", None),)).value
    verdict = fallback_verdict(request, TASKS)
    assert verdict.decided_by.value == "fallback" and verdict.confidence == 0.0
    assert verdict.label in TASKS.get("sentiment").labels


async def test_audit_verdicts_go_to_audits_never_to_labels() -> None:
    """An audit re-check is recorded in `audits`; a failed audit produces no fallback label."""
    judge = JudgeProcessor(SETTINGS, Scripted(), TASKS)
    ok = await judge.process([_record("fine", EscalationReason.AUDIT)], 0)
    assert sorted(o.topic for o in ok) == ["j-audits", "j-reliability"]
    failed = await judge.process([_record("poison", EscalationReason.AUDIT)], 0)
    assert [o.topic for o in failed] == ["j-judge.dlq"]


async def test_judge_labels_teach_reliability_per_task_and_partition() -> None:
    """Each judged item's votes are counted against the judge's label, written under key task|partition."""
    votes = (_vote("w1", "negative"), _vote("w2", "positive"))
    outputs = await JudgeProcessor(SETTINGS, Scripted(), TASKS).process(
        [_record("x", EscalationReason.DISAGREEMENT, votes)], 0
    )
    [counts] = [o for o in outputs if o.topic == "j-reliability"]
    assert counts.key == b"sentiment|1"
    snapshot = orjson.loads(counts.value or b"{}")
    assert snapshot["counts"]["w1"]["negative"] == {"negative": 1}
    assert snapshot["counts"]["w2"]["negative"] == {"positive": 1}


def test_wilson_interval_brackets_the_proportion() -> None:
    """The audit precision interval contains the observed share and narrows with more audits."""
    low, high = wilson_interval(45, 50)
    assert low < 0.9 < high
    wide = wilson_interval(9, 10)
    assert wide[1] - wide[0] > high - low
    assert wilson_interval(0, 0) == (0.0, 1.0)


class Unavailable(Scripted):
    """A model server that is down: its client already retried, or its breaker is open."""

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        raise ServerUnavailableError("circuit open after 5 consecutive failures")


async def test_an_unavailable_model_server_stops_the_judge_without_fallbacks() -> None:
    """No fallback labels and no dead letters for an outage: the judge exits (FatalError) and
    the batch is judged again after the restart, from the last commit."""
    with pytest.raises(FatalError, match="model server unavailable"):
        await JudgeProcessor(SETTINGS, Unavailable(), TASKS).process(
            [_record("fine", EscalationReason.DISAGREEMENT)], 0
        )


async def test_an_unavailable_model_server_makes_a_worker_abstain() -> None:
    """A worker abstains for the batch instead: the aggregator's quorum or deadline decides."""
    settings = load_settings(topics={"prefix": "j-"}, worker={"name": "w9"})
    item = Item(id="i", text="fine", task="sentiment")
    record = Record("j-items", 0, 3, b"i", item, 0, encode(item))
    [output] = await WorkerProcessor(settings, Unavailable(), TASKS).process([record], 0)
    [vote] = decode(output.value, VoteBatch).expand()
    assert vote.label is None and "model server unavailable" in (vote.reason or "")
