"""The target policy's decisions, its rules' persistence, cut-off selection and drift fallback."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribunal.consumers.policy.ballots import Accept, Ballot, Escalate, Wait, final
from tribunal.consumers.policy.calibration import (
    Evidence,
    Ledger,
    TargetConfig,
    calibrate_offline,
    evidence_role,
    first_refit_at,
    recalibrate,
    step,
)
from tribunal.consumers.policy.risk import binom_cdf, refit_delta
from tribunal.consumers.policy.target import Rule, TargetPolicy, audit_draw, cold_rule, split_draw
from tribunal.consumers.policy.trust import AGAINST, FOR, NONE, feature_names
from tribunal.schemas.messages import EscalationReason

WORKERS = ("w1", "w2", "w3")
CONFIG = TargetConfig(max_disagreement=0.05, confidence=0.9, window=50_000)


def _weights(**nonzero: float) -> dict[str, float]:
    return {name: nonzero.get(name.replace(":", "_"), 0.0) for name in feature_names(WORKERS)}


def _rule(cutoff: float | None, **kwargs: object) -> Rule:
    weights = _weights(bias=-2.0, unanimous=4.0)  # unanimous: 0.88; otherwise 0.12
    return Rule(task="t", version=3, workers=WORKERS, weights=weights, cutoff=cutoff, **kwargs)  # type: ignore[arg-type]


UNANIMOUS = [Ballot("w1", "a", 0.9), Ballot("w2", "a", 0.8), Ballot("w3", "a", 0.7)]
SPLIT = [Ballot("w1", "a", 0.9), Ballot("w2", "b", 0.8), Ballot("w3", "a", 0.7)]
QUIET = [Ballot("w1", "a", 0.9), Ballot("w2", "a", 0.8), Ballot("w3", None, 0.0)]


@pytest.mark.parametrize(
    ("cutoff", "ballots", "elapsed", "expected"),
    [
        (0.5, UNANIMOUS, 0, Accept),
        (0.5, SPLIT, 0, EscalationReason.DISAGREEMENT),
        (0.5, QUIET, 0, EscalationReason.LOW_CONFIDENCE),  # an abstention is not agreement
        (0.95, UNANIMOUS, 0, EscalationReason.LOW_CONFIDENCE),
        (None, UNANIMOUS, 0, EscalationReason.LOW_CONFIDENCE),  # nothing certified: judge everything
        (0.5, UNANIMOUS[:2], 10, Wait),  # waits for every ballot...
        (0.5, UNANIMOUS[:2], 2000, EscalationReason.DEADLINE),  # ...until the deadline
        (0.5, [Ballot(w, None, 0.0) for w in WORKERS], 0, EscalationReason.DISAGREEMENT),
    ],
)
def test_target_policy_table(cutoff: float | None, ballots: list[Ballot], elapsed: float, expected: object) -> None:
    """Accept the plurality only on complete ballots scoring >= the cut-off; escalate otherwise."""
    policy = TargetPolicy(_rule(cutoff), WORKERS)
    # Past 2000 ms the straggler rule says the wait is over: the aggregator takes `final`.
    decision = final(policy, ballots, WORKERS) if elapsed >= 2000 else policy.decide(ballots, WORKERS)
    if expected is Accept:
        assert isinstance(decision, Accept)
        assert decision.label == "a" and decision.confidence == pytest.approx(0.8808, abs=1e-4)
    elif expected is Wait:
        assert isinstance(decision, Wait)
    else:
        assert decision == Escalate(expected)  # type: ignore[arg-type]
    assert (policy.name, policy.version) == ("target", 3)


def test_rule_round_trips_and_rejects_what_it_cannot_read() -> None:
    """to_dict/from_dict is lossless; other formats, bad weights and bad rates fail loudly."""
    rule = _rule(0.7, audit_rate=0.1, certificate={"n": 500.0}, provenance={"source": "x"})
    assert Rule.from_dict(rule.to_dict()) == rule
    with pytest.raises(ValueError, match="format"):
        Rule.from_dict({**rule.to_dict(), "format": 99})
    with pytest.raises(ValueError, match="malformed"):
        Rule.from_dict({k: v for k, v in rule.to_dict().items() if k != "cutoff"})
    with pytest.raises(ValueError, match="expected the features"):
        Rule(task="t", version=1, workers=("w1", "w9"), weights=rule.weights)
    with pytest.raises(ValueError, match="audit_rate"):
        replace(rule, audit_rate=1.5)
    with pytest.raises(ValueError, match="cannot decide"):
        TargetPolicy(rule, workers=("w1", "w2"))


def test_draws_are_uniform_independent_and_stable() -> None:
    """The audit and split draws depend only on the id, look uniform and are independent."""
    ids = [f"item-{n}" for n in range(20_000)]
    audits = [audit_draw(i) for i in ids]
    splits = [split_draw(i) for i in ids]
    assert audit_draw("x") == audit_draw("x")
    assert sum(a < 0.1 for a in audits) == pytest.approx(2000, abs=200)
    both = sum(a < 0.5 and s < 0.5 for a, s in zip(audits, splits, strict=True))
    assert both == pytest.approx(5000, abs=300)


def test_evidence_roles() -> None:
    """Fitting side whatever the sample; calibration side only inside the audit sample."""
    ids = [f"i{n}" for n in range(4000)]
    roles = [evidence_role(i, 0.2, 0.5) for i in ids]
    assert sum(r is False for r in roles) == pytest.approx(2000, abs=150)
    assert sum(r is True for r in roles) == pytest.approx(400, abs=80)
    assert all(evidence_role(i, 1.0, 0.5) is not None for i in ids)


def _stream(n: int, seed: int, risk_easy: float = 0.0, risk_hard: float = 0.4) -> list[Evidence]:
    """Synthetic evidence: unanimous items disagree with the judge at `risk_easy`, split ones at
    `risk_hard`; 60% are unanimous; all judged (cold start, q = 1)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        easy = rng.random() < 0.6
        states = ((FOR, 0.9), (FOR, 0.9), (FOR if easy else AGAINST, 0.8))
        disagreed = rng.random() < (risk_easy if easy else risk_hard)
        rows.append(Evidence(states, disagreed, False, 1.0, rng.random() < 0.5, 0))
    return rows


