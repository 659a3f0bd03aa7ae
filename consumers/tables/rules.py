"""The target policy's rules, shared and durable: one compacted `rules` topic, one writer.

Every aggregator follows two compacted topics with a plain (group-less, read_committed)
consumer: `rules` (key = task, value = `Rule.to_dict()`, one partition so every reader sees the
versions in the order they were written) and `evidence` (the judges' windows,
`consumers.tables.evidence`). `RuleTable.rule(task)` is the rule every instance applies: the
latest on the topic, else the task's shipped calibration (`calibration` in the tasks file, the
same file everywhere), else a cold start.

Exactly one instance writes: the one that owns partition 0 of `items` (the consumer group
guarantees one owner). In its `tick` it runs `consumers.policy.calibration.step` over the merged
evidence and produces a new rule, when one is due, in the SAME transaction as its batch, so a
fenced or crashed leader publishes nothing. A new leader (after a rebalance, a restart, a
kill -9) starts from what the topics hold: the rule, with its re-fit count, schedule and evidence
epoch, and the judges' evidence. Nothing of the table lives only in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from tribunal.consumers.policy.calibration import (
    Ledger,
    TargetConfig,
    WarmStart,
    calibrate_offline,
    first_refit_at,
    step,
)
from tribunal.consumers.policy.risk import DriftTest
from tribunal.consumers.policy.target import Rule, cold_rule
from tribunal.consumers.tables.base import parse_table_key, table_key
from tribunal.consumers.tables.evidence import PartitionEvidence
from tribunal.core import kafka, metrics
from tribunal.core.batches import Output
from tribunal.core.errors import ConfigError
from tribunal.core.logs import get_logger
from tribunal.core.settings import Settings, TargetSettings
from tribunal.core.topics import partitions_of, read_to_end
from tribunal.schemas.tasks import TaskRegistry

__all__ = [
    "RuleTable",
    "calibration_document",
    "current_rules",
    "load_calibration",
    "publish_rule",
    "rule_summary",
    "target_config",
]

log = get_logger("tribunal.rules")


def target_config(settings: TargetSettings) -> TargetConfig:
    """The pure core's view of `aggregator.target`."""
    return TargetConfig(
        max_disagreement=settings.max_disagreement,
        confidence=settings.confidence,
        min_audit_rate=settings.min_audit_rate,
        max_audit_rate=settings.max_audit_rate,
        fit_share=settings.fit_share,
        refit_growth=settings.refit_growth,
        window=settings.window,
    )


def calibration_document(warm: WarmStart, window: int) -> dict[str, Any]:
    """A warm start as one JSON document: the rule, and its history (the latest `window` rows of
    each side; no text, no ids: vote states and whether the judge changed the label)."""
    history = PartitionEvidence.of(warm.evidence, warm.rule.workers, window)
    return {**warm.rule.to_dict(), "evidence": history.to_dict()}


def load_calibration(path: Path, window: int) -> WarmStart:
    """A calibration file written by `tribunal calibrate`; ValueError saying what is wrong."""
    try:
        data = orjson.loads(path.read_bytes())
        rule = Rule.from_dict(data)
        history = PartitionEvidence.from_dict(data.get("evidence") or PartitionEvidence(window).to_dict(), window)
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"cannot read calibration {path}: {exc}") from exc
    fitting, calibration = history.evidence(rule.workers)
    return WarmStart(rule, (*fitting, *calibration))


