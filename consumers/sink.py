"""Sink tier: every final label of a source's items, written back as the source record enriched
with the decision (`tribunal.connect.enrich`), to the topic the user names, exactly once.

Reads `labels` (one label per item, whether the workers or the judge decided it) in its own
consumer group; a verdict whose item came from this sink's source carries that record
(`Verdict.source`), so the sink needs no state and no join: it produces the enriched record in
the transaction that commits the label's offset. Verdicts of other items are passed over.

A verdict whose record cannot be re-encoded (its writer schema deleted from the registry) goes to
`<sink topic>.dlq` with the verdict's bytes; a registry that does not answer is waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from tribunal.connect.enrich import Enricher
from tribunal.connect.mapping import MappingError
from tribunal.consumers.intake import registry_for
from tribunal.core.batches import Output
from tribunal.core.connect_settings import SinkSettings
from tribunal.core.logs import configure_logging, get_logger
from tribunal.core.process import tune_gc
from tribunal.core.records import Record, dead_letter_of
from tribunal.core.runtime import Processor, serve
from tribunal.core.settings import Settings
from tribunal.schemas.messages import Verdict

__all__ = ["SinkProcessor", "run", "serve_sink"]

log = get_logger("tribunal.sink")


class SinkProcessor(Processor):
    tier = "sink"

    def __init__(self, settings: Settings, sink: SinkSettings, enricher: Enricher) -> None:
        self._settings = settings
        self._sink = sink
        self._enricher = enricher
        self._labels = settings.topics.labels_topic

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        return {self._labels: Verdict}

    def owns_dead_letters(self, topic: str) -> bool:
        return False  # `labels` is the aggregator's topic: a record it refuses is its to explain

    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        outputs: list[Output] = []
        for record in records:
            verdict: Verdict = record.value
            if verdict.source is None or verdict.source.name != self._sink.source:
                continue
            try:
                outputs.append(await self._enricher.record(verdict))
            except MappingError as exc:
                dlq = self._settings.topics.dlq(self._sink.topic)
                limit = self._settings.max_message_bytes
                outputs.append(dead_letter_of(record, dlq, self.tier, exc.kind, str(exc), max_message_bytes=limit))
        return outputs


async def run(settings: Settings, sink_name: str, stop: asyncio.Event | None = None) -> None:
    """Run one sink until SIGINT/SIGTERM (or `stop`): the `tribunal sink` entry."""
    configure_logging(settings.log_format, settings.log_level, tier="sink")
    tune_gc()
    await serve_sink(settings, sink_name, stop=stop)


async def serve_sink(settings: Settings, sink_name: str, *, stop: asyncio.Event | None = None) -> None:
    """Run the sink `sink_name` inside the caller's own asyncio program."""
    sink = settings.sink_named(sink_name)
    source = settings.source_named(sink.source)
    registry = registry_for(settings, {source.format})
    processor = SinkProcessor(settings, sink, Enricher(sink, source.format, registry))
    log.info("sink_started", sink=sink.name, source=source.name, topic=sink.topic)
    try:
        group = settings.topics.name(sink.group)
        await serve(settings, processor, group_id=group, decode_context=settings.decode_context(), stop=stop)
    finally:
        if registry is not None:
            await registry.close()
