"""`tribunal train` and `tribunal eval` through Typer's CliRunner on an app built by register()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tribunal.cli.models import register


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)
    return application


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rows = [("great fun", "positive"), ("awful bore", "negative"), ("loved it", "positive"), ("hated it", "negative")]
    lines = [json.dumps({"id": str(i), "text": t, "label": y}) for i, (t, y) in enumerate(rows)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_eval_json_has_the_documented_shape(app: typer.Typer, data: Path) -> None:
    """--json prints one object with task, items, classifiers and agreement (incl. gold)."""
    result = CliRunner().invoke(
        app, ["eval", "--task", "sentiment", "--input", str(data), "-C", "constant:positive", "-C", "hash", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["task"], report["items"]) == ("sentiment", 4)
    first = report["classifiers"][0]
    assert set(first) >= {"name", "spec", "role", "accuracy", "macro_f1", "latency_ms"}
    assert first["accuracy"] == 0.5 and first["role"] == "worker"
    assert set(report["agreement"]) == {"constant", "hash", "gold"}


def test_eval_judge_option_sets_the_role(app: typer.Typer, data: Path) -> None:
    """--judge SPEC is evaluated with role judge."""
    result = CliRunner().invoke(app, ["eval", "-t", "sentiment", "-i", str(data), "-J", "constant:negative", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classifiers"][0]["role"] == "judge"


def test_eval_defaults_use_the_tasks_workers_and_judge(
    app: typer.Typer, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--defaults evaluates the task's configured workers (role worker) and judge (role judge)."""
    text = (
        '[tasks.sentiment]\nlabels = ["negative", "positive"]\n'
        'workers = ["constant:positive", "hash:1"]\njudge = "constant:negative"\n'
    )
    tasks_file = tmp_path / "tasks.toml"
    tasks_file.write_text(text, encoding="utf-8")
    monkeypatch.setenv("TRIBUNAL_TASKS_FILE", str(tasks_file))
    result = CliRunner().invoke(
        app, ["eval", "-t", "sentiment", "-i", str(data), "--defaults", "--limit", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["items"] == 2
    assert [(c["spec"], c["role"]) for c in report["classifiers"]] == [
        ("constant:positive", "worker"),
        ("hash:1", "worker"),
        ("constant:negative", "judge"),
    ]
    assert "worker_majority" in report


def test_eval_table_on_a_terminal(app: typer.Typer, data: Path) -> None:
    """Without --json the command prints the score and agreement tables."""
    result = CliRunner().invoke(app, ["eval", "-t", "sentiment", "-i", str(data), "-C", "constant:negative"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "agreement" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["-C", "nosuchkind"],
        ["-C", "tfidf:/nonexistent/head.npz"],
        [],
    ],
)
def test_eval_errors_exit_2(app: typer.Typer, data: Path, args: list[str]) -> None:
    """An unknown kind, a missing head or no classifier at all is a usage error, not a traceback."""
    result = CliRunner().invoke(app, ["eval", "-t", "sentiment", "-i", str(data), *args])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_train_then_eval_the_head(app: typer.Typer, data: Path, tmp_path: Path) -> None:
    """`train` saves a head that `eval` can load by its spec."""
    pytest.importorskip("sklearn")
    out = tmp_path / "h.npz"
    trained = CliRunner().invoke(app, ["train", "-t", "sentiment", "-i", str(data), "-k", "tfidf", "-o", str(out)])
    assert trained.exit_code == 0, trained.output
    assert out.is_file() and f"tfidf:{out}" in trained.stdout
    result = CliRunner().invoke(app, ["eval", "-t", "sentiment", "-i", str(data), "-C", f"tfidf:{out}", "--json"])
    assert json.loads(result.stdout)["classifiers"][0]["accuracy"] == 1.0


def test_train_refuses_an_unknown_kind(app: typer.Typer, data: Path, tmp_path: Path) -> None:
    """`--kind` must be tfidf or embedding."""
    result = CliRunner().invoke(
        app, ["train", "-t", "sentiment", "-i", str(data), "-k", "bert", "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "unknown head kind" in result.output


def test_bundled_defaults_name_registered_kinds() -> None:
    """Every task in the bundled tasks file has two or more default workers (a quorum needs two;
    `fit` chose two for intent) and a judge, all of known kinds."""
    from tribunal.consumers.classifiers.registry import parse_spec
    from tribunal.schemas.tasks import load_tasks

    for task in load_tasks():
        assert len(task.workers) >= 2 and task.judge is not None
        for spec in (*task.workers, task.judge):
            parse_spec(spec)
