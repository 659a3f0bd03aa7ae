"""Evidence rows and windows, calibration files, and the rule keeper's choices, without Kafka."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from aiokafka import ConsumerRecord

from tribunal.consumers.policy.calibration import Evidence, TargetConfig, calibrate_offline
from tribunal.consumers.policy.target import Rule
from tribunal.consumers.policy.trust import AGAINST, FOR, NONE
from tribunal.consumers.tables.base import parse_table_key, table_key
from tribunal.consumers.tables.evidence import PartitionEvidence, row_of
from tribunal.consumers.tables.rules import RuleTable, calibration_document, load_calibration
from tribunal.core.settings import Settings, load_settings
from tribunal.schemas.messages import EscalationReason, Item, JudgeRequest, Vote
from tribunal.schemas.tasks import BUNDLED_TASKS_FILE

WORKERS = ("w1", "w2", "w3")


def _request(reason: EscalationReason, policy: str = "target", rate: float | None = 0.1) -> JudgeRequest:
    votes = tuple(
        Vote(item_id="i", worker=w, model="m", task="sentiment", label=label, confidence=0.8)
        for w, label in (("w2", "negative"), ("w1", "positive"), ("w3", "positive"))
    )
    item = Item(id="i", text="t", task="sentiment")
    return JudgeRequest(item=item, votes=votes, reason=reason, policy=policy, policy_version=4, audit_rate=rate)


def test_row_of_a_target_request() -> None:
    """A judged request becomes (version, accepted, rate, judge disagreed, states by worker)."""
    row = row_of(_request(EscalationReason.AUDIT), "negative")
    assert row == (4, True, 0.1, True, (("w1", FOR, 0.8), ("w2", AGAINST, 0.8), ("w3", FOR, 0.8)))
    escalated = row_of(_request(EscalationReason.DISAGREEMENT), "positive")
    assert escalated is not None and escalated[1:4] == (False, 0.1, False)


def test_requests_of_other_policies_are_not_evidence() -> None:
    """Criterion 1 requests (no audit rate) carry no sampling information: no row."""
    assert row_of(_request(EscalationReason.AUDIT, policy="criterion1", rate=None), "positive") is None


def test_partition_evidence_round_trips_and_stays_bounded() -> None:
    """Windows keep the latest rows of each side; the total counts every calibration row seen."""
    book = PartitionEvidence(window=3)
    for n in range(5):
        book.add((n, False, 1.0, n % 2 == 0, (("w1", FOR, 0.5),)), calibration=True)
    book.add((9, True, 0.2, False, (("w2", AGAINST, 0.7),)), calibration=False)
    again = PartitionEvidence.from_dict(orjson.loads(orjson.dumps(book.to_dict())), window=3)
    assert [r[0] for r in again.calibration] == [2, 3, 4] and again.calibration_total == 5
    fitting, calibration = again.evidence(WORKERS)
    assert fitting[0].states == ((NONE, 0.0), (AGAINST, 0.7), (NONE, 0.0)) and fitting[0].weight == 5.0
    assert [r.disagreed for r in calibration] == [True, False, True]
    with pytest.raises(ValueError, match="format"):
        PartitionEvidence.from_dict({"format": 7}, window=3)


def test_evidence_keys() -> None:
    """`task|partition`, and `task|calibration` for a warm start's history (partition -1)."""
    assert parse_table_key(table_key("intent", 2)) == ("intent", 2)
    assert parse_table_key(table_key("intent", -1)) == ("intent", -1)
    assert parse_table_key(b"nonsense") is None and parse_table_key(None) is None


def _history(n: int = 2000) -> list[Evidence]:
    rng = random.Random(1)
    rows = []
    for _ in range(n):
        easy = rng.random() < 0.7
        states = ((FOR, 0.9), (FOR, 0.9), (FOR if easy else AGAINST, 0.8))
        rows.append(Evidence(states, rng.random() < (0.0 if easy else 0.4), False, 1.0, rng.random() < 0.5, 0))
    return rows


def _settings_with_calibration(
    tmp_path: Path, workers: tuple[str, ...] = WORKERS, target: float = 0.05
) -> tuple[Settings, Rule]:
    """Settings whose tasks file ships a calibration fitted at max_disagreement 0.05 (confidence
    0.9) for the sentiment task; the aggregator's target is `target`."""
    config = TargetConfig(max_disagreement=0.05, confidence=0.9)
    provenance = {"data": "synthetic", "max_disagreement": "0.05", "confidence": "0.9"}
    warm = calibrate_offline("sentiment", WORKERS, _history(), config, provenance)
    path = tmp_path / "sentiment.json"
    path.write_bytes(orjson.dumps(calibration_document(warm, 2000)))
    shipped = 'calibration = "calibrations/sentiment.json"'
    tasks = BUNDLED_TASKS_FILE.read_text().replace(shipped, f'calibration = "{path.name}"', 1)
    tasks = tasks.replace('calibration = "calibrations/', f'calibration = "{BUNDLED_TASKS_FILE.parent}/calibrations/')
    (tmp_path / "tasks.toml").write_text(tasks)
    aggregator = {"workers": workers, "target": {"max_disagreement": target, "confidence": 0.9}}
    settings = load_settings(tasks_file=tmp_path / "tasks.toml", aggregator=aggregator)
    return settings, warm.rule


