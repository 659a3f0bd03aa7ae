"""Fitting and certifying target rules from judge verdicts: the pure core behind the rules table,
`tribunal calibrate` and the offline benchmark.

Evidence. Every item the judge labels becomes an `Evidence` row: the workers' vote states
(`consumers.policy.trust.vote_states`), whether the judge changed the plurality label, whether that
label had been accepted (the judge saw it as an audit) and the audit rate q in force. Two
independent uniform draws per item id (`consumers.policy.target`) assign the roles:

- *calibration*: items in the uniform audit sample (audit draw < q) on the calibration side of
  the split. Whether an item is sampled does not depend on its ballots, and a sampled item is
  always labelled (escalated items are judged anyway; accepted ones are audited), so these rows
  are an unweighted i.i.d. sample of the stream: exact binomial tests apply to them as they are.
- *fitting*: every labelled item on the fitting side, weighted by 1 / P(labelled) = 1 for an
  escalated item and 1 / q for an audited accepted one (inverse-propensity weights: escalated
  items are the hard ones, and unweighted they would teach the score that workers are worse than
  they are). The two sides are disjoint, so the score never sees the data that certifies it.

Certification (`recalibrate`). Fit the score on the fitting rows; candidates are the cut-offs
that accept 2%, 4%, ... of the (weighted) fitting rows, strictest first; Learn then Test's
fixed-sequence scan (`consumers.policy.risk`) over the calibration rows certifies the loosest cut-off
whose disagreement rate among accepted items is <= `max_disagreement` at level δ_j, re-fit j
spending δ_j = δ / (j (j + 1)). The scan starts at the first candidate the fitting rows predict
could pass (a choice made without the calibration labels, so the family-wise level holds).

Audit rate. q = 1 while nothing is certified (every item is judged anyway). After a fit, q is
the extra share of items the next looser candidate would accept, when the calibration rows put
its disagreement below the target (more audits could certify it: evidence is thin), clamped to
[min_audit_rate, max_audit_rate]; min_audit_rate when the next candidate is over the target
(the bound is tight: more audits would not loosen it) or all candidates passed.

Drift (`step`). Calibration rows accepted under the current version feed `risk.DriftTest`; an
alarm at level δ publishes a strict rule at once (no cut-off, q = 1) and starts a new evidence
epoch: rows of older versions no longer count, and the looser cut-off is earned again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tribunal.consumers.policy.risk import DriftTest, binom_cdf, fixed_sequence, min_certifiable_n, refit_delta
from tribunal.consumers.policy.target import Rule, audit_draw, cold_rule, split_draw
from tribunal.consumers.policy.trust import TrustModel, features, fit_logistic

__all__ = [
    "Evidence",
    "Ledger",
    "TargetConfig",
    "WarmStart",
    "calibrate_offline",
    "evidence_role",
    "first_refit_at",
    "recalibrate",
    "step",
]

# Fewest weighted-fit rows (and of each outcome) before a score is fitted at all.
MIN_FIT_ROWS = 30
# The scan starts where a candidate's expected calibration count, less this many standard
# deviations, would pass.
ENTRY_MARGIN_SD = 2.0


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """The quality target and how evidence is gathered (see `AggregatorSettings.target`)."""

    max_disagreement: float = 0.05
    confidence: float = 0.95
    min_audit_rate: float = 0.02
    max_audit_rate: float = 0.1
    fit_share: float = 0.3
    refit_growth: float = 1.5
    window: int = 20_000
    grid_step: float = 0.02
    l2: float = 1.0

    @property
    def delta(self) -> float:
        return 1.0 - self.confidence


@dataclass(frozen=True, slots=True)
class Evidence:
    """One judged item, as the rules table sees it (no text, no id)."""

    states: tuple[tuple[int, float], ...]  # per worker of the rule, sorted: (FOR/AGAINST/NONE, confidence)
    disagreed: bool  # the judge's label differs from the workers' plurality
    accepted: bool  # the plurality had been published (the judge saw an audit)
    audit_rate: float  # q when the item was decided
    calibration: bool  # True: calibration side; False: fitting side
    version: int  # the rule version that decided the item
    # features(states), computed once (a caller that has them already may pass them)
    x: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.x:
            object.__setattr__(self, "x", tuple(features(self.states)))

    @property
    def weight(self) -> float:
        """1 / P(labelled | fitting side): 1 for an escalated item, 1 / q for an audited one."""
        return 1.0 / self.audit_rate if self.accepted and self.audit_rate > 0 else 1.0


def evidence_role(item_id: str, audit_rate: float, fit_share: float) -> bool | None:
    """True (calibration), False (fitting) or None (labelled but in neither: an escalated item
    outside the audit sample on the calibration side)."""
    if split_draw(item_id) < fit_share:
        return False
    return True if audit_draw(item_id) < audit_rate else None


def first_refit_at(config: TargetConfig) -> int:
    """Calibration items before the first fit: the fewest that could certify anything at δ_1."""
    return min_certifiable_n(config.max_disagreement, refit_delta(config.delta, 1))


@dataclass(slots=True)
class Ledger:
    """The evidence of one task, bounded: the latest `window` rows of each side, plus the total
    of calibration rows ever seen (re-fits are scheduled on it) and the drift test of the rule
    in force (`drift`), kept up to date as rows arrive."""

    window: int
    fitting: deque[Evidence] = field(default_factory=deque)
    calibration: deque[Evidence] = field(default_factory=deque)
    calibration_total: int = 0
    _drift: tuple[int, DriftTest] | None = None

    @classmethod
    def of(cls, fitting: Sequence[Evidence], calibration: Sequence[Evidence], calibration_total: int) -> Ledger:
        """A ledger holding exactly these rows (merged snapshots), with the given total."""
        window = max(len(fitting), len(calibration), 1)
        return cls(window, deque(fitting), deque(calibration), max(calibration_total, len(calibration)))

    def add(self, row: Evidence) -> None:
        side = self.calibration if row.calibration else self.fitting
        side.append(row)
        if len(side) > self.window:
            side.popleft()
        if row.calibration:
            self.calibration_total += 1
            if self._drift is not None and row.accepted and row.version == self._drift[0]:
                self._drift = (row.version, self._drift[1].observe(row.disagreed))

    def drift(self, rule: Rule, alpha: float) -> DriftTest:
        """The drift test of `rule`: its accepted calibration rows, in arrival order."""
        if self._drift is None or self._drift[0] != rule.version:
            test = DriftTest.start(alpha)
            for row in self.calibration:
                if row.accepted and row.version == rule.version:
                    test = test.observe(row.disagreed)
            self._drift = (rule.version, test)
        return self._drift[1]


def step(rule: Rule, ledger: Ledger, config: TargetConfig) -> Rule | None:
    """The next rule if one is due (a drift fallback or a scheduled re-fit), else None."""
    if rule.cutoff is not None and ledger.drift(rule, config.max_disagreement).alarm(config.delta):
        return replace(
            rule,
            version=rule.version + 1,
            cutoff=None,
            audit_rate=1.0,
            epoch=rule.version + 1,
            epoch_calibration=ledger.calibration_total,
            next_refit_at=first_refit_at(config),
            reason="drift",
            certificate={},
        )
    if ledger.calibration_total - rule.epoch_calibration >= rule.next_refit_at:
        fitting = [r for r in ledger.fitting if r.version >= rule.epoch]
        calibration = [r for r in ledger.calibration if r.version >= rule.epoch]
        return recalibrate(rule, fitting, calibration, config, ledger.calibration_total - rule.epoch_calibration)
    return None


def recalibrate(
    rule: Rule, fitting: Sequence[Evidence], calibration: Sequence[Evidence], config: TargetConfig, since_epoch: int
) -> Rule:
    """Re-fit the score, certify a cut-off, set the audit rate: the rule's next version."""
    refit = rule.refits + 1
    delta = refit_delta(config.delta, refit)
    weights = _fit(rule.workers, fitting, config.l2)
    model = TrustModel.from_weights(rule.workers, weights)
    cutoff: float | None = None
    certificate: dict[str, float] = {}
    next_share = 0.0
    if model.fitted and calibration:
        cutoff, certificate, next_share = _certify(model, fitting, calibration, config, delta)
    # Nothing certified: every item goes to the judge, so sampling all of them costs nothing.
    audit_rate = 1.0 if cutoff is None else min(config.max_audit_rate, max(config.min_audit_rate, next_share))
    grown = math.ceil(max(since_epoch, 1) * config.refit_growth)
    return replace(
        rule,
        version=rule.version + 1,
        weights=weights,
        cutoff=cutoff,
        audit_rate=audit_rate,
        refits=refit,
        next_refit_at=max(grown, min_certifiable_n(config.max_disagreement, refit_delta(config.delta, refit + 1))),
        reason="re-fit",
        certificate=certificate,
    )


