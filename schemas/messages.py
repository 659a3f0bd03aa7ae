"""Message contracts between tiers: frozen pydantic models, each carrying a schema version.

Every record on a Tribunal topic is one of these models encoded by `schemas.codec`. Keys are
item ids (utf-8), so items, votes and everything derived from one item land on the same
partition number of every topic.

Bounds are checked at decode time from a `DecodeContext` passed as pydantic validation context
(`max_text_chars`, the task registry), so the limits come from settings rather than constants.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationInfo, field_validator, model_validator

__all__ = [
    "DEFAULT_MAX_TEXT_CHARS",
    "MAX_VOTES",
    "SCHEMA_VERSION",
    "AggregatorLog",
    "DeadLetter",
    "DecidedBy",
    "EscalationReason",
    "Item",
    "ItemId",
    "JudgeRequest",
    "Message",
    "SourceRecord",
    "Verdict",
    "Vote",
    "VoteBatch",
    "VoteRow",
    "now",
]

SCHEMA_VERSION: Literal[1] = 1
# Generous for tickets and reviews, small enough that one record never nears Kafka's 1 MB default.
DEFAULT_MAX_TEXT_CHARS = 20_000

# Votes one request or verdict may carry (one per expected worker): with every field of a vote
# bounded, this bounds every record derived from an item (see `schemas.codec`'s size limits).
MAX_VOTES = 16

ItemId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]
Label = Annotated[str, Field(min_length=1, max_length=128)]
PolicyName = Annotated[str, Field(min_length=1, max_length=64)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


def now() -> float:
    """Wall-clock time in epoch seconds, the one time unit used in every message."""
    return time.time()


class DecidedBy(StrEnum):
    WORKERS = "workers"
    JUDGE = "judge"
    FALLBACK = "fallback"


class EscalationReason(StrEnum):
    DISAGREEMENT = "disagreement"
    LOW_CONFIDENCE = "low_confidence"
    DEADLINE = "deadline"
    AUDIT = "audit"


class Message(BaseModel):
    """Base of every contract: immutable, unknown fields rejected, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # Built by a tier from an input (a request, a verdict, a log record, a dead letter)
    # rather than sent by a producer: such records may exceed `max_message_bytes` by a bounded
    # headroom (the votes, the envelope), see `schemas.codec`.
    derived: ClassVar[bool] = False

    schema_version: Literal[1] = SCHEMA_VERSION

    @property
    def item_key(self) -> str | None:
        """The item id this record is about: its record key must be that id (None: any key)."""
        return None


def _check_label(label: str | None, task: str, info: ValidationInfo) -> None:
    registry = _context(info).get("tasks")
    if label is not None and registry is not None:
        registry.check_label(task, label)


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


class SourceRecord(BaseModel):
    """The record of a user's topic that an item was mapped from (`tribunal.connect`), carried
    with the item and its verdict so the sink can write that record back, enriched, with its
    original key and headers. Bytes are base64; the value is bounded by the source's
    `max_value_bytes` at intake, so an item that carries it stays within the record limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    topic: str = Field(min_length=1, max_length=249)
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    timestamp_ms: int
    key_b64: str | None = None
    value_b64: str
    headers: tuple[tuple[str, str], ...] = Field(default=(), max_length=256)


class Item(Message):
    """One thing to classify, as produced into the `items` topic. `source` is set for an item an
    intake tier mapped from a user's topic (absent for Tribunal's own `Item` producers)."""

    id: ItemId
    text: str = Field(min_length=1)
    task: str = Field(default="sentiment", min_length=1, max_length=64)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    produced_at: NonNegative = Field(default_factory=now)
    # Left out of the JSON when absent: most items have none, and every byte is paid per item.
    source: SourceRecord | None = Field(default=None, exclude_if=lambda source: source is None)

    @field_validator("text")
    @classmethod
    def _bounded_text(cls, text: str, info: ValidationInfo) -> str:
        limit = _context(info).get("max_text_chars", DEFAULT_MAX_TEXT_CHARS)
        if len(text) > limit:
            raise ValueError(f"text has {len(text)} characters, more than the limit of {limit}")
        return text

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str, info: ValidationInfo) -> str:
        registry = _context(info).get("tasks")
        if registry is not None:
            registry.get(task)
        return task

    @field_validator("metadata")
    @classmethod
    def _gold_in_task(cls, metadata: dict[str, JsonValue], info: ValidationInfo) -> dict[str, JsonValue]:
        """A gold label (`metadata.label`) is a label of the item's task, or absent (null)."""
        gold = metadata.get("label")
        if gold is None:
            return metadata
        if not isinstance(gold, str):  # pydantic turns ValueError, not TypeError, into a validation error
            raise ValueError(  # noqa: TRY004
                f"metadata.label must be a string naming one of the task's labels, not {type(gold).__name__}"
            )
        if "task" in info.data:
            _check_label(gold, str(info.data["task"]), info)
        return metadata

    @property
    def item_key(self) -> str:
        return self.id

    @property
    def gold(self) -> str | None:
        """The reference label carried in metadata by labelled inputs, if any."""
        value = self.metadata.get("label")
        return value if isinstance(value, str) else None


