"""Tasks files that include others: a user's tasks beside the bundled ones without copying them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribunal.schemas.tasks import BUNDLED_TASKS_FILE, TaskError, load_tasks

TICKETS = '[tasks.tickets]\nlabels = ["billing", "bug", "other"]\n'


def test_a_file_adds_its_tasks_to_the_bundled_ones(tmp_path: Path) -> None:
    """`include = ["bundled"]`: every bundled task, with its calibration found where it ships."""
    path = tmp_path / "mine.toml"
    path.write_text('include = ["bundled"]\n' + TICKETS)
    tasks = load_tasks(path)
    assert tasks.names == sorted([*load_tasks().names, "tickets"])
    calibration = tasks.get("sentiment").calibration
    assert calibration is not None and calibration.is_file()
    assert calibration.parent.parent == BUNDLED_TASKS_FILE.parent


def test_a_task_of_the_including_file_replaces_the_included_one_whole(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('include = ["bundled"]\n[tasks.sentiment]\nlabels = ["bad", "good"]\n')
    sentiment = load_tasks(path).get("sentiment")
    assert sentiment.labels == ("bad", "good") and sentiment.calibration is None and sentiment.workers == ()


def test_relative_paths_resolve_against_the_file_that_wrote_them(tmp_path: Path) -> None:
    """A calibration named in an included file is found next to that file, not the includer."""
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "rule.json").write_text("{}")
    (tmp_path / "team" / "tasks.toml").write_text(TICKETS + 'calibration = "rule.json"\n')
    (tmp_path / "deploy.toml").write_text('include = ["team/tasks.toml"]\n')
    assert load_tasks(tmp_path / "deploy.toml").get("tickets").calibration == tmp_path / "team" / "rule.json"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.toml": 'include = ["b.toml"]\n', "b.toml": 'include = ["a.toml"]\n'}, "circle"),
        ({"a.toml": 'include = ["missing.toml"]\n'}, "cannot read tasks file"),
        ({"a.toml": 'include = "bundled"\n'}, "must be a list"),
        ({"a.toml": "include = []\n"}, "has no [tasks.NAME] tables"),
        ({"a.toml": '[task.tickets]\nlabels = ["a", "b"]\n'}, "unknown top-level keys ['task']"),
        ({"a.toml": 'include = ["bundled"]\nlabel = "x"\n'}, "unknown top-level keys ['label']"),
        ({"a.toml": 'include = ["bundled"]\n[tasks.x]\nlabels = ["only"]\n'}, "invalid task definition"),
    ],
)
def test_a_bad_include_says_what_is_wrong(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(TaskError) as caught:
        load_tasks(tmp_path / "a.toml")
    assert message in str(caught.value)
