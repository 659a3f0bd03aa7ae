"""Tribunal: speculative classification on Kafka streams.

Cheap, diverse workers vote on every item; when they agree the label is final, and only
disagreements (and an audit sample) reach an expensive judge. Every item gets exactly one label.

Where to start reading (each package's docstring says what it owns):

- `tribunal.schemas` (schemas/): the contracts, the messages on every topic and the tasks file.
- `tribunal.consumers.worker`, `tribunal.consumers.aggregator.processor`, `tribunal.consumers.judge`:
  the three tiers, each a `Processor` plus a `serve_*` function.
- `tribunal.consumers.policy`: the pure decision logic (ballots, voting policies, the certified
  target policy); `tribunal.consumers.tables`: state kept in compacted topics.
- `tribunal.consumers.classifiers`: the models behind the `Classifier` protocol.
- `tribunal.core.runtime`: the one consume-decide-produce loop with its transactions; the rest
  of `tribunal.core` is settings, Kafka clients, errors, logs and metrics.
- `tribunal.producers`: ingest, replay and the dead-letter tools; `tribunal.offline`: recording,
  evaluation and calibration without a broker; `tribunal.demo`: `tribunal demo`;
  `tribunal.localkafka`: the laptop broker; `tribunal.bench` (bench/): developer benches.
- `tribunal.cli`: the `tribunal` command.

The public API below is imported lazily, so `import tribunal` costs nothing:

    from tribunal import Settings, load_settings, serve_worker, ClassifierSpec, Prediction
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it (imported on first access).
_PUBLIC = {
    "Settings": "tribunal.core.settings",
    "load_settings": "tribunal.core.settings",
    "serve_worker": "tribunal.consumers.worker",
    "serve_aggregator": "tribunal.consumers.aggregator.processor",
    "serve_judge": "tribunal.consumers.judge",
    "Classifier": "tribunal.consumers.classifiers.base",
    "Prediction": "tribunal.consumers.classifiers.base",
    "ClassifierSpec": "tribunal.consumers.classifiers.registry",
    "Item": "tribunal.schemas.messages",
    "Verdict": "tribunal.schemas.messages",
}

__all__ = [
    "Classifier",
    "ClassifierSpec",
    "Item",
    "Prediction",
    "Settings",
    "Verdict",
    "__version__",
    "load_settings",
    "serve_aggregator",
    "serve_judge",
    "serve_worker",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on demand
    from tribunal.consumers.aggregator.processor import serve_aggregator
    from tribunal.consumers.classifiers.base import Classifier, Prediction
    from tribunal.consumers.classifiers.registry import ClassifierSpec
    from tribunal.consumers.judge import serve_judge
    from tribunal.consumers.worker import serve_worker
    from tribunal.core.settings import Settings, load_settings
    from tribunal.schemas.messages import Item, Verdict


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tribunal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