def test_recalibrate_certifies_the_safe_cutoff_and_sets_the_audit_rate() -> None:
    """Easy items never disagree, hard ones often: the certified cut-off accepts exactly the easy
    ones, the certificate's bound holds, and the next (unsafe) candidate sets the minimum rate."""
    rows = _stream(3000, 1)
    rule = recalibrate(cold_rule("t", WORKERS, 0), [r for r in rows if not r.calibration],
                       [r for r in rows if r.calibration], CONFIG, 1500)  # fmt: skip
    assert rule.cutoff is not None and rule.version == 1 and rule.refits == 1
    scores = {r.states[2][0]: rule.model().score_states(r.states) for r in rows}
    assert scores[FOR] >= rule.cutoff > scores[AGAINST]
    n, k = int(rule.certificate["n"]), int(rule.certificate["k"])
    assert k == 0 and binom_cdf(k, n, CONFIG.max_disagreement) <= refit_delta(CONFIG.delta, 1)
    assert rule.audit_rate == CONFIG.min_audit_rate
    assert rule.next_refit_at == int(1500 * CONFIG.refit_growth)


def test_recalibrate_certifies_nothing_on_thin_or_bad_evidence() -> None:
    """Too few calibration rows, or risk above the target everywhere: no cut-off, q = 1."""
    thin = _stream(60, 2)
    bad = _stream(3000, 3, risk_easy=0.2)
    for rows in (thin, bad):
        rule = recalibrate(cold_rule("t", WORKERS, 0), [r for r in rows if not r.calibration],
                           [r for r in rows if r.calibration], CONFIG, 100)  # fmt: skip
        assert rule.cutoff is None and rule.audit_rate == 1.0


@settings(deadline=None, max_examples=15)
@given(st.integers(0, 10_000), st.floats(0.0, 0.12))
def test_certified_cutoff_passes_its_own_binomial_test(seed: int, risk_easy: float) -> None:
    """Whatever the data, a certified cut-off's calibration counts pass the exact test at δ_1, and
    a certificate is never issued without enough calibration rows to pass with zero events."""
    rows = _stream(1200, seed, risk_easy=risk_easy)
    cal = [r for r in rows if r.calibration]
    rule = recalibrate(cold_rule("t", WORKERS, 0), [r for r in rows if not r.calibration], cal, CONFIG, len(cal))
    if rule.cutoff is not None:
        model = rule.model()
        accepted = [r for r in cal if model.score_states(r.states) >= rule.cutoff]
        k = sum(r.disagreed for r in accepted)
        assert (len(accepted), k) == (rule.certificate["n"], rule.certificate["k"])
        assert binom_cdf(k, len(accepted), CONFIG.max_disagreement) <= refit_delta(CONFIG.delta, 1)


