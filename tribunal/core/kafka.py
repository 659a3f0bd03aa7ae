"""aiokafka client factories: every consumer, producer and admin client of Tribunal is built here,
so security (TLS, SASL PLAIN/SCRAM), timeouts and record size limits are configured in exactly
one place. `start` starts any of them and turns "no broker answers" into one clear error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context

from tribunal.core.errors import BrokerUnavailableError
from tribunal.core.intake import default_partition
from tribunal.core.kafka_settings import DEFAULT_RECORD_LIMIT, KafkaSettings, RuntimeSettings
from tribunal.core.logs import get_logger

__all__ = [
    "admin_client",
    "connection_options",
    "consumer",
    "idempotent_producer",
    "partition_for",
    "start",
    "transactional_producer",
]

log = get_logger("tribunal.kafka")
# A record batch's own header on top of the records it holds; producers may send, and topics
# accept, a record of `max_record_bytes` plus this.
BATCH_OVERHEAD_BYTES = 1_024


class _Client(Protocol):
    async def start(self) -> None: ...


async def start(
    client: _Client, kafka: KafkaSettings, *, wait_s: float = 0.0, stop: asyncio.Event | None = None
) -> bool:
    """Start an aiokafka client, retrying for up to `wait_s` while no broker answers; then
    `BrokerUnavailableError` (one line naming the address), the client closed so that nothing
    is left behind to warn about at exit. False, the client closed, if `stop` is set while
    waiting: a tier told to stop (SIGTERM) before any broker answered exits at once, rather
    than holding a pod's termination for up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    delay = 0.5
    while True:
        try:
            with _quiet_bootstrap():
                await client.start()
            return True
        except asyncio.CancelledError:
            # Cancelled mid-start (a task torn down at shutdown): a half-open client would leak
            # its connection, seen at exit as "Unclosed AIOKafkaConnection".
            await _close(client)
            raise
        except (KafkaConnectionError, OSError) as exc:
            await _close(client)
            if time.monotonic() + delay > deadline:
                raise BrokerUnavailableError(f"no Kafka broker answered at {kafka.bootstrap_servers} ({exc})") from None
            log.warning("broker_unreachable_waiting", bootstrap=kafka.bootstrap_servers, retry_in_s=delay)
            if await _stopped_within(stop, delay):
                log.info("broker_wait_stopped", bootstrap=kafka.bootstrap_servers)
                return False
            delay = min(delay * 2, 10.0)


async def _stopped_within(stop: asyncio.Event | None, seconds: float) -> bool:
    """Wait `seconds`, or less if `stop` is set meanwhile (then True)."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


_quiet = {"depth": 0, "level": logging.NOTSET}


@contextlib.contextmanager
def _quiet_bootstrap() -> Iterator[None]:
    """aiokafka logs each failed bootstrap connection as an error; `start` reports the failure
    itself, once, so aiokafka's loggers (which inherit this level) are muted while clients
    start. Overlapping starts are counted so the level is restored once, by the last."""
    library = logging.getLogger("aiokafka")
    if _quiet["depth"] == 0:
        _quiet["level"] = library.level
        library.setLevel(logging.CRITICAL)
    _quiet["depth"] += 1
    try:
        yield
    finally:
        _quiet["depth"] -= 1
        if _quiet["depth"] == 0:
            library.setLevel(_quiet["level"])


async def _close(client: object) -> None:
    """Release a client whose start failed (aiokafka warns about unclosed clients otherwise)."""
    closer = getattr(client, "stop", None) or getattr(client, "close", None)
    if closer is None:
        return
    try:
        await closer()
    except (KafkaError, OSError, RuntimeError, AttributeError) as exc:  # half-started: best effort
        log.debug("client_close_failed", error=repr(exc))


def connection_options(kafka: KafkaSettings) -> dict[str, Any]:
    """The keyword arguments every aiokafka client takes to reach the cluster securely."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_password is not None  # checked by KafkaSettings
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    password = kafka.ssl_keyfile_password.get_secret_value() if kafka.ssl_keyfile_password else None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
        certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
        keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
        password=password,
    )
    context.check_hostname = kafka.ssl_check_hostname
    return context


def consumer(
    kafka: KafkaSettings,
    runtime: RuntimeSettings,
    *topics: str,
    group_id: str | None,
    listener: ConsumerRebalanceListener | None = None,
    record_limit: int = DEFAULT_RECORD_LIMIT,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A manually committing, read_committed consumer. With several topics, partitions are assigned
    by range, so one member gets the same partition numbers of co-partitioned topics."""
    options: dict[str, Any] = {
        **connection_options(kafka),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        # A partition fetch must hold the largest record any tier may write.
        "max_partition_fetch_bytes": max(1024 * 1024, record_limit + BATCH_OVERHEAD_BYTES),
        "max_poll_interval_ms": runtime.max_poll_interval_ms,
        "session_timeout_ms": runtime.session_timeout_ms,
        "heartbeat_interval_ms": max(runtime.session_timeout_ms // 4, 500),
        "partition_assignment_strategy": (RangePartitionAssignor,),
        **overrides,
    }
    client = AIOKafkaConsumer(**options)
    if topics:
        client.subscribe(list(topics), listener=listener)
    return client


def max_request_size(record_limit: int) -> int:
    """A producer's `max_request_size` for records of up to `record_limit` bytes; `topics create`
    gives every topic the same `max.message.bytes`, so what a producer sends, the topic takes."""
    return record_limit + BATCH_OVERHEAD_BYTES


def transactional_producer(
    kafka: KafkaSettings, runtime: RuntimeSettings, transactional_id: str, record_limit: int = DEFAULT_RECORD_LIMIT
) -> AIOKafkaProducer:
    """A producer whose sends and consumer offsets commit atomically. A stable transactional id
    per process fences a crashed predecessor with the same id as soon as this one starts."""
    return AIOKafkaProducer(
        **connection_options(kafka),
        transactional_id=transactional_id,
        transaction_timeout_ms=runtime.transaction_timeout_ms,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=max_request_size(record_limit),
        compression_type=None,
    )


def idempotent_producer(
    kafka: KafkaSettings, record_limit: int = DEFAULT_RECORD_LIMIT, **overrides: Any
) -> AIOKafkaProducer:
    """A producer that never writes a record twice on retry (for ingest and replay)."""
    options: dict[str, Any] = {
        **connection_options(kafka),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 10,
        "max_batch_size": 512 * 1024,
        "max_request_size": max_request_size(record_limit),
        **overrides,
    }
    return AIOKafkaProducer(**options)


def admin_client(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_options(kafka))


def partition_for(key: bytes | None, partitions: Sequence[int]) -> int:
    """The default partitioner's choice (as every Kafka client makes it): murmur2 of the key
    modulo the partition count; a record without a key goes to any partition."""
    if key is None:
        return random.choice(partitions)
    return partitions[default_partition(key, len(partitions))]
