"""`tribunal calibrate`: fit the target policy's rule from a judged history and publish it (warm start).

The history is a fully judged vote log: a labelled (or unlabelled) file run once through the
task's default workers and its judge (`tribunal.offline.recording.record`, cached with `--cache`), or a
recording written earlier. Every item then has the workers' votes and the judge's label, so it
is evidence as a cold start would have gathered it (audit rate 1): half of the items (by id) fit
the trust score, the other half certify the cut-off at `aggregator.target` (Learn then Test,
`consumers.policy.calibration.calibrate_offline`). The rule is written as JSON (`--out`), with its
provenance (data, its sha256, workers, judge, target, date, the command), and with `--publish`
sent to the rules topic, where every aggregator takes it up as the next version (the command is
`tribunal.cli.calibrate`). Live audits
keep checking it: the rule opens a new evidence epoch, so the first live re-fit and the drift
test judge it on the live stream alone.
"""

from __future__ import annotations

import datetime
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tribunal.consumers.classifiers.registry import parse_spec
from tribunal.consumers.policy.calibration import WarmStart, calibrate_offline
from tribunal.consumers.policy.target import Rule
from tribunal.consumers.tables.rules import target_config
from tribunal.core.settings import Settings
from tribunal.offline.recording import load_or_record
from tribunal.offline.target_sim import evidence_rows

__all__ = ["calibrate_recording", "summary"]


def calibrate_recording(
    settings: Settings, task: str, data: Path, cache: Path | None, limit: int | None, note: str = ""
) -> WarmStart:
    """The warm start of `task` from `data` (recorded once, or read from `cache`); `note` goes
    into the provenance (the data's source and licence, say)."""
    from tribunal.consumers.classifiers.heads import file_sha256  # numpy: not on `tribunal --help`'s path

    tasks = settings.tasks()
    recording = load_or_record(tasks, task, data, (limit, 1), 32, cache)
    config = target_config(settings.aggregator.target)
    rows = evidence_rows(recording.items, recording.workers, config.fit_share)
    spec = tasks.get(task)
    provenance = {
        "data": str(data),
        "data_sha256": file_sha256(data) if data.is_file() else "",
        "items": str(len(recording.items)),
        "workers": " | ".join(f"{w}={s}" for w, s in zip(recording.workers, spec.workers, strict=False)),
        "judge": spec.judge or "",
        "max_disagreement": str(config.max_disagreement),
        "confidence": str(config.confidence),
        "fitted": datetime.date.today().isoformat(),
        "tribunal": package_version(),
        "command": shlex.join(["tribunal", *sys.argv[1:]]),
        "contents": "vote states and judge agreement of the items (no text, no ids)",
    }
    if note:
        provenance["note"] = note
    models = {w: str(parse_spec(s)) for w, s in zip(recording.workers, spec.workers, strict=False)}
    return calibrate_offline(task, recording.workers, rows, config, provenance, models)


def summary(rule: Rule) -> dict[str, Any]:
    return {
        "task": rule.task,
        "version": rule.version,
        "cutoff": rule.cutoff,
        "audit_rate": rule.audit_rate,
        "certificate": dict(rule.certificate),
        "provenance": dict(rule.provenance),
    }


def package_version() -> str:
    """The installed Tribunal's version, for the provenance of a calibration."""
    try:
        return version("tribunal")
    except PackageNotFoundError:
        return "unknown"
