"""`tribunal bench learn`: the target policy with and without a worker that learns from the judge.

For each quality target and each of K seeded stream orders, `learn_sim.simulate_learning` runs
the recording twice from a cold start: without learning (the task's recorded workers) and with
the learned head (module `learn_sim`: retrained every N judge labels from the labels the stream
paid for). Both runs share the order, the audit draws and the target, so the difference is the
learned worker alone. Texts for the head come from labelled JSONL files (ids as recorded).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tribunal.bench.learn_sim import LearnConfig, LearnRun, simulate_learning
from tribunal.consumers.policy.calibration import TargetConfig
from tribunal.core.errors import ConfigError
from tribunal.offline.policy_sim import Recording
from tribunal.schemas.tasks import Task

__all__ = ["LearnSummary", "bench_learn", "load_texts", "series_table", "summary_table"]


def load_texts(paths: Sequence[Path], ids: set[str]) -> dict[str, str]:
    """id -> text for every recorded id, from JSONL files; ConfigError if one is missing."""
    texts: dict[str, str] = {}
    for path in paths:
        try:
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        row = json.loads(line)
                        if row.get("id") in ids:
                            texts[str(row["id"])] = str(row["text"])
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read texts from {path}: {exc!r}") from None
    missing = ids - texts.keys()
    if missing:
        raise ConfigError(f"{len(missing)} recorded ids have no text in the --input files, e.g. {sorted(missing)[:3]}")
    return texts


@dataclass(frozen=True, slots=True)
class LearnSummary:
    target: float
    base: tuple[LearnRun, ...]
    learned: tuple[LearnRun, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "without": _figures(self.base, self.target),
            "with": _figures(self.learned, self.target),
        }


def _figures(runs: Sequence[LearnRun], target: float) -> dict[str, Any]:
    targets = [r.run for r in runs]
    started = [r for r in targets if r.first_accept is not None]
    calls = sum(r.calls_after_first_accept for r in started)
    after = sum(r.items - (r.first_accept or 0) for r in started) / calls if calls else None
    firsts = [r.first_accept for r in started if r.first_accept is not None]
    blocks = len(runs[0].block_items)
    return {
        "orders": len(runs),
        "items": targets[0].items,
        "reduction_mean": statistics.fmean(r.reduction for r in targets),
        "reduction_after_warmup": after,
        "accuracy_loss_mean": statistics.fmean(r.accuracy_loss for r in targets),
        "accuracy_loss_max": max(r.accuracy_loss for r in targets),
        "disagreement_mean": statistics.fmean(r.disagreement for r in targets),
        "within_target": sum(r.disagreement <= target for r in targets) / len(targets),
        "first_accept_median": statistics.median(firsts) if firsts else None,
        "never_accepted": len(targets) - len(started),
        "drift_alarms": sum(r.drift_alarms for r in targets),
        "judge_rate_by_block": [statistics.fmean(r.judge_rates()[b] for r in runs) for b in range(blocks)],
        "learned_agreement_by_block": [_share(runs, b, "block_agree") for b in range(blocks)],
        "learned_accuracy_by_block": [_share(runs, b, "block_correct") for b in range(blocks)],
        "versions_mean": statistics.fmean(r.versions for r in runs),
        "train_seconds_mean": statistics.fmean(r.train_seconds for r in runs),
    }


def _share(runs: Sequence[LearnRun], block: int, column: str) -> float | None:
    hits = sum(getattr(r, column)[block] for r in runs)
    voted = sum(r.block_voted[block] for r in runs)
    return hits / voted if voted else None


def bench_learn(
    recording: Recording,
    texts: dict[str, str],
    task: Task,
    config: TargetConfig,
    learn: LearnConfig,
    targets: Sequence[float],
    orders: int,
    block: int = 1_000,
) -> list[LearnSummary]:
    out = []
    for target in targets:
        tuned = replace(config, max_disagreement=target)
        numbers = range(1, orders + 1)
        base = tuple(simulate_learning(recording, texts, task, tuned, None, o, block) for o in numbers)
        learned = tuple(simulate_learning(recording, texts, task, tuned, learn, o, block) for o in numbers)
        out.append(LearnSummary(target, base, learned))
    return out


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def summary_table(summaries: Sequence[LearnSummary]) -> str:
    """Markdown: per target, the figures without and with the learned worker."""
    lines = [
        "| target | learned worker | judge-call reduction | past warm-up | accuracy loss mean (max), pts "
        "| disagreement | within target | first accept (median item) | head versions |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        for name, d in (("without", s.as_dict()["without"]), ("with", s.as_dict()["with"])):
            first = "never" if d["first_accept_median"] is None else f"{d['first_accept_median']:.0f}"
            lines.append(
                f"| {s.target:g} | {name} | {d['reduction_mean']:.2f}x | {_x(d['reduction_after_warmup'])} "
                f"| {100 * d['accuracy_loss_mean']:.2f} ({100 * d['accuracy_loss_max']:.2f}) "
                f"| {d['disagreement_mean']:.3f} | {d['within_target']:.0%} | {first} | {d['versions_mean']:.0f} |"
            )
    return "\n".join(lines)


def series_table(summary: LearnSummary, block: int) -> str:
    """Markdown: judge rate per block of items without and with learning, and the learned
    head's agreement with the judge (and accuracy vs gold) on the block's items."""
    d = summary.as_dict()
    without, learned = d["without"], d["with"]
    lines = [
        "| items | judge rate without | judge rate with | learned head = judge | learned head = gold |",
        "|---|---:|---:|---:|---:|",
    ]
    rates = zip(without["judge_rate_by_block"], learned["judge_rate_by_block"], strict=True)
    for b, (rate0, rate1) in enumerate(rates):
        agree, correct = learned["learned_agreement_by_block"][b], learned["learned_accuracy_by_block"][b]
        lines.append(
            f"| {b * block}-{min((b + 1) * block, without['items'])} | {rate0:.3f} | {rate1:.3f} "
            f"| {'—' if agree is None else f'{agree:.3f}'} | {'—' if correct is None else f'{correct:.3f}'} |"
        )
    return "\n".join(lines)
