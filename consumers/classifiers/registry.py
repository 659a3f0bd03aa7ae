"""Classifier specs: one string names a backend and its options, e.g.

    vader                                   lexicon, no argument
    tfidf:models/intent.npz                 a trained head saved by `tribunal train`
    learned?task=intent                     the newest head `tribunal train --from-labels` published
    openai:http://127.0.0.1:8080/v1?model=gemma&concurrency=8
    scripted:w1?delay_ms=5                  deterministic test classifier
    py:mypackage.models:make_classifier?k=v your own factory, by module path
    mykind:ARG                              your own factory, registered as an entry point

Grammar: `KIND[:ARG][?KEY=VALUE&...]`. Backends are imported lazily, so the core installs and
runs without any model dependency; asking for a backend whose package is missing is a
`ConfigError` that says what to install.

Open for extension without editing this file: `py:MODULE:ATTR` names any importable factory, and
a package may register kinds in the `tribunal.classifiers` entry-point group
(`mykind = "mypackage.models:make_classifier"`). Both resolve from the spec string alone, so
child processes started by `tribunal run` or `tribunal demo` find them too. A factory is
`(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier`; a built-in kind wins over an entry
point of the same name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qsl

from tribunal.consumers.classifiers.base import Classifier
from tribunal.core.errors import ConfigError
from tribunal.schemas.tasks import TaskRegistry

__all__ = [
    "BACKENDS",
    "ENTRY_POINT_GROUP",
    "ClassifierSpec",
    "build_classifier",
    "check_spec",
    "known_kinds",
    "parse_spec",
]

# kind -> "module:factory". A factory is `(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier`.
BACKENDS: dict[str, str] = {
    "scripted": "tribunal.consumers.classifiers.testing:scripted",
    "constant": "tribunal.consumers.classifiers.testing:constant",
    "hash": "tribunal.consumers.classifiers.testing:hashed",
    "llamacpp": "tribunal.consumers.classifiers.llamacpp:llamacpp",
    "openai": "tribunal.consumers.classifiers.openai_http:openai",
    "vllm": "tribunal.consumers.classifiers.vllm_backend:vllm",
    "vader": "tribunal.consumers.classifiers.lexicon:vader",
    "textblob": "tribunal.consumers.classifiers.lexicon:textblob",
    "afinn": "tribunal.consumers.classifiers.lexicon:afinn",
    "tfidf": "tribunal.consumers.classifiers.trained:tfidf",
    "embedding": "tribunal.consumers.classifiers.trained:embedding",
    "learned": "tribunal.consumers.classifiers.learned:learned",
}
ENTRY_POINT_GROUP = "tribunal.classifiers"
# `py:MODULE:ATTR`: the argument itself names the factory.
BY_PATH = "py"


@dataclass(frozen=True, slots=True)
class ClassifierSpec:
    kind: str
    arg: str = ""
    options: dict[str, str] = field(default_factory=dict)

    def option(self, name: str, default: str) -> str:
        return self.options.get(name, default)

    def int_option(self, name: str, default: int) -> int:
        return int(self.option(name, str(default)))

    def float_option(self, name: str, default: float) -> float:
        return float(self.option(name, str(default)))

    def __str__(self) -> str:
        text = self.kind + (f":{self.arg}" if self.arg else "")
        if self.options:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.options.items())
        return text


def known_kinds() -> dict[str, str]:
    """kind -> "module:factory": the built-in backends, then installed entry points."""
    kinds = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return kinds | BACKENDS


def parse_spec(spec: str) -> ClassifierSpec:
    """Split `KIND[:ARG][?K=V&...]`; raise `ConfigError` for an unknown kind."""
    head, _, query = spec.strip().partition("?")
    kind, _, arg = head.partition(":")
    if kind == BY_PATH:
        if arg.count(":") != 1 or not all(arg.split(":")):
            raise ConfigError(f"spec {spec!r}: write py:MODULE:ATTR, e.g. py:mypackage.models:make_classifier")
    elif kind not in BACKENDS and kind not in known_kinds():
        known = ", ".join(sorted(known_kinds()))
        raise ConfigError(f"unknown classifier kind {kind!r} in spec {spec!r}; known: {known}, or py:MODULE:ATTR")
    return ClassifierSpec(kind=kind, arg=arg, options=dict(parse_qsl(query, keep_blank_values=True)))


def _backend(parsed: ClassifierSpec) -> tuple[Any, str]:
    """(module, factory name) of a spec's backend, imported; `ConfigError` if it cannot be."""
    target = parsed.arg if parsed.kind == BY_PATH else known_kinds()[parsed.kind]
    module_name, _, factory_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if parsed.kind == BY_PATH or parsed.kind not in BACKENDS:
            raise ConfigError(f"classifier spec {parsed}: cannot import {module_name!r} ({exc})") from None
        raise ConfigError(
            f"classifier {parsed.kind!r} needs a package that is not installed ({exc.name}); "
            "install the project's `models` extra: pip install -e '.[models]'"
        ) from None
    return module, factory_name


def build_classifier(spec: str | ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    """Instantiate the backend a spec names."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    module, factory_name = _backend(parsed)
    factory: Callable[[ClassifierSpec, TaskRegistry], Classifier] | None = getattr(module, factory_name, None)
    if factory is None:
        raise ConfigError(f"classifier {parsed.kind!r}: module {module.__name__!r} has no attribute {factory_name!r}")
    return factory(parsed, tasks)


def check_spec(spec: str | ClassifierSpec, tasks: TaskRegistry) -> None:
    """Raise the `ConfigError` that building `spec` would raise for a missing package or model
    file, without loading any model: so a command that starts tiers as child processes (`demo`,
    `run`) says in one sentence what is missing before it starts them. A backend module may
    define `check(spec, tasks)` for what only it knows (model files, weights packages)."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    module, _ = _backend(parsed)
    check: Callable[[ClassifierSpec, TaskRegistry], None] | None = getattr(module, "check", None)
    if check is not None:
        check(parsed, tasks)
