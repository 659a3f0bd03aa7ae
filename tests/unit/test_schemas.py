"""Message contracts and codecs: round trips, one error type for every kind of bad input."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from tribunal.schemas import DecodeContext, DecodeError, Item, JudgeRequest, Verdict, Vote, decode, encode, load_tasks
from tribunal.schemas.codec import REENCODE_SLACK_BYTES
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
            value_bytes=2,
            value_sha256="ab" * 32,
            error_kind="decode",
            error_message="x",
            tier="worker",
        ),
        DeadLetter(
            source_topic="votes", partition=1, offset=None, value_b64=None, error_kind="x", error_message="", tier="t"
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
        (b"", "empty"),
        (b"{" + b" " * 3_000 + b"}", "more than the limit"),
        (orjson.dumps({"id": "a", "text": "t", "metadata": {"label": "bogus"}}), "not in the label set"),
        (orjson.dumps({"id": "a", "text": "t", "metadata": {"label": 1}}), "metadata.label must be a string"),
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
    """An item's gold label is metadata['label']; absent or null means unlabelled."""
    assert Item(id="a", text="t", metadata={"label": "positive"}).gold == "positive"
    assert Item(id="a", text="t", metadata={"label": None}).gold is None
    assert Item(id="a", text="t").gold is None


def test_decode_errors_name_their_kind() -> None:
    """A tombstone, an empty value and an oversized record are told apart (operators count them apart)."""
    kinds = []
    for raw in (None, b"", b"{" + b" " * 3_000 + b"}", b"{oops"):
        with pytest.raises(DecodeError) as caught:
            decode(raw, Item, STRICT)
        kinds.append(caught.value.kind)
    assert kinds == ["tombstone", "empty", "oversize", "decode"]


def test_the_key_counts_towards_the_size_limit() -> None:
    """A record within the limit on its own, but not with its key, is oversized."""
    raw = encode(Item(id="a", text="t"))
    decode(raw, Item, STRICT, key_bytes=STRICT.max_message_bytes - len(raw))
    with pytest.raises(DecodeError, match="more than the limit"):
        decode(raw, Item, STRICT, key_bytes=STRICT.max_message_bytes - len(raw) + 1)


def test_records_that_grow_beyond_the_limit_when_re_encoded_are_oversized() -> None:
    """`1E15` re-encodes as `1000000000000000.0`: an item under the limit as sent, over it once a
    tier copies it into a request, is refused up front."""
    context = DecodeContext(max_message_bytes=10_000)
    numbers = b",".join([b"1E15"] * 1_000)
    raw = b'{"id":"a","text":"t","metadata":{"n":[' + numbers + b"]}}"
    assert len(raw) < context.max_message_bytes < len(encode(decode(raw, Item))) - REENCODE_SLACK_BYTES
    with pytest.raises(DecodeError, match="once re-encoded") as caught:
        decode(raw, Item, context)
    assert caught.value.kind == "oversize"
    lean = orjson.dumps({"id": "a", "text": "t", "metadata": {"pad": "x" * 9_950}})
    assert len(lean) <= context.max_message_bytes < len(encode(decode(lean, Item))), "defaults add a few bytes"
    decode(lean, Item, context)


def test_derived_records_get_the_headroom() -> None:
    """A judge request holding an item of the full size (plus votes) still decodes."""
    item = Item(id="i", text="t", metadata={"pad": "x" * (STRICT.max_message_bytes - 120)})
    assert len(encode(item)) <= STRICT.max_message_bytes
    request = JudgeRequest(item=item, votes=(_vote(),), reason=EscalationReason.DEADLINE, policy="p", policy_version=1)
    assert len(encode(request)) > STRICT.max_message_bytes
    assert decode(encode(request), JudgeRequest, STRICT) == request


def test_key_must_be_the_item_id() -> None:
    """Every contract about an item is keyed by its id; any other key (or none) is refused."""
    from tribunal.schemas.codec import check_key

    check_key(Item(id="a", text="t"), b"a")
    for wrong in (b"b", None, b"a "):
        with pytest.raises(DecodeError) as caught:
            check_key(Item(id="a", text="t"), wrong)
        assert caught.value.kind == "key_mismatch"
    check_key(_vote(), b"i1")
    with pytest.raises(DecodeError):
        check_key(_vote(), b"other")
