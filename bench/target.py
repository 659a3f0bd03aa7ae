"""The target policy's rows of `tribunal bench policies`: K stream orders, cold and warm start.

For each quality target (`max_disagreement`) and each of K seeded stream orders, the recording
is streamed through `tribunal.target_sim.simulate_target`:

- *cold*: the rule starts with no cut-off (every item goes to the judge) and learns only from
  the judge calls the stream pays for;
- *warm*: a share of the items (drawn per order, never streamed) is first run through
  `tribunal calibrate`'s offline fit (`calibrate_offline`), or a separate recording is, and the
  stream starts from that rule.

Figures per target and start, over the orders: judge-call reduction (items / judge calls, audits
included; mean and worst), the same past the warm-up (from the first accepted item on), accuracy
loss vs judge-only in points (mean and worst), items until the first accept (median), and the
share of orders whose realised disagreement among accepted items stayed within the target.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tribunal.consumers.policy.calibration import TargetConfig, WarmStart, calibrate_offline
from tribunal.consumers.tables.rules import target_config
from tribunal.core.settings import Settings
from tribunal.offline.policy_sim import Recording
from tribunal.offline.target_sim import TargetRun, evidence_rows, order_of, simulate_target

__all__ = ["TargetSummary", "bench_config", "bench_target", "summary_table", "warm_from"]

DEFAULT_TARGETS = (0.01, 0.02, 0.05)


@dataclass(frozen=True, slots=True)
class TargetSummary:
    target: float
    start: str  # "cold" or "warm"
    runs: tuple[TargetRun, ...]

    def as_dict(self) -> dict[str, Any]:
        runs = self.runs
        firsts = [r.first_accept for r in runs if r.first_accept is not None]
        return {
            "target": self.target,
            "start": self.start,
            "orders": len(runs),
            "items": runs[0].items if runs else 0,
            "reduction_mean": statistics.fmean(r.reduction for r in runs),
            "reduction_min": min(r.reduction for r in runs),
            "reduction_after_warmup": _after_warmup(runs),
            "judge_rate_mean": statistics.fmean(r.judge_calls / r.items for r in runs),
            "audit_rate_mean": statistics.fmean(r.audits / r.items for r in runs),
            "accuracy_loss_mean": statistics.fmean(r.accuracy_loss for r in runs),
            "accuracy_loss_max": max(r.accuracy_loss for r in runs),
            "disagreement_mean": statistics.fmean(r.disagreement for r in runs),
            "within_target": sum(r.disagreement <= self.target for r in runs) / len(runs),
            "first_accept_median": statistics.median(firsts) if firsts else None,
            "never_accepted": sum(r.first_accept is None for r in runs),
            "drift_alarms": sum(r.drift_alarms for r in runs),
            "rules_mean": statistics.fmean(r.rules for r in runs),
        }


def bench_config(settings: Settings) -> TargetConfig:
    """`aggregator.target` as the simulation's config. The live keeper merges one evidence window
    per judge partition, so the simulated ledger holds as many rows."""
    windows = settings.aggregator.target.window * settings.topics.judge_partitions
    return replace(target_config(settings.aggregator.target), window=windows)


def _after_warmup(runs: Sequence[TargetRun]) -> float | None:
    """Items / judge calls from each run's first accepted item on, pooled over the runs that
    accepted anything (None if none did)."""
    started = [r for r in runs if r.first_accept is not None]
    calls = sum(r.calls_after_first_accept for r in started)
    items = sum(r.items - (r.first_accept or 0) for r in started)
    return items / calls if calls else None


def _subset(recording: Recording, index: Sequence[int]) -> Recording:
    return replace(recording, items=tuple(recording.items[i] for i in index))


def warm_from(recording: Recording, config: TargetConfig, source: str) -> WarmStart:
    """The warm start `tribunal calibrate` would fit from this fully judged recording."""
    rows = evidence_rows(recording.items, recording.workers, config.fit_share)
    provenance = {"source": source, "items": str(len(recording.items))}
    return calibrate_offline(recording.task, recording.workers, rows, config, provenance)


def bench_target(
    recording: Recording,
    config: TargetConfig,
    targets: Sequence[float] = DEFAULT_TARGETS,
    orders: int = 10,
    warm_share: float = 0.0,
    warm: Recording | None = None,
) -> list[TargetSummary]:
    """Cold-start rows for every target, plus warm-start rows when `warm_share` or `warm` is given."""
    out: list[TargetSummary] = []
    for target in targets:
        tuned = replace(config, max_disagreement=target)
        cold = tuple(simulate_target(recording, tuned, order) for order in range(1, orders + 1))
        out.append(TargetSummary(target, "cold", cold))
        if warm is not None:
            start = warm_from(warm, tuned, "separate recording")
            runs = tuple(simulate_target(recording, tuned, order, start) for order in range(1, orders + 1))
            out.append(TargetSummary(target, "warm", runs))
        elif warm_share > 0:
            out.append(
                TargetSummary(target, f"warm {warm_share:.0%}", _warm_runs(recording, tuned, orders, warm_share))
            )
    return out


def _warm_runs(recording: Recording, config: TargetConfig, orders: int, share: float) -> tuple[TargetRun, ...]:
    """Per order: calibrate on the first `share` of its shuffle, stream the rest."""
    runs = []
    for order in range(1, orders + 1):
        index = order_of(len(recording.items), order)
        cut = int(share * len(index))
        start = warm_from(_subset(recording, index[:cut]), config, f"{share:.0%} of the items, order {order}")
        runs.append(simulate_target(_subset(recording, index[cut:]), config, order, start))
    return tuple(runs)


def summary_table(summaries: Sequence[TargetSummary]) -> str:
    """A Markdown table of the target rows (the format docs/policies.md uses)."""
    lines = [
        "| target | start | orders | judge-call reduction mean (min) | past warm-up | accuracy loss mean (max), pts "
        "| audits/item | first accept (median item) | within target |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        d = s.as_dict()
        first = "never" if d["first_accept_median"] is None else f"{d['first_accept_median']:.0f}"
        after = "—" if d["reduction_after_warmup"] is None else f"{d['reduction_after_warmup']:.2f}x"
        lines.append(
            f"| {s.target:g} | {s.start} | {d['orders']} | {d['reduction_mean']:.2f}x ({d['reduction_min']:.2f}x) "
            f"| {after} | {100 * d['accuracy_loss_mean']:.2f} "
            f"({100 * d['accuracy_loss_max']:.2f}) | {d['audit_rate_mean']:.3f} | {first} "
            f"| {d['within_target']:.0%} |"
        )
    return "\n".join(lines)
