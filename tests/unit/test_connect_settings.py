"""`[[source]]`, `[[sink]]` and `[registry]` settings: what a configuration must say, refused at
start with the setting to change, and the registry password never echoed."""

from __future__ import annotations

from typing import Any

import pytest

from tribunal.core.errors import ConfigError
from tribunal.core.settings import load_settings, settings_env

SOURCE = {"name": "tickets", "topic": "support.tickets", "text": "body", "task": "intent"}


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"source": [SOURCE, SOURCE]}, "same name"),
        ({"source": [SOURCE | {"format": "avro"}]}, "registry.url"),
        ({"source": [SOURCE | {"topic": "items"}]}, "Tribunal's own topics"),
        ({"source": [SOURCE], "sink": [{"name": "o", "source": "nope", "topic": "out"}]}, "names source 'nope'"),
        (
            {"source": [SOURCE], "sink": [{"name": "o", "source": "tickets", "topic": "support.tickets"}]},
            "Tribunal reads",
        ),
        ({"source": [SOURCE | {"name": "two words"}]}, "source.0.name"),
        ({"source": [SOURCE | {"format": "protobuf"}]}, "source.0.format"),
        ({"registry": {"url": "http://r", "username": "u"}}, "both username and password"),
        ({"sink": [{"name": "o", "source": "tickets", "topic": "out", "field": "has space"}]}, "sink.0.field"),
    ],
)
def test_bad_connections_are_refused_with_the_setting(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(**overrides)


def test_the_registry_password_is_a_secret() -> None:
    settings = load_settings(registry={"url": "https://r.example", "username": "u", "password": "hunter2-registry"})
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.registry)
    assert settings.registry.client_config()["basic.auth.user.info"] == "u:hunter2-registry"
    # Children of `tribunal run` get it through their environment, never through a log line.
    assert settings_env(settings)["TRIBUNAL_REGISTRY__PASSWORD"] == "hunter2-registry"
    with pytest.raises(ConfigError) as caught:
        load_settings(registry={"url": 5, "username": "u", "password": "hunter2-registry"})
    assert "hunter2" not in str(caught.value)


def test_sources_and_sinks_reach_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(source=[SOURCE], sink=[{"name": "o", "source": "tickets", "topic": "out"}])
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    child = load_settings()
    assert child.source == settings.source and child.sink == settings.sink
