"""Scripted pipelines for integration tests: items whose metadata tells each scripted worker
(and the judge) what to answer, with the outcome Criterion 1 must produce for each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.integration.kit import TierMain
from tribunal.consumers import judge, worker
from tribunal.consumers.aggregator import processor as aggregator
from tribunal.core.settings import JudgeSettings, Settings, WorkerSettings

# (w1, w2, w3, judge) answers -> (final label, decided_by, escalation reason or None) under
# Criterion 1 (tests that rely on these outcomes set aggregator.policy=criterion1 explicitly).
# "!abstain" scripts an abstention, "!fail" a classifier failure (the worker isolates it and abstains).
Pattern = tuple[tuple[str, str, str, str], tuple[str, str, str | None]]
PATTERNS: list[Pattern] = [
    (("positive", "positive", "positive", "negative"), ("positive", "workers", None)),
    (("negative", "negative", "positive", "positive"), ("negative", "workers", None)),
    (("neutral", "positive", "neutral", "negative"), ("neutral", "workers", None)),
    (("positive", "negative", "neutral", "neutral"), ("neutral", "judge", "disagreement")),
    (("!fail", "negative", "negative", "positive"), ("negative", "workers", None)),
    (("positive", "!abstain", "negative", "negative"), ("negative", "judge", "disagreement")),
    (("!abstain", "!abstain", "!abstain", "positive"), ("positive", "judge", "disagreement")),
]
# Without scripted failures: for runs whose timing matters (isolating a poison item costs calls).
CLEAN_PATTERNS = [p for p in PATTERNS if "!fail" not in p[0]]
WORKERS = ("w1", "w2", "w3")


@dataclass(frozen=True)
class Expected:
    label: str
    decided_by: str
    reason: str | None


def write_scripted_items(path: Path, count: int, patterns: list[Pattern] = PATTERNS) -> dict[str, Expected]:
    """`count` items cycling through PATTERNS; return the expected outcome per item id."""
    expected: dict[str, Expected] = {}
    with path.open("w") as out:
        for n in range(count):
            answers, outcome = patterns[n % len(patterns)]
            item_id = f"item-{n:06d}"
            metadata = dict(zip((*WORKERS, "judge"), answers, strict=True))
            out.write(
                json.dumps({"id": item_id, "text": f"scripted text {n}", "task": "sentiment3", **metadata}) + "\n"
            )
            expected[item_id] = Expected(*outcome)
    return expected


def worker_main(settings: Settings, name: str, spec: str | None = None) -> TierMain:
    own = settings.model_copy(update={"worker": WorkerSettings(name=name, classifier=spec or f"scripted:{name}")})
    return lambda stop: worker.run(own, stop)


def aggregator_main(settings: Settings) -> TierMain:
    return lambda stop: aggregator.run(settings, stop)


def judge_main(settings: Settings, spec: str = "scripted:judge") -> TierMain:
    own = settings.model_copy(update={"judge": JudgeSettings(classifier=spec)})
    return lambda stop: judge.run(own, stop)
