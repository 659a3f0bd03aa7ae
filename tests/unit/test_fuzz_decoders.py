"""Every decoder of bytes from outside, fuzzed: it returns a model or raises DecodeError (ingest: an
item or a rejected line), nothing else, quickly, whatever it is given.

Inputs are arbitrary bytes, arbitrary JSON, and valid messages with one field replaced by a hostile
value (huge or non-finite numbers, deep nesting, odd unicode, wrong types, extra fields).
"""

from __future__ import annotations

import contextlib
import io
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tribunal.consumers.policy.reliability import Reliability
from tribunal.consumers.tables.reliability import _absorb_record, decode_snapshot
from tribunal.core.intake import admit
from tribunal.producers.ingest import Rejected, parse_lines
from tribunal.schemas import DecodeContext, DecodeError, Item, JudgeRequest, Verdict, Vote, decode, encode, load_tasks
from tribunal.schemas.messages import AggregatorLog, DeadLetter, DecidedBy, EscalationReason, VoteBatch

CONTEXT = DecodeContext(tasks=load_tasks(), max_text_chars=2_000, max_message_bytes=20_000)
# Per decoder and input family; each example must finish within the deadline (the time bound).
FUZZ = settings(max_examples=150, deadline=timedelta(seconds=1), suppress_health_check=[HealthCheck.too_slow])

_VOTE = Vote(item_id="i", worker="w1", model="m", task="sentiment", label="positive", confidence=0.5)
_ITEM = Item(id="i", text="some text", task="sentiment", metadata={"label": "positive", "n": 1})
_REQUEST = JudgeRequest(item=_ITEM, votes=(_VOTE,), reason=EscalationReason.DEADLINE, policy="p", policy_version=1,
                        partition=0, ticket="t")  # fmt: skip
_VERDICT = Verdict(item_id="i", task="sentiment", label="negative", decided_by=DecidedBy.JUDGE, votes=(_VOTE,),
                   policy="p", policy_version=1, item_produced_at=1.0, ticket="t")  # fmt: skip
_BATCH = VoteBatch(worker="w1", model="m", next_offset=3, votes=(("i", "sentiment", "positive", 0.5, 1.0, None),))
_LOG = AggregatorLog(items_to=3, votes_to=4, decided=(("i", 1.0),), escalated=(("j", "t", 2.0),))
_LETTER = DeadLetter(source_topic="items", partition=0, offset=1, value_b64="", value_bytes=0, error_kind="decode",
                     error_message="x", tier="t")  # fmt: skip
SAMPLES: dict[type[BaseModel], BaseModel] = {
    Item: _ITEM,
    Vote: _VOTE,
    JudgeRequest: _REQUEST,
    Verdict: _VERDICT,
    VoteBatch: _BATCH,
    AggregatorLog: _LOG,
    DeadLetter: _LETTER,
}
MODELS = list(SAMPLES)

hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=3_000),
    st.sampled_from(["", " ", "\x00", "\u2028", "💥" * 300, "positive", "age_limit", "sentiment", "intent", "i"]),
)
json_values = st.recursive(
    hostile_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def _check(data: bytes | None, model: type[BaseModel]) -> None:
    try:
        value = decode(data, model, CONTEXT)
    except DecodeError:
        return
    assert isinstance(value, model)
    encoded = encode(value)  # whatever decodes can be written back out, within the record limit
    assert len(encoded) <= CONTEXT.limit_for(model)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(data=st.binary(max_size=2_000))
def test_arbitrary_bytes(model: type[BaseModel], data: bytes) -> None:
    """Random bytes: a model or DecodeError."""
    _check(data, model)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(value=json_values)
def test_arbitrary_json(model: type[BaseModel], value: Any) -> None:
    """Any JSON document: a model or DecodeError."""
    _check(orjson.dumps(value), model)


def _mutate(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    out = dict(data)
    if len(path) == 1 or not isinstance(out.get(path[0]), dict):
        out[path[0]] = value
    else:
        out[path[0]] = _mutate(out[path[0]], path[1:], value)
    return out


@st.composite
def hostile_messages(draw: st.DrawFn, model: type[BaseModel]) -> bytes:
    """A valid message of `model` with one (possibly nested) field replaced or added."""
    data = orjson.loads(encode(SAMPLES[model]))
    fields = [[k] for k in data] + [[k, sub] for k, v in data.items() if isinstance(v, dict) for sub in v]
    path = draw(st.sampled_from([*fields, ["extra"], ["item", "metadata", "label"]]))
    return orjson.dumps(_mutate(data, path, draw(json_values)))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(data=st.data())
def test_valid_but_hostile_json(model: type[BaseModel], data: st.DataObject) -> None:
    """A well-formed message with one hostile field: a model or DecodeError."""
    _check(data.draw(hostile_messages(model)), model)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_deep_nesting_and_huge_numbers(model: type[BaseModel]) -> None:
    """Nesting beyond any parser's patience, and numbers beyond floats, are refused, not crashes."""
    for raw in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        b'{"id": "i", "text": "t", "metadata": {"x": ' + b"[" * 600 + b"]" * 600 + b"}}",
        b'{"id": 1e999}',
        b'{"id": "i", "text": "t", "produced_at": 1e308}',
        b'{"item_id": "i", "confidence": 1' + b"0" * 5_000 + b"}",
    ):
        _check(raw, model)


@FUZZ
@given(key=st.none() | st.binary(max_size=300), value=st.none() | st.binary(max_size=500), partition=st.integers(0, 5))
def test_admission_with_any_key(key: bytes | None, value: bytes | None, partition: int) -> None:
    """The runtime's gate (size, decode, key, partition) only ever raises DecodeError."""
    for model in (Item, VoteBatch, JudgeRequest, Verdict):
        with contextlib.suppress(DecodeError):
            admit(value, key, partition, model, CONTEXT, 6)


@FUZZ
@given(value=st.binary(max_size=1_000) | json_values.map(orjson.dumps))
def test_reliability_snapshots(value: bytes) -> None:
    """A reliability changelog record restores into Reliability counts or raises DecodeError."""
    try:
        snapshot = decode_snapshot(value)
    except DecodeError:
        return
    Reliability.from_dict(snapshot, labels=("positive", "negative"))


@FUZZ
@given(
    record_key=st.none() | st.binary(max_size=40) | st.text(max_size=20).map(lambda t: f"sentiment|{t}".encode()),
    value=st.none() | st.binary(max_size=200) | json_values.map(orjson.dumps),
)
@example(record_key="sentiment|²".encode(), value=orjson.dumps(Reliability(("a", "b")).to_dict()))
@example(record_key=b"sentiment|1", value=b"[]")
def test_reliability_changelog_records(record_key: bytes | None, value: bytes | None) -> None:
    """Any record on the reliability topic is absorbed or skipped (counted), never an exception."""
    snapshots: dict[tuple[str, int], dict[str, object]] = {}
    _absorb_record(snapshots, record_key, value)
    for snapshot in snapshots.values():
        Reliability.from_dict(snapshot)


@st.composite
def files(draw: st.DrawFn) -> bytes:
    """Lines of JSON-ish or CSV-ish text with hostile bytes mixed in."""
    pieces = st.one_of(
        st.binary(max_size=60),
        json_values.map(orjson.dumps),
        st.sampled_from([b"\n", b"\r", b"\r\n", b'"', b",", b"\xff", b"\xe9", b"id,text\n", b'{"text": "t"}']),
    )
    return b"".join(draw(st.lists(pieces, max_size=30)))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@FUZZ
@given(data=files())
def test_ingest_parsing(fmt: str, data: bytes) -> None:
    """Whatever a file holds, parsing yields items or rejected lines with positive line numbers, in order."""
    lines = data.count(b"\n") + 1
    numbers = []
    for number, result in parse_lines(io.BytesIO(data), fmt, "sentiment", CONTEXT):
        assert isinstance(result, Item | Rejected)
        assert 1 <= number <= lines
        numbers.append(number)
    assert numbers == sorted(numbers)
