"""`tribunal fit`: a labelled history in, a certified cascade out (workers, judge, rule). No Kafka.

The history is split by text (`history.split_history`): the workers and the fitted judge learn
from the training part only; the calibration part is what the rule is fitted and certified on,
the way a live stream's audits would have judged it (every item labelled by the judge).

1. Candidate workers: the three TF-IDF heads `tribunal train` makes (logistic regression on word
   and character n-grams, Complement Naive Bayes on words, k-nearest rows on character n-grams):
   three model families whose errors correlate less than any one family's variants would.
2. The judge: the user's (`--judge SPEC`: vLLM, an OpenAI-compatible server, llama.cpp), or the
   strongest model this CPU runs for an arbitrary label set, fitted here: a logistic head on
   all-MiniLM-L6-v2 sentence vectors, a stand-in for the GPU judge of production.
3. The workers: every set of two or more candidates is calibrated (`calibrate_offline`, Learn
   then Test at the configured quality bar); the set whose certified rule accepts the most items
   wins, the cheaper set on a tie. That is the quantity the judge bill depends on, and it
   rewards diversity (disagreement that predicts the judge's) rather than each worker's accuracy.
4. An estimate on the calibration part: the share of items the rule accepts, the judge calls per
   item with audits, and the accuracy against gold of the cascade and of the judge alone.

`tribunal.offline.fit_output` writes the result as one folder.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tribunal.consumers.classifiers.heads import fit_head, head_from
from tribunal.consumers.policy.ballots import Accept, Ballot
from tribunal.consumers.policy.calibration import TargetConfig, WarmStart, calibrate_offline
from tribunal.consumers.policy.risk import min_certifiable_n, refit_delta
from tribunal.consumers.policy.target import TargetPolicy
from tribunal.core.errors import ConfigError
from tribunal.core.stats import accuracy, agreement
from tribunal.offline.history import LabelledRow
from tribunal.offline.policy_sim import RecordedItem
from tribunal.offline.target_sim import evidence_rows
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import Example, Task, TaskRegistry

__all__ = ["CANDIDATES", "FitResult", "Fitted", "Scored", "fit_cascade", "make_task"]

# (kind, head) of the candidate workers, in the order their names are numbered.
CANDIDATES = (("tfidf", "linear"), ("tfidf", "nb"), ("tfidf", "knn"))
JUDGE_NAME = "embedding-linear"
# Few-shot examples written into the task for LLM judges: one per label, short ones, at most this many.
MAX_EXAMPLES = 8
MAX_EXAMPLE_CHARS = 200

Progress = Callable[[str], None]


@dataclass(slots=True)
class Scored:
    """A model's answers on the calibration rows and what they cost."""

    name: str
    spec: str  # what it was (a kind and head, or the user's judge spec)
    labels: list[str | None]
    confidences: list[float]
    ms_per_item: float
    train_seconds: float = 0.0

    def accuracy(self, gold: Sequence[str]) -> float:
        return accuracy(gold, self.labels)

    def agreement(self, other: Sequence[str | None]) -> float:
        return agreement(self.labels, other)


@dataclass(slots=True)
class Fitted(Scored):
    """A head fitted here: its header and arrays are what the output folder stores."""

    kind: str = "tfidf"
    head: str = "linear"
    header: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FitResult:
    task: Task
    candidates: list[Fitted]
    workers: list[Fitted]  # the chosen ones, named w1..wN in this order
    judge: Scored  # a `Fitted` when the judge was fitted here
    judge_spec: str | None  # the user's judge, else None
    warm: WarmStart
    worker_sets: list[dict[str, Any]]
    estimate: dict[str, float]
    rows: dict[str, int]
    gold: list[str]
    seconds: dict[str, float]
    warnings: list[str]