def _fit(workers: Sequence[str], rows: Sequence[Evidence], l2: float) -> dict[str, float]:
    """Score weights from the fitting rows ({} while they are too few or all one outcome)."""
    disagreed = sum(r.disagreed for r in rows)
    if len(rows) < MIN_FIT_ROWS or disagreed == 0 or disagreed == len(rows):
        return {}
    coefficients = fit_logistic(
        [r.x for r in rows], [0 if r.disagreed else 1 for r in rows], [r.weight for r in rows], l2
    )
    return TrustModel(tuple(workers), coefficients).as_dict()


def _certify(
    model: TrustModel,
    fitting: Sequence[Evidence],
    calibration: Sequence[Evidence],
    config: TargetConfig,
    delta: float,
) -> tuple[float | None, dict[str, float], float]:
    """(cut-off or None, its certificate, the accepted share the next candidate would add if it
    looks certifiable with more audits, else 0)."""
    alpha = config.max_disagreement
    candidates = _candidates(model, fitting, config.grid_step)
    scored = sorted(zip(_scores(model, calibration), (r.disagreed for r in calibration), strict=True), reverse=True)
    tests = [_count(scored, cut) for cut, _, _ in candidates]
    start = _entry(candidates, len(calibration), alpha, delta)
    if start is None:
        return None, {}, 0.0
    passed = fixed_sequence(tests[start:], alpha, delta)
    if passed is None:
        return None, {}, 0.0
    index = start + passed
    n, k = tests[index]
    certificate = {"n": float(n), "k": float(k), "delta": delta, "accept_share": n / len(calibration)}
    next_share = 0.0
    if index + 1 < len(tests):
        n_next, k_next = tests[index + 1]
        if n_next and k_next / n_next < alpha:
            next_share = (n_next - n) / len(calibration)
    return candidates[index][0], certificate, next_share


