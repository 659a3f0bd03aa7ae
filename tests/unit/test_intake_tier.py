"""The intake tier's record -> item step (consumers/intake.py) without a broker: the item JSON it
encodes by hand is exactly the model's, and what the model would refuse becomes a dead letter."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tribunal.consumers.intake import IntakeProcessor
from tribunal.core.records import Record
from tribunal.core.settings import load_settings
from tribunal.schemas.codec import DecodeError, decode, encode
from tribunal.schemas.messages import DeadLetter, Item


def processor(**source: Any) -> IntakeProcessor:
    fields = {"name": "s", "topic": "tickets", "id": "ref", "text": "body", "task": "sentiment3"} | source
    settings = load_settings(source=[fields], max_text_chars=100)
    return IntakeProcessor(settings, settings.source[0], settings.tasks(), None)


def record(value: dict[str, Any] | bytes | None, offset: int = 3) -> Record[Any]:
    raw = orjson.dumps(value) if isinstance(value, dict) else value
    return Record("tickets", 1, offset, b"k\x00", raw, 1_700_000_000_000, raw or b"", [("tenant", b"\xffacme")])


def test_the_hand_encoded_item_is_the_models_own() -> None:
    tier = processor(keep_fields=["n", "nested"], keep_headers=["tenant"], gold_field="gold")
    value = {"ref": "T-1", "body": 'fine \u2713 "quoted"\n', "n": 1.5, "nested": {"a": [1, None]}, "gold": "positive"}
    out = asyncio.run(tier.item(record(value), 1234.5))
    item = decode(out.value, Item, tier._context)
    assert out.key == b"T-1" and out.topic == tier._items_topic
    assert encode(item) == out.value, "field order and encoding as the model's"
    assert item.metadata == {"n": 1.5, "nested": {"a": [1, None]}, "header.tenant": "\ufffdacme", "label": "positive"}
    assert item.source is not None and (item.source.partition, item.source.offset) == (1, 3)


@pytest.mark.parametrize(
    ("value", "source", "kind"),
    [
        ({"ref": "T", "body": "x" * 101}, {}, "too_long"),
        ({"ref": "T", "body": ""}, {}, "empty_text"),
        ({"ref": "T", "body": "b", "gold": "not-a-label"}, {"gold_field": "gold"}, "invalid_item"),
        ({"ref": "T", "body": "b", "kind": "no-such-task"}, {"task_field": "kind"}, "invalid_item"),
    ],
)
def test_what_the_model_would_refuse_is_a_dead_letter(value: dict[str, Any], source: dict[str, Any], kind: str) -> None:
    tier = processor(**source)
    with pytest.raises(DecodeError) as caught:
        asyncio.run(tier.item(record(value), 1.0))
    assert caught.value.kind == kind
    (letter,) = asyncio.run(tier.process([record(value)], 1.0))
    dead = decode(letter.value, DeadLetter)
    assert letter.topic == "tickets.dlq" and dead.error_kind == kind and dead.offset == 3
    assert dead.headers == (("tenant", "/2FjbWU="),)
