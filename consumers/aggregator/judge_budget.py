"""The judge budget: whether an escalation may go to the judge now.

Two bounds, both optional: a rate (`judge_budget_per_s`, a token bucket per aggregator instance)
and the judge's backlog (`judge_max_backlog`: escalations published but not yet committed by
the judge group, probed at most once a second). Past either, the aggregator labels the item by
the workers' plurality, flagged `decided_by=fallback`, so the judge's queue stays bounded
whatever its speed and every item still gets exactly one label. Audits are simply skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from tribunal.core import kafka
from tribunal.core.metrics import JUDGE_BACKLOG
from tribunal.core.settings import AggregatorSettings, Settings
from tribunal.core.topics import partitions_of

__all__ = ["BacklogProbe", "JudgeBudget", "KafkaBacklogProbe", "TokenBucket"]


class BacklogProbe(Protocol):
    async def __call__(self) -> int: ...

    async def close(self) -> None: ...


PROBE_INTERVAL_S = 1.0


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, at most `burst` held. No clock inside: the caller passes `now`,
    so the bucket is deterministic and table-testable."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {self.rate}, {self.burst}")
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float) -> bool:
        """Spend one token if there is one at time `now`; refill by elapsed time first."""
        if now > self.updated_at:
            self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.rate)
            self.updated_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class JudgeBudget:
    """Whether one more escalation may go to the judge now: the token bucket and the backlog bound."""

    def __init__(self, config: AggregatorSettings, probe: BacklogProbe | None = None) -> None:
        rate = config.judge_budget_per_s
        self._bucket = TokenBucket(rate, burst=max(1.0, rate)) if rate else None
        self._max_backlog = config.judge_max_backlog
        self._probe = probe
        self.backlog = 0
        self._probed_at = float("-inf")

    @property
    def limited(self) -> bool:
        return self._bucket is not None or self._max_backlog is not None

    def admit(self, now: float) -> bool:
        """True if one more request may go to the judge at `now` (spends budget if so)."""
        if self._max_backlog is not None and self.backlog >= self._max_backlog:
            return False
        if self._bucket is not None and not self._bucket.take(now):
            return False
        self.backlog += 1  # counted until the next probe says otherwise
        return True

    async def close(self) -> None:
        if self._probe is not None:
            await self._probe.close()

    async def refresh(self, now: float) -> None:
        """Re-measure the judge's backlog, at most once per PROBE_INTERVAL_S."""
        if self._max_backlog is None or self._probe is None or now - self._probed_at < PROBE_INTERVAL_S:
            return
        self._probed_at = now
        self.backlog = await self._probe()
        JUDGE_BACKLOG.set(self.backlog)


class KafkaBacklogProbe:
    """Backlog = end offsets of the judge topic minus the judge group's committed offsets.

    Offsets also number transaction commit markers, so this over-states the backlog by at most
    one per partition: the bound it enforces errs on the safe side."""

    def __init__(self, settings: Settings, judge_group: str) -> None:
        self._settings = settings
        self._group = judge_group
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __call__(self) -> int:
        admin, consumer = await self._clients()
        tps = await partitions_of(self._settings, self._settings.topics.judge_topic)
        end = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(self._group, partitions=tps)
        return sum(max(0, end[tp] - (committed[tp].offset if tp in committed else 0)) for tp in tps)

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        """The admin client and consumer, each started once and kept only once started: a client
        whose start failed or was cancelled is closed by `kafka.start`, never left behind (a
        re-created one used to leak the first, connections and all)."""
        if self._admin is None:
            admin = kafka.admin_client(self._settings.kafka)
            await kafka.start(admin, self._settings.kafka)
            self._admin = admin
        if self._consumer is None:
            consumer = kafka.consumer(self._settings.kafka, self._settings.runtime, group_id=None)
            await kafka.start(consumer, self._settings.kafka)
            self._consumer = consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        consumer, admin = self._consumer, self._admin
        self._consumer = self._admin = None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()
