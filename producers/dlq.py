"""Dead letters read back (`tribunal dlq show`) and re-published to their source topic
(`tribunal dlq replay`), each exactly once.

A dead letter (schemas.messages.DeadLetter on `<topic>.dlq`) keeps the original record's bytes,
key, partition and offset and why it failed. `read_letters` decodes them for people; a record on
a DLQ that is not a DeadLetter is shown as unreadable, never dropped.

Replay, exactly once: each chosen letter's record (its fixed bytes, or the original ones) goes to
its source topic and partition with its original key, and a marker keyed by the letter's id
(`<dlq>/<partition>/<offset>`) goes to the compacted topic `<dlq>.replayed`, both in the same
Kafka transaction (up to 500 letters per transaction). A letter whose marker exists is never
replayed again, so a rerun, or a run that crashed midway, continues where the last committed
transaction ended. The transactional id is fixed per DLQ topic: a second replayer of the same
DLQ fences the first, then reads the markers (after fencing, so it sees everything the first
committed).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tribunal.core import kafka
from tribunal.core.errors import ConfigError
from tribunal.core.settings import Settings
from tribunal.core.topics import COMPACTED, partitions_of, read_to_end
from tribunal.schemas.codec import DecodeError, decode
from tribunal.schemas.messages import DeadLetter

__all__ = [
    "Letter",
    "ReplayReport",
    "choose",
    "dlq_topics",
    "letter_id",
    "marker_topic",
    "parse_fixes",
    "read_letters",
    "replay_letters",
]

BATCH = 500  # letters per transaction: one transaction stays far below the broker's timeout


def letter_id(dlq_topic: str, partition: int, offset: int) -> str:
    """The stable id of a dead letter: where it sits on its DLQ topic."""
    return f"{dlq_topic}/{partition}/{offset}"


def marker_topic(dlq_topic: str) -> str:
    return f"{dlq_topic}.replayed"


def dlq_topics(settings: Settings) -> list[str]:
    """The dead-letter topics of the pipeline that `settings` describe."""
    t = settings.topics
    sources = [source.topic for source in settings.source]
    return [t.dlq(name) for name in (t.items_topic, t.votes_topic, t.judge_topic, t.verdicts_topic, *sources)]


@dataclass(frozen=True, slots=True)
class Letter:
    """One record of a DLQ topic: its position there and the dead letter it holds (None when the
    record is not a readable DeadLetter; `problem` then says why)."""

    dlq_topic: str
    partition: int
    offset: int
    letter: DeadLetter | None
    problem: str | None = None

    @property
    def id(self) -> str:
        return letter_id(self.dlq_topic, self.partition, self.offset)

    def original(self) -> bytes | None:
        """The original value (None: it was a tombstone). A letter that kept only a prefix of a
        value too big to fit cannot give it back: `ConfigError` (replay it with a fix)."""
        if self.letter is None:
            raise ConfigError(f"{self.id} is not a readable dead letter: {self.problem}")
        if self.letter.value_truncated or self.letter.key_truncated:
            raise ConfigError(f"{self.id} kept only a prefix of its record ({self.letter.value_bytes} bytes)")
        return None if self.letter.value_b64 is None else base64.b64decode(self.letter.value_b64)

    @property
    def whole(self) -> bool:
        """Whether the letter holds its whole original record (not cut to a prefix)."""
        return self.letter is not None and not (self.letter.value_truncated or self.letter.key_truncated)

    def key(self) -> bytes | None:
        if self.letter is None or self.letter.key_b64 is None:
            return None
        return base64.b64decode(self.letter.key_b64)

    def headers(self) -> list[tuple[str, bytes]]:
        """The original record's headers, to write back with it."""
        if self.letter is None:
            return []
        return [(name, base64.b64decode(value)) for name, value in self.letter.headers]

    def as_dict(self) -> dict[str, Any]:
        """For people and `--json`: the reason, where it came from, and the original bytes as
        text (UTF-8) or, when they are not text, as base64."""
        out: dict[str, Any] = {"id": self.id, "dlq_topic": self.dlq_topic, "dlq_offset": self.offset}
        if self.letter is None:
            return {**out, "unreadable": self.problem}
        letter = self.letter
        out |= {
            "source_topic": letter.source_topic,
            "source_partition": letter.partition,
            "source_offset": letter.offset,
            "tier": letter.tier,
            "error_kind": letter.error_kind,
            "error_message": letter.error_message,
            "failed_at": letter.failed_at,
        }
        if letter.value_b64 is None:
            return {**out, "value": None, "value_encoding": "none"}
        if not self.whole:
            out |= {"value_truncated": True, "value_bytes": letter.value_bytes, "value_sha256": letter.value_sha256}
        original = base64.b64decode(letter.value_b64)
        try:
            return {**out, "value": original.decode("utf-8"), "value_encoding": "utf-8"}
        except UnicodeDecodeError:
            return {**out, "value": letter.value_b64, "value_encoding": "base64"}


async def read_letters(settings: Settings, topic: str, limit: int | None = None) -> list[Letter]:
    """The committed records of DLQ `topic`, oldest first per partition, at most `limit`."""
    letters: list[Letter] = []
    async for record in read_to_end(settings, await partitions_of(settings, topic)):
        if limit is not None and len(letters) >= limit:
            break
        try:
            letter, problem = decode(record.value, DeadLetter), None
        except DecodeError as exc:
            letter, problem = None, str(exc)
        letters.append(Letter(topic, record.partition, record.offset, letter, problem))
    return letters