def _scores(model: TrustModel, rows: Sequence[Evidence]) -> list[float]:
    """The model's score of every row, vectorised (equal to `model.score_states` per row)."""
    import numpy as np

    if not rows:
        return []
    z = np.asarray([r.x for r in rows]) @ np.asarray(model.weights)
    return [float(v) for v in 1.0 / (1.0 + np.exp(-np.clip(z, -700.0, 700.0)))]


def _count(scored: Sequence[tuple[float, bool]], cutoff: float) -> tuple[int, int]:
    """(accepted, disagreed among them) of calibration rows at this cut-off."""
    accepted = [d for s, d in scored if s >= cutoff]
    return len(accepted), sum(accepted)


def _candidates(model: TrustModel, fitting: Sequence[Evidence], step_share: float) -> list[tuple[float, float, float]]:
    """(cut-off, weighted disagreement rate above it, weighted share above it) accepting about
    step, 2 step, ... of the weighted fitting rows, strictest first. Tied scores stay together:
    a cut-off accepts every row at its score, and its rate and share say so."""
    weights, outcomes = [r.weight for r in fitting], [r.disagreed for r in fitting]
    rows = sorted(zip(_scores(model, fitting), weights, outcomes, strict=True), reverse=True)
    total = math.fsum(w for _, w, _ in rows)
    out: list[tuple[float, float, float]] = []
    mass = bad = 0.0
    goal = step_share
    for index, (score, weight, disagreed) in enumerate(rows):
        mass += weight
        bad += weight * disagreed
        last_of_tie = index + 1 == len(rows) or rows[index + 1][0] < score
        if last_of_tie and mass >= goal * total - 1e-9:
            out.append((score, bad / mass, mass / total))
            while goal * total <= mass + 1e-9:
                goal += step_share
    return out


