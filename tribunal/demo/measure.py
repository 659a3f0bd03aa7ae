"""One measured demo run on a real broker: the cascade and a judge-only pass over the same items.

`measure(settings, plan)`:
1. creates two fresh topic sets, `demo-<stamp>-` (the cascade) and `demo-<stamp>-jo-` (the judge
   alone), and starts every tier as its own OS process (`python -m tribunal.cli worker|aggregator|
   judge`, settings passed as `TRIBUNAL_*` env vars, output to `HOME/demo/<stamp>/<tier>.log`);
2. warms up: a few warm-up items through the cascade and one `JudgeRequest` into each judge topic,
   then waits until every worker has voted on every warm-up item and both judges answered. Models
   load lazily on their first batch, so this is what "ready" means; warm-up ids are excluded;
3. runs the two timed passes in `plan.rounds` alternating rounds over consecutive chunks of the
   items, so a shared machine's changing load hits both alike. Cascade round: the chunk is sent at
   once (a burst); wait for one verdict per item, then for every worker's vote (stragglers finish
   before the judge-only round, so the passes never share the CPU). Judge-only round: the same
   items as `JudgeRequest`s straight to the second judge (no aggregator deadline or worker in its
   path); wait for one verdict per item. A pass's wall time is the sum of its rounds';
4. stops the tiers (SIGTERM, then SIGKILL after a grace period) and deletes the demo's topics.

The aggregator's straggler deadline is set by the plan (long by default): a burst queues items
behind the workers, and escalating them for lateness would measure the queue, not the method.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tribunal.consumers.policy.target import audit_draw
from tribunal.consumers.tables.rules import RuleTable, current_rules, rule_summary
from tribunal.core import kafka
from tribunal.core.settings import AggregatorSettings, JudgeSettings, PipelineSettings, Settings, WorkerProcess
from tribunal.core.topics import create_topics, delete_topics
from tribunal.demo.processes import Collector, Progress, Tiers
from tribunal.demo.report import Measurement, Round
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import DecidedBy, EscalationReason, Item, JudgeRequest, Verdict, Vote, VoteBatch, now

__all__ = ["WARMUP_PREFIX", "Plan", "audits_due", "measure", "pass_settings"]

WARMUP_PREFIX = "__warmup-"
JUDGE_ONLY_POLICY = "judge-only"
# Loading a model the first time (assembling a GGUF, reading a head) can take minutes on a slow disk.
WARMUP_TIMEOUT_S = 600.0
# Requests per judge model call in a demo (unless the settings name one): verdicts become
# visible a batch at a time, so a whole pass in one batch would look stalled to the check above
# on a slow or busy machine (an LLM judge at a few items/s).
DEMO_JUDGE_BATCH = 8


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run: the items, worker name -> classifier spec, the judge spec."""

    task: str
    source: str
    items: Sequence[Item]
    workers: dict[str, str]
    judge: str
    deadline_ms: int
    quorum: int
    warmup_texts: Sequence[str]
    rounds: int = 1
    keep_topics: bool = False
    policy: str = "target"


def _with(settings: Settings, prefix: str, pipeline: PipelineSettings, plan: Plan) -> Settings:
    """`settings` for one topic set, with the plan's tiers (validated, so a bad quorum fails here)."""
    aggregator = AggregatorSettings.model_validate(
        {
            **settings.aggregator.model_dump(),
            "workers": tuple(plan.workers),
            "deadline_ms": plan.deadline_ms,
            "quorum": plan.quorum,
        }
    )
    return settings.model_copy(
        update={
            "topics": settings.topics.model_copy(update={"prefix": prefix}),
            "pipeline": pipeline,
            "aggregator": aggregator,
            "judge": JudgeSettings(classifier=plan.judge, batch_size=settings.judge.batch_size or DEMO_JUDGE_BATCH),
        }
    )


def pass_settings(settings: Settings, stamp: str, plan: Plan) -> tuple[Settings, Settings]:
    """(cascade, judge-only) settings: two topic prefixes, the cascade with every tier, the other
    with one judge and nothing else."""
    workers = tuple(WorkerProcess(name=name, classifier=spec) for name, spec in plan.workers.items())
    cascade = _with(settings, f"demo-{stamp}-", PipelineSettings(workers=workers, aggregators=1, judges=1), plan)
    alone = _with(settings, f"demo-{stamp}-jo-", PipelineSettings(workers=(), aggregators=0, judges=1), plan)
    return cascade, alone