@dataclass
class ReplayReport:
    """What a replay did. `already` counts letters an earlier replay published; `not_found`
    lists ids of fixes that match no letter on the topic."""

    topic: str
    replayed: int = 0
    fixed: int = 0
    already: int = 0
    unreadable: int = 0
    truncated: int = 0  # letters holding only a prefix of their record: replayable with a fix only
    not_found: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "replayed": self.replayed,
            "fixed": self.fixed,
            "already_replayed": self.already,
            "unreadable": self.unreadable,
            "truncated": self.truncated,
            "not_found": self.not_found,
            "dry_run": self.dry_run,
        }


def choose(
    letters: Iterable[Letter], done: set[str], fixes: Mapping[str, bytes] | None, report: ReplayReport
) -> list[Letter]:
    """Pure: the letters to publish now. With `fixes`, only those they name (else every letter);
    never one already replayed, never an unreadable record, never one that kept only a prefix of
    its record unless a fix gives the whole. Counts the rest in `report`."""
    chosen: list[Letter] = []
    seen: set[str] = set()
    for letter in letters:
        seen.add(letter.id)
        if fixes is not None and letter.id not in fixes:
            continue
        if letter.id in done:
            report.already += 1
        elif letter.letter is None:
            report.unreadable += 1
        elif not letter.whole and (fixes is None or letter.letter.key_truncated):
            report.truncated += 1
        else:
            chosen.append(letter)
    report.not_found = sorted(set(fixes or ()) - seen)
    return chosen


def parse_fixes(text: str) -> dict[str, bytes]:
    """Pure: letter id -> corrected record bytes, from what `dlq show --json` prints (an object
    with `letters`) after editing, or from JSON Lines of such letters. Each entry needs `id` and
    `value` (text, or base64 when `value_encoding` is "base64"); `ConfigError` says which is not."""
    entries: list[Any]
    try:
        whole = orjson.loads(text)
        entries = list(whole["letters"]) if isinstance(whole, dict) and "letters" in whole else [whole]
    except orjson.JSONDecodeError:
        try:
            entries = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"fixes are neither `dlq show --json` output nor JSON Lines: {exc}") from None
    fixes: dict[str, bytes] = {}
    for number, entry in enumerate(entries, start=1):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("id"), str)
            or not isinstance(entry.get("value"), str)
        ):
            raise ConfigError(f"fix {number} needs a string `id` and a string `value`")
        value: str = entry["value"]
        fixes[entry["id"]] = base64.b64decode(value) if entry.get("value_encoding") == "base64" else value.encode()
    return fixes


async def _ensure_marker_topic(settings: Settings, topic: str) -> None:
    admin = kafka.admin_client(settings.kafka)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            new = NewTopic(topic, 1, settings.topics.replication_factor, topic_configs=dict(COMPACTED))
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([new])
    finally:
        await admin.close()


async def _replayed(settings: Settings, topic: str) -> set[str]:
    return {
        record.key.decode("utf-8")
        async for record in read_to_end(settings, await partitions_of(settings, topic))
        if record.key is not None and record.value is not None
    }


async def replay_letters(
    settings: Settings, topic: str, fixes: Mapping[str, bytes] | None = None, *, dry_run: bool = False
) -> ReplayReport:
    """Re-publish the dead letters of `topic` (all, or those `fixes` names, with their new bytes)
    to their source topics, each exactly once (see the module docstring)."""
    report = ReplayReport(topic, dry_run=dry_run)
    markers = marker_topic(topic)
    await _ensure_marker_topic(settings, markers)
    producer = kafka.transactional_producer(
        settings.kafka, settings.runtime, f"tribunal-dlq-replay-{topic}", settings.max_record_bytes
    )
    await producer.start()  # initialises the transactional id: any other replayer of `topic` is fenced now
    try:
        done = await _replayed(settings, markers)
        chosen = choose(await read_letters(settings, topic), done, fixes, report)
        if dry_run:
            report.replayed = len(chosen)
            report.fixed = sum(1 for letter in chosen if fixes is not None and letter.id in fixes)
            return report
        for start in range(0, len(chosen), BATCH):
            await _publish(producer, chosen[start : start + BATCH], markers, fixes)
            report.replayed += len(chosen[start : start + BATCH])
        report.fixed = sum(1 for letter in chosen if fixes is not None and letter.id in fixes)
        return report
    finally:
        await producer.stop()


async def _publish(producer: Any, letters: list[Letter], markers: str, fixes: Mapping[str, bytes] | None) -> None:
    """One transaction: every letter to its source partition, and its marker."""
    async with producer.transaction():
        for letter in letters:
            dead = letter.letter
            if dead is None:  # choose() keeps readable letters only
                continue
            value = fixes[letter.id] if fixes is not None and letter.id in fixes else letter.original()
            await producer.send(
                dead.source_topic, value=value, key=letter.key(), partition=dead.partition, headers=letter.headers()
            )
            marker = {"replayed_at": time.time(), "fixed": fixes is not None and letter.id in fixes}
            await producer.send(markers, value=orjson.dumps(marker), key=letter.id.encode("utf-8"))