class Vote(Message):
    """One worker's label for one item; `label=None` is an abstention with a `reason`."""

    item_id: ItemId
    worker: str = Field(min_length=1, max_length=128)
    model: str = Field(min_length=1, max_length=256)
    task: str = Field(min_length=1, max_length=64)
    label: Label | None
    confidence: Probability = 0.0
    latency_ms: NonNegative = 0.0
    reason: str | None = Field(default=None, max_length=1_000)
    voted_at: NonNegative = Field(default_factory=now)

    @field_validator("label")
    @classmethod
    def _label_in_task(cls, label: str | None, info: ValidationInfo) -> str | None:
        _check_label(label, str(info.data.get("task", "")), info)
        return label

    @property
    def item_key(self) -> str:
        return self.item_id


# One vote inside a VoteBatch: (item_id, task, label or None for an abstention, confidence,
# latency_ms, reason). A plain tuple: it validates and encodes ~5x faster than a nested model.
VoteRow = tuple[
    ItemId,
    Annotated[str, Field(min_length=1, max_length=64)],
    Label | None,
    Probability,
    NonNegative,
    Annotated[str, Field(max_length=1_000)] | None,
]
# Positions in a VoteRow, for the hot paths that read a row without unpacking it.
ROW_TASK: Final = 1
ROW_LABEL: Final = 2
ROW_CONFIDENCE: Final = 3


class VoteBatch(Message):
    """A worker's votes on the items of one partition from one transaction, and how far it got.

    Written to the votes partition with the same number as the items partition, after all of the
    worker's earlier votes there. `next_offset`: every item of that partition below this offset
    has been voted on by this worker group (in this record or an earlier one) or dead-lettered,
    so a missing vote below it is never coming. An idle worker sends batches with no votes as
    heartbeats. `expand()` gives the per-vote `Vote`s of the audit trail.
    """

    worker: str = Field(min_length=1, max_length=128)
    model: str = Field(min_length=1, max_length=256)
    next_offset: int = Field(ge=0)
    votes: tuple[VoteRow, ...] = ()
    voted_at: NonNegative = Field(default_factory=now)

    @model_validator(mode="after")
    def _labels_in_tasks(self, info: ValidationInfo) -> VoteBatch:
        registry = _context(info).get("tasks")
        if registry is not None:
            for row in self.votes:
                if row[2] is not None:
                    registry.check_label(row[1], row[2])
        return self

    def vote(self, row: VoteRow) -> Vote:
        """One row as a `Vote` (validated again, without the task registry: already checked)."""
        item_id, task, label, confidence, latency_ms, reason = row
        fields = {
            "item_id": item_id,
            "worker": self.worker,
            "model": self.model,
            "task": task,
            "label": label,
            "confidence": confidence,
            "latency_ms": latency_ms,
            "reason": reason,
            "voted_at": self.voted_at,
        }
        # The validator straight from a dict is ~4x cheaper than `model_construct` here.
        vote: Vote = Vote.__pydantic_validator__.validate_python(fields)
        return vote

    def expand(self) -> list[Vote]:
        """Every vote of the batch as a `Vote`."""
        return [self.vote(row) for row in self.votes]


class _Decided(Message):
    """Schema 2 of the two records a decision produces (`JudgeRequest`, `Verdict`) adds
    `audit_rate`: the target policy's audit-sample rate when the item was decided (None for
    other policies), which the judge needs to weigh the item as evidence. Schema-1 records (no
    such field) still decode, with `audit_rate` None; readers must be upgraded before writers.
    For the target policy, `policy_version` is the version of the rule that decided the item."""

    schema_version: Literal[1, 2] = 2  # type: ignore[assignment]
    audit_rate: Probability | None = None

    @model_validator(mode="after")
    def _field_in_schema(self) -> _Decided:
        if self.schema_version == 1 and self.audit_rate is not None:
            raise ValueError("audit_rate needs schema_version 2")
        return self