class RuleTable:
    """An aggregator's view of every task's rule and evidence; the leader also publishes."""

    def __init__(self, settings: Settings, tasks: TaskRegistry) -> None:
        self._settings = settings
        self._tasks = tasks
        self._config = target_config(settings.aggregator.target)
        self._workers = tuple(sorted(settings.aggregator.workers))
        self._rules: dict[str, Rule] = {}
        self._published: set[str] = set()  # tasks whose current rule is on the topic
        self._seen_version: dict[str, int] = {}
        self._evidence: dict[tuple[str, int], PartitionEvidence] = {}
        self._changed: set[str] = set()
        self._history_unpublished: set[str] = set()  # shipped histories not yet on the topic
        self._warm_starts: dict[str, WarmStart | None] = {}  # each task's shipped one, read once
        self._positions: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    def rule(self, task: str) -> Rule:
        """The rule in force for `task`'s items on this instance."""
        current = self._rules.get(task)
        if current is None:
            current = self._rules[task] = self._initial(task)
            self._changed.add(task)
            _export(current)
        return current

    def _initial(self, task: str) -> Rule:
        """The shipped calibration (with its history as evidence) if it fits this worker set and
        the rules topic has nothing newer, else a cold start."""
        definition = self._tasks.get(task) if task in self._tasks else None
        path = definition.calibration if definition else None
        after = self._seen_version.get(task, -1) + 1
        warm = self._shipped(task, path) if path is not None else None
        if warm is not None:
            shipped = warm.rule
            if shipped.workers == self._workers and shipped.task == task and shipped.version >= after:
                self._evidence[(task, -1)] = PartitionEvidence.of(warm.evidence, self._workers, self._config.window)
                self._history_unpublished.add(task)
                return shipped
            log.warning("calibration_not_applicable", task=task, path=str(path), workers=list(shipped.workers))
        cold = cold_rule(task, self._workers, first_refit_at(self._config))
        return cold if after == 0 else _fresh(cold, after, self.calibration_total(task))

    def _shipped(self, task: str, path: Path) -> WarmStart | None:
        """The task's shipped warm start, or None when it cannot be read: that task then starts
        cold (every item to the judge: it costs, it never lowers quality) and says so, while every
        other task runs as configured. One broken task never stops the aggregator of the others.
        Read (and re-certified, and reported) once per task, however often a rule starts over."""
        if task not in self._warm_starts:
            self._warm_starts[task] = self._read_shipped(task, path)
        return self._warm_starts[task]

    def _read_shipped(self, task: str, path: Path) -> WarmStart | None:
        try:
            return self._for_target(load_calibration(path, self._config.window))
        except ValueError as exc:
            # Not log.exception: the message says it all; a traceback would bury it.
            log.error(  # noqa: TRY400
                "calibration_unreadable", task=task, path=str(path), error=str(exc),
                consequence="this task starts cold: every item goes to the judge until audits certify a rule",
            )  # fmt: skip
            metrics.CALIBRATION_UNREADABLE.labels(task=task).inc()
            return None

    def check_calibrations(self) -> list[str]:
        """Read every task's shipped calibration now, at start rather than at the first item;
        return the tasks whose calibration cannot be read (each logged, each to start cold)."""
        return [t.name for t in self._tasks if t.calibration and self._shipped(t.name, t.calibration) is None]

    def _for_target(self, warm: WarmStart) -> WarmStart:
        """The shipped warm start, re-certified on its own history when it was certified for
        another target than `aggregator.target` (a pure function of the file and the settings, so
        every instance derives the same rule)."""
        provenance = warm.rule.provenance
        target = (str(self._config.max_disagreement), str(self._config.confidence))
        if (provenance.get("max_disagreement"), provenance.get("confidence")) == target:
            return warm
        again = {**provenance, "max_disagreement": target[0], "confidence": target[1]}
        again["recertified"] = "for the configured target, on the calibration's own history"
        rule = warm.rule
        return calibrate_offline(rule.task, rule.workers, warm.evidence, self._config, again, dict(rule.models))

    async def start(self) -> None:
        """Read both topics to their end (so rules are known before any item is decided), then
        keep following them."""
        if self._consumer is not None:
            return
        topics = self._settings.topics
        tps = [*await partitions_of(self._settings, topics.rules_topic)]
        tps += await partitions_of(self._settings, topics.evidence_topic)
        async for record in read_to_end(self._settings, tps):
            self.absorb(record)
        self._consumer = kafka.consumer(self._settings.kafka, self._settings.runtime, group_id=None)
        await self._consumer.start()
        self._consumer.assign(tps)
        for tp in tps:
            position = self._positions.get(tp)
            if position is not None:
                self._consumer.seek(tp, position)
            else:
                await self._consumer.seek_to_beginning(tp)

    async def poll(self) -> None:
        """Take in whatever arrived since the last call, without waiting."""
        if self._consumer is None:
            return
        batch = await self._consumer.getmany(timeout_ms=0)
        for records in batch.values():
            for record in records:
                self.absorb(record)

    def absorb(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Take in one record of the rules or the evidence topic."""
        self._positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
        if record.topic == self._settings.topics.rules_topic:
            self._absorb_rule(record.key, record.value)
            return
        key = parse_table_key(record.key)
        if key is None:
            return
        if record.value is None:
            self._evidence.pop(key, None)
        else:
            self._evidence[key] = PartitionEvidence.from_dict(orjson.loads(record.value), self._config.window)
        self._changed.add(key[0])

    def _absorb_rule(self, raw_key: bytes | None, value: bytes | None) -> None:
        if raw_key is None or value is None:
            return
        task = raw_key.decode("utf-8", errors="replace")
        try:
            rule = Rule.from_dict(orjson.loads(value))
        except (ValueError, orjson.JSONDecodeError) as exc:
            log.warning("rule_unreadable", task=task, error=str(exc))
            return
        self._seen_version[task] = max(self._seen_version.get(task, -1), rule.version)
        if rule.workers != self._workers:
            log.warning("rule_for_other_workers", task=task, version=rule.version, workers=list(rule.workers))
            return
        current = self._rules.get(task)
        if current is None or rule.version >= current.version:
            self._rules[task] = rule
            self._published.add(task)
            _export(rule)

    def step(self, leader: bool) -> list[Output]:
        """On the leader: the rules due now, as outputs of the current transaction."""
        if not leader:
            return []
        outputs: list[Output] = []
        for task in sorted(self._changed | (set(self._rules) - self._published)):
            if task not in self._rules:
                continue
            rule = self._rules[task]
            new = step(rule, self._ledger(task), self._config) if self._due(task, rule) else None
            if new is None and task in self._published:
                continue
            chosen = new or rule
            if rule.version <= self._seen_version.get(task, -1) and task not in self._published:
                chosen = _fresh(chosen, self._seen_version[task] + 1, self.calibration_total(task))
            self._rules[task] = chosen
            self._published.add(task)
            _export(chosen)
            log.info("rule_published", task=task, version=chosen.version, cutoff=chosen.cutoff,
                     audit_rate=chosen.audit_rate, reason=chosen.reason)  # fmt: skip
            if task in self._history_unpublished:
                history = self._evidence[(task, -1)].to_dict()
                outputs.append(Output(self._settings.topics.evidence_topic, orjson.dumps(history), table_key(task, -1)))
                self._history_unpublished.discard(task)
            outputs.append(Output(self._settings.topics.rules_topic, orjson.dumps(chosen.to_dict()), task.encode()))
        self._changed.clear()
        return outputs

    def _due(self, task: str, rule: Rule) -> bool:
        """Whether `calibration.step` could change the rule: a re-fit is due, or the drift test
        rejects. Checked on the raw rows, so the full ledger is built only when needed (evidence
        changes with every judge transaction)."""
        if task not in self._changed:
            return False
        if self.calibration_total(task) - rule.epoch_calibration >= rule.next_refit_at:
            return True
        if rule.cutoff is None:
            return False
        test = DriftTest.start(self._config.max_disagreement)
        for (t, _), book in sorted(self._evidence.items()):
            if t == task:
                for version, accepted, _, disagreed, _ in book.calibration:
                    if accepted and version == rule.version:
                        test = test.observe(disagreed)
        return test.alarm(self._config.delta)

    def _ledger(self, task: str) -> Ledger:
        """Every judge partition's evidence of `task`, merged in partition order."""
        parts = [book for (t, _), book in sorted(self._evidence.items()) if t == task]
        fitting, calibration = [], []
        for book in parts:
            fit, cal = book.evidence(self._workers)
            fitting += fit
            calibration += cal
        return Ledger.of(fitting, calibration, sum(b.calibration_total for b in parts))

    def seen_version(self, task: str) -> int:
        """The highest version of `task`'s rule read from the topic (-1: none)."""
        return self._seen_version.get(task, -1)

    def history_total(self, task: str) -> int:
        """Calibration rows of `task`'s warm-start history (0 without one)."""
        book = self._evidence.get((task, -1))
        return book.calibration_total if book is not None else 0

    def calibration_total(self, task: str) -> int:
        return sum(b.calibration_total for (t, _), b in self._evidence.items() if t == task)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def rules(self) -> Mapping[str, Rule]:
        return dict(self._rules)


def _fresh(rule: Rule, version: int, calibration_total: int) -> Rule:
    """`rule` as version `version`, opening a new evidence epoch (older rows were decided by
    rules this instance cannot vouch for)."""
    return replace(rule, version=version, epoch=version, epoch_calibration=calibration_total)


def _export(rule: Rule) -> None:
    metrics.TARGET_CUTOFF.labels(rule.task).set(math.nan if rule.cutoff is None else rule.cutoff)
    metrics.TARGET_AUDIT_RATE.labels(rule.task).set(rule.audit_rate)
    metrics.TARGET_RULE.labels(rule.task).info({"version": str(rule.version), "reason": rule.reason})


async def publish_rule(settings: Settings, warm: WarmStart) -> Rule:
    """Publish a warm start (`tribunal calibrate --publish`) so every aggregator takes it up: its
    rule gets the next version of its task and opens a new evidence epoch that starts with its
    history (published first, under the key `TASK|calibration`), not with the live evidence
    gathered under older rules. ConfigError if its workers are not `aggregator.workers`."""
    rule = warm.rule
    if rule.workers != tuple(sorted(settings.aggregator.workers)):
        raise ConfigError(
            f"the rule is fitted for workers {list(rule.workers)}, the aggregators expect "
            f"{sorted(settings.aggregator.workers)} (aggregator.workers)"
        )
    table = RuleTable(settings, settings.tasks())
    topics = settings.topics
    tps = [*await partitions_of(settings, topics.rules_topic), *await partitions_of(settings, topics.evidence_topic)]
    async for record in read_to_end(settings, tps):
        table.absorb(record)  # the same reading as every aggregator's
    version = table.seen_version(rule.task) + 1
    live = table.calibration_total(rule.task) - table.history_total(rule.task)
    published = _fresh(rule, version, live)
    rows = [replace(r, version=version) for r in warm.evidence]
    history = PartitionEvidence.of(rows, rule.workers, settings.aggregator.target.window)
    producer = kafka.idempotent_producer(settings.kafka, max_request_size=settings.max_message_bytes + 65_536)
    await producer.start()
    try:
        key = table_key(rule.task, -1)
        await producer.send_and_wait(topics.evidence_topic, orjson.dumps(history.to_dict()), key=key)
        await producer.send_and_wait(topics.rules_topic, orjson.dumps(published.to_dict()), key=rule.task.encode())
    finally:
        await producer.stop()
    return published


async def current_rules(settings: Settings) -> dict[str, Rule]:
    """The latest rule per task on the rules topic (what a starting aggregator would apply)."""
    table = RuleTable(settings, settings.tasks())
    async for record in read_to_end(settings, await partitions_of(settings, settings.topics.rules_topic)):
        table.absorb(record)
    return dict(table.rules())


def rule_summary(rule: Rule) -> dict[str, object]:
    """What reports show of a rule: version, cut-off, audit rate, why it exists, where from."""
    return {
        "version": rule.version,
        "cutoff": rule.cutoff,
        "audit_rate": rule.audit_rate,
        "reason": rule.reason,
        "certificate": dict(rule.certificate),
        "provenance": dict(rule.provenance),
    }
