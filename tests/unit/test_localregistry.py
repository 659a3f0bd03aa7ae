"""The local Schema Registry without running it: its command lines, its PID check, its templates."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from unittest import mock

import pytest

from tribunal.core.connect_settings import RegistrySettings
from tribunal.core.errors import ConfigError
from tribunal.localregistry import LOCAL_REPOSITORY_ID, LocalRegistry

TEMPLATES = resources.files("tribunal.localregistry").joinpath("templates")
STANDIN_JAVA = "standin/src/main/java/apicurio/common/app/components/config/index/deployment/ConfigIndexProcessor.java"


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path, RegistrySettings(port=18081, heap="256m"))


@pytest.fixture
def sleeper(registry: LocalRegistry) -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not a JVM but names our jar as its last argument, as our registry does."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-jar", str(registry.jar)])
    yield process
    process.kill()
    process.wait()


def _template(path: str) -> str:
    return TEMPLATES.joinpath(*path.split("/")).read_text(encoding="utf-8")


def test_the_url_is_the_confluent_compatible_api_on_the_settings_port(registry: LocalRegistry) -> None:
    """What `tribunal registry up` prints for TRIBUNAL_REGISTRY__URL."""
    assert registry.url == "http://127.0.0.1:18081/apis/ccompat/v7"


def test_the_command_line_binds_loopback_and_keeps_data_in_an_h2_file_under_home(registry: LocalRegistry) -> None:
    """Heap and port from the settings, 127.0.0.1 only, an H2 file (a restart keeps schemas), our jar."""
    command = registry.command("/usr/bin/java")
    assert command[0] == "/usr/bin/java"
    assert "-Xmx256m" in command
    assert "-Dquarkus.http.host=127.0.0.1" in command
    assert "-Dquarkus.http.port=18081" in command
    assert f"-Dquarkus.datasource.jdbc.url=jdbc:h2:file:{registry.home / 'registry' / 'data' / 'registry'}" in command
    assert command[-2:] == [
        "-jar",
        str(registry.home / "registry" / "2.4.2.Final" / "app/target/quarkus-app/quarkus-run.jar"),
    ]


def test_the_build_deploys_the_stand_in_under_home_then_packages_the_app(registry: LocalRegistry) -> None:
    """The stand-in goes to a file repository under home (never installed into ~/.m2); ~/.m2 is
    Maven's usual cache (no -Dmaven.repo.local)."""
    deploy, package = registry.build_commands("mvn")
    repo = f"-Dtribunal.local.repo={(registry.build_dir / 'repo').as_uri()}"
    assert deploy[deploy.index("-f") + 1] == str(registry.build_dir / "standin" / "pom.xml")
    assert "deploy" in deploy and "-Dmaven.install.skip=true" in deploy and repo in deploy
    assert package[package.index("-f") + 1] == str(registry.build_dir / "app" / "pom.xml")
    assert "package" in package and repo in package and "-Dapicurio.version=2.4.2.Final" in package
    assert not any(arg.startswith("-Dmaven.repo.local") for arg in deploy + package)


def test_a_pid_that_is_not_our_registry_is_refused(registry: LocalRegistry) -> None:
    """A PID file naming a live process that is not our JVM (the PID was reused: here, pytest
    itself) is dropped, and `stop` signals nothing."""
    registry.root.mkdir(parents=True)
    pid_file = registry.root / "registry.pid"
    pid_file.write_text(str(os.getpid()), encoding="utf-8")
    assert registry.pid() is None
    assert not pid_file.exists()
    assert not registry.stop()


def test_the_registry_of_another_home_is_not_ours(registry: LocalRegistry, sleeper: subprocess.Popen[bytes]) -> None:
    """The check is on our own jar path, not any quarkus-run.jar: another checkout's registry is left alone."""
    other = LocalRegistry(registry.home / "elsewhere", registry.settings)
    other.root.mkdir(parents=True)
    (other.root / "registry.pid").write_text(str(sleeper.pid), encoding="utf-8")
    assert not other.is_ours(sleeper.pid)
    assert not other.stop()
    assert sleeper.poll() is None, "a process that is not ours must not be signalled"


def test_our_own_process_is_recognised_and_stopped(registry: LocalRegistry, sleeper: subprocess.Popen[bytes]) -> None:
    """The PID check accepts the process whose command line ends in `-jar <our jar>`, and `stop` ends it."""
    registry.root.mkdir(parents=True)
    (registry.root / "registry.pid").write_text(str(sleeper.pid), encoding="utf-8")
    assert registry.pid() == sleeper.pid
    assert registry.status().running
    assert registry.stop()
    assert sleeper.wait(timeout=10) != 0
    assert registry.pid() is None


def test_a_missing_pid_file_means_stopped(registry: LocalRegistry) -> None:
    status = registry.status()
    assert status.pid is None and not status.running and not status.ready


def test_a_port_held_by_something_else_is_an_error_that_names_the_setting(tmp_path: Path) -> None:
    """Nothing is built or started when the port is taken: the message says which setting to change."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        registry = LocalRegistry(tmp_path, RegistrySettings(port=held.getsockname()[1]))
        with pytest.raises(ConfigError, match="TRIBUNAL_REGISTRY__PORT"):
            registry.start()
    assert not registry.build_dir.exists()


def test_missing_maven_or_an_unsupported_version_say_what_to_do(tmp_path: Path) -> None:
    no_maven = mock.patch("tribunal.localregistry.shutil.which", return_value=None)
    with no_maven, pytest.raises(ConfigError, match="Maven"):
        LocalRegistry(tmp_path, RegistrySettings()).fetch()
    with pytest.raises(ConfigError, match=r"2\.4\.2\.Final"):
        LocalRegistry(tmp_path, RegistrySettings(version="3.0.0")).fetch()


def test_the_templates_ship_in_the_package_and_say_what_is_ours() -> None:
    """The two Maven projects are package data; the stand-in's source says it stands in, and for what."""
    for path in ("app/pom.xml", "app/src/main/resources/application.properties",
                 "app/src/main/resources/META-INF/web.xml", "standin/pom.xml", STANDIN_JAVA,
                 "standin/src/main/resources/META-INF/quarkus-build-steps.list"):  # fmt: skip
        assert _template(path).strip(), path
    header = _template(STANDIN_JAVA).split("package ", 1)[0]
    assert "STAND-IN" in header
    assert "io.apicurio:apicurio-common-app-components-config-index-deployment:0.1.18.Final" in header
    assert "Maven Central does not serve it" in header
    app = _template("app/pom.xml")
    assert "<artifactId>apicurio-registry-app</artifactId>" in app and "com.github.erosb" in app
    for pom in (app, _template("standin/pom.xml")):
        assert f"<id>{LOCAL_REPOSITORY_ID}</id>" in pom and "<url>${tribunal.local.repo}</url>" in pom
    properties = _template("app/src/main/resources/application.properties")
    assert "quarkus.index-dependency.registry-app.artifact-id=apicurio-registry-app" in properties


def test_the_cli_status_of_a_stopped_registry(tmp_path: Path) -> None:
    """`tribunal registry status` says stopped and exits 1 when this home runs none."""
    env = dict(os.environ, TRIBUNAL_HOME=str(tmp_path))
    command = [sys.executable, "-m", "tribunal.cli", "registry", "status"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stdout.strip() == "stopped"