class JudgeRequest(_Decided):
    """An item the workers could not settle (or an audit of one they did), with their votes and
    why it went to the judge.

    `partition` and `ticket` route the judge's verdict back to the aggregator that escalated the
    item: the verdict goes to that partition of `verdicts`, and the aggregator accepts it only if
    it carries the ticket it issued (requests without them, e.g. a judge-only run or an audit,
    still get a verdict, which no aggregator will take as a label).
    """

    derived: ClassVar[bool] = True

    item: Item
    votes: tuple[Vote, ...] = Field(default=(), max_length=MAX_VOTES)
    reason: EscalationReason
    policy: PolicyName
    policy_version: int = Field(ge=0)
    escalated_at: NonNegative = Field(default_factory=now)
    partition: int | None = Field(default=None, ge=0, le=100_000)
    ticket: str | None = Field(default=None, min_length=1, max_length=64)

    @property
    def item_key(self) -> str:
        return self.item.id


class Verdict(_Decided):
    """The final label of one item: exactly one per item id reaches the `labels` topic.

    The judge writes its verdicts to `verdicts`; the aggregator that escalated the item checks
    `ticket` and forwards it to `labels`, the one topic only the aggregator writes.
    """

    derived: ClassVar[bool] = True

    item_id: ItemId
    task: str = Field(min_length=1, max_length=64)
    label: Label
    decided_by: DecidedBy
    confidence: Probability = 0.0
    votes: tuple[Vote, ...] = Field(default=(), max_length=MAX_VOTES)
    reason: EscalationReason | None = None
    policy: PolicyName
    policy_version: int = Field(ge=0)
    gold: Label | None = None
    item_produced_at: NonNegative
    decided_at: NonNegative = Field(default_factory=now)
    judge_latency_ms: NonNegative | None = None
    ticket: str | None = Field(default=None, min_length=1, max_length=64)
    # The item's source record, for the sink that writes it back enriched (None: a plain item,
    # left out of the JSON).
    source: SourceRecord | None = Field(default=None, exclude_if=lambda source: source is None)

    @field_validator("label", "gold")
    @classmethod
    def _label_in_task(cls, label: str | None, info: ValidationInfo) -> str | None:
        _check_label(label, str(info.data.get("task", "")), info)
        return label

    @property
    def item_key(self) -> str:
        return self.item_id


class DeadLetter(Message):
    """A record a tier could not process, with its original bytes so nothing is lost.

    `value_b64` is None for a tombstone (no value) and "" for an empty value. A value too big to
    fit in a dead letter is cut to a prefix (`value_truncated`); `value_bytes` and `value_sha256`
    always describe the whole original. The key likewise (`key_b64` None: no key).
    `offset` is None only for a vote held before its item arrived (its position is not kept).
    """

    derived: ClassVar[bool] = True

    source_topic: str
    partition: int = Field(ge=0)
    offset: int | None = Field(ge=0)
    key_b64: str | None = None
    key_truncated: bool = False
    value_b64: str | None
    value_bytes: int | None = Field(default=None, ge=0)
    value_sha256: str | None = None
    value_truncated: bool = False
    # The original record's headers (name, base64 value), kept so a replay writes them back.
    headers: tuple[tuple[str, str], ...] = Field(default=(), max_length=256)
    error_kind: str
    error_message: str = Field(max_length=4_000)
    tier: str
    failed_at: NonNegative = Field(default_factory=now)


class AggregatorLog(Message):
    """One aggregator transaction's durable effect on one partition (the `aggregator-decided` log).

    The aggregator commits its input offsets only up to the oldest item (and the oldest vote
    record) it has not decided yet, so undecided work is re-read from `items`/`votes` after a
    restart instead of being written out. What must survive is what was decided: `decided` holds
    (item id, decided_at) for every item decided in the transaction, so a re-read item or vote of
    a decided id is recognised. `escalated` holds (item id, ticket, escalated_at) for every item
    escalated to the judge in the transaction: the judge's verdict becomes its label only if it
    carries that ticket (`consumers.aggregator.admission`), so the ticket must survive a restart; an entry
    is written again while its verdict is awaited (`AWAITING_RELOG_S`), so time retention never
    drops it, and the item's `decided` entry ends it. `items_to`/`votes_to` are the next offsets
    this aggregator had read on the partition: below them a restart re-reads records it already
    saw (and must not dead-letter twice). The topic is time-retained (`aggregator.window_s`), not
    compacted; one transaction may write several records for one partition.
    """

    derived: ClassVar[bool] = True

    items_to: int = Field(ge=0)
    votes_to: int = Field(ge=0)
    decided: tuple[tuple[ItemId, NonNegative], ...] = ()
    escalated: tuple[tuple[ItemId, Annotated[str, Field(min_length=1, max_length=64)], NonNegative], ...] = ()
