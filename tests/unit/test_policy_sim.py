"""Offline policy simulation on recorded votes: scores, the speedup formula, audits, recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribunal.consumers.policy.ballots import Ballot
from tribunal.consumers.policy.reliability import Reliability
from tribunal.consumers.policy.voting import ConfidentMajority, Majority, WeightedVote
from tribunal.core.errors import ConfigError
from tribunal.offline.policy_sim import Candidate, RecordedItem, Recording, default_candidates, simulate, speedup
from tribunal.offline.recording import load_recording, save_recording

WORKERS = ("w1", "w2", "w3")
LABELS = ("a", "b", "c")


def row(
    n: int, votes: str, judge: str, gold: str, conf: float = 0.9, ms: tuple[float, ...] = (1, 3, 2)
) -> RecordedItem:
    ballots = tuple(Ballot(w, None if v == "-" else v, conf) for w, v in zip(WORKERS, votes, strict=True))
    return RecordedItem(f"i{n}", gold, ballots, ms, judge, 100.0)


# aab: accepted a (right); abc: judge says c (right); aab gold b: accepted a (wrong); ccc low conf.
RECORDING = Recording(
    "t", LABELS, WORKERS,
    (row(0, "aab", "a", "a"), row(1, "abc", "c", "c"), row(2, "aab", "b", "b"), row(3, "ccc", "c", "c", conf=0.6)),
)  # fmt: skip


def c2(threshold: float) -> ConfidentMajority:
    return ConfidentMajority(2, default_threshold=threshold, workers=WORKERS)


def test_speedup_formula() -> None:
    """speedup = L_J / (mean slowest worker + judge_rate * L_J): 100 / (3 + 0.25 * 100)."""
    assert speedup(RECORDING, 0.25) == pytest.approx(100 / 28)
    assert speedup(RECORDING, 0.0) == pytest.approx(100 / 3)
    assert speedup(Recording("t", LABELS, WORKERS, ()), 0.5) == 0.0


@pytest.mark.parametrize(
    ("candidate", "judge_rate", "accuracy", "fast_path"),
    [
        (Candidate("c1", "majority", lambda: Majority(2, workers=WORKERS)), 0.25, 0.75, 2 / 3),
        (Candidate("c2", "confident_majority", lambda: c2(0.8)), 0.5, 0.75, 0.5),
        (Candidate("c2 all", "confident_majority", lambda: c2(1.0)), 1.0, 1.0, 0.0),
    ],
)  # fmt: skip
def test_simulate_scores(candidate: Candidate, judge_rate: float, accuracy: float, fast_path: float) -> None:
    """Accepted items keep the workers' label, escalated ones take the judge's; rates per item."""
    score = simulate(RECORDING, candidate)
    assert (score.judge_rate, score.accuracy, score.fast_path_accuracy) == (judge_rate, accuracy, fast_path)
    assert score.speedup == pytest.approx(speedup(RECORDING, judge_rate))


def test_audits_count_as_judge_calls_but_keep_the_label() -> None:
    """With every accepted item audited, the judge sees all items, the labels stay the workers'."""
    make = lambda: Majority(2, workers=WORKERS)  # noqa: E731
    plain, audited = (
        simulate(RECORDING, Candidate("c1", "c", make)),
        simulate(RECORDING, Candidate("a", "c", make, 1.0)),
    )
    assert audited.judge_rate == 1.0
    assert audited.accuracy == plain.accuracy


def test_weighted_learns_from_what_it_sends_to_the_judge() -> None:
    """A weighted candidate learns from judge labels in stream order: after the judge keeps
    siding with w3 against w1 and w2, their 2-1 majority is no longer trusted."""
    rows = tuple(row(n, "aab", "b", "b") for n in range(30))
    recording = Recording("t", LABELS, WORKERS, rows)
    make = lambda: WeightedVote(Reliability(LABELS), threshold=0.75, workers=WORKERS)  # noqa: E731
    assert simulate(recording, Candidate("w", "weighted", make)).judge_rate == 0.0, "nothing escalated: no learning"
    audited = simulate(recording, Candidate("w", "weighted", make, audit_rate=1.0))
    assert audited.accuracy > 0.5, "audits teach it that w3 is right"


def test_default_candidates_name_their_thresholds() -> None:
    """The sweep covers every family; quantile candidates show each worker's threshold."""
    candidates = default_candidates(RECORDING)
    families = {c.family for c in candidates}
    assert families == {"majority", "confident_majority", "confident_majority-quantile", "weighted", "weighted-audit"}
    quantile = next(c for c in candidates if c.name == "confident_majority q=0.5")
    assert quantile.detail == "w1>=0.900 w2>=0.900 w3>=0.900"


def test_recording_round_trip(tmp_path: Path) -> None:
    """save_recording then load_recording gives the same recording; other JSON is a ConfigError."""
    path = tmp_path / "rec.json"
    save_recording(RECORDING, path)
    assert load_recording(path) == RECORDING
    path.write_text('{"format": "something else"}')
    with pytest.raises(ConfigError):
        load_recording(path)
