"""Task definitions as data: the bundled file loads; a bad file says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribunal.schemas.tasks import TaskError, load_tasks


def test_bundled_tasks_have_their_label_sets() -> None:
    """The shipped tasks file defines sentiment, sentiment3 and the 77-intent task."""
    tasks = load_tasks()
    assert tasks.get("sentiment").labels == ("negative", "positive")
    assert tasks.get("sentiment3").labels == ("negative", "neutral", "positive")
    assert len(tasks.get("intent").labels) == 77


def test_prompt_renders_examples_then_text() -> None:
    """The few-shot prompt lists the examples, then the text, and ends where the label goes."""
    prompt = load_tasks().get("sentiment").render_prompt("It broke.")
    assert prompt.endswith("Text: It broke.\nSentiment:")
    assert "Sentiment: positive" in prompt and "Sentiment: negative" in prompt


def test_unknown_task_and_foreign_label_raise() -> None:
    """Unknown tasks and labels outside the set are TaskErrors naming the problem."""
    tasks = load_tasks()
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        tasks.get("nope")
    with pytest.raises(TaskError, match="not in the label set"):
        tasks.check_label("sentiment", "neutral")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("not toml [", "cannot read"),
        ("[other]\nx = 1\n", "no \\[tasks.NAME\\]"),
        ('[tasks.t]\nlabels = ["a", "a"]\n', "twice"),
        ('[tasks.t]\nlabels = ["a", "b"]\nexamples = [{ text = "x", label = "c" }]\n', "not in its label set"),
        ('[tasks.t]\nlabels = ["a"]\n', "invalid task definition"),
        ('[tasks.t]\nlabels = ["a", "b"]\nprompt = "no placeholder"\n', "must contain"),
    ],
)
def test_invalid_tasks_file_is_rejected(tmp_path: Path, body: str, fragment: str) -> None:
    """A malformed tasks file raises TaskError saying what is wrong."""
    path = tmp_path / "tasks.toml"
    path.write_text(body)
    with pytest.raises(TaskError, match=fragment):
        load_tasks(path)
