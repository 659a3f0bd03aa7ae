"""The runtime's decoding step: good records pass, bad ones become dead letters with their bytes."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from pydantic import BaseModel

from tribunal.core.runtime import Output, Processor, Record, StreamRunner
from tribunal.core.settings import load_settings
from tribunal.schemas import DeadLetter, Item, decode, encode

SETTINGS = load_settings(topics={"prefix": "r-"})


class Echo(Processor):
    tier = "echo"

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        return {"r-items": Item}

    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        return []


def _raw(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("r-items", 2, offset, 0, 0, b"k", value, None, len(b"k"), len(value), ())


def test_decode_splits_good_records_from_dead_letters() -> None:
    """Valid records decode in order; garbage becomes a DeadLetter for <topic>.dlq with source position and bytes."""
    runner = StreamRunner(SETTINGS, Echo(), group_id="g", decode_context=SETTINGS.decode_context())
    good = encode(Item(id="a", text="fine"))
    records, dead = runner._decode({TopicPartition("r-items", 2): [_raw(0, good), _raw(1, b"\x00junk"), _raw(2, good)]})
    assert [r.offset for r in records] == [0, 2] and records[0].value.id == "a" and records[0].raw == good
    [letter_out] = dead
    letter = decode(letter_out.value, DeadLetter)
    assert letter_out.topic == "r-items.dlq" and letter_out.key == b"k"
    assert (letter.source_topic, letter.partition, letter.offset, letter.tier) == ("r-items", 2, 1, "echo")
    assert base64.b64decode(letter.value_b64) == b"\x00junk" and "not JSON" in letter.error_message


def test_transactional_id_is_stable_per_instance() -> None:
    """The transactional id is the group plus the instance id, so a restart fences its predecessor."""
    runner = StreamRunner(SETTINGS, Echo(), group_id="g", decode_context=SETTINGS.decode_context())
    assert runner.transactional_id == f"g-{SETTINGS.runtime.instance_id}"
