"""Which worker groups have a live member for which `items` partitions, as Kafka's group
coordinator sees them (DescribeGroups, at most once per `POLL_S`).

Straggler detection asks this before it takes a worker that stopped reporting for dead: a member
whose consumer still heartbeats to its group is alive even when its loop is starved of CPU or on a
slow model call (that case is left to the ceiling). A member that crashed stays listed until its
session times out (`runtime.session_timeout_ms`); one that stopped cleanly leaves at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from tribunal.core import kafka
from tribunal.core.logs import get_logger
from tribunal.core.settings import Settings

__all__ = ["GroupWatch", "Membership", "live_partitions"]

POLL_S = 1.0
REBALANCING = frozenset({"PreparingRebalance", "CompletingRebalance"})
log = get_logger("tribunal.group_watch")


class Membership(Protocol):
    """`live(worker, partition)`: True if a live member of the worker's group owns the items
    partition (or the group is rebalancing with members), False if none does, None if unknown."""

    def live(self, worker: str, partition: int) -> bool | None: ...

    async def refresh(self, now: float) -> None: ...

    async def close(self) -> None: ...


def live_partitions(group: dict[str, Any], topic: str) -> set[int] | bool:
    """From one DescribeGroups entry: the partitions of `topic` its members own, or True while
    it rebalances with members (assignments are in flux), or False if it has no member."""
    members = group.get("members") or []
    if not members:
        return False
    if group.get("state") in REBALANCING:
        return True
    owned: set[int] = set()
    for member in members:
        raw = member.get("member_assignment") or b""
        if raw:
            for tp in ConsumerProtocolMemberAssignment.decode(raw).partitions():
                if tp.topic == topic:
                    owned.add(tp.partition)
    return owned


class GroupWatch:
    """`Membership` of the configured workers' groups, polled from the cluster."""

    def __init__(self, settings: Settings, workers: Sequence[str]) -> None:
        self._groups = {settings.topics.worker_group(w): w for w in workers}
        self._settings = settings
        self._topic = settings.topics.items_topic
        self._admin: AIOKafkaAdminClient | None = None
        self._polled_at = float("-inf")
        self._live: dict[str, set[int] | bool] = {}

    def live(self, worker: str, partition: int) -> bool | None:
        owned = self._live.get(worker)
        if owned is None:
            return None
        return owned if isinstance(owned, bool) else partition in owned

    async def refresh(self, now: float) -> None:
        """Describe the groups again if the last answer is older than POLL_S; on a broker error
        forget what was known (unknown counts as no live member, as before this watch)."""
        if now - self._polled_at < POLL_S:
            return
        self._polled_at = now
        try:
            if self._admin is None:
                self._admin = kafka.admin_client(self._settings.kafka)
                await self._admin.start()
            # One group per request: aiokafka 0.14 parses a v3 DescribeGroups answer with the v2
            # schema, which misreads every group after the first (and breaks the connection).
            admin = self._admin
            responses = [r for g in self._groups for r in await admin.describe_consumer_groups([g])]
        except KafkaError as exc:
            log.warning("group_describe_failed", error=repr(exc))
            self._live = {}
            return
        live: dict[str, set[int] | bool] = {}
        for response in responses:
            for group in response.to_object().get("groups", []):
                worker = self._groups.get(group.get("group", ""))
                if worker is not None and not group.get("error_code"):
                    live[worker] = live_partitions(group, self._topic)
        self._live = live

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
