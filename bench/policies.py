"""`tribunal bench policies`: which decision policy, measured on labelled data, offline.

Runs the task's default workers and judge (`schemas/tasks.toml`) ONCE over the data
(`tribunal.offline.recording`), then simulates
each policy on that recording (`tribunal.offline.policy_sim`): no Kafka, figures printed, never
asserted. `--cache FILE` keeps the recording (JSON) so the simulation can be re-run for free.
"""

from __future__ import annotations

from pathlib import Path

from tribunal.offline.policy_sim import Recording, Score, default_candidates, reference_scores, simulate

__all__ = ["bench_policies", "latencies", "plot", "table"]


def bench_policies(recording: Recording) -> list[Score]:
    """The reference rows (judge only, workers only), then every default candidate's score."""
    return reference_scores(recording) + [simulate(recording, c) for c in default_candidates(recording)]


def plot(scores: list[Score], title: str, out: Path) -> None:
    """Accuracy vs judge rate, one marker style per policy family, to a small PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"reference": "s", "majority": "D", "confident_majority": "o", "confident_majority-quantile": "v"}
    markers |= {"weighted": "^", "weighted-audit": "x"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    for family, marker in markers.items():
        chosen = sorted((s.judge_rate, s.accuracy) for s in scores if s.family == family)
        if chosen:
            style = marker if family == "reference" else f"{marker}-"  # a family's sweep is a curve
            ax.plot(*zip(*chosen, strict=True), style, label=family, alpha=0.8, linewidth=1)
    ax.set_xlabel("judge rate (judge calls per item)")
    ax.set_ylabel("accuracy vs gold")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def table(scores: list[Score]) -> str:
    """A Markdown table of the scores (the format docs/policies.md uses)."""
    lines = [
        "| policy | judge rate | accuracy | macro-F1 | fast-path acc. | speedup |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        name = f"{s.name} ({s.detail})" if s.detail else s.name
        lines.append(
            f"| {name} | {s.judge_rate:.3f} | {s.accuracy:.3f} | {s.macro_f1:.3f} "
            f"| {s.fast_path_accuracy:.3f} | {s.speedup:.2f}x |"
        )
    return "\n".join(lines)


def latencies(recording: Recording) -> dict[str, float]:
    n = max(len(recording.items), 1)
    return {
        "judge_ms_per_item": sum(r.judge_latency_ms for r in recording.items) / n,
        "slowest_worker_ms_per_item": sum(max(r.worker_latency_ms, default=0.0) for r in recording.items) / n,
    }
