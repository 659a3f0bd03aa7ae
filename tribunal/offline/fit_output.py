"""The folder `tribunal fit` writes: everything a deployment needs, and why it is what it is.

    OUT/tasks.toml         the task (labels, prompt, examples), its workers, judge and rule
    OUT/heads/*.npz        the fitted heads (arrays and a JSON header; no pickle)
    OUT/calibration.json   the certified rule and its evidence (no text, no ids)
    OUT/pipeline.toml      settings for `tribunal --config OUT/pipeline.toml run`
    OUT/helm-values.yaml   values for the Helm chart, the folder mounted at `fitted.mountPath`
    OUT/report.md, .json   what was fitted, measured and chosen

Paths inside are relative to the folder (the tasks file and settings file resolve them against
their own location), so the folder can be moved, copied into an image or mounted as it is. It
is written into a temporary sibling and renamed into place: an interrupted fit leaves nothing
half-written, and an existing folder is replaced only with `replace=True`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson

from tribunal.consumers.classifiers.headfile import save_head
from tribunal.consumers.classifiers.heads import file_sha256
from tribunal.consumers.tables.rules import calibration_document
from tribunal.core.errors import ConfigError
from tribunal.offline.fit import FitResult, Fitted
from tribunal.schemas.tasks import resolve_spec_path

__all__ = ["HELM_MOUNT", "helm_values", "report_dict", "write_fit"]

# Where the chart mounts the folder (deploy/helm/tribunal/values.yaml, `fitted.mountPath`).
HELM_MOUNT = "/opt/tribunal/fitted"


def _toml_string(value: str) -> str:
    """A TOML basic string, also a YAML double-quoted one: quotes, backslashes and every control
    character (DEL and C1 included, which JSON leaves raw) escaped; other characters as they are."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:  # C1 too: YAML reads U+0085 as a line break
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_list(values: list[str], indent: str = "  ") -> str:
    return "[\n" + "".join(f"{indent}{_toml_string(v)},\n" for v in values) + "]"


def _head_file(worker: Fitted, name: str) -> str:
    return f"heads/{name}-{worker.name}.npz"


def _spec(worker: Fitted, path: str) -> str:
    return f"{worker.kind}:{path}" + ("" if worker.head == "linear" else f"?head={worker.head}")


def _tasks_toml(result: FitResult, workers: list[str], judge: str) -> str:
    task = result.task
    examples = "".join(
        f"  {{ text = {_toml_string(e.text)}, label = {_toml_string(e.label)} }},\n" for e in task.examples
    )
    return (
        "# Written by `tribunal fit` (report.md says from what and why). Paths are relative to this file.\n"
        f"[tasks.{task.name}]\n"
        f"description = {_toml_string(task.description)}\n"
        f"labels = {_toml_list(list(task.labels))}\n"
        f"prompt = {_toml_string(task.prompt)}\n"
        f"example_format = {_toml_string(task.example_format)}\n"
        f"examples = [\n{examples}]\n"
        f"workers = {_toml_list(workers)}\n"
        f"judge = {_toml_string(judge)}\n"
        'policy = "target"\n'
        'calibration = "calibration.json"\n'
    )


def _pipeline_toml(
    result: FitResult, workers: list[str], judge: str, max_disagreement: float, confidence: float
) -> str:
    names = [f"w{n}" for n in range(1, len(workers) + 1)]
    entries = "".join(
        f'\n[[pipeline.workers]]\nname = "{name}"\nclassifier = {_toml_string(spec)}\n'
        for name, spec in zip(names, workers, strict=True)
    )
    return (
        f"# `tribunal --config {{this file}} run`: the cascade `tribunal fit` made for task {result.task.name!r},\n"
        "# every tier as its own process. Relative paths are relative to this file. Kafka comes from\n"
        "# -b HOST:PORT or TRIBUNAL_KAFKA__* (TLS and SASL: docs/cluster.md); any key from TRIBUNAL_<SECTION>__<KEY>.\n"
        'tasks_file = "tasks.toml"\n\n'
        "[aggregator]\n"
        f"workers = {json.dumps(names)}\n"
        'policy = "target"\n\n'
        "[aggregator.target]\n"
        f"max_disagreement = {max_disagreement}\n"
        f"confidence = {confidence}\n\n"
        "[judge]\n"
        f"classifier = {_toml_string(judge)}\n"
        f"{entries}"
    )


