"""A local Schema Registry with the Confluent REST API: Apicurio Registry, built from Maven Central.

What is genuine: the Apicurio Registry 2.4.2.Final application (`io.apicurio:apicurio-registry-app`
and everything it depends on, from Maven Central), built into a Quarkus fast-jar by the genuine
quarkus-maven-plugin 2.16.4.Final (the Quarkus of that release). Its Confluent-compatible API is
served at `/apis/ccompat/v7`.

What is ours: one build step. Apicurio's build needs
`io.apicurio:apicurio-common-app-components-config-index-deployment:0.1.18.Final`, which Maven
Central does not serve; `templates/standin/` is a stand-in for it (its Java file says what it
does), compiled and deployed to a file repository under `<home>` (repository id `tribunal-local`),
never installed into ~/.m2 as Apicurio's own. Also ours: the wrapper build settings in
`templates/app/` (index the app jar, fast-jar packaging, the app's own web.xml) and one library
swap (the JSON Schema validator the app names is on JitPack only: Maven Central's
`com.github.erosb` build of the same library replaces it).

Maven caches the stand-in in ~/.m2 when the app build resolves it, and later builds reuse that
cached copy (Maven then only checks that the repository still has the file): after changing the
stand-in's sources, delete ~/.m2/repository/io/apicurio/apicurio-common-app-components-config-index-deployment/.

`fetch` runs the two Maven builds once into `<home>/registry/<version>/` (artifacts cached in
~/.m2); `start` runs the registry (java from PATH) bound to 127.0.0.1 with its data in an H2 file
under `<home>/registry/data/`, so schemas, ids and compatibility settings survive a restart;
`stop` stops it by its PID, only after checking that the PID is still our registry's JVM.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import httpx

from tribunal.core.connect_settings import RegistrySettings
from tribunal.core.errors import ConfigError, FatalError

__all__ = ["LOCAL_REPOSITORY_ID", "SUPPORTED_VERSIONS", "LocalRegistry", "RegistryStatus"]

# The templates are made for this release: its Quarkus version, its stand-in's coordinates and its
# web.xml. Another release needs other templates, so it is refused before Maven runs.
SUPPORTED_VERSIONS = ("2.4.2.Final",)
# The id of the stand-in's file repository (in the templates' POMs): Maven records in ~/.m2 which
# repository each cached artifact came from, and this one names no public repository.
LOCAL_REPOSITORY_ID = "tribunal-local"
CCOMPAT_PATH = "/apis/ccompat/v7"
_JAR = Path("app", "target", "quarkus-app", "quarkus-run.jar")
_STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class RegistryStatus:
    """What `LocalRegistry.status` found: our registry's PID (None: not running) and whether its
    readiness check answers."""

    pid: int | None
    ready: bool
    url: str

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class LocalRegistry:
    """The local registry living under `home/registry`, on `settings.port`."""

    home: Path
    settings: RegistrySettings

    @property
    def root(self) -> Path:
        return self.home.absolute() / "registry"

    @property
    def build_dir(self) -> Path:
        """Where `fetch` builds the app (the Maven projects, the file repository and the jar)."""
        return self.root / self.settings.version

    @property
    def jar(self) -> Path:
        return self.build_dir / _JAR

    @property
    def url(self) -> str:
        """The Confluent-compatible API: what `TRIBUNAL_REGISTRY__URL` should be."""
        return f"http://127.0.0.1:{self.settings.port}{CCOMPAT_PATH}"

    @property
    def log_file(self) -> Path:
        return self.root / "registry.log"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def _pid_file(self) -> Path:
        return self.root / "registry.pid"

    @property
    def _complete(self) -> Path:
        return self.build_dir / ".complete"

    def fetched(self) -> bool:
        return self._complete.exists()

    def private(self, home: Path, port: int) -> LocalRegistry:
        """Another registry living in `home` (its own data, PID and log) on `port`, running the
        app built here (linked, not built again): for tests and benches, which must never share
        a database file or a PID file with the registry `tribunal registry up` runs."""
        self.fetch()
        (home / "registry").mkdir(parents=True, exist_ok=True)
        link = home / "registry" / self.build_dir.name
        if not link.exists():
            link.symlink_to(self.build_dir.resolve())
        return LocalRegistry(home, self.settings.model_copy(update={"port": port}))

    def fetch(self, announce: Callable[[str], None] | None = None) -> Path:
        """Build the registry app into `build_dir` unless already built; return the runnable jar.
        Concurrent callers (two test sessions) wait on a lock and build it once. `announce` is
        told, before Maven starts, that a build (about a minute) is under way."""
        if self.fetched():
            return self.jar
        if self.settings.version not in SUPPORTED_VERSIONS:
            raise ConfigError(
                f"the local registry can only be built for Apicurio Registry {', '.join(SUPPORTED_VERSIONS)} "
                f"(its build templates are made for it), not {self.settings.version}: unset registry.version "
                "(TRIBUNAL_REGISTRY__VERSION)"
            )
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ConfigError(
                "Maven (mvn) is not on PATH: install Maven 3.8+ and Java 17 (they build the local Schema Registry "
                "once), or point TRIBUNAL_REGISTRY__URL at a running Schema Registry"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / ".fetch.lock"):
            if not self.fetched():
                if announce is not None:
                    announce(f"building Apicurio Registry {self.settings.version} with Maven (once; about a minute)")
                self._build(mvn)
        return self.jar

    def build_commands(self, mvn: str) -> list[list[str]]:
        """The two Maven runs of `fetch`, in order: deploy the stand-in, then package the app."""
        repo = [f"-Dtribunal.local.repo={(self.build_dir / 'repo').as_uri()}"]
        return [
            [mvn, "-B", "-ntp", "-f", str(self.build_dir / "standin" / "pom.xml"), "deploy", *repo,
             "-Dmaven.install.skip=true"],
            [mvn, "-B", "-ntp", "-f", str(self.build_dir / "app" / "pom.xml"), "package", *repo, "-DskipTests",
             f"-Dapicurio.version={self.settings.version}"],
        ]  # fmt: skip

    def _build(self, mvn: str) -> None:
        shutil.rmtree(self.build_dir, ignore_errors=True)  # what an interrupted build left
        _copy_tree(_templates(), self.build_dir)
        log = self.build_dir / "build.log"
        with log.open("w", encoding="utf-8") as out:
            for command in self.build_commands(mvn):
                result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
                if result.returncode != 0:
                    raise FatalError(
                        f"Maven could not build Apicurio Registry {self.settings.version} (exit {result.returncode}); "
                        f"see the end of {log}, fix what it says, then run `tribunal registry fetch` again"
                    )
        if not self.jar.exists():
            raise FatalError(f"the registry build left no {self.jar}; see {log}")
        self._complete.touch()

    def command(self, java: str) -> list[str]:
        """The registry's JVM command line: loopback only, the settings' port and heap, and an H2
        database file (Apicurio's default is in memory: a restart would lose every schema)."""
        database = f"jdbc:h2:file:{self.data_dir / 'registry'}"
        return [java, f"-Xmx{self.settings.heap}", "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.http.port={self.settings.port}", f"-Dquarkus.datasource.jdbc.url={database}",
                "-jar", str(self.jar)]  # fmt: skip

    def pid(self) -> int | None:
        """The PID of our running registry, or None. A PID file naming a process that is not our
        registry's JVM (it exited, and the PID was reused) is removed, and that process left alone."""
        try:
            pid = int(self._pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        if self.is_ours(pid):
            return pid
        self._pid_file.unlink(missing_ok=True)
        return None

    def is_ours(self, pid: int) -> bool:
        """Whether `pid` is this registry's JVM (its command line ends in `-jar <our quarkus-run.jar>`,
        a path under this home), not merely whether some process has that number."""
        return _command_line(pid).endswith(f" -jar {self.jar}")

    def ready(self) -> bool:
        """Whether the registry on the port answers its readiness check."""
        try:
            response = httpx.get(f"http://127.0.0.1:{self.settings.port}/health/ready", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def status(self) -> RegistryStatus:
        """This home's registry: its PID if it runs, whether it is ready, and its URL."""
        pid = self.pid()
        return RegistryStatus(pid=pid, ready=pid is not None and self.ready(), url=self.url)

    def start(self, announce: Callable[[str], None] | None = None) -> str:
        """Start the registry (building it first if needed), or keep ours if it already runs; wait
        until it is ready and return its URL. Fails with what to do if the port is taken or the
        registry does not come up within `settings.start_timeout_s`."""
        pid = self.pid()
        if pid is not None:
            self._wait_ready(pid)
            return self.url
        if _port_open(self.settings.port):
            raise ConfigError(self._port_taken())
        java = shutil.which("java")
        if java is None:
            raise ConfigError("Java is not on PATH: install Java 17 (a JDK or JRE) to run the local Schema Registry")
        self.fetch(announce)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pid = self._launch(self.command(java))
        self._pid_file.write_text(str(pid), encoding="utf-8")
        self._wait_ready(pid)
        return self.url

    def stop(self) -> bool:
        """Stop our registry by its PID (SIGTERM, so H2 closes its file; SIGKILL after a grace
        period). True if one ran. Never signals a process that is not our registry's JVM."""
        pid = self.pid()
        if pid is None:
            return False
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        while self.is_ours(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.is_ours(pid):
            _signal(pid, signal.SIGKILL)
            while self.is_ours(pid):
                time.sleep(0.1)
        self._pid_file.unlink(missing_ok=True)
        return True

    def _launch(self, command: list[str]) -> int:
        """Run the JVM detached (not our child: it outlives this process, leaves no zombie) in a
        session of its own (the caller's Ctrl-C does not reach it); return its PID."""
        script = f"{shlex.join(command)} >{shlex.quote(str(self.log_file))} 2>&1 </dev/null & echo $!"
        launched = subprocess.run(
            ["/bin/sh", "-c", script], capture_output=True, text=True, check=True, start_new_session=True
        )
        return int(launched.stdout.strip())

    def _wait_ready(self, pid: int) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if not self.is_ours(pid):
                self._pid_file.unlink(missing_ok=True)
                raise FatalError(
                    f"the Schema Registry exited during start-up; the end of {self.log_file} says why "
                    f"(then run `tribunal registry up` again)"
                )
            if self.ready():
                return
            time.sleep(0.25)
        self.stop()
        raise FatalError(
            f"the Schema Registry was not ready within {self.settings.start_timeout_s:.0f}s and was stopped; see the "
            f"end of {self.log_file}, or raise TRIBUNAL_REGISTRY__START_TIMEOUT_S on a slow machine"
        )

    def _port_taken(self) -> str:
        try:
            answer = httpx.get(f"{self.url}/subjects", timeout=2.0)
            speaks_ccompat = answer.status_code == 200 and isinstance(answer.json(), list)
        except (httpx.HTTPError, ValueError):
            speaks_ccompat = False
        if speaks_ccompat:
            return (
                f"a Schema Registry this checkout did not start already answers on port {self.settings.port}: use it "
                f"(TRIBUNAL_REGISTRY__URL={self.url}) or give this checkout another port (TRIBUNAL_REGISTRY__PORT)"
            )
        return (
            f"port {self.settings.port} is taken by a process that is not this checkout's Schema Registry; stop it, "
            "or give this checkout another port (TRIBUNAL_REGISTRY__PORT, and TRIBUNAL_REGISTRY__URL to match)"
        )


def _templates() -> Traversable:
    return resources.files("tribunal.localregistry").joinpath("templates")


def _files(folder: Traversable, prefix: str = "") -> list[tuple[str, bytes]]:
    """(relative path, content) of every file under `folder`, sorted by path."""
    found: list[tuple[str, bytes]] = []
    for entry in folder.iterdir():
        path = f"{prefix}{entry.name}"
        found += _files(entry, f"{path}/") if entry.is_dir() else [(path, entry.read_bytes())]
    return sorted(found)


def _copy_tree(source: Traversable, target: Path) -> None:
    """Copy the shipped templates (a package resource folder, perhaps inside a zip) to `target`."""
    for name, data in _files(source):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _command_line(pid: int) -> str:
    """The arguments of `pid` joined by spaces ("" when it is gone or a zombie): /proc on Linux,
    `ps` elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
