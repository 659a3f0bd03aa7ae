"""Shared fixtures: a real Kafka broker for the whole session, chosen in this order:

1. `KAFKA_BOOTSTRAP_SERVERS` if set (any real cluster);
2. a testcontainers Kafka (KRaft) if a Docker engine answers;
3. a broker of this session's own: the project's local broker (jars from `tribunal kafka fetch`)
   on free ports with its data in a fresh temporary folder, stopped and removed at the end. It
   never touches 9092 or the broker `make demo` / `tribunal kafka up` run, so a broker left
   running by another checkout cannot make the tests fail, and the tests cannot disturb it.

A test that needs a broker and cannot get one fails in CI (CI=true) and skips elsewhere, with
one sentence saying what is missing.

A Schema Registry (Confluent REST API) likewise: `SCHEMA_REGISTRY_URL` if set, else the project's
own (`tribunal.localregistry`: Apicurio Registry, built once into `.tribunal/registry/` of this
checkout) on a free port with its data in a fresh temporary folder, stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tribunal.localkafka import LocalBroker
    from tribunal.localregistry import LocalRegistry

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
    from tribunal.core.errors import BrokerUnavailableError, TribunalError

    for attempt in (1, 2):  # a free port can be taken between choosing it and the JVM binding it
        home = Path(tempfile.mkdtemp(prefix="tribunal-test-broker-"))
        try:
            broker = _own_broker(home)
            address = broker.up()
            break
        except TribunalError as exc:
            shutil.rmtree(home, ignore_errors=True)
            if attempt == 2 or not isinstance(exc, BrokerUnavailableError):
                message = f"no Kafka broker for integration tests: {exc}"
                if os.environ.get("CI"):
                    pytest.fail(message)
                pytest.skip(message)
    try:
        yield address
    finally:
        broker.down()
        shutil.rmtree(home, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _own_broker(home: Path) -> LocalBroker:
    """A local broker living in `home` on two free ports, with the jars this checkout fetched
    (`.tribunal/kafka/libs-<version>`, fetched now if absent) linked in, not fetched again."""
    from tribunal.core.settings import BrokerSettings
    from tribunal.localkafka import LocalBroker

    jars = LocalBroker(REPO / ".tribunal", BrokerSettings()).fetch()
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / jars.name).symlink_to(jars.resolve())
    return LocalBroker(home, BrokerSettings(port=_free_port(), controller_port=_free_port()))


@pytest.fixture(scope="session")
def _registry_service() -> Iterator[tuple[str, LocalRegistry | None]]:
    """(URL, our registry or None): `SCHEMA_REGISTRY_URL`, else a registry of this session's own."""
    explicit = os.environ.get("SCHEMA_REGISTRY_URL")
    if explicit:
        yield explicit, None
        return
    from tribunal.core.errors import TribunalError

    for attempt in (1, 2):  # a free port can be taken between choosing it and the JVM binding it
        home = Path(tempfile.mkdtemp(prefix="tribunal-test-registry-"))
        try:
            registry = _own_registry(home)
            url = registry.start()
            break
        except TribunalError as exc:  # no java or mvn, a failed build, a port taken meanwhile
            shutil.rmtree(home, ignore_errors=True)
            if attempt == 2:
                message = f"no Schema Registry for integration tests: {exc}"
                if os.environ.get("CI"):
                    pytest.fail(message)
                pytest.skip(message)
    try:
        yield url, registry
    finally:
        registry.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def schema_registry_url(_registry_service: tuple[str, LocalRegistry | None]) -> str:
    """The Confluent-compatible URL of a Schema Registry for this test session."""
    return _registry_service[0]


@pytest.fixture
def local_registry(_registry_service: tuple[str, LocalRegistry | None]) -> Iterator[LocalRegistry | None]:
    """The session's own registry, to stop and start mid-test (an outage), on the same port and
    URL; None when `SCHEMA_REGISTRY_URL` names an external one (a test needing an outage skips).

    Its storage is an H2 file in the session's temporary home, so a restart keeps the registered
    schemas, their ids and the compatibility settings (Apicurio's default, in memory, would lose
    them). After the test the registry is started again if the test left it stopped."""
    registry = _registry_service[1]
    yield registry
    if registry is not None:
        registry.start()


def _own_registry(home: Path) -> LocalRegistry:
    """A local registry living in `home` on a free port, with the app this checkout built
    (`.tribunal/registry/<version>`, built now if absent) linked in, not built again."""
    from tribunal.core.connect_settings import RegistrySettings
    from tribunal.localregistry import LocalRegistry

    return LocalRegistry(REPO / ".tribunal", RegistrySettings()).private(home, _free_port())
