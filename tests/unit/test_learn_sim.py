"""The prequential learning simulation (`tribunal bench learn`): the learned head sees only the
judge labels the stream paid for, versions follow the schedule, and without a version the
stream is decided exactly as without learning."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tribunal.bench.learn import bench_learn, series_table, summary_table
from tribunal.bench.learn_sim import LearnConfig, simulate_learning
from tribunal.cli import app
from tribunal.consumers.policy.ballots import Ballot
from tribunal.consumers.policy.calibration import TargetConfig
from tribunal.offline.policy_sim import RecordedItem, Recording
from tribunal.offline.recording import save_recording
from tribunal.offline.target_sim import simulate_target
from tribunal.schemas.tasks import load_tasks

pytest.importorskip("sklearn")

TASK = load_tasks().get("sentiment")
WORDS = {"positive": ["great", "lovely", "superb", "fun"], "negative": ["awful", "dull", "bad", "boring"]}


def _stream(n: int = 600) -> tuple[Recording, dict[str, str]]:
    """Items whose text names their label; three noisy workers; the judge is right."""
    rng = random.Random(7)
    items, texts = [], {}
    for i in range(n):
        gold = rng.choice(["positive", "negative"])
        other = "negative" if gold == "positive" else "positive"
        texts[f"i{i}"] = f"{rng.choice(WORDS[gold])} film number {i % 13}"
        ballots = tuple(
            Ballot(w, gold if rng.random() < 0.75 else other, rng.uniform(0.5, 1.0)) for w in ("w1", "w2", "w3")
        )
        items.append(RecordedItem(f"i{i}", gold, ballots, (1.0, 1.0, 1.0), gold, 100.0))
    return Recording("sentiment", ("negative", "positive"), ("w1", "w2", "w3"), tuple(items)), texts


def test_the_learned_head_learns_only_from_paid_judge_labels() -> None:
    recording, texts = _stream()
    config = TargetConfig(max_disagreement=0.1)
    learn = LearnConfig(every=100, first=50, batch=32)
    run = simulate_learning(recording, texts, TASK, config, learn, order=1, block=200)
    assert sum(run.block_items) == 600 and len(run.block_items) == 3
    assert run.versions >= 2, "first after 50 labels, then every 100"
    assert run.versions <= 1 + (run.run.judge_calls - 50) // 100 + 1
    assert run.block_voted[0] < 200 and run.block_voted[-1] == 200, "it abstains before version 1"
    assert run.block_agree[-1] / run.block_voted[-1] > 0.95, "the texts name the judge's label"


@pytest.mark.parametrize("order", [0, 3])
def test_without_learning_it_is_the_target_policy_simulation(order: int) -> None:
    """The baseline column decides every item exactly as `tribunal bench policies` does."""
    recording, _ = _stream(900)
    config = TargetConfig(max_disagreement=0.2)
    run = simulate_learning(recording, {}, TASK, config, None, order=order).run
    assert run == simulate_target(recording, config, order)
    assert run.accepted > 0, "the stream must exercise accepts, audits and re-fits"


def test_without_a_version_replacing_changes_nothing() -> None:
    """`replace` with a first fit never due decides every item as the baseline does."""
    recording, texts = _stream(300)
    config = TargetConfig(max_disagreement=0.1)
    never = LearnConfig(first=10**9, mode="replace", replace="w2")
    base = simulate_learning(recording, texts, TASK, config, None, order=2, block=100)
    same = simulate_learning(recording, texts, TASK, config, never, order=2, block=100)
    assert same.run == base.run and same.versions == 0 and same.block_calls == base.block_calls
    with pytest.raises(ValueError, match="w9"):
        simulate_learning(recording, texts, TASK, config, replace(never, replace="w9"))


def test_bench_learn_reports_both_columns() -> None:
    recording, texts = _stream(300)
    learn = LearnConfig(every=100, first=50, batch=32)
    [summary] = bench_learn(recording, texts, TASK, TargetConfig(), learn, [0.1], orders=2, block=100)
    figures = summary.as_dict()
    assert figures["without"]["versions_mean"] == 0 and figures["with"]["versions_mean"] >= 1
    assert len(figures["with"]["judge_rate_by_block"]) == 3
    assert "| 0.1 | with |" in summary_table([summary]) and "| 200-300 |" in series_table(summary, 100)


def test_bench_learn_command_prints_both_columns(tmp_path: Path) -> None:
    """`tribunal bench learn --json` on a cached recording and its texts; bad inputs exit 2."""
    recording, texts = _stream(300)
    cache, data = tmp_path / "rec.json", tmp_path / "texts.jsonl"
    save_recording(recording, cache)
    data.write_text("".join(json.dumps({"id": i, "text": t, "label": "positive"}) + "\n" for i, t in texts.items()))
    args = ["bench", "learn", "--cache", str(cache), "-i", str(data), "--every", "100", "--first", "50"]
    result = CliRunner().invoke(app, [*args, "--block", "100", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["items"] == 300 and out["targets"][0]["with"]["versions_mean"] >= 1
    assert CliRunner().invoke(app, [*args, "--replace", "w9"]).exit_code == 2
    data.write_text(json.dumps({"id": "i0", "text": "only one"}) + "\n")
    assert CliRunner().invoke(app, args).exit_code == 2, "recorded ids without a text"
    assert CliRunner().invoke(app, ["train", "-t", "sentiment"]).exit_code == 2, "--input or --from-labels"
