"""Copy what `tribunal fit` wrote into the package, as a bundled task's defaults.

    python tools/bundle_fit.py FIT_FOLDER TASK

Heads go to consumers/classifiers/bundled/TASK-<model>.npz, the rule to
schemas/calibrations/TASK.json, the fit's report to bundled/TASK-fit-report.md; the `workers` and
`judge` lines for schemas/tasks.toml are printed (the task's labels, prompt and examples there are
written by hand). `make bundled-intent` runs it after the fit; it reads only the fit folder.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "consumers" / "classifiers" / "bundled"
CALIBRATIONS = ROOT / "schemas" / "calibrations"


def bundled_spec(spec: str, task: str, folder: Path) -> str:
    """Copy the head a fit spec names (`tfidf:heads/w1-tfidf-linear.npz?head=...`) into the
    package; return the spec that names the copy (`tfidf:bundled:intent-tfidf-linear?head=...`)."""
    head, mark, query = spec.partition("?")
    kind, _, path = head.partition(":")
    model = Path(path).stem.split("-", 1)[1]  # w1-tfidf-linear -> tfidf-linear; judge-embedding-linear
    name = f"{task}-{model}"
    shutil.copyfile(folder / path, BUNDLED / f"{name}.npz")
    return f"{kind}:bundled:{name}{mark}{query}"


def main(folder: Path, task: str) -> None:
    definition = tomllib.loads((folder / "tasks.toml").read_text(encoding="utf-8"))["tasks"][task]
    workers = [bundled_spec(spec, task, folder) for spec in definition["workers"]]
    judge = bundled_spec(definition["judge"], task, folder)
    shutil.copyfile(folder / "calibration.json", CALIBRATIONS / f"{task}.json")
    shutil.copyfile(folder / "report.md", BUNDLED / f"{task}-fit-report.md")
    print("workers = [\n" + "".join(f'  "{w}",\n' for w in workers) + "]")
    print(f'judge = "{judge}"')


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2])
