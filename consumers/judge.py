"""Judge tier: settles what the workers could not. Reads `judge`, classifies each batch with the
expensive model, and publishes the final `Verdict` (decided_by=judge, the workers' votes
attached) to `labels`.

A request the judge fails on permanently still gets exactly one final label: the workers'
plurality, marked `decided_by=fallback` so it is visibly unverified, and the request itself goes
to `judge.dlq` with its original bytes. Audit requests (reason=audit) concern items already
labelled by the workers: their verdicts go to `audits`, never to `labels`.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from consumers.classifiers import Classifier, build_classifier
from consumers.classifiers.base import Prediction
from consumers.decision import Ballot, plurality
from consumers.resilience import ResilientClassifier
from schemas.codec import encode, key
from schemas.messages import DeadLetter, DecidedBy, EscalationReason, JudgeRequest, Verdict
from schemas.tasks import TaskRegistry
from tribunal.logs import configure_logging, get_logger
from tribunal.metrics import DEAD_LETTERS, DECISIONS
from tribunal.runtime import Output, Processor, Record, serve
from tribunal.settings import Settings

__all__ = ["JudgeProcessor", "fallback_verdict", "group_id", "run"]

log = get_logger("tribunal.judge")


def group_id(settings: Settings) -> str:
    return f"{settings.topics.prefix}tribunal-judge"


def fallback_verdict(request: JudgeRequest, tasks: TaskRegistry, why: str) -> Verdict:
    """The workers' plurality as an unverified final label. With no usable vote at all, the
    task's first label with confidence 0: an item must still get its one label, and
    `decided_by=fallback` with confidence 0 tells readers it carries no information."""
    ballots = [Ballot(v.worker, v.label, v.confidence) for v in request.votes]
    best = plurality(ballots)
    label, confidence = best if best is not None else (tasks.get(request.item.task).labels[0], 0.0)
    log.warning("fallback_label", item_id=request.item.id, label=label, why=why)
    return _verdict(request, label, confidence, DecidedBy.FALLBACK, None)


def _verdict(request: JudgeRequest, label: str, confidence: float, by: DecidedBy, latency_ms: float | None) -> Verdict:
    item = request.item
    return Verdict(
        item_id=item.id,
        task=item.task,
        label=label,
        decided_by=by,
        confidence=confidence,
        votes=request.votes,
        reason=request.reason,
        policy=request.policy,
        policy_version=request.policy_version,
        gold=item.gold,
        item_produced_at=item.produced_at,
        judge_latency_ms=latency_ms,
    )


class JudgeProcessor(Processor):
    tier = "judge"

    def __init__(self, settings: Settings, classifier: Classifier, tasks: TaskRegistry) -> None:
        self._settings = settings
        self._classifier = classifier
        self._tasks = tasks
        self._resilient = ResilientClassifier(
            classifier,
            tasks,
            retries=settings.runtime.retries,
            backoff_s=settings.runtime.retry_backoff_ms / 1000.0,
        )

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        return {self._settings.topics.judge_topic: JudgeRequest}

    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        requests: list[JudgeRequest] = [r.value for r in records]
        predictions = await self._resilient.classify([r.item for r in requests])
        outputs: list[Output] = []
        for record, prediction in zip(records, predictions, strict=True):
            outputs.extend(self._outputs(record, prediction))
        return outputs

    def _outputs(self, record: Record[JudgeRequest], prediction: Prediction) -> list[Output]:
        request = record.value
        topics = self._settings.topics
        item_key = key(request.item.id)
        audit = request.reason == EscalationReason.AUDIT
        destination = topics.audits_topic if audit else topics.labels_topic
        if prediction.label is not None:
            verdict = _verdict(
                request,
                prediction.label,
                prediction.confidence,
                DecidedBy.JUDGE,
                prediction.latency_ms,
            )
            DECISIONS.labels("judge", request.reason.value).inc()
            return [Output(destination, encode(verdict), item_key)]
        why = prediction.reason or "judge abstained"
        letter = DeadLetter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key_b64=base64.b64encode(item_key).decode(),
            value_b64=base64.b64encode(record.raw).decode(),
            error_kind="judge_failed",
            error_message=why[:4000],
            tier=self.tier,
        )
        DEAD_LETTERS.labels(self.tier, record.topic, "judge_failed").inc()
        outputs = [Output(topics.dlq(record.topic), encode(letter), item_key)]
        if not audit:  # an audited item already has its label; a failed audit just goes unrecorded
            DECISIONS.labels("fallback", request.reason.value).inc()
            outputs.append(Output(destination, encode(fallback_verdict(request, self._tasks, why)), item_key))
        return outputs

    async def close(self) -> None:
        await self._classifier.close()


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one judge process until SIGINT/SIGTERM (or `stop`)."""
    configure_logging(settings.log_format, settings.log_level, tier="judge")
    tasks = settings.tasks()
    processor = JudgeProcessor(settings, build_classifier(settings.judge.classifier, tasks), tasks)
    await serve(
        settings,
        processor,
        group_id=group_id(settings),
        decode_context=settings.decode_context(tasks),
        stop=stop,
    )