def helm_values(
    workers: list[str], judge: str, max_disagreement: float, confidence: float, *, fitted_judge: bool,
    mount: str = HELM_MOUNT,
) -> str:  # fmt: skip
    """Chart values for the folder mounted at `mount`: worker groups, the judge (in-process when it
    was fitted here; yours stays a client of your model server), the tasks file and the target."""
    base = Path(mount)
    groups = "".join(
        f"  - name: w{n}\n    classifier: {_toml_string(resolve_spec_path(spec, base))}\n"
        for n, spec in enumerate(workers, start=1)
    )
    judge_part = (
        f"judge:\n  classifier: {_toml_string(resolve_spec_path(judge, base))}\n"
        "modelServer:\n  enabled: false   # the fitted judge runs inside the judge pods (the models image)\n"
        if fitted_judge
        else f"# judge: yours, {_toml_string(judge)}: set judge/modelServer as values/gpu-cluster.yaml does\n"
    )
    return (
        "# helm install tribunal deploy/helm/tribunal -f deploy/helm/values/cpu-cluster.yaml -f helm-values.yaml \\\n"
        "#   --set fitted.existingClaim=CLAIM   (a volume holding this folder, or bake it into your image there)\n"
        f"fitted:\n  mountPath: {mount}\n"
        f"workers:\n{groups}"
        f"{judge_part}"
        "config:\n"
        f"  tasks_file: {mount}/tasks.toml\n"
        "  aggregator:\n    policy: target\n"
        f"    target:\n      max_disagreement: {max_disagreement}\n      confidence: {confidence}\n"
    )


def report_dict(
    result: FitResult, provenance: dict[str, str], files: dict[str, str], quality: dict[str, float]
) -> dict[str, Any]:
    """The fit as one JSON object: also what `tribunal fit --json` prints."""
    gold = result.gold
    rule = result.warm.rule

    def scored(model: Any, role: str) -> dict[str, Any]:
        return {"name": model.name, "model": model.spec, "role": role,
                "accuracy": round(model.accuracy(gold), 4),
                "agreement_with_judge": round(model.agreement(result.judge.labels), 4),
                "ms_per_item": round(model.ms_per_item, 4), "train_seconds": model.train_seconds}  # fmt: skip

    chosen = {w.name for w in result.workers}
    return {
        "task": result.task.name,
        "labels": len(result.task.labels),
        "rows": result.rows,
        "models": [scored(c, "worker" if c.name in chosen else "not chosen") for c in result.candidates]
        + [scored(result.judge, "judge")],
        "worker_sets": result.worker_sets,
        "rule": {
            "cutoff": rule.cutoff,
            "audit_rate": rule.audit_rate,
            "certificate": dict(rule.certificate),
            **quality,
        },
        "estimate": {k: round(v, 4) for k, v in result.estimate.items()},
        "seconds": result.seconds,
        "warnings": result.warnings,
        "provenance": provenance,
        "files": files,
    }


