"""Evidence for the target policy, kept by the judges and shared through a compacted topic.

Every judge verdict on an item the target policy decided (an escalation or an audit) is evidence
about the trust score: the workers' votes, whether the judge changed their plurality label, and
the rule version and audit rate in force (`consumers.policy.calibration` says how it is used). Each
judge instance keeps, per task and per `judge` partition it owns, a bounded window of these rows
(`PartitionEvidence`) and writes the windows it touched to the compacted `evidence` topic (key
`task|partition`) in the same transaction as its verdicts; it restores them on assignment. So the
evidence is exactly-once through crashes and rebalances, and its size is bounded by the window.
The rules table (`consumers.tables.rules`) reads every key and merges them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tribunal.consumers.policy.ballots import ballots, plurality
from tribunal.consumers.policy.calibration import Evidence, evidence_role
from tribunal.consumers.policy.trust import AGAINST, FOR, NONE
from tribunal.consumers.tables.base import PartitionTable
from tribunal.core.settings import Settings
from tribunal.schemas.codec import DecodeError
from tribunal.schemas.messages import EscalationReason, JudgeRequest
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["EVIDENCE_FORMAT", "EvidenceTable", "PartitionEvidence", "row_of"]

EVIDENCE_FORMAT = 1

# A row: (rule version, accepted, audit rate, judge disagreed, ((worker, state, confidence), ...)).
Row = tuple[int, bool, float, bool, tuple[tuple[str, int, float], ...]]


def row_of(request: JudgeRequest, judge_label: str) -> Row | None:
    """The evidence row of one judged request, or None when it carries none (another policy,
    or every worker abstained)."""
    if request.audit_rate is None or request.policy != "target":
        return None
    votes = ballots(request.votes)
    top = plurality(votes)
    if top is None:
        return None
    states = tuple(
        # Four decimals keep snapshots small; the score clips confidences at 1e-3 anyway.
        (b.worker, NONE if b.label is None else FOR if b.label == top[0] else AGAINST, round(b.confidence, 4))
        for b in sorted(votes, key=lambda b: b.worker)
    )
    accepted = request.reason == EscalationReason.AUDIT
    return request.policy_version, accepted, request.audit_rate, judge_label != top[0], states


@dataclass(slots=True)
class PartitionEvidence:
    """One (task, judge partition)'s windows of fitting and calibration rows."""

    window: int
    fitting: deque[Row] = field(default_factory=deque)
    calibration: deque[Row] = field(default_factory=deque)
    calibration_total: int = 0

    def add(self, row: Row, calibration: bool) -> None:
        side = self.calibration if calibration else self.fitting
        side.append(row)
        if len(side) > self.window:
            side.popleft()
        self.calibration_total += calibration

    def evidence(self, workers: Sequence[str]) -> tuple[list[Evidence], list[Evidence]]:
        """(fitting, calibration) rows with states in `workers`' sorted order (missing: NONE)."""
        order = sorted(workers)
        return [_evidence(r, order, False) for r in self.fitting], [_evidence(r, order, True) for r in self.calibration]

    @classmethod
    def of(cls, rows: Sequence[Evidence], workers: Sequence[str], window: int) -> PartitionEvidence:
        """A window holding `rows` (states in `workers`' sorted order), e.g. a warm start's history."""
        book = cls(window)
        order = sorted(workers)
        for r in rows:
            # Four decimals, as the judges write them (snapshots and calibration files stay small).
            states = tuple((w, s, round(c, 4)) for w, (s, c) in zip(order, r.states, strict=True) if s != NONE)
            book.add((r.version, r.accepted, r.audit_rate, r.disagreed, states), r.calibration)
        return book

    def to_dict(self) -> dict[str, Any]:
        names = sorted({w for side in (self.fitting, self.calibration) for r in side for w, _, _ in r[4]})
        index = {name: n for n, name in enumerate(names)}

        def pack(rows: Iterable[Row]) -> list[list[Any]]:
            return [[v, int(a), q, int(d), [[index[w], s, c] for w, s, c in states]] for v, a, q, d, states in rows]

        return {
            "format": EVIDENCE_FORMAT,
            "workers": names,
            "calibration_total": self.calibration_total,
            "fitting": pack(self.fitting),
            "calibration": pack(self.calibration),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], window: int) -> PartitionEvidence:
        """Restore `to_dict`; ValueError if malformed or of another format."""
        if data.get("format") != EVIDENCE_FORMAT:
            raise ValueError(f"unsupported evidence format {data.get('format')!r}")
        try:
            names = [str(n) for n in data["workers"]]

            def unpack(rows: Iterable[Any]) -> deque[Row]:
                out = deque(
                    (int(v), bool(a), float(q), bool(d), tuple((names[w], int(s), float(c)) for w, s, c in states))
                    for v, a, q, d, states in rows
                )
                while len(out) > window:
                    out.popleft()
                return out

            return cls(window, unpack(data["fitting"]), unpack(data["calibration"]), int(data["calibration_total"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"malformed evidence snapshot: {exc!r}") from exc


def _evidence(row: Row, order: Sequence[str], calibration: bool) -> Evidence:
    version, accepted, rate, disagreed, states = row
    by_worker = {w: (s, c) for w, s, c in states}
    return Evidence(
        tuple(by_worker.get(w, (NONE, 0.0)) for w in order), disagreed, accepted, rate, calibration, version
    )


class EvidenceTable(PartitionTable[PartitionEvidence]):
    """A judge's evidence windows for the `judge` partitions it owns."""

    name = "evidence"

    def __init__(self, settings: Settings, tasks: TaskRegistry) -> None:
        super().__init__(settings, tasks, settings.topics.evidence_topic)
        self._target = settings.aggregator.target

    def record(self, partition: int, request: JudgeRequest, judge_label: str) -> None:
        """Add the judged request to its partition's window if it is evidence (module docstring)."""
        task = request.item.task
        row = row_of(request, judge_label)
        if row is None or task not in self._tasks:
            return
        role = evidence_role(request.item.id, row[2], self._target.fit_share)
        if role is None:
            return
        window = self._rows.setdefault((task, partition), PartitionEvidence(self._target.window))
        window.add(row, role)
        self.changed((task, partition))

    def encode_row(self, row: PartitionEvidence) -> bytes:
        return orjson.dumps(row.to_dict())

    def decode_row(self, task: str, value: bytes) -> PartitionEvidence:
        try:
            return PartitionEvidence.from_dict(orjson.loads(value), self._target.window)
        except (orjson.JSONDecodeError, ValueError, AttributeError) as exc:
            raise DecodeError("evidence window", str(exc)[:500]) from None