def _entry(
    candidates: Sequence[tuple[float, float, float]], n_calibration: int, alpha: float, delta: float
) -> int | None:
    """Where the scan starts: the candidate that the fitting rows predict is the surest to pass on
    the calibration rows (smallest predicted p-value), if that prediction passes at all. The
    prediction takes its fitting disagreement rate and its expected count there less two standard
    deviations. A failed first test certifies nothing, so the scan starts where failing is least
    likely; stricter candidates accept less and are not needed. The choice uses no calibration
    label, so the scan's level holds."""
    best: tuple[float, int] | None = None
    for index, (_, rate, share) in enumerate(candidates):
        expected = share * n_calibration
        n = int(expected - ENTRY_MARGIN_SD * math.sqrt(expected * max(0.0, 1.0 - share)))
        if n > 0:
            p_value = binom_cdf(math.ceil(rate * n), n, alpha)
            if best is None or p_value < best[0]:
                best = (p_value, index)
    return best[1] if best is not None and best[0] <= delta else None


@dataclass(frozen=True, slots=True)
class WarmStart:
    """A rule fitted on a judged history, and that history as evidence: the live stream's ledger
    starts with it, so live audits add to it instead of starting over."""

    rule: Rule
    evidence: tuple[Evidence, ...]

    def ledger(self, window: int) -> Ledger:
        ledger = Ledger(window)
        for row in self.evidence:
            ledger.add(row)
        return ledger


def calibrate_offline(
    task: str,
    workers: Sequence[str],
    rows: Sequence[Evidence],
    config: TargetConfig,
    provenance: dict[str, str],
    models: dict[str, str] | None = None,
) -> WarmStart:
    """A warm start from a fully judged history (`tribunal calibrate`): the rule is fitted and
    certified like a first re-fit, and its evidence epoch starts with the history (rows tagged
    with its version). A certified rule audits at the rate a live re-fit on the same evidence
    would choose (`recalibrate`: the minimum, unless more audits could certify a looser cut-off):
    the history already did what a cold start's audits are for, so a large one is not taxed at
    `max_audit_rate` (audits were a third of the judge calls that way). The first live re-fit
    comes as soon as the live calibration rows alone could certify anything. A drift alarm opens
    a new epoch without the history."""
    fitting = [r for r in rows if not r.calibration]
    calibration = [r for r in rows if r.calibration]
    fitted = recalibrate(cold_rule(task, workers, 0), fitting, calibration, config, len(calibration))
    extra = {"calibration_rows": float(len(calibration)), "fitting_rows": float(len(fitting))}
    live = min_certifiable_n(config.max_disagreement, refit_delta(config.delta, fitted.refits + 1))
    rule = replace(
        fitted,
        epoch=fitted.version,
        epoch_calibration=0,
        next_refit_at=len(calibration) + live,
        audit_rate=fitted.audit_rate,
        reason="warm start",
        certificate={**fitted.certificate, **extra},
        provenance=provenance,
        models=models or {},
    )
    return WarmStart(rule, tuple(replace(r, version=rule.version) for r in rows))
