"""Settings: env vars, TOML file, validation, and Kafka security options."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import typer
from pydantic import ValidationError

from tribunal.core.errors import ConfigError
from tribunal.core.kafka import connection_options
from tribunal.core.kafka_settings import KafkaSettings
from tribunal.core.settings import load_settings


def test_defaults_work_on_a_laptop() -> None:
    """With nothing set, Tribunal talks to a local broker with 2-of-3 quorum and a 2 s deadline."""
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert (settings.aggregator.quorum, settings.aggregator.deadline_ms) == (2, 2_000)
    assert settings.topics.items_topic == "items" and settings.topics.dlq("items") == "items.dlq"


def test_env_overrides_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRIBUNAL_* env vars (with __ for sections) win over the TOML file, which wins over defaults."""
    config = tmp_path / "tribunal.toml"
    config.write_text('[topics]\nprefix = "file-"\npartitions = 4\n[aggregator]\nquorum = 3\n')
    monkeypatch.setenv("TRIBUNAL_TOPICS__PREFIX", "env-")
    settings = load_settings(config)
    assert settings.topics.prefix == "env-"
    assert settings.topics.partitions == 4
    assert settings.aggregator.quorum == 3
    assert settings.topics.items_topic == "env-items"


def test_quorum_above_worker_count_is_rejected() -> None:
    """A quorum no set of workers can reach is a configuration error."""
    with pytest.raises(ConfigError, match="quorum 4 exceeds"):
        load_settings(aggregator={"quorum": 4})


SECRET = "s3cr3t-VALUE-xyzzy"


def _assert_secret_absent(message: str) -> None:
    for fragment in (SECRET, SECRET[:6], SECRET[-6:]):
        assert fragment not in message, f"{fragment!r} leaked into: {message}"


def test_sasl_error_from_a_toml_file_never_echoes_the_password(tmp_path: Path) -> None:
    """An incomplete SASL section in a TOML file fails naming what is missing, without the password."""
    config = tmp_path / "tribunal.toml"
    config.write_text(f'[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_password = "{SECRET}"\n')
    with pytest.raises(ConfigError, match="TRIBUNAL_KAFKA__SASL_") as caught:
        load_settings(config)
    _assert_secret_absent(str(caught.value))
    _assert_secret_absent(repr(caught.value))


def test_sasl_error_from_env_vars_never_echoes_any_of_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same from TRIBUNAL_KAFKA__* env vars: not even a prefix of the password shows."""
    monkeypatch.setenv("TRIBUNAL_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TRIBUNAL_KAFKA__SASL_PASSWORD", SECRET)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    _assert_secret_absent(str(caught.value))


def test_wrongly_typed_secret_section_never_echoes_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A type error elsewhere in the kafka section does not print the section (and its secrets) either."""
    monkeypatch.setenv("TRIBUNAL_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("TRIBUNAL_KAFKA__REQUEST_TIMEOUT_MS", "-5")
    with pytest.raises(ConfigError, match="request_timeout_ms") as caught:
        load_settings()
    _assert_secret_absent(str(caught.value))


def test_cli_prints_one_line_without_the_secret(tmp_path: Path) -> None:
    """`tribunal topics create` with a bad SASL config exits 2 with one line on stderr and no secret."""
    import subprocess
    import sys

    config = tmp_path / "tribunal.toml"
    config.write_text(f'[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_password = "{SECRET}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    result = subprocess.run(
        [sys.executable, "-m", "tribunal.cli", "--config", str(config), "topics", "create"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    _assert_secret_absent(result.stdout + result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_aggregator_workers_are_bounded() -> None:
    """More expected workers than a judge request may carry votes is a configuration error."""
    with pytest.raises(ConfigError, match="workers"):
        load_settings(aggregator={"workers": [f"w{n}" for n in range(17)]})


def test_sasl_needs_credentials() -> None:
    """SASL without a mechanism, user and password fails fast with the env names to set."""
    with pytest.raises(ValidationError, match="TRIBUNAL_KAFKA__SASL_"):
        KafkaSettings(security_protocol="SASL_SSL")


def test_sasl_scram_over_tls_options_and_secret_never_shown() -> None:
    """SCRAM over TLS passes mechanism, credentials and an SSL context; the password is not in any repr."""
    kafka = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", sasl_password="hunter2"
    )
    options = connection_options(kafka)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "svc" and options["sasl_plain_password"] == "hunter2"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "hunter2" not in repr(kafka) and "hunter2" not in str(load_settings(kafka=kafka.model_dump()))


def test_plaintext_has_no_security_options() -> None:
    """The laptop default sends no TLS context or credentials."""
    options = connection_options(KafkaSettings())
    assert "ssl_context" not in options and "sasl_mechanism" not in options


def test_omitted_cli_options_do_not_override_the_config_file(tmp_path: Path) -> None:
    """`tribunal judge` without --classifier keeps the classifier the config file names."""
    from typer.testing import CliRunner

    from tribunal.cli import main_options
    from tribunal.cli.common import settings_from

    config = tmp_path / "tribunal.toml"
    config.write_text('[judge]\nclassifier = "constant:positive"\n[worker]\nname = "w9"\n')
    seen: list[object] = []
    app = typer.Typer()
    app.callback()(main_options)

    @app.command()
    def probe(ctx: typer.Context) -> None:
        settings = settings_from(ctx, judge={"classifier": None}, worker={"name": None, "classifier": "vader"})
        seen.append((settings.judge.classifier, settings.worker.name, settings.worker.classifier))

    result = CliRunner().invoke(app, ["--config", str(config), "probe"])
    assert result.exit_code == 0, result.output
    assert seen == [("constant:positive", "w9", "vader")]


def test_settings_env_reproduces_explicit_settings_in_a_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every explicitly set value, secrets and nested lists included, survives the trip through env vars."""
    from tribunal.core.settings import WorkerProcess, settings_env

    original = load_settings(
        kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "pw"},
        topics={"prefix": "p-", "partitions": 4},
        aggregator={"policy": "criterion2", "workers": ["a", "b"], "thresholds": {"a": 0.7}, "quorum": 2},
        pipeline={"workers": [WorkerProcess(name="a", classifier="vader")]},
        max_text_chars=123,
    )
    env = settings_env(original)
    assert "TRIBUNAL_RUNTIME__BATCH_SIZE" not in env, "defaults are left to the child"
    for key in [k for k in os.environ if k.startswith("TRIBUNAL_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load_settings() == original


@pytest.mark.parametrize(
    ("typed", "policy"),
    [("criterion1", "majority"), ("criterion2", "confident_majority"), ("majority", "majority"), ("target", "target")],
)
def test_the_papers_policy_names_are_aliases(typed: str, policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`criterion1`/`criterion2` keep working wherever a user typed them (env here; files and the
    tasks file alike); everything past the settings sees the descriptive name."""
    monkeypatch.setenv("TRIBUNAL_AGGREGATOR__POLICY", typed)
    assert load_settings().aggregator.policy == policy


def test_an_unknown_policy_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="majority"):
        load_settings(aggregator={"policy": "criterion3"})