def make_task(name: str, description: str, labels: Sequence[str], train: Sequence[LabelledRow]) -> Task:
    """The task definition: the label set from the data, and a prompt an LLM judge can read
    (the label list, then a few short examples from the training rows)."""
    examples: list[Example] = []
    for label in sorted(labels)[:MAX_EXAMPLES]:
        texts = [r.text for r in train if r.label == label and "\n" not in r.text and len(r.text) <= MAX_EXAMPLE_CHARS]
        if texts:
            examples.append(Example(text=min(texts, key=len), label=label))
    listed = ", ".join(sorted(labels))
    prompt = f"Assign each text exactly one label from this list: {listed}.\n\n{{examples}}Text: {{text}}\nLabel:"
    return Task(
        name=name,
        description=description or f"Classification into {len(labels)} labels, fitted from a labelled history.",
        labels=tuple(sorted(labels)),
        prompt=prompt,
        example_format="Text: {text}\nLabel: {label}\n\n",
        examples=tuple(examples),
        policy="target",
    )


def _answers(classes: list[str], proba: np.ndarray[Any, Any]) -> tuple[list[str | None], list[float]]:
    best = proba.argmax(axis=1)
    return [classes[i] for i in best], [float(p) for p in proba[np.arange(len(best)), best]]


def _fit_head(
    task: Task, kind: str, head: str, train: Sequence[LabelledRow], calibration_inputs: Any, source: dict[str, Any]
) -> Fitted:
    """Fit one head on the training rows and score its exported (stored) form on the calibration inputs."""
    header, arrays = fit_head(task, kind, [r.text for r in train], [r.label for r in train], head=head, source=source)
    model = head_from(header, arrays)
    started = time.perf_counter()
    labels, confidences = _answers(model.classes, model.model.predict_proba(calibration_inputs))
    per_item = (time.perf_counter() - started) * 1000 / max(1, len(labels))
    name = f"{kind}-{head}"
    return Fitted(name, f"{kind}:{head}", labels, confidences, per_item, float(header["train_seconds"]),
                  kind, head, header, arrays)  # fmt: skip


def _fit_judge(
    task: Task, train: Sequence[LabelledRow], calibration: Sequence[LabelledRow], source: dict[str, Any]
) -> Fitted:
    """The MiniLM head; its encoding of the calibration rows is timed as part of its cost."""
    from tribunal.consumers.classifiers.minilm import load_encoder

    encoder = load_encoder()
    header, arrays = fit_head(
        task, "embedding", [r.text for r in train], [r.label for r in train], source=source
    )  # encodes the training rows
    model = head_from(header, arrays)
    started = time.perf_counter()
    vectors = encoder.encode([r.text for r in calibration])
    labels, confidences = _answers(model.classes, model.model.predict_proba(vectors))
    per_item = (time.perf_counter() - started) * 1000 / max(1, len(labels))
    return Fitted(JUDGE_NAME, "embedding:linear", labels, confidences, per_item, float(header["train_seconds"]),
                  "embedding", "linear", header, arrays)  # fmt: skip


def _user_judge(task: Task, spec: str, calibration: Sequence[LabelledRow]) -> Scored:
    """The user's judge over the calibration rows, batched, through its real backend."""
    from tribunal.consumers.classifiers.registry import build_classifier
    from tribunal.offline.evaluate import Run, evaluate

    tasks = TaskRegistry({task.name: task})
    items = [Item(id=r.id, text=r.text, task=task.name) for r in calibration]
    run = Run("judge", spec, "judge", build_classifier(spec, tasks))

    async def go() -> None:
        try:
            await evaluate(task.name, "history", items, [run], tasks, batch_size=32)
        finally:
            await run.classifier.close()

    started = time.perf_counter()
    asyncio.run(go())
    per_item = (time.perf_counter() - started) * 1000 / max(1, len(items))
    preds = run.predictions
    return Scored("judge", spec, [p.label for p in preds], [p.confidence for p in preds], per_item)


def _recorded(
    rows: Sequence[LabelledRow], names: Sequence[str], workers: Sequence[Scored], judge: Scored
) -> list[RecordedItem]:
    return [
        RecordedItem(
            item_id=row.id,
            gold=row.label,
            ballots=tuple(Ballot(n, w.labels[i], w.confidences[i]) for n, w in zip(names, workers, strict=True)),
            worker_latency_ms=tuple(w.ms_per_item for w in workers),
            judge_label=judge.labels[i],
            judge_latency_ms=judge.ms_per_item,
        )
        for i, row in enumerate(rows)
    ]


