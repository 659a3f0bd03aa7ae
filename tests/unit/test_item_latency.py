"""`tribunal_item_latency_seconds{task,decided_by}`: every label the aggregator publishes counts
its end-to-end latency once, from the source record's timestamp when the item came through an
intake, else from the item's production."""

from __future__ import annotations

from tests.unit.aggregator_kit import (
    T0,
    escalated,
    item_record,
    new_processor,
    outputs_on,
    verdict_record,
    vote_record,
)
from tribunal.consumers.verdicts import observe_latency
from tribunal.core.metrics import ITEM_LATENCY
from tribunal.schemas.messages import SourceRecord


def observed(task: str, decided_by: str) -> tuple[float, float]:
    """(sum, count) of the histogram's series for `task` and `decided_by`."""
    (family,) = ITEM_LATENCY.labels(task, decided_by).collect()
    values = {sample.name.rsplit("_", 1)[-1]: sample.value for sample in family.samples}
    return values["sum"], values["count"]


def test_the_clock_starts_at_the_source_record_when_there_is_one() -> None:
    before = observed("latency-test", "workers")
    observe_latency("latency-test", "workers", 100.0, None, 103.0)
    source = SourceRecord(name="s", topic="t", partition=0, offset=1, timestamp_ms=90_000, value_b64="")
    observe_latency("latency-test", "workers", 100.0, source, 103.0)
    after = observed("latency-test", "workers")
    assert after[1] - before[1] == 2
    assert after[0] - before[0] == 3.0 + 13.0


async def test_worker_and_judge_labels_each_count_once() -> None:
    processor = await new_processor()
    workers_before, judge_before = observed("sentiment", "workers"), observed("sentiment", "judge")
    outputs = await processor.process(
        [item_record(), vote_record("w1", "positive"), vote_record("w2", "positive")], T0 + 2.0
    )
    assert len(outputs_on(outputs, "u-labels")) == 1
    workers_after = observed("sentiment", "workers")
    assert workers_after[1] - workers_before[1] == 1
    assert abs((workers_after[0] - workers_before[0]) - 2.0) < 1e-6

    other = await new_processor()
    request = await escalated(other, "b")
    assert outputs_on(await other.process([verdict_record(request)], T0 + 5.0), "u-labels")
    judge_after = observed("sentiment", "judge")
    assert judge_after[1] - judge_before[1] == 1