def test_step_refits_on_a_geometric_schedule_until_a_cutoff_is_certified() -> None:
    """A cold rule re-fits once the calibration sample reaches its first milestone (the fewest rows
    that could certify anything), then each time it grew by `refit_growth`; a cut-off comes once
    the accepted share alone is large enough."""
    rule = cold_rule("t", WORKERS, first_refit_at(CONFIG))
    ledger = Ledger(CONFIG.window)
    refits_at = []
    for row in _stream(4000, 4):
        ledger.add(row)
        new = step(rule, ledger, CONFIG)
        if new is not None:
            refits_at.append(ledger.calibration_total)
            rule = new
            if rule.cutoff is not None:
                break
    assert refits_at[0] == first_refit_at(CONFIG)
    assert all(b >= a * CONFIG.refit_growth for a, b in itertools.pairwise(refits_at))
    assert rule.cutoff is not None and rule.version == rule.refits == len(refits_at)


def test_drift_falls_back_to_strict_at_once() -> None:
    """Accepted audits that disagree far above the target raise the alarm: the next rule accepts
    nothing, audits everything, and opens a new evidence epoch."""
    rule = _rule(0.5, audit_rate=0.1, next_refit_at=10**9)
    ledger = Ledger(1000)
    rng = random.Random(5)
    fallback = None
    while fallback is None and ledger.calibration_total < 500:
        ledger.add(Evidence(((FOR, 0.9),) * 3, rng.random() < 0.4, True, 0.1, True, rule.version))
        fallback = step(rule, ledger, CONFIG)
    assert fallback is not None and ledger.calibration_total < 100
    assert (fallback.cutoff, fallback.audit_rate, fallback.reason) == (None, 1.0, "drift")
    assert fallback.epoch == fallback.version == rule.version + 1
    assert fallback.epoch_calibration == ledger.calibration_total


def test_no_drift_alarm_when_audits_agree() -> None:
    """Accepted audits at the target rate never trip the test in this run."""
    rule = _rule(0.5, audit_rate=0.1, next_refit_at=10**9)
    ledger = Ledger(1000)
    rng = random.Random(6)
    for _ in range(1000):
        ledger.add(Evidence(((FOR, 0.9),) * 3, rng.random() < 0.01, True, 0.1, True, rule.version))
        assert step(rule, ledger, CONFIG) is None


def test_calibrate_offline_starts_an_epoch_with_its_history() -> None:
    """A warm start is certified on its history, which becomes the first evidence of the live
    ledger: the next re-fit comes once the calibration rows grew by `refit_growth`."""
    rows = _stream(3000, 7)
    warm = calibrate_offline("t", WORKERS, rows, CONFIG, {"source": "synthetic"}, {"w1": "vader"})
    rule = warm.rule
    calibration = sum(r.calibration for r in rows)
    assert rule.cutoff is not None and rule.reason == "warm start"
    assert (rule.epoch, rule.epoch_calibration) == (rule.version, 0)
    assert rule.next_refit_at == calibration + first_refit_at(replace(CONFIG, confidence=1 - CONFIG.delta / 3))
    # The audit rate a live re-fit on the same evidence would choose, within the configured range.
    fitting, certifying = [r for r in rows if not r.calibration], [r for r in rows if r.calibration]
    refit = recalibrate(cold_rule("t", WORKERS, 0), fitting, certifying, CONFIG, len(certifying))
    assert rule.audit_rate == refit.audit_rate
    assert CONFIG.min_audit_rate <= rule.audit_rate <= CONFIG.max_audit_rate
    assert (rule.provenance, rule.models) == ({"source": "synthetic"}, {"w1": "vader"})
    assert rule.certificate["calibration_rows"] == calibration
    ledger = warm.ledger(CONFIG.window)
    assert ledger.calibration_total == calibration and {r.version for r in warm.evidence} == {rule.version}
    assert step(rule, ledger, CONFIG) is None


def test_rules_pinned_to_models_do_not_apply_to_others() -> None:
    """A rule fitted on named models judges only their votes; for others it accepts nothing."""
    rule = _rule(0.5, models={"w1": "vader"})
    assert rule.applies_to({"w1": "vader", "w2": "anything"})
    assert not rule.applies_to({"w1": "hash:1"})
    assert (rule.inapplicable().cutoff, rule.inapplicable().audit_rate) == (None, 1.0)


def test_evidence_weights_are_inverse_propensities() -> None:
    """An audited accepted row stands for 1/q accepted items; an escalated row for itself."""
    assert Evidence(((FOR, 0.9),), False, True, 0.05, False, 1).weight == pytest.approx(20.0)
    assert Evidence(((NONE, 0.0),), True, False, 0.05, False, 1).weight == 1.0
