"""A genuine single-node Apache Kafka (KRaft) broker, assembled from Maven Central and run locally.

`fetch` resolves the broker jars with Maven (cached in ~/.m2), `ensure` formats the storage once
and starts the JVM in its own session, `down` stops it by PID. Everything lives under
`<home>/kafka/`: jars, data, config, log and PID. Bound to 127.0.0.1 only.

A Kafka that something else started on the configured port (another checkout's demo, a
developer's own cluster) is used as it is, never stopped; a port held by anything that does not
answer the Kafka protocol is an error that says what to do.
"""

from __future__ import annotations

import base64
import enum
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tribunal.core.errors import BrokerUnavailableError, ConfigError
from tribunal.core.settings import BrokerSettings

__all__ = ["LocalBroker", "Outcome", "new_cluster_id", "speaks_kafka"]

READY_LINE = "Kafka Server started"


class Outcome(enum.StrEnum):
    """How `LocalBroker.ensure` got a broker."""

    STARTED = "started"  # this call started it
    REUSED = "reused"  # ours, already running
    FOREIGN = "foreign"  # a Kafka we did not start answers on the port: used, never stopped


@dataclass(frozen=True)
class LocalBroker:
    """The local broker living under `home/kafka`."""

    home: Path
    settings: BrokerSettings

    @property
    def root(self) -> Path:
        return self.home / "kafka"

    @property
    def libs(self) -> Path:
        return self.root / f"libs-{self.settings.version}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.settings.port}"

    @property
    def log_file(self) -> Path:
        return self.root / "broker.log"

    @property
    def _pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def _data_dir(self) -> Path:
        return self.root / "data"

    def fetch(self) -> Path:
        """Resolve the broker jars into `libs` unless already there; return the folder."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ConfigError(
                "Maven (mvn) is not on PATH: install Maven 3.8+ (it fetches the Kafka jars once) and Java 17 "
                "to run the local broker, or point TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS at a running Kafka"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        pom = self.root / "pom.xml"
        pom.write_text(_resource("pom.xml"), encoding="utf-8")
        staging = (self.root / f"{self.libs.name}.partial").resolve()
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}", f"-Dkafka.version={self.settings.version}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ConfigError(
                f"Maven could not fetch Kafka {self.settings.version}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        marker.touch()
        return self.libs

    def pid(self) -> int | None:
        """The PID of our running broker, or None (a stale PID file is removed)."""
        try:
            pid = int(self._pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        if _alive(pid):
            return pid
        self._pid_file.unlink(missing_ok=True)
        return None

    def reachable(self) -> bool:
        return _port_open(self.settings.port)

    def up(self) -> str:
        """Start the broker, or reuse the one already running; return its bootstrap address."""
        return self.ensure()[0]

    def ensure(self) -> tuple[str, Outcome]:
        """(bootstrap address, how): start our broker, reuse ours, or use a foreign Kafka that
        already answers on the port. Anything else on the port is a `ConfigError` (exit 2: the
        ports are the thing to change; exit 3 means no broker answered where one should)."""
        if self.pid() is not None and self.reachable():
            return self.bootstrap, Outcome.REUSED
        if self.pid() is None and self.reachable():
            if speaks_kafka(self.settings.port):
                return self.bootstrap, Outcome.FOREIGN
            raise ConfigError(
                f"port {self.settings.port} is taken by a process that is not a Kafka broker; stop it, or give "
                f"this checkout other ports (TRIBUNAL_BROKER__PORT, TRIBUNAL_BROKER__CONTROLLER_PORT and "
                f"TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:<port>)"
            )
        java = shutil.which("java")
        if java is None:
            raise ConfigError("Java is not on PATH: install Java 17 (a JDK or JRE) to run the local Kafka broker")
        self.fetch()
        properties = self._write_config()
        self._format(java, properties)
        pid = self._start(java, properties)
        self._pid_file.write_text(str(pid), encoding="utf-8")
        self._wait_ready(pid)
        return self.bootstrap, Outcome.STARTED

    def down(self) -> bool:
        """Stop our broker by PID (SIGTERM, then SIGKILL after a grace period). True if one ran."""
        pid = self.pid()
        if pid is None:
            return False
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self._pid_file.unlink(missing_ok=True)
        return True

    def _write_config(self) -> Path:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        text = _resource("server.properties").format(
            port=self.settings.port,
            controller_port=self.settings.controller_port,
            data_dir=self._data_dir.resolve(),
        )
        properties = self.root / "server.properties"
        properties.write_text(text, encoding="utf-8")
        (self.root / "log4j.properties").write_text(_resource("log4j.properties"), encoding="utf-8")
        return properties

    def _classpath(self) -> str:
        # Java expands the trailing `*` itself; it must reach java unexpanded.
        return f"{self.libs.resolve()}/*"

    def _format(self, java: str, properties: Path) -> None:
        if (self._data_dir / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        command = [java, "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
                   "-t", cluster_id, "-c", str(properties), "--ignore-formatted"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerUnavailableError(f"formatting Kafka storage failed: {result.stderr[-2000:]}")

    def _start(self, java: str, properties: Path) -> int:
        """Launch the JVM detached (not our child: it outlives this process, and no zombie or
        Popen object is left behind); return its PID."""
        log4j = (self.root / "log4j.properties").resolve()
        command = [java, f"-Xms{self.settings.heap}", f"-Xmx{self.settings.heap}", "-XX:+UseG1GC",
                   f"-Dlog4j.configuration=file:{log4j}", "-cp", self._classpath(),
                   "kafka.Kafka", str(properties)]  # fmt: skip
        script = f"{shlex.join(command)} >{shlex.quote(str(self.log_file))} 2>&1 </dev/null & echo $!"
        # A session of its own: the caller's Ctrl-C does not reach the broker.
        launched = subprocess.run(
            ["/bin/sh", "-c", script], capture_output=True, text=True, check=True, start_new_session=True
        )
        return int(launched.stdout.strip())

    def _wait_ready(self, pid: int) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                self._pid_file.unlink(missing_ok=True)
                raise BrokerUnavailableError(f"the broker exited during start-up; see {self.log_file}")
            if self.reachable() and READY_LINE in self.log_file.read_text(encoding="utf-8", errors="replace"):
                return
            time.sleep(0.25)
        self.down()
        raise BrokerUnavailableError(
            f"the broker did not start within {self.settings.start_timeout_s}s; see {self.log_file}"
        )


def new_cluster_id() -> str:
    """A random cluster id as Kafka's `Uuid.randomUuid()` makes one: 16 bytes in URL-safe base64,
    never starting with '-' (the storage tool would read such an id as an option: 1 format in 64
    failed with "argument --cluster-id/-t: expected one argument")."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _resource(name: str) -> str:
    return resources.files("tribunal.localkafka").joinpath(name).read_text(encoding="utf-8")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def speaks_kafka(port: int, timeout_s: float = 2.0) -> bool:
    """Whether 127.0.0.1:`port` answers a Kafka ApiVersions (v0) request with the same
    correlation id: a broker, whoever started it, not merely an open port."""
    client_id = b"tribunal-probe"
    correlation = 0x7B1B
    body = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            head = _read_exactly(sock, 8)
    except OSError:
        return False
    if head is None:
        return False
    size, answered = struct.unpack(">ii", head)
    return bool(size >= 4 and answered == correlation)


def _read_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data