def _calibrate(
    task: Task, rows: Sequence[LabelledRow], workers: Sequence[Scored], judge: Scored,
    config: TargetConfig, provenance: dict[str, str],
) -> tuple[WarmStart, list[RecordedItem]]:  # fmt: skip
    names = [f"w{n}" for n in range(1, len(workers) + 1)]
    items = _recorded(rows, names, workers, judge)
    evidence = evidence_rows(items, names, config.fit_share)
    # models={}: the rule is pinned to its heads by their sha256 in the provenance, not by a
    # path that differs between a laptop and a container (docs/fit.md).
    return calibrate_offline(task.name, names, evidence, config, provenance, {}), items


def estimate(warm: WarmStart, items: Sequence[RecordedItem]) -> dict[str, float]:
    """What the rule does on these items: accepted share, judge calls per item (escalations and
    audits at the rule's audit rate), realised disagreement with the judge on accepted items,
    and accuracy against gold of the cascade and of the judge alone."""
    rule = warm.rule
    policy = TargetPolicy(rule)  # the aggregator's own decision, item by item
    accepted = disagreed = cascade_right = judge_right = 0
    for item in items:
        decision = policy.decide(item.ballots, rule.workers)
        take = isinstance(decision, Accept)
        final = decision.label if isinstance(decision, Accept) else item.judge_label
        accepted += take
        disagreed += take and final != item.judge_label
        cascade_right += final == item.gold
        judge_right += item.judge_label == item.gold
    n = max(1, len(items))
    judge_rate = (n - accepted + accepted * rule.audit_rate) / n
    return {
        "items": float(len(items)),
        "accepted_share": accepted / n,
        "judge_calls_per_item": judge_rate,
        "fewer_judge_calls": 1 / judge_rate if judge_rate else float("inf"),
        "disagreement_on_accepted": disagreed / accepted if accepted else 0.0,
        "cascade_accuracy": cascade_right / n,
        "judge_accuracy": judge_right / n,
    }


def _choose(
    task: Task, calibration: Sequence[LabelledRow], candidates: Sequence[Fitted], judge: Scored,
    config: TargetConfig, provenance: Callable[[Sequence[Fitted]], dict[str, str]],
) -> tuple[list[Fitted], WarmStart, dict[str, float], list[dict[str, Any]]]:  # fmt: skip
    """Calibrate every set of two or more candidates; keep the one whose rule accepts the most."""
    tried: list[tuple[float, float, list[Fitted], WarmStart, dict[str, float]]] = []
    table: list[dict[str, Any]] = []
    for size in range(2, len(candidates) + 1):
        for subset in itertools.combinations(candidates, size):
            warm, items = _calibrate(task, calibration, subset, judge, config, provenance(subset))
            expected = estimate(warm, items)
            share = expected["accepted_share"]
            cost = sum(w.ms_per_item for w in subset)
            tried.append((share, cost, list(subset), warm, expected))
            table.append({"workers": [w.name for w in subset], "accepted_share": round(share, 4),
                          "certified": warm.rule.cutoff is not None, "ms_per_item": round(cost, 3)})  # fmt: skip
    best = max(tried, key=lambda t: (round(t[0], 3), -t[1]))
    for row in table:
        row["chosen"] = row["workers"] == [w.name for w in best[2]]
    return best[2], best[3], best[4], table