def _ids(records: Sequence[Verdict], wanted: set[str]) -> int:
    return len({v.item_id for v in records if v.item_id in wanted})


def _vote_count(records: Sequence[Vote], wanted: set[str]) -> int:
    return len({(v.worker, v.item_id) for v in records if v.item_id in wanted})


async def _send(settings: Settings, topic: str, messages: Sequence[tuple[str, BaseModel]]) -> None:
    """Publish (item id, message) pairs keyed by item id and wait until all are acknowledged."""
    producer = kafka.idempotent_producer(settings.kafka, settings.max_record_bytes)
    await producer.start()
    try:
        pending = [await producer.send(topic, encode(message), key=key(item_id)) for item_id, message in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _request(item: Item) -> JudgeRequest:
    return JudgeRequest(item=item, reason=EscalationReason.DISAGREEMENT, policy=JUDGE_ONLY_POLICY, policy_version=0)


def _fresh(item: Item) -> Item:
    """The item stamped as produced now, so end-to-end latency starts when it is sent."""
    return item.model_copy(update={"produced_at": now()})


async def _warm_up(plan: Plan, cascade: Settings, alone: Settings, collector: Collector, progress: Progress) -> None:
    """Every worker votes on every warm-up item and both judges answer once: all models loaded."""
    texts = list(plan.warmup_texts) or ["warm-up"]
    items = [Item(id=f"{WARMUP_PREFIX}{n}", text=text, task=plan.task) for n, text in enumerate(texts)]
    probe = Item(id=f"{WARMUP_PREFIX}judge", text=texts[0], task=plan.task)
    await _send(cascade, cascade.topics.items_topic, [(i.id, _fresh(i)) for i in items])
    await _send(cascade, cascade.topics.judge_topic, [(probe.id, _request(probe))])
    await _send(alone, alone.topics.judge_topic, [(probe.id, _request(probe))])
    item_ids = {i.id for i in items}
    labels, votes = collector.records[cascade.topics.labels_topic], collector.records[cascade.topics.votes_topic]
    # The probes name no escalation, so their verdicts stay on `verdicts` (no aggregator takes them).
    probed, solo = collector.records[cascade.topics.verdicts_topic], collector.records[alone.topics.verdicts_topic]
    total = len(item_ids) + len(items) * len(plan.workers) + 2

    def done() -> int:
        return _ids(labels, item_ids) + _vote_count(votes, item_ids) + _ids(probed, {probe.id}) + _ids(solo, {probe.id})

    await collector.wait_for(done, total, "warm-up", progress, stall_s=WARMUP_TIMEOUT_S)


def audits_due(verdicts: Sequence[Verdict], wanted: set[str], configured_rate: float) -> int:
    """How many of these items' accepted labels the aggregator also sent to the judge: its
    audit draw is a hash of the id, below the rate the verdict records (the target policy's) or
    else the configured shadow-audit rate."""
    due = set()
    for v in verdicts:
        rate = configured_rate if v.audit_rate is None else v.audit_rate
        if v.item_id in wanted and v.decided_by == DecidedBy.WORKERS and audit_draw(v.item_id) < rate:
            due.add(v.item_id)
    return len(due)


async def _cascade_round(chunk: Sequence[Item], sent: set[str], plan: Plan, cascade: Settings,
                         collector: Collector, progress: Progress) -> Round:  # fmt: skip
    """Send `chunk` at once; wait for its verdicts, for every worker's vote on it and for the
    judge's audits of it (the cascade's judge calls are part of its time)."""
    t = cascade.topics
    labels, votes, audits = (collector.records[x] for x in (t.labels_topic, t.votes_topic, t.audits_topic))
    workers, everything = len(plan.workers), len(plan.items)
    started = now()
    await _send(cascade, cascade.topics.items_topic, [(i.id, _fresh(i)) for i in chunk])
    await collector.wait_for(lambda: _ids(labels, sent), len(sent), "cascade", progress, everything)
    await collector.wait_for(
        lambda: _vote_count(votes, sent), len(sent) * workers, "votes", progress, everything * workers
    )
    due = audits_due(labels, sent, cascade.aggregator.audit_rate)
    await collector.wait_for(lambda: _ids(audits, sent), due, "audits", progress)
    return Round(started, [i.id for i in chunk])


async def _judge_only_round(chunk: Sequence[Item], sent: set[str], plan: Plan, alone: Settings,
                            collector: Collector, progress: Progress) -> Round:  # fmt: skip
    """Send `chunk` to the lone judge at once; wait for all its verdicts."""
    labels = collector.records[alone.topics.verdicts_topic]
    started = now()
    await _send(alone, alone.topics.judge_topic, [(i.id, _request(_fresh(i))) for i in chunk])
    await collector.wait_for(lambda: _ids(labels, sent), len(sent), "judge-only", progress, len(plan.items))
    return Round(started, [i.id for i in chunk])


async def _timed_passes(plan: Plan, cascade: Settings, alone: Settings, collector: Collector,
                        progress: Progress) -> tuple[list[Round], list[Round]]:  # fmt: skip
    """Both passes over the items in `plan.rounds` alternating rounds (cascade, then judge alone,
    on the same chunk), so slow drifts in a shared machine's load hit both passes alike."""
    size = math.ceil(len(plan.items) / max(plan.rounds, 1))
    sent: set[str] = set()
    cascade_rounds: list[Round] = []
    judge_rounds: list[Round] = []
    for start in range(0, len(plan.items), size):
        chunk = plan.items[start : start + size]
        sent |= {i.id for i in chunk}
        cascade_rounds.append(await _cascade_round(chunk, sent, plan, cascade, collector, progress))
        judge_rounds.append(await _judge_only_round(chunk, sent, plan, alone, collector, progress))
    return cascade_rounds, judge_rounds


def _cancel_on_sigterm() -> None:
    """SIGTERM cancels the run like Ctrl-C does, so the tiers are stopped, not orphaned."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def measure(settings: Settings, plan: Plan, config: Path | None, progress: Progress) -> Measurement:
    """Run both passes of `plan` on the broker of `settings` (see the module docstring)."""
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    cascade, alone = pass_settings(settings, stamp, plan)
    await create_topics(cascade)
    await create_topics(alone)
    tiers = Tiers(settings.home / "demo" / stamp)
    models: dict[str, type[BaseModel]] = {
        cascade.topics.labels_topic: Verdict,
        cascade.topics.votes_topic: VoteBatch,
        cascade.topics.verdicts_topic: Verdict,
        cascade.topics.audits_topic: Verdict,
        alone.topics.verdicts_topic: Verdict,
    }
    collector = Collector(settings, models, tiers)
    _cancel_on_sigterm()
    try:
        await tiers.start(cascade, config)
        await tiers.start(alone, config)
        await collector.start()
        await _warm_up(plan, cascade, alone, collector, progress)
        # The machine may be shared: the 1-minute load averages say how busy it was.
        load = {"cpus": float(os.cpu_count() or 1), "load_1m_before": os.getloadavg()[0]}
        cascade_rounds, judge_rounds = await _timed_passes(plan, cascade, alone, collector, progress)
        load["load_1m_after"] = os.getloadavg()[0]
        policy = await _policy(cascade, plan)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        await collector.stop()
        await tiers.stop()
        if not plan.keep_topics:
            await delete_topics([cascade, alone])
    return Measurement(
        task=plan.task,
        source=plan.source,
        item_ids=[i.id for i in plan.items],
        workers=plan.workers,
        judge=plan.judge,
        verdicts=collector.records[cascade.topics.labels_topic],
        votes=collector.records[cascade.topics.votes_topic],
        judge_only=collector.records[alone.topics.verdicts_topic],
        cascade_rounds=cascade_rounds,
        judge_only_rounds=judge_rounds,
        machine=load,
        audits=collector.records[cascade.topics.audits_topic],
        policy=policy,
    )


async def _policy(settings: Settings, plan: Plan) -> dict[str, Any]:
    """The policy the cascade ran: its name, and for the target policy the target and the rule
    in force at the end of the run (the rules topic, else the one every aggregator starts from)."""
    if plan.policy != "target":
        return {"name": plan.policy, "quorum": plan.quorum}
    rule = (await current_rules(settings)).get(plan.task) or RuleTable(settings, settings.tasks()).rule(plan.task)
    target = settings.aggregator.target
    return {
        "name": "target",
        "max_disagreement": target.max_disagreement,
        "confidence": target.confidence,
        "rule": rule_summary(rule),
    }
