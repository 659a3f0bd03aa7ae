"""Shared fixtures: a real Kafka broker for the whole session, chosen in this order:

1. `KAFKA_BOOTSTRAP_SERVERS` if set (any real cluster);
2. a testcontainers Kafka (KRaft) if a Docker engine answers;
3. the project's own local broker (`tribunal kafka up`), started once and stopped at the end
   if this session started it.

A test that needs a broker and cannot get one fails in CI (CI=true) and skips elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def _docker_kafka() -> tuple[str, object] | None:
    """A testcontainers Kafka when a Docker engine answers, else None."""
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return None  # no engine to ask (asking anyway leaks a socket the client never closes)
    try:
        import docker
    except ImportError:
        return None
    try:
        client = docker.from_env()
    except Exception:  # any failure to reach an engine means "no Docker here"
        return None
    try:
        client.ping()
    except Exception:
        return None
    finally:
        client.close()
    from testcontainers.community.kafka import KafkaContainer

    container = (
        KafkaContainer("confluentinc/cp-kafka:7.9.0")
        .with_kraft()
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    )
    container.start()
    return container.get_bootstrap_server(), container


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real Kafka broker for this test session."""
    explicit = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if explicit:
        yield explicit
        return
    docker = _docker_kafka()
    if docker is not None:
        address, container = docker
        yield address
        container.stop()  # type: ignore[attr-defined]
        return
    from tribunal.core.broker import LocalBroker
    from tribunal.core.errors import TribunalError
    from tribunal.core.settings import load_settings

    # The same broker `make kafka-up` runs (TRIBUNAL_BROKER__PORT etc. apply), reused if it is up.
    broker = LocalBroker(REPO / ".tribunal", load_settings().broker)
    already_running = broker.pid() is not None
    try:
        address = broker.up()
    except TribunalError as exc:
        message = f"no Kafka broker for integration tests: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield address
    if not already_running:
        broker.down()
