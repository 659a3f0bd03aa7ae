"""Prometheus metrics shared by every tier; `serve_metrics(port)` exposes `/metrics`.

Names are `tribunal_*` and follow Prometheus conventions: the unit as a plural suffix
(`_seconds`, `_records`, `_items`), `_total` on counters, `_ratio` on values in [0, 1], and
`tribunal_build_info` (always 1) carries the version as labels. Labels stay low-cardinality
(tier, topic, worker, kind, reason), never item ids.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

__all__ = [
    "AUDITS",
    "AWAITING_VERDICTS",
    "BATCH_SIZE",
    "BUILD_INFO",
    "CALIBRATION_UNREADABLE",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "DECISIONS",
    "FAST_PATH_PRECISION",
    "ITEM_LATENCY",
    "JUDGE_BACKLOG",
    "LATE_VOTES",
    "PENDING_ITEMS",
    "RECORDS_IN",
    "RECORDS_OUT",
    "REGISTRY_UP",
    "SKIPPED_RECORDS",
    "STAGE_SECONDS",
    "TARGET_AUDIT_RATE",
    "TARGET_CUTOFF",
    "TARGET_RULE",
    "VOTE_WAITS_OVER",
    "WORKER_ACCURACY",
    "forget_lag",
    "serve_metrics",
]

RECORDS_IN = Counter("tribunal_records_in_total", "Records consumed", ["tier", "topic"])
RECORDS_OUT = Counter("tribunal_records_out_total", "Records produced", ["tier", "topic"])
DEAD_LETTERS = Counter("tribunal_dead_letters_total", "Records sent to a dead-letter topic", ["tier", "topic", "kind"])
# A bad record of a topic whose dead letters another tier writes (items: the aggregator), so
# that one bad record makes one letter.
SKIPPED_RECORDS = Counter(
    "tribunal_skipped_records_total", "Bad records skipped without a dead letter", ["tier", "topic", "kind"]
)
BATCH_SIZE = Histogram(
    "tribunal_batch_records",
    "Records per processed batch",
    ["tier"],
    buckets=(1, 4, 16, 64, 256, 1024, 4096),
)
STAGE_SECONDS = Histogram(
    "tribunal_stage_seconds",
    "Time per batch in each stage of the loop",
    ["tier", "stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DECISIONS = Counter("tribunal_decisions_total", "Aggregator outcomes", ["outcome", "reason"])
LATE_VOTES = Counter("tribunal_late_votes_total", "Votes for items already decided (ignored)", ["worker"])
VOTE_WAITS_OVER = Counter(
    "tribunal_vote_waits_over_total",
    "Items escalated for a missing vote, by why the wait ended: ceiling, passed (the worker went past "
    "the item without a vote) or silent (no live worker on the partition past the deadline)",
    ["cause"],
)
PENDING_ITEMS = Gauge("tribunal_pending_items", "Items waiting for votes in this aggregator")
AWAITING_VERDICTS = Gauge("tribunal_awaiting_verdict_items", "Escalated items whose judge verdict has not arrived yet")
CONSUMER_LAG = Gauge(
    "tribunal_consumer_lag_records",
    "Records between a partition's high watermark and our position",
    ["tier", "group", "topic", "partition"],
)
WORKER_ACCURACY = Gauge("tribunal_worker_accuracy_ratio", "Learned P(worker agrees with the judge)", ["task", "worker"])
AUDITS = Counter("tribunal_audits_total", "Shadow audits of worker-decided items, by outcome", ["task", "outcome"])
FAST_PATH_PRECISION = Gauge(
    "tribunal_fast_path_precision_ratio",
    "Share of audited worker labels the judge confirmed, with a 95% Wilson interval",
    ["task", "bound"],
)
TARGET_CUTOFF = Gauge(
    "tribunal_target_cutoff_ratio",
    "Trust-score cut-off of the target policy's rule in force (NaN: nothing certified, every item judged)",
    ["task"],
)
CALIBRATION_UNREADABLE = Counter(
    "tribunal_calibration_unreadable",
    "Shipped calibrations that could not be read (that task started cold: every item judged)",
    ["task"],
)
TARGET_AUDIT_RATE = Gauge("tribunal_target_audit_rate_ratio", "Audit-sample rate of the rule in force", ["task"])
TARGET_RULE = Info(
    "tribunal_target_rule", "The target policy's rule in force: version and why it was published", ["task"]
)
JUDGE_BACKLOG = Gauge("tribunal_judge_backlog_records", "Escalations not yet judged, as the aggregator last measured")
# End to end, in production: from the item's source record (its Kafka timestamp) or, for an item
# produced straight to `items`, its `produced_at`, to the transaction that publishes its label.
ITEM_LATENCY = Histogram(
    "tribunal_item_latency_seconds",
    "From an item's source record or production to its label's transaction",
    ["task", "decided_by"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
REGISTRY_UP = Gauge(
    "tribunal_registry_reachable_ratio", "1 while the Schema Registry answers, 0 while a tier waits for it"
)
BUILD_INFO = Info("tribunal_build", "Version of the running Tribunal (the value is always 1)")


def _version() -> str:
    try:
        return version("tribunal")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


BUILD_INFO.info({"version": _version(), "python_version": platform.python_version()})


def serve_metrics(port: int | None) -> None:
    """Start the `/metrics` HTTP endpoint on `port` (0 picks a free port); None disables it."""
    if port is not None:
        start_http_server(port, addr="0.0.0.0")


def forget_lag(tier: str, group: str, partitions: Iterable[tuple[str, int]]) -> None:
    """Drop the lag series of partitions this process no longer owns: a stale value would keep
    reporting the lag of the moment it lost them (its new owner reports the live one)."""
    for topic, partition in partitions:
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(tier, group, topic, str(partition))