def fit_cascade(
    name: str,
    train: Sequence[LabelledRow],
    calibration: Sequence[LabelledRow],
    config: TargetConfig,
    *,
    description: str = "",
    judge_spec: str | None = None,
    source: dict[str, Any] | None = None,
    provenance: dict[str, str] | None = None,
    progress: Progress = lambda _: None,
) -> FitResult:
    """Fit workers and judge on `train`, choose and certify on `calibration` (see the module doc)."""
    labels = sorted({r.label for r in train} | {r.label for r in calibration})
    untrained = sorted(set(labels) - {r.label for r in train})
    if untrained:
        raise ConfigError(f"labels {untrained[:8]} have no training rows after the split: collect more rows for them")
    task = make_task(name, description, labels, train)
    seconds: dict[str, float] = {}
    base = dict(source or {})
    texts = [r.text for r in calibration]
    candidates: list[Fitted] = []
    for kind, head in CANDIDATES:
        progress(f"training worker {kind}-{head} on {len(train)} rows")
        started = time.perf_counter()
        candidates.append(_fit_head(task, kind, head, train, texts, base))
        seconds[f"{kind}-{head}"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    if judge_spec is None:
        progress(f"training the judge ({JUDGE_NAME}, MiniLM sentence vectors) on {len(train)} rows")
        judge: Scored = _fit_judge(task, train, calibration, base)
    else:
        progress(f"asking the judge {judge_spec} about {len(calibration)} calibration rows")
        judge = _user_judge(task, judge_spec, calibration)
    seconds["judge"] = round(time.perf_counter() - started, 1)
    progress(f"calibrating the rule for {2 ** len(candidates) - len(candidates) - 1} worker sets")
    started = time.perf_counter()

    def _provenance(subset: Sequence[Fitted]) -> dict[str, str]:
        return {**(provenance or {}), "workers": " | ".join(f"w{n}={w.name}" for n, w in enumerate(subset, 1)),
                "judge": judge_spec or JUDGE_NAME, "items": str(len(calibration)),
                "max_disagreement": str(config.max_disagreement), "confidence": str(config.confidence),
                "contents": "vote states and judge agreement of the calibration rows (no text, no ids)"}  # fmt: skip

    workers, warm, expected, sets = _choose(task, calibration, candidates, judge, config, _provenance)
    seconds["calibrate"] = round(time.perf_counter() - started, 1)
    return FitResult(
        task=task, candidates=candidates, workers=workers, judge=judge, judge_spec=judge_spec, warm=warm,
        worker_sets=sets, estimate=expected,
        rows={"train": len(train), "calibration": len(calibration)},
        gold=[r.label for r in calibration], seconds=seconds,
        warnings=_advice(candidates, judge, warm, calibration, config),
    )  # fmt: skip


def _advice(
    candidates: Sequence[Fitted], judge: Scored, warm: WarmStart, rows: Sequence[LabelledRow], config: TargetConfig
) -> list[str]:
    """What the measurements say a user should know before deploying: a judge that the workers
    beat on the user's own labels, a rule that certifies nothing (and why: too few rows to
    certify anything, or workers that disagree with the judge too often)."""
    gold = [r.label for r in rows]
    advice = []
    best = max(candidates, key=lambda c: c.accuracy(gold))
    if best.accuracy(gold) > judge.accuracy(gold):
        advice.append(
            f"the judge ({judge.name}, {judge.accuracy(gold):.3f}) is less accurate on your labels than the worker "
            f"{best.name} ({best.accuracy(gold):.3f}): a cascade verified by it cannot beat it; bring a stronger "
            "judge (--judge), or use the worker alone"
        )
    if warm.rule.cutoff is None:
        certifying = int(warm.rule.certificate.get("calibration_rows", 0))
        needed = min_certifiable_n(config.max_disagreement, refit_delta(config.delta, 1))
        fitting = [row for row in warm.evidence if not row.calibration]
        if certifying < needed:
            why = (
                f"only {certifying} rows certify (the calibration part less the share that fits the score), and at "
                f"this bar even a rule the judge never overruled needs {needed}: bring a longer history"
            )
        elif fitting and not any(row.disagreed for row in fitting):
            why = (
                "the judge never overruled the workers on the rows that fit the trust score, so it has nothing to "
                "learn from: bring a longer history (live audits will fit it as they find disagreements)"
            )
        else:
            why = (
                "the workers disagree with the judge too often (see the models table): bring more rows, a looser "
                "--max-disagreement, or workers closer to the judge"
            )
        advice.append(
            "no cut-off could be certified at this quality bar: every item will go to the judge (no saving) until "
            f"live audits certify one; {why}"
        )
    return advice
