"""Classifier specs: one string names a backend and its options, e.g.

    vader                                   lexicon, no argument
    tfidf:models/intent.joblib              a trained head saved by `tribunal train`
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
from urllib.parse import parse_qsl

from tribunal.consumers.classifiers.base import Classifier
from tribunal.core.errors import ConfigError
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["BACKENDS", "ENTRY_POINT_GROUP", "ClassifierSpec", "build_classifier", "known_kinds", "parse_spec"]

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


def build_classifier(spec: str | ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    """Instantiate the backend a spec names."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
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
    factory: Callable[[ClassifierSpec, TaskRegistry], Classifier] | None = getattr(module, factory_name, None)
    if factory is None:
        raise ConfigError(f"classifier {parsed.kind!r}: module {module_name!r} has no attribute {factory_name!r}")
    return factory(parsed, tasks)
