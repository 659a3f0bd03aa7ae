"""The target policy: accept the workers' label where a learned trust score clears a certified cut-off.

A `Rule` is everything an aggregator needs to decide a task's items: the trust model
(`policy.trust`), the cut-off (None: accept nothing, every item goes to the judge), the audit
rate, and its version. Rules are fitted from judge verdicts by `policy.calibration`, shared
through a compacted topic (`tables.rules`), and every verdict records the version that
decided it (`policy_version`).

`TargetPolicy.decide` waits for every expected ballot, then accepts the plurality label when its
score is >= the cut-off and escalates otherwise; with ballots missing when the wait is over,
`ballots.final` escalates (DEADLINE). Deciding only on complete ballots keeps the evidence
honest: a verdict's ballots are exactly what its decision saw, and the cut-off was certified on
complete ballots too.

Sampling, by item id (so a replay draws the same items): `audit_draw(id)` is uniform in [0, 1)
and an item belongs to the uniform audit sample when it is below the rule's `audit_rate`;
`split_draw(id)`, an independent uniform, sends it to the fitting or the calibration side.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tribunal.consumers.policy.ballots import Accept, Ballot, Decision, Escalate, Wait, pending_workers
from tribunal.consumers.policy.trust import TrustModel
from tribunal.schemas.messages import EscalationReason

__all__ = ["RULE_FORMAT", "Rule", "TargetPolicy", "audit_draw", "cold_rule", "lineage", "split_draw"]

RULE_FORMAT = 1
_VERSION = re.compile(r"@v\d+$")


def _uniform(item_id: str, person: bytes) -> float:
    digest = hashlib.blake2b(item_id.encode(), digest_size=8, person=person).digest()
    return int.from_bytes(digest, "big") / 2**64


def audit_draw(item_id: str) -> float:
    """The item's audit draw: the aggregator's shadow-audit hash, uniform in [0, 1)."""
    digest = hashlib.blake2b(item_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_draw(item_id: str) -> float:
    """Uniform in [0, 1), independent of `audit_draw`: below `fit_share` = fitting side."""
    return _uniform(item_id, b"tribunal-split")


@dataclass(frozen=True, slots=True)
class Rule:
    """One version of a task's decision rule (immutable; a re-fit makes the next version).

    `refits` counts re-fits that spent part of δ; `epoch` is the first rule version whose
    evidence counts (evidence of older versions is dropped after a drift alarm), and
    `epoch_calibration` the calibration total at that moment; the next re-fit happens once
    `next_refit_at` calibration items arrived since the epoch. `certificate` says what the
    cut-off rests on (n, k, upper bound, accepted share); `provenance` where it came from.
    `models` (worker -> model id, as votes name it) pins a rule fitted offline to the models it
    was fitted on: `applies_to` is False for votes of any other model (empty: any model).
    """

    task: str
    version: int
    workers: tuple[str, ...]
    weights: Mapping[str, float] = field(default_factory=dict)
    cutoff: float | None = None
    audit_rate: float = 1.0
    refits: int = 0
    epoch: int = 0
    epoch_calibration: int = 0
    next_refit_at: int = 0
    reason: str = "cold start"
    certificate: Mapping[str, float] = field(default_factory=dict)
    provenance: Mapping[str, str] = field(default_factory=dict)
    models: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "workers", tuple(sorted(self.workers)))
        if not 0.0 <= self.audit_rate <= 1.0:
            raise ValueError(f"audit_rate must be in [0, 1], got {self.audit_rate!r}")
        if self.cutoff is not None and not 0.0 <= self.cutoff <= 1.0:
            raise ValueError(f"cutoff must be in [0, 1] or None, got {self.cutoff!r}")
        if self.version < 0 or self.refits < 0:
            raise ValueError("version and refits must be >= 0")
        self.model()  # the weights must name exactly this worker set's features

    def model(self) -> TrustModel:
        return TrustModel.from_weights(self.workers, self.weights)

    def applies_to(self, models: Mapping[str, str]) -> bool:
        """Whether votes from these models (worker -> model id) may be judged by this rule.
        Model lineages are compared: a learned head's `@vN` version is not part of it."""
        return all(lineage(self.models.get(worker, model)) == lineage(model) for worker, model in models.items())

    def inapplicable(self) -> Rule:
        """This version for votes of other models: accept nothing, every item in the sample."""
        return replace(self, cutoff=None, audit_rate=1.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot that `from_dict` restores (the rules topic and calibration files)."""
        return {
            "format": RULE_FORMAT,
            "task": self.task,
            "version": self.version,
            "workers": list(self.workers),
            "weights": dict(sorted(self.weights.items())),
            "cutoff": self.cutoff,
            "audit_rate": self.audit_rate,
            "refits": self.refits,
            "epoch": self.epoch,
            "epoch_calibration": self.epoch_calibration,
            "next_refit_at": self.next_refit_at,
            "reason": self.reason,
            "certificate": dict(self.certificate),
            "provenance": dict(self.provenance),
            "models": dict(sorted(self.models.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """Restore a `to_dict` snapshot; ValueError if it is malformed or of another format."""
        if data.get("format") != RULE_FORMAT:
            raise ValueError(f"unsupported rule format {data.get('format')!r}")
        try:
            cutoff = data["cutoff"]
            return cls(
                task=str(data["task"]),
                version=int(data["version"]),
                workers=tuple(str(w) for w in data["workers"]),
                weights={str(k): float(v) for k, v in data["weights"].items()},
                cutoff=None if cutoff is None else float(cutoff),
                audit_rate=float(data["audit_rate"]),
                refits=int(data["refits"]),
                epoch=int(data["epoch"]),
                epoch_calibration=int(data["epoch_calibration"]),
                next_refit_at=int(data["next_refit_at"]),
                reason=str(data["reason"]),
                certificate={str(k): float(v) for k, v in data["certificate"].items()},
                provenance={str(k): str(v) for k, v in data["provenance"].items()},
                models={str(k): str(v) for k, v in data.get("models", {}).items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed rule: {exc!r}") from exc


def lineage(model: str) -> str:
    """A model id without its learned-head version: `tfidf:learned/T@v3` -> `tfidf:learned/T`.
    A worker that hot-swaps learned heads keeps its lineage, so a swap does not void the rule
    (consumers/classifiers/learned.py says why, and what guards it: the drift test)."""
    return _VERSION.sub("", model)


def cold_rule(task: str, workers: Sequence[str], first_refit_at: int) -> Rule:
    """Version 0: no model, no cut-off, every item in the audit sample (they all go to the judge
    anyway, so sampling them costs nothing)."""
    return Rule(task=task, version=0, workers=tuple(workers), next_refit_at=first_refit_at)


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Accept the plurality label when its trust score is >= the rule's cut-off (module docstring).

    Accept's confidence is the trust score. Escalations say DISAGREEMENT when the ballots
    disagree, else LOW_CONFIDENCE; DEADLINE when ballots are missing at the deadline.
    """

    rule: Rule
    workers: Sequence[str] | None = None
    name: str = field(default="target", init=False)
    _model: TrustModel = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_model", self.rule.model())
        if self.workers is not None and set(self.workers) != set(self.rule.workers):
            raise ValueError(f"rule for workers {sorted(self.rule.workers)} cannot decide for {sorted(self.workers)}")

    @property
    def version(self) -> int:
        return self.rule.version

    @property
    def audit_rate(self) -> float:
        return self.rule.audit_rate

    def accepts(self, score: float) -> bool:
        """Whether a complete ballot set with this trust score is accepted."""
        return self.rule.cutoff is not None and self._model.fitted and score >= self.rule.cutoff

    def decide(self, ballots: Sequence[Ballot], expected: Sequence[str]) -> Decision:
        """Wait for every expected ballot, then accept or escalate."""
        if pending_workers(ballots, expected):
            return Wait()
        scored = self._model.score(ballots)
        if scored is None:
            return Escalate(EscalationReason.DISAGREEMENT)
        label, score = scored
        if self.accepts(score):
            return Accept(label, score)
        labels = {b.label for b in ballots if b.label is not None}
        return Escalate(EscalationReason.DISAGREEMENT if len(labels) > 1 else EscalationReason.LOW_CONFIDENCE)
