"""Straggler detection, pure: slow workers are waited for, passed or silent ones are not."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tribunal.consumers.aggregator.stragglers import (
    Heard,
    Missing,
    NotYet,
    Over,
    StragglerRule,
    Waiting,
    classify,
    heard_again,
    wait_status,
)
from tribunal.consumers.policy.ballots import Accept, Ballot, Escalate, Wait, final
from tribunal.consumers.policy.voting import Majority
from tribunal.schemas.messages import EscalationReason

RULE = StragglerRule(deadline_ms=2_000, ceiling_ms=20_000)
T0 = 1_000.0


@pytest.mark.parametrize(
    ("offset", "heard", "now", "expected"),
    [
        (10, Heard(11, T0), T0, Missing.PASSED),  # its position is beyond the item
        (10, Heard(10, T0), T0, Missing.SLOW),  # exactly at the item: not passed yet
        (10, Heard(5, T0), T0 + 1.9, Missing.SLOW),  # heard 1.9 s ago: alive
        (10, Heard(5, T0), T0 + 2.0, Missing.SILENT),  # nothing for the deadline: gone
        (10, Heard(5, T0, gap=3.0), T0 + 5.0, Missing.SLOW),  # reports every 3 s: silent only after 6 s
        (10, Heard(5, T0, gap=3.0), T0 + 6.0, Missing.SILENT),
        (None, Heard(99, T0), T0, Missing.SLOW),  # unknown offset: never passed
        (10, Heard(11, T0), T0 + 60, Missing.PASSED),  # passed wins over silence
        # Alive but standing still: stuck once the ceiling passed since the item (or the last move).
        (10, Heard(5, T0 + 25, moved_at=T0 - 50), T0 + 25, Missing.STUCK),
        (10, Heard(5, T0 + 19, moved_at=T0 - 50), T0 + 19, Missing.SLOW),
        (10, Heard(5, T0 + 25, moved_at=T0 + 10), T0 + 25, Missing.SLOW),  # moved 15 s ago
        # Quiet, but its group coordinator lists a live member for the partition: slow, not gone...
        (10, Heard(5, T0, member=True), T0 + 5.0, Missing.SLOW),
        (10, Heard(5, T0, member=False), T0 + 5.0, Missing.SILENT),
        (10, Heard(5, T0, member=None), T0 + 5.0, Missing.SILENT),
        # ... until it has not moved for the ceiling.
        (10, Heard(5, T0, member=True), T0 + 20.0, Missing.STUCK),
    ],
)
def test_classify(offset: int | None, heard: Heard, now: float, expected: Missing) -> None:
    """Each missing worker is passed, silent, stuck or slow by its position and its reports (here with
    the votes partition read to its end at `now`)."""
    assert classify(offset, replace(heard, read_to=now), T0, now, RULE) is expected


@pytest.mark.parametrize(
    ("read_to", "expected"),
    [(None, Missing.SLOW), (T0 + 1.0, Missing.SLOW), (T0 + 2.0, Missing.SILENT), (T0 + 9.0, Missing.SILENT)],
)
def test_silence_counts_only_up_to_what_was_read(read_to: float | None, expected: Missing) -> None:
    """Reports the aggregator has not read yet may exist: silence is measured up to when it last
    had read the votes partition to its end, not up to now."""
    assert classify(10, Heard(5, T0, read_to=read_to), T0, T0 + 9.0, RULE) is expected


MOVING = T0 + 100  # a position that moved recently enough never makes a worker stuck here


@pytest.mark.parametrize(
    ("missing", "now", "expected"),
    [
        # Slow workers are waited for past the deadline; `until` is when they would count as stuck.
        ({"w3": Heard(5, T0 + 4.5, moved_at=T0 + 4.5)}, T0 + 5, Waiting("w3", T0 + 24.5)),
        # ... however long the backlog, as long as they move.
        ({"w3": Heard(5, T0 + 99, moved_at=T0 + 98)}, T0 + 99, Waiting("w3", T0 + 118)),
        # Alive and never moving while the item waits: stuck at the ceiling.
        ({"w3": Heard(5, T0 + 19.5, moved_at=T0 - 5)}, T0 + 20, Over("stuck")),
        # A silent worker is waited for until the item's deadline.
        ({"w3": Heard(5, T0 - 10)}, T0 + 1, NotYet(T0 + 2)),
        ({"w3": Heard(5, T0 - 10)}, T0 + 2, Over("silent")),
        # Every missing worker passed the item: its vote is never coming, no need to wait.
        ({"w2": Heard(11, T0), "w3": Heard(12, T0)}, T0 + 0.1, Over("passed")),
        # One passed, one slow: wait for the slow one.
        ({"w2": Heard(11, T0), "w3": Heard(5, T0 + 0.5)}, T0 + 1, Waiting("w3", T0 + 20.5)),
        # One passed, one silent: the deadline decides.
        ({"w2": Heard(11, T0), "w3": Heard(5, T0 - 5)}, T0 + 1, NotYet(T0 + 2)),
        ({"w2": Heard(11, T0), "w3": Heard(5, T0 - 5)}, T0 + 2.5, Over("silent")),
        # Two slow workers: the answer names one of them, deterministically.
        ({"w3": Heard(5, T0 + 2), "w2": Heard(5, T0 + 2)}, T0 + 3, Waiting("w2", T0 + 22)),
    ],
)
def test_wait_status(missing: dict[str, Heard], now: float, expected: object) -> None:
    """The wait for an item at offset 10, first seen at T0, ends only for passed, silent or stuck workers."""
    read = {worker: replace(heard, read_to=now) for worker, heard in missing.items()}
    assert wait_status(T0, 10, read, now, RULE) == expected


def test_max_wait_ends_any_wait() -> None:
    """With a max wait, even a moving worker is given up on then; `until` never passes it."""
    rule = StragglerRule(deadline_ms=2_000, ceiling_ms=20_000, max_wait_ms=30_000)
    moving = {"w3": Heard(5, T0 + 25, moved_at=T0 + 25)}
    assert wait_status(T0, 10, moving, T0 + 25, rule) == Waiting("w3", T0 + 30)
    assert wait_status(T0, 10, moving, T0 + 30, rule) == Over("max_wait")


def test_rule_rejects_a_ceiling_below_the_deadline() -> None:
    """A ceiling shorter than the deadline would make the deadline meaningless."""
    with pytest.raises(ValueError, match="ceiling"):
        StragglerRule(deadline_ms=2_000, ceiling_ms=1_000)


def test_heard_again_never_moves_back_and_learns_the_gap() -> None:
    """A replayed older position does not undo a newer one; the gap between reports is kept, and
    when the position last moved."""
    first = heard_again(None, 100, T0)
    again = heard_again(first, 40, T0 + 3)
    assert again == Heard(100, T0 + 3, gap=3.0, moved_at=T0)
    assert heard_again(again, 101, T0 + 4).moved == T0 + 4


@pytest.mark.parametrize(
    ("ballots", "over", "expected"),
    [
        ([Ballot("w1", "a", 0.9)], False, Wait()),
        ([Ballot("w1", "a", 0.9)], True, Escalate(EscalationReason.DEADLINE)),
        ([Ballot("w1", "a", 0.8), Ballot("w2", "a", 0.8)], True, Accept("a", 0.8)),
        ([Ballot("w1", "a", 0.9), Ballot("w2", None, 0.0), Ballot("w3", "b", 0.9)], False,
         Escalate(EscalationReason.DISAGREEMENT)),
    ],
)  # fmt: skip
def test_straggler_detection_owns_time(ballots: list[Ballot], over: bool, expected: object) -> None:
    """The policy never escalates for lateness by itself; once the wait is over `final` turns a Wait into DEADLINE."""
    policy = Majority(quorum=2)
    workers = ("w1", "w2", "w3")
    assert (final(policy, ballots, workers) if over else policy.decide(ballots, workers)) == expected


heards = st.builds(
    Heard,
    next_offset=st.integers(0, 50),
    at=st.floats(T0 - 30, T0 + 30),
    gap=st.floats(0, 10),
    moved_at=st.none() | st.floats(T0 - 60, T0 + 30),
    member=st.none() | st.booleans(),
    read_to=st.none() | st.floats(T0 - 30, T0 + 40),
)
missing_maps = st.dictionaries(st.sampled_from(["w1", "w2", "w3"]), heards, min_size=1)


@given(missing=missing_maps, offset=st.integers(0, 50), elapsed=st.floats(0, 40))
def test_a_slow_worker_is_never_given_up_on(missing: dict[str, Heard], offset: int, elapsed: float) -> None:
    """Whatever the others do, the wait is never over while a missing worker is alive and moving."""
    now = T0 + elapsed
    status = wait_status(T0, offset, missing, now, RULE)
    slow = [w for w, h in missing.items() if classify(offset, h, T0, now, RULE) is Missing.SLOW]
    if slow:
        assert isinstance(status, Waiting) and status.worker in slow and status.until > now
    else:
        assert isinstance(status, Over | NotYet)


@given(missing=missing_maps, offset=st.integers(0, 50), elapsed=st.floats(0, 40))
def test_silence_escalates_no_earlier_than_the_deadline(missing: dict[str, Heard], offset: int, elapsed: float) -> None:
    """Only a passed item ends the wait before the deadline; past it, silence or a stuck worker does too."""
    status = wait_status(T0, offset, missing, T0 + elapsed, RULE)
    if isinstance(status, Over) and status.cause in ("silent", "stuck"):
        assert elapsed >= 2.0
    if isinstance(status, Over) and status.cause == "passed":
        assert all(h.next_offset > offset for h in missing.values())
    if isinstance(status, NotYet):
        assert status.until == T0 + 2.0 and elapsed < 2.0
