"""Message contracts and codecs: round trips, one error type for every kind of bad input."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from tribunal.schemas import DecodeContext, DecodeError, Item, JudgeRequest, Verdict, Vote, decode, encode, load_tasks
from tribunal.schemas.messages import DeadLetter, DecidedBy, EscalationReason

TASKS = load_tasks()
STRICT = DecodeContext(tasks=TASKS, max_text_chars=50, max_message_bytes=2_000)


def _vote(label: str | None = "positive", confidence: float = 0.9, reason: str | None = None) -> Vote:
    return Vote(
        item_id="i1", worker="w1", model="m", task="sentiment", label=label, confidence=confidence, reason=reason
    )


@pytest.mark.parametrize(
    "message",
    [
        Item(id="i1", text="hello", task="sentiment", metadata={"label": "positive", "n": 3}),
        _vote(),
        _vote(None, reason="timed out"),
        JudgeRequest(
            item=Item(id="i1", text="t"),
            votes=(_vote(),),
            reason=EscalationReason.DEADLINE,
            policy="p",
            policy_version=1,
        ),
        Verdict(
            item_id="i1",
            task="sentiment",
            label="negative",
            decided_by=DecidedBy.JUDGE,
            policy="p",
            policy_version=1,
            item_produced_at=1.0,
        ),
        DeadLetter(
            source_topic="items",
            partition=0,
            offset=5,
            value_b64="AAE=",
            error_kind="decode",
            error_message="x",
            tier="worker",
        ),
    ],
)
def test_round_trip(message: Item) -> None:
    """Every contract decodes to an equal model from its own encoding."""
    assert decode(encode(message), type(message), STRICT) == message


def test_messages_are_frozen_and_versioned() -> None:
    """Contracts are immutable and carry schema_version 1."""
    item = Item(id="i1", text="t")
    assert orjson.loads(encode(item))["schema_version"] == 1
    with pytest.raises(ValidationError):
        item.text = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff\x00garbage", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"id": "a"}', "text"),
        (b'{"id": "a", "text": "t", "colour": "red"}', "colour"),
        (b'{"id": "a", "text": "t", "schema_version": 2}', "schema_version"),
        (b'{"id": "", "text": "t"}', "id"),
        (orjson.dumps({"id": "a", "text": "x" * 51}), "51 characters"),
        (orjson.dumps({"id": "a", "text": "t", "task": "astrology"}), "unknown task"),
        (None, "tombstone"),
        (b"{" + b" " * 3_000 + b"}", "more than the limit"),
    ],
)
def test_bad_items_raise_decode_error_saying_why(raw: bytes | None, fragment: str) -> None:
    """Each kind of bad input raises DecodeError naming the problem."""
    with pytest.raises(DecodeError, match=fragment):
        decode(raw, Item, STRICT)


def test_label_outside_task_label_set_is_rejected() -> None:
    """A vote or verdict whose label is not in its task's label set does not decode."""
    bad_vote = encode(_vote("meh"))
    with pytest.raises(DecodeError, match="not in the label set"):
        decode(bad_vote, Vote, STRICT)
    verdict = Verdict(
        item_id="i",
        task="sentiment",
        label="meh",
        decided_by=DecidedBy.WORKERS,
        policy="p",
        policy_version=1,
        item_produced_at=0,
    )
    with pytest.raises(DecodeError, match="not in the label set"):
        decode(encode(verdict), Verdict, STRICT)


def test_confidence_must_be_a_probability() -> None:
    """Confidence outside [0, 1] is invalid."""
    with pytest.raises(ValidationError):
        _vote(confidence=1.5)


def test_gold_label_comes_from_metadata() -> None:
    """An item's gold label is metadata['label'] when it is a string."""
    assert Item(id="a", text="t", metadata={"label": "positive"}).gold == "positive"
    assert Item(id="a", text="t", metadata={"label": 3}).gold is None