def test_calibration_file_round_trips(tmp_path: Path) -> None:
    """The document holds the rule and its history; loading gives both back."""
    _, rule = _settings_with_calibration(tmp_path)
    warm = load_calibration(tmp_path / "sentiment.json", 2000)
    assert warm.rule == rule and len(warm.evidence) == 2000
    assert {r.version for r in warm.evidence} == {rule.version}


def test_keeper_starts_from_the_shipped_calibration_and_the_leader_publishes_it(tmp_path: Path) -> None:
    """Every instance applies the shipped rule; only the leader writes it (and its history)."""
    settings, rule = _settings_with_calibration(tmp_path)
    follower, leader = RuleTable(settings, settings.tasks()), RuleTable(settings, settings.tasks())
    assert follower.rule("sentiment") == leader.rule("sentiment") == rule
    assert follower.step(leader=False) == []
    outputs = leader.step(leader=True)
    assert [o.topic for o in outputs] == [settings.topics.evidence_topic, settings.topics.rules_topic]
    assert outputs[0].key == b"sentiment|calibration"
    assert Rule.from_dict(orjson.loads(outputs[1].value or b"")) == rule
    assert leader.step(leader=True) == []  # nothing new: nothing written


def test_a_calibration_for_another_target_is_recertified_on_its_history(tmp_path: Path) -> None:
    """Shipped at 0.05, run at 0.01: every instance re-certifies the same stricter rule from the
    shipped history before deciding anything."""
    settings, shipped = _settings_with_calibration(tmp_path, target=0.01)
    first, second = RuleTable(settings, settings.tasks()), RuleTable(settings, settings.tasks())
    rule = first.rule("sentiment")
    assert rule == second.rule("sentiment") != shipped
    assert rule.provenance["max_disagreement"] == "0.01" and "recertified" in rule.provenance
    assert rule.cutoff is None or shipped.cutoff is None or rule.cutoff >= shipped.cutoff


def test_keeper_ignores_a_calibration_for_other_workers(tmp_path: Path) -> None:
    """A shipped rule fitted for other worker names is not applied: cold start."""
    settings, _ = _settings_with_calibration(tmp_path, workers=("a", "b", "c"))
    rule = RuleTable(settings, settings.tasks()).rule("sentiment")
    assert (rule.version, rule.cutoff, rule.audit_rate) == (0, None, 1.0)


def _record(topic: str, key: bytes, value: bytes, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key), len(value), [])


def test_keeper_takes_newer_rules_from_the_topic(tmp_path: Path) -> None:
    """A rule read from the topic with a higher version replaces the one in force; a rule for
    other workers is ignored but its version is remembered, so a new one never reuses it."""
    settings, rule = _settings_with_calibration(tmp_path)
    keeper = RuleTable(settings, settings.tasks())
    newer = Rule(task="sentiment", version=rule.version + 5, workers=WORKERS, weights=rule.weights, cutoff=0.99)
    keeper.absorb(_record(settings.topics.rules_topic, b"sentiment", orjson.dumps(newer.to_dict())))
    assert keeper.rule("sentiment") == newer
    alien = Rule(task="intent", version=7, workers=("x", "y"))
    keeper.absorb(_record(settings.topics.rules_topic, b"intent", orjson.dumps(alien.to_dict())))
    assert keeper.seen_version("intent") == 7
    fresh = keeper.rule("intent")
    assert fresh.version == 8 and fresh.epoch == 8 and fresh.cutoff is None


def test_target_settings_map_to_the_pure_config_and_are_validated() -> None:
    """`aggregator.target` becomes the core's TargetConfig; inverted audit bounds are refused."""
    from pydantic import ValidationError

    from tribunal.consumers.tables.rules import target_config
    from tribunal.core.settings import TargetSettings

    config = target_config(TargetSettings(max_disagreement=0.03, confidence=0.9, fit_share=0.4))
    assert (config.max_disagreement, config.fit_share) == (0.03, 0.4)
    assert config.delta == pytest.approx(0.1)
    with pytest.raises(ValidationError, match="min_audit_rate"):
        TargetSettings(min_audit_rate=0.5, max_audit_rate=0.1)
    with pytest.raises(ValidationError):
        TargetSettings(max_disagreement=0.0)


def test_a_missing_calibration_starts_its_task_cold_and_the_others_as_shipped(tmp_path: Path) -> None:
    """A task naming a calibration file that does not exist never stops the aggregator of the
    other tasks: it is reported at start (log and metric) and that task starts cold (every item
    to the judge), while a task whose calibration reads fine starts from it."""
    from prometheus_client import REGISTRY

    from tribunal.consumers.aggregator.processor import AggregatorProcessor

    tasks = BUNDLED_TASKS_FILE.read_text().replace('"calibrations/intent.json"', '"nowhere.json"')
    tasks = tasks.replace('calibration = "calibrations/', f'calibration = "{BUNDLED_TASKS_FILE.parent}/calibrations/')
    (tmp_path / "tasks.toml").write_text(tasks)
    settings = load_settings(tasks_file=tmp_path / "tasks.toml")
    AggregatorProcessor(settings, settings.tasks())  # does not raise
    keeper = RuleTable(settings, settings.tasks())
    assert keeper.check_calibrations() == ["intent"]
    assert (REGISTRY.get_sample_value("tribunal_calibration_unreadable_total", {"task": "intent"}) or 0) >= 1
    cold = keeper.rule("intent")
    assert (cold.cutoff, cold.audit_rate, cold.reason) == (None, 1.0, "cold start")
    assert keeper.rule("sentiment").reason == "warm start"
