"""aiokafka client factories: every consumer, producer and admin client of Tribunal is built here,
so security (TLS, SASL PLAIN/SCRAM) and timeouts are configured in exactly one place."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.helpers import create_ssl_context

from tribunal.core.settings import KafkaSettings, RuntimeSettings

__all__ = [
    "admin_client",
    "connection_options",
    "consumer",
    "idempotent_producer",
    "transactional_producer",
]


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


def transactional_producer(kafka: KafkaSettings, runtime: RuntimeSettings, transactional_id: str) -> AIOKafkaProducer:
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
        compression_type=None,
    )


def idempotent_producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that never writes a record twice on retry (for ingest and replay)."""
    options: dict[str, Any] = {
        **connection_options(kafka),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 10,
        "max_batch_size": 512 * 1024,
        **overrides,
    }
    return AIOKafkaProducer(**options)


def admin_client(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_options(kafka))
