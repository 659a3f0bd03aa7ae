"""Judge tier: settles what the workers could not. Reads `judge`, classifies each batch with the
expensive model, and publishes its `Verdict` (decided_by=judge, the workers' votes and the
request's ticket attached) to `verdicts`, on the partition the request names: the aggregator
that escalated the item owns that partition and publishes the verdict to `labels` if the
ticket is the one it issued. A forged request therefore costs a model call, never a label.

A request the judge fails on permanently still gets exactly one final label: the workers'
plurality, marked `decided_by=fallback` so it is visibly unverified, and the request itself goes
to `judge.dlq` with its original bytes. Audit requests (reason=audit) concern items the workers
already labelled: their verdicts go to `audits`, never to `labels`, and measure the fast path's
precision. Every judge label (audits included) also teaches the learned worker reliability and,
for items the target policy decided, becomes its evidence (`consumers.tables.evidence`).

A model server that is down (`ServerUnavailableError` from its client, after the client's own
retries or while its circuit breaker is open) is not a per-item failure: the judge exits without
committing, and the batch is judged after the restart. Escalations wait in the topic meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition
from pydantic import BaseModel

from tribunal.consumers.classifiers import Classifier, build_classifier
from tribunal.consumers.classifiers.base import Prediction
from tribunal.consumers.classifiers.resilience import ResilientClassifier
from tribunal.consumers.policy.ballots import ballots, plurality
from tribunal.consumers.tables.evidence import EvidenceTable
from tribunal.consumers.tables.reliability import ReliabilityTable
from tribunal.consumers.verdicts import fallback_verdict, verdict_for
from tribunal.core.batches import Output
from tribunal.core.errors import FatalError, ServerUnavailableError
from tribunal.core.logs import configure_logging, get_logger
from tribunal.core.metrics import AUDITS, DECISIONS, FAST_PATH_PRECISION
from tribunal.core.process import tune_gc
from tribunal.core.records import Record, dead_letter_of
from tribunal.core.runtime import Processor, serve
from tribunal.core.settings import Settings
from tribunal.core.stats import wilson_interval
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import DecidedBy, EscalationReason, JudgeRequest
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["JudgeProcessor", "group_id", "run", "serve_judge", "wilson_interval"]

log = get_logger("tribunal.judge")


def group_id(settings: Settings) -> str:
    return settings.topics.judge_group


class JudgeProcessor(Processor):
    tier = "judge"

    def __init__(self, settings: Settings, classifier: Classifier, tasks: TaskRegistry) -> None:
        self._settings = settings
        self._classifier = classifier
        self._tasks = tasks
        self.batch_size = settings.judge.batch_size
        self._resilient = ResilientClassifier(
            classifier, tasks, retries=settings.runtime.retries, backoff_s=settings.runtime.retry_backoff_ms / 1000.0
        )
        self._book = ReliabilityTable(settings, tasks)
        self._evidence = EvidenceTable(settings, tasks)
        self._audits: Counter[tuple[str, bool]] = Counter()

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        return {self._settings.topics.judge_topic: JudgeRequest}

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        await self._book.restore({tp.partition for tp in partitions})
        await self._evidence.restore({tp.partition for tp in partitions})

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        self._book.forget({tp.partition for tp in partitions})
        self._evidence.forget({tp.partition for tp in partitions})

    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        outputs: list[Output] = []
        partitions = self._settings.topics.partitions
        valid: list[Record[JudgeRequest]] = []
        for record in records:
            wanted = record.value.partition
            if wanted is not None and wanted >= partitions:
                why = f"partition {wanted} does not exist: verdicts has {partitions}"
                outputs.append(self._letter(record, "bad_partition", why))
            else:
                valid.append(record)
        try:
            predictions = await self._resilient.classify([r.value.item for r in valid])
        except ServerUnavailableError as exc:
            # Not the items' fault: no fallback labels, no dead letters. Exit without committing;
            # after the restart the batch is judged again from the last commit, and meanwhile
            # escalations wait in the topic (the lag and restart alerts fire).
            raise FatalError(f"judge model server unavailable: {exc}") from exc
        for record, prediction in zip(valid, predictions, strict=True):
            outputs.extend(self._outputs(record, prediction))
        return outputs + self._book.outputs() + self._evidence.outputs()

    def _outputs(self, record: Record[JudgeRequest], prediction: Prediction) -> list[Output]:
        request = record.value
        audit = request.reason == EscalationReason.AUDIT
        if prediction.label is None:
            return self._failed(record, prediction.reason or "judge abstained")
        self._book.record(request.item.task, record.partition, request.votes, prediction.label)
        self._evidence.record(record.partition, request, prediction.label)
        if audit:
            self._count_audit(request, prediction.label)
        verdict = verdict_for(request, prediction.label, prediction.confidence, DecidedBy.JUDGE, prediction.latency_ms)
        DECISIONS.labels("judge", request.reason.value).inc()
        return [self._destination(request, encode(verdict))]

    def _destination(self, request: JudgeRequest, verdict: bytes) -> Output:
        """Audits to `audits`; everything else back to the escalating aggregator's partition of
        `verdicts` (the key decides where a request names none)."""
        topics = self._settings.topics
        if request.reason == EscalationReason.AUDIT:
            return Output(topics.audits_topic, verdict, key(request.item.id))
        return Output(topics.verdicts_topic, verdict, key(request.item.id), request.partition)

    def _letter(self, record: Record[JudgeRequest], kind: str, why: str) -> Output:
        dlq, limit = self._settings.topics.dlq(record.topic), self._settings.max_message_bytes
        return dead_letter_of(record, dlq, self.tier, kind, why, max_message_bytes=limit)

    def _failed(self, record: Record[JudgeRequest], why: str) -> list[Output]:
        request = record.value
        outputs = [self._letter(record, "judge_failed", why)]
        if request.reason != EscalationReason.AUDIT:  # an audited item already has its label
            log.warning("fallback_label", item_id=request.item.id, why=why)
            DECISIONS.labels("fallback", request.reason.value).inc()
            outputs.append(self._destination(request, encode(fallback_verdict(request, self._tasks))))
        return outputs

    def _count_audit(self, request: JudgeRequest, judge_label: str) -> None:
        """Did the judge confirm the label the workers published? Feeds the precision gauge."""
        published = plurality(ballots(request.votes))
        agreed = published is not None and published[0] == judge_label
        task = request.item.task
        AUDITS.labels(task, "agree" if agreed else "disagree").inc()
        self._audits[(task, agreed)] += 1
        total = self._audits[(task, True)] + self._audits[(task, False)]
        low, high = wilson_interval(self._audits[(task, True)], total)
        FAST_PATH_PRECISION.labels(task, "estimate").set(self._audits[(task, True)] / total)
        FAST_PATH_PRECISION.labels(task, "lower").set(low)
        FAST_PATH_PRECISION.labels(task, "upper").set(high)

    async def close(self) -> None:
        await self._classifier.close()


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one judge process until SIGINT/SIGTERM (or `stop`): the `tribunal judge` entry."""
    configure_logging(settings.log_format, settings.log_level, tier="judge")
    tune_gc()
    tasks = settings.tasks()
    await serve_judge(settings, build_classifier(settings.judge.classifier, tasks), stop=stop)


async def serve_judge(settings: Settings, classifier: Classifier, *, stop: asyncio.Event | None = None) -> None:
    """Run the judge with `classifier` inside the caller's own asyncio program; nothing global is
    touched (see `tribunal.consumers.worker.serve_worker`). The classifier is closed on return."""
    tasks = settings.tasks()
    processor = JudgeProcessor(settings, classifier, tasks)
    await serve(
        settings, processor, group_id=group_id(settings), decode_context=settings.decode_context(tasks), stop=stop
    )
