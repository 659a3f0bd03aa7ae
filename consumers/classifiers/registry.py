"""Classifier specs: one string names a backend and its options, e.g.

    vader                                   lexicon, no argument
    tfidf:models/intent.joblib              a trained head saved by `tribunal train`
    openai:http://127.0.0.1:8080/v1?model=gemma&concurrency=8
    scripted:w1?delay_ms=5                  deterministic test classifier

Grammar: `KIND[:ARG][?KEY=VALUE&...]`. Backends are imported lazily, so the core installs and
runs without any model dependency; asking for a backend whose package is missing is a
`ConfigError` that says what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from consumers.classifiers.base import Classifier
from schemas.tasks import TaskRegistry
from tribunal.errors import ConfigError

__all__ = ["BACKENDS", "ClassifierSpec", "build_classifier", "parse_spec"]

# kind -> "module:factory". A factory is `(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier`.
BACKENDS: dict[str, str] = {
    "scripted": "consumers.classifiers.testing:scripted",
    "constant": "consumers.classifiers.testing:constant",
    "hash": "consumers.classifiers.testing:hashed",
    "llamacpp": "consumers.classifiers.llamacpp:llamacpp",
    "openai": "consumers.classifiers.openai_http:openai",
    "vllm": "consumers.classifiers.vllm_backend:vllm",
    "vader": "consumers.classifiers.lexicon:vader",
    "textblob": "consumers.classifiers.lexicon:textblob",
    "afinn": "consumers.classifiers.lexicon:afinn",
    "tfidf": "consumers.classifiers.trained:tfidf",
    "embedding": "consumers.classifiers.trained:embedding",
}


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


def parse_spec(spec: str) -> ClassifierSpec:
    """Split `KIND[:ARG][?K=V&...]`; raise `ConfigError` for an unknown kind."""
    head, _, query = spec.strip().partition("?")
    kind, _, arg = head.partition(":")
    if kind not in BACKENDS:
        raise ConfigError(f"unknown classifier kind {kind!r} in spec {spec!r}; known: {', '.join(sorted(BACKENDS))}")
    return ClassifierSpec(kind=kind, arg=arg, options=dict(parse_qsl(query, keep_blank_values=True)))


def build_classifier(spec: str | ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    """Instantiate the backend a spec names."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    module_name, _, factory_name = BACKENDS[parsed.kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"classifier {parsed.kind!r} needs a package that is not installed ({exc.name}); "
            "install the project's `models` extra: pip install -e '.[models]'"
        ) from None
    factory: Callable[[ClassifierSpec, TaskRegistry], Classifier] = getattr(module, factory_name)
    return factory(parsed, tasks)