def _report_md(report: dict[str, Any]) -> str:
    est, rule = report["estimate"], report["rule"]
    lines = [
        f"# `tribunal fit`: task `{report['task']}`",
        "",
        f"{report['rows']['train']} rows trained the workers and the judge; {report['rows']['calibration']} other "
        f"rows (no text shared with them) calibrated the rule. {report['labels']} labels.",
        "",
        "## Models, measured on the calibration rows",
        "",
        "| model | role | accuracy vs gold | agrees with judge | ms per item (2 cores here) | train s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for m in report["models"]:
        lines.append(f"| {m['name']} | {m['role']} | {m['accuracy']:.3f} | {m['agreement_with_judge']:.3f} "
                     f"| {m['ms_per_item']:.3f} | {m['train_seconds']} |")  # fmt: skip
    lines += ["", "## Worker sets: the one whose certified rule accepts the most items is chosen", "",
              "| workers | rule accepts | certified | ms per item | chosen |", "|---|---:|---|---:|---|"]  # fmt: skip
    for s in report["worker_sets"]:
        lines.append(f"| {', '.join(s['workers'])} | {s['accepted_share']:.1%} | {s['certified']} "
                     f"| {s['ms_per_item']:.3f} | {'yes' if s['chosen'] else ''} |")  # fmt: skip
    cert = rule["certificate"]
    bound = rule["max_disagreement"]
    uncertified = "none certified: every item goes to the judge until live audits certify one"
    where = uncertified if rule["cutoff"] is None else (
        f"{rule['cutoff']:.4f}, certified at {rule['confidence']} confidence that at most "
        f"{bound} of accepted items would get another label from the judge ({int(cert.get('k', 0))} of "
        f"{int(cert.get('n', 0))} certification rows did)"
    )  # fmt: skip
    lines += [
        "",
        "## The rule",
        "",
        f"- cut-off: {where}",
        f"- audit rate at start: {rule['audit_rate']:.3f} of accepted items (live audits keep checking the rule)",
        "",
        "## What to expect (on the calibration rows: the cut-off was chosen on part of them)",
        "",
        f"- the workers decide {est['accepted_share']:.1%} of items; judge calls per item "
        f"{est['judge_calls_per_item']:.3f} with audits: **{est['fewer_judge_calls']:.1f}x fewer** than judge-only",
        f"- accuracy vs gold: cascade {est['cascade_accuracy']:.3f}, judge alone {est['judge_accuracy']:.3f}",
        f"- accepted items the judge would label otherwise: {est['disagreement_on_accepted']:.3f} (bound {bound})",
        "",
        "## Provenance",
        "",
        *[f"- {k}: `{v}`" for k, v in sorted(report["provenance"].items())],
        *[f"- {name}: sha256 `{digest}`" for name, digest in sorted(report["files"].items())],
    ]
    if report["warnings"]:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in report["warnings"]]]
    return "\n".join(lines) + "\n"


def write_fit(
    result: FitResult, out: Path, provenance: dict[str, str], *, window: int,
    max_disagreement: float, confidence: float, replace: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Write the folder (see the module doc) and return the report dict."""
    _check_target(out, replace)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        files: dict[str, str] = {}
        specs: list[str] = []
        for n, worker in enumerate(result.workers, start=1):
            path = _head_file(worker, f"w{n}")
            save_head(staging / path, worker.header, worker.arrays)
            files[path] = file_sha256(staging / path)
            specs.append(_spec(worker, path))
        if isinstance(result.judge, Fitted):
            path = _head_file(result.judge, "judge")
            save_head(staging / path, result.judge.header, result.judge.arrays)
            files[path] = file_sha256(staging / path)
            judge = _spec(result.judge, path)
        else:
            judge = result.judge.spec
        document = calibration_document(result.warm, window)
        document["provenance"] = {**document.get("provenance", {}), **{f"sha256:{k}": v for k, v in files.items()}}
        (staging / "calibration.json").write_bytes(orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n")
        (staging / "tasks.toml").write_text(_tasks_toml(result, specs, judge), encoding="utf-8")
        pipeline = _pipeline_toml(result, specs, judge, max_disagreement, confidence)
        (staging / "pipeline.toml").write_text(pipeline, encoding="utf-8")
        quality = {"max_disagreement": max_disagreement, "confidence": confidence}
        chart = helm_values(specs, judge, max_disagreement, confidence, fitted_judge=isinstance(result.judge, Fitted))
        (staging / "helm-values.yaml").write_text(chart, encoding="utf-8")
        report = report_dict(result, provenance, files, quality)
        (staging / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        (staging / "report.md").write_text(_report_md(report), encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private; the folder is meant to be shared and mounted
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _check_target(out: Path, replace: bool) -> None:
    """Refuse to write over anything but an earlier fit's folder, and never over the working
    directory or a folder that holds it: `--force` replaces a fit, not a user's files."""
    if not out.exists():
        return
    if not replace:
        raise ConfigError(f"{out} exists; pass --force to replace it, or choose another --out")
    resolved = out.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise ConfigError(f"--out {out} is the working directory or holds it; name a folder of its own")
    if not out.is_dir() or (any(out.iterdir()) and not (out / "report.json").is_file()):
        raise ConfigError(f"{out} is not a folder `tribunal fit` wrote; --force replaces only those")


def _swap_in(staging: Path, out: Path) -> None:
    """Move the finished folder into place; an earlier one is renamed aside first and removed
    after, so there is always a complete folder at `out` or beside it, never a half-deleted one."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-replaced-{staging.name.rsplit('-', 1)[-1]}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
