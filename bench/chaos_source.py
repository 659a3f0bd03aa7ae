"""The source half of `tribunal bench chaos`: every third good item is sent as another system's
JSON record to the run's source topic (random key and partition), and must come out on the sink's
topic enriched exactly once; these read and wait for the sink."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter

import orjson
from aiokafka.errors import KafkaError

from tribunal.core.settings import Settings
from tribunal.core.topics import partitions_of, read_to_end
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import Item

__all__ = ["good_record", "sink_ids", "via_source", "wait_for_sink"]


def good_record(
    settings: Settings, n: int, item: Item, rng: random.Random
) -> tuple[str, bytes | None, bytes | None, int | None]:
    """Every third good item as a source record (random key and partition), the rest as items."""
    if not via_source(n):
        return settings.topics.items_topic, key(item.id), encode(item), None
    value = orjson.dumps({"ref": item.id, "body": item.text})
    return settings.source[0].topic, rng.randbytes(8), value, rng.randrange(settings.topics.partitions)


def via_source(n: int) -> bool:
    return n % 3 == 0


async def sink_ids(settings: Settings) -> Counter[str]:
    """Item id -> how many enriched records of it the sink topic holds."""
    tps = await partitions_of(settings, settings.sink[0].topic)
    return Counter([orjson.loads(r.value or b"{}")["tribunal"]["item_id"] async for r in read_to_end(settings, tps)])


async def wait_for_sink(settings: Settings, ids: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(KafkaError):
            if ids <= set(await sink_ids(settings)):
                return
        await asyncio.sleep(2.0)
