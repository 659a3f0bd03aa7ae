"""The published JSON Schemas: current, compatible with what was published, and true to the wire."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import jsonschema
import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field

from tribunal.schemas.codec import encode
from tribunal.schemas.contracts import CONTRACTS_DIR, MESSAGES, breaking_changes, json_schemas
from tribunal.schemas.messages import (
    AggregatorLog,
    DeadLetter,
    DecidedBy,
    EscalationReason,
    Item,
    JudgeRequest,
    Message,
    Verdict,
    Vote,
    VoteBatch,
)


def _published(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONTRACTS_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return data


def test_no_change_breaks_a_published_contract() -> None:
    """The models still accept every record the shipped schemas accept (the BACKWARD rule of
    schemas/contracts.py): a breaking change needs a new topic, not an edit."""
    for name, schema in json_schemas().items():
        assert breaking_changes(_published(name), schema) == [], name


def test_the_shipped_schemas_are_the_models_own() -> None:
    """Compatible changes must be published too: run `make contracts` and commit."""
    assert sorted(p.name for p in CONTRACTS_DIR.glob("*.schema.json")) == sorted(f"{n}.schema.json" for n in MESSAGES)
    for name, schema in json_schemas().items():
        assert _published(name) == json.loads(json.dumps(schema)), f"{name}: run `make contracts`"


VOTE = Vote(item_id="i1", worker="w1", model="m", task="intent", label="card_arrival", confidence=0.9)
SAMPLES: list[Message] = [
    Item(id="i1", text="Where is my card?", task="intent", metadata={"label": "card_arrival", "n": 3}),
    VoteBatch(worker="w1", model="tfidf:x", next_offset=7, votes=(("i1", "intent", "card_arrival", 0.9, 0.2, None),)),
    JudgeRequest(
        item=Item(id="i1", text="t"),
        votes=(VOTE,),
        reason=EscalationReason.DISAGREEMENT,
        policy="target",
        policy_version=3,
        audit_rate=0.02,
        partition=1,
        ticket="t-1",
    ),
    Verdict(
        item_id="i1",
        task="intent",
        label="card_arrival",
        decided_by=DecidedBy.WORKERS,
        votes=(VOTE,),
        policy="target",
        policy_version=3,
        item_produced_at=1.0,
        audit_rate=0.02,
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
    AggregatorLog(items_to=10, votes_to=4, decided=(("i1", 2.0),), escalated=(("i2", "t-9", 2.5),)),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_records_on_the_wire_satisfy_their_published_schema(message: Message) -> None:
    schema = _published(type(message).__name__)
    record = orjson.loads(encode(message))
    jsonschema.validate(record, schema)
    with pytest.raises(jsonschema.ValidationError):  # messages forbid unknown fields; so do the schemas
        jsonschema.validate({**record, "surprise": 1}, schema)


class _Old(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    name: str = Field(max_length=64)
    kind: Literal["a", "b"] = "a"
    size: int = Field(default=0, ge=0)
    note: str | None = None


def _breaks(**changes: Any) -> list[str]:
    fields: dict[str, Any] = {
        "schema_version": (Literal[1], 1), "name": (str, Field(max_length=64)),
        "kind": (Literal["a", "b"], "a"), "size": (int, Field(default=0, ge=0)), "note": (str | None, None),
    }  # fmt: skip
    fields.update(changes)
    fields = {k: v for k, v in fields.items() if v is not None}
    from pydantic import create_model

    new = create_model("_New", __config__=ConfigDict(extra="forbid"), **fields)
    return breaking_changes(_Old.model_json_schema(), new.model_json_schema())


@pytest.mark.parametrize(
    ("changes", "broken"),
    [
        ({}, ""),
        ({"extra": (int, 5)}, ""),  # a new optional field
        ({"name": (str, Field(max_length=128))}, ""),  # a looser bound
        ({"kind": (Literal["a", "b", "c"], "a")}, ""),  # a new literal value
        ({"schema_version": (Literal[1, 2], 2)}, ""),  # a new version that still reads version 1
        ({"size": (int | str, 0)}, ""),  # a wider type
        ({"note": None}, "$.note: field removed"),
        ({"extra": (int, ...)}, "$.extra: field now required"),
        ({"size": (int, ...)}, "$.size: field now required"),
        ({"name": (str, Field(max_length=32))}, "maxLength tightened from 64 to 32"),
        ({"size": (int, Field(default=0, ge=1))}, "minimum tightened from 0 to 1"),
        ({"kind": (Literal["a"], "a")}, '$.kind: value "b" no longer accepted'),
        ({"schema_version": (Literal[2], 2)}, "$.schema_version: value 1 no longer accepted"),
        ({"size": (str, "0")}, "$.size: type integer no longer accepted"),
        ({"note": (str, Field(default="", pattern="^x"))}, "$.note: type null no longer accepted"),
        ({"size": (float, 0.0)}, ""),  # every integer is a number
        ({"name": (Literal["x", "y"], ...)}, "$.name: now limited to the values"),
        ({"size": (int, Field(default=0, ge=0, multiple_of=5))}, "$.size: multipleOf changed"),
        ({"extra_map": (dict[str, int], {})}, ""),
    ],
)  # fmt: skip
def test_the_rule_allows_widening_and_refuses_narrowing(changes: dict[str, Any], broken: str) -> None:
    found = _breaks(**changes)
    if not broken:
        assert found == []
    else:
        assert any(broken in line for line in found), found


def _schema(**fields: Any) -> dict[str, Any]:
    from pydantic import create_model

    model: type[BaseModel] = create_model("M", **fields)
    return model.model_json_schema()


def test_the_values_of_free_form_keys_are_compared() -> None:
    """A `dict[str, V]` field (an item's metadata) may not narrow its values' type; a string may
    not become a date-time."""
    before = _schema(meta=(dict[str, int], {}))
    assert breaking_changes(before, _schema(meta=(dict[str, int | str], {}))) == []
    assert breaking_changes(before, _schema(meta=(dict[str, str], {}))) == [
        "$.meta{*}: type integer no longer accepted"
    ]
    dated = breaking_changes(_schema(at=(str, ...)), _schema(at=(datetime, ...)))
    assert dated == ["$.at: format changed from None to 'date-time'"]
