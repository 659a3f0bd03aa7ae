"""The task defaults run from what ships: every model file they name is in the package, committed,
described in PROVENANCE.md, and no default reads a dataset at run time."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tribunal.consumers.classifiers.registry import parse_spec
from tribunal.consumers.classifiers.trained import BUNDLED, BUNDLED_DIR, bundled_path
from tribunal.schemas.tasks import load_tasks

REPO = Path(__file__).resolve().parents[2]
TASKS = load_tasks()
DEFAULT_SPECS = [
    (task.name, spec) for task in (TASKS.get(n) for n in TASKS.names) for spec in (*task.workers, task.judge) if spec
]
EXAMPLE_SPECS = [
    w["classifier"] for w in tomllib.loads((REPO / "examples" / "pipeline.toml").read_text())["pipeline"]["workers"]
]
BUNDLED_SPECS = [(task, spec) for task, spec in DEFAULT_SPECS if parse_spec(spec).arg.startswith(BUNDLED)]
# A head of the defaults is a few MB at most (int16 weights, compressed); more is a mistake.
MAX_BYTES = 8 * 1024 * 1024


def test_no_default_reads_training_data_or_a_path_outside_the_package() -> None:
    """Defaults name bundled heads or built-in models: no `train=`, no relative or absolute path."""
    for _, spec in [*DEFAULT_SPECS, *(("example", s) for s in EXAMPLE_SPECS)]:
        parsed = parse_spec(spec)
        assert "train" not in parsed.options, spec
        assert "shared" not in spec and "/" not in parsed.arg, spec
    assert BUNDLED_SPECS, "the task defaults use bundled heads"


@pytest.mark.parametrize(("task", "spec"), BUNDLED_SPECS)
def test_every_bundled_head_of_the_defaults_ships_and_fits_its_task(task: str, spec: str) -> None:
    """The file exists in the package, is small, and its header names the task, kind and head."""
    pytest.importorskip("numpy")
    from tribunal.consumers.classifiers.heads import load_head

    parsed = parse_spec(spec)
    path = bundled_path(parsed.arg.removeprefix(BUNDLED))
    assert path.is_file(), f"{spec}: {path} is missing"
    assert path.stat().st_size < MAX_BYTES, f"{path} is {path.stat().st_size} bytes"
    head = load_head(path, TASKS.get(task), parsed.kind)
    assert head.header["task"] == task
    assert head.header["head"] == parsed.options.get("head", "linear")


def test_every_bundled_file_is_described_and_committed() -> None:
    """PROVENANCE.md names every head with its rebuild command; git tracks every file (a head
    that exists only in a developer's checkout would pass here but fail every clone)."""
    provenance = (BUNDLED_DIR / "PROVENANCE.md").read_text(encoding="utf-8")
    heads = sorted(BUNDLED_DIR.glob("*.npz"))
    assert heads
    for path in heads:
        assert f"`{path.name}`" in provenance, f"{path.name} is not described in PROVENANCE.md"
        fit_report = BUNDLED_DIR / f"{path.name.split('-')[0]}-fit-report.md"
        if fit_report.is_file():  # made by `tribunal fit`: its report names the file's exact bytes
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert digest in fit_report.read_text(encoding="utf-8"), f"{path.name} is not what {fit_report.name} says"
            assert "tools/bundle_fit.py" in provenance
            continue
        command = f"--out {path.relative_to(REPO)}"
        assert command in provenance.replace("\\\n", ""), f"no rebuild command for {path.name}"
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: cannot check that the heads are committed")
    listed = subprocess.run(
        [git, "ls-files", "--error-unmatch", *(str(p.relative_to(REPO)) for p in heads)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, f"bundled heads not committed: {listed.stderr.strip()}"
