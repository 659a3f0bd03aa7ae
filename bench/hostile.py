"""The adversary's records: what a hostile producer writing straight to Tribunal's topics sends,
each with the one dead letter it must end up as.

`hostile_records(settings, good_ids, count, rng)` draws `count` records across every kind below,
round robin. Each names where it must be accounted for (`dlq_topic`, `kind`) and the key its
letter carries, which is unique per record, so `account` can tell whether each one became
exactly one dead letter. Records that borrow a good item's id (another key, another partition,
a vote for another task, a forged verdict) never give that item a second or a forged label.
"""

from __future__ import annotations

import base64
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from tribunal.core.intake import KEY_PREFIX_BYTES, default_partition
from tribunal.core.settings import Settings
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import DeadLetter, DecidedBy, EscalationReason, Item, JudgeRequest, Verdict, VoteBatch

__all__ = ["CROSS_TASK", "HostileRecord", "account", "hostile_records"]


@dataclass(frozen=True, slots=True)
class HostileRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    dlq_topic: str  # where its one dead letter must land
    kind: str  # the letter's error_kind
    letter_key: bytes  # the key that letter carries (unique per hostile record)


@dataclass(frozen=True, slots=True)
class _Target:
    settings: Settings
    serial: int
    good_id: str  # a good item's id this record may borrow (each used once per kind)
    rng: random.Random

    @property
    def tag(self) -> str:
        return f"hostile-{self.serial}"


Maker = Callable[[_Target], HostileRecord]
# Votes for another task than their item's, sent before the item (see `hostile_records`).
CROSS_TASK = "cross_task_vote"


def _on(target: _Target, topic: str, record_key: bytes | None, value: bytes | None, kind: str,
        partition: int | None = None, dlq_of: str | None = None) -> HostileRecord:  # fmt: skip
    dlq = target.settings.topics.dlq(dlq_of or topic)
    letter_key = record_key if record_key is not None else b""
    return HostileRecord(topic, record_key, value, partition, dlq, kind, letter_key[:KEY_PREFIX_BYTES])


def _item_bytes(item_id: str, **fields: object) -> bytes:
    return orjson.dumps({"id": item_id, "text": f"hostile {item_id}", "task": "sentiment3", **fields})


# --- items --------------------------------------------------------------------------------------
def garbage_item(t: _Target) -> HostileRecord:
    return _on(t, t.settings.topics.items_topic, key(t.tag), t.rng.randbytes(40) + b"\xff", "decode")


def wrong_schema_item(t: _Target) -> HostileRecord:
    return _on(t, t.settings.topics.items_topic, key(t.tag), orjson.dumps({"id": t.tag, "body": "no text"}), "decode")


def tombstone_item(t: _Target) -> HostileRecord:
    return _on(t, t.settings.topics.items_topic, key(t.tag), None, "tombstone")


def empty_item(t: _Target) -> HostileRecord:
    return _on(t, t.settings.topics.items_topic, key(t.tag), b"", "empty")


def oversized_item(t: _Target) -> HostileRecord:
    """Over max_message_bytes, under the topic's limit: it reaches the tiers."""
    pad = "x" * (t.settings.max_message_bytes + 1_000)
    return _on(t, t.settings.topics.items_topic, key(t.tag), _item_bytes(t.tag, metadata={"pad": pad}), "oversize")


def overlong_text_item(t: _Target) -> HostileRecord:
    text = "y" * (t.settings.max_text_chars + 1)
    return _on(t, t.settings.topics.items_topic, key(t.tag), _item_bytes(t.tag, text=text), "decode")


def unknown_task_item(t: _Target) -> HostileRecord:
    return _on(t, t.settings.topics.items_topic, key(t.tag), _item_bytes(t.tag, task="astrology"), "decode")


def bogus_gold_item(t: _Target) -> HostileRecord:
    value = _item_bytes(t.tag, metadata={"label": "bogus"})
    return _on(t, t.settings.topics.items_topic, key(t.tag), value, "decode")


def rekeyed_item(t: _Target) -> HostileRecord:
    """A good item's id under another key: it would reach another aggregator partition."""
    return _on(t, t.settings.topics.items_topic, key(t.tag), _item_bytes(t.good_id), "key_mismatch")


def misplaced_item(t: _Target) -> HostileRecord:
    """A good item's id under its own key, on a partition its key does not hash to."""
    partitions = t.settings.topics.partitions
    wrong = (default_partition(key(t.good_id), partitions) + 1) % partitions
    record_key = key(t.good_id)
    return _on(t, t.settings.topics.items_topic, record_key, _item_bytes(t.good_id), "wrong_partition", wrong)


# --- votes --------------------------------------------------------------------------------------
def _vote(item_id: str, worker: str = "w1", task: str = "sentiment3", label: str = "positive") -> VoteBatch:
    """A one-vote `VoteBatch` (the votes contract) claiming no position: a forged position would
    only make the aggregator stop waiting for that worker, never label anything."""
    return VoteBatch(worker=worker, model="forged", next_offset=0, votes=((item_id, task, label, 0.99, 0.0, None),),
                     voted_at=1.0)  # fmt: skip


def garbage_vote(t: _Target) -> HostileRecord:
    return _on(t, t.settings.topics.votes_topic, key(t.tag), b"{" + t.rng.randbytes(30), "decode")


def label_outside_task_vote(t: _Target) -> HostileRecord:
    value = orjson.dumps(
        _vote(t.tag).model_dump(mode="json") | {"votes": [[t.tag, "sentiment3", "age_limit", 0.99, 0.0, None]]}
    )
    return _on(t, t.settings.topics.votes_topic, key(t.tag), value, "decode")


def unexpected_worker_vote(t: _Target) -> HostileRecord:
    value = encode(_vote(t.good_id, worker=f"rogue-{t.serial}"))
    return _on(t, t.settings.topics.votes_topic, key(t.good_id), value, "unexpected_worker", _home(t, t.good_id))


def cross_task_vote(t: _Target) -> HostileRecord:
    """A vote for the good item under task intent (a valid intent label); `CROSS_TASK` tells the
    adversary to send it before that item, where it is held and then refused."""
    value = encode(_vote(t.good_id, task="intent", label="age_limit", worker="w2"))
    return _on(t, t.settings.topics.votes_topic, key(t.good_id), value, "task_mismatch", _home(t, t.good_id))


def _home(t: _Target, item_id: str) -> int:
    return default_partition(key(item_id), t.settings.topics.partitions)


# --- judge requests and verdicts ------------------------------------------------------------------
def garbage_request(t: _Target) -> HostileRecord:
    return _on(t, t.settings.topics.judge_topic, key(t.tag), b"[1, 2, 3]", "decode")


def forged_request(t: _Target) -> HostileRecord:
    """A well-formed request for an id never ingested: the judge answers it, and the aggregator
    refuses the verdict (no escalation of that id awaits one): its letter is on verdicts.dlq."""
    item = Item(id=t.tag, text="forged request", task="sentiment3")
    request = JudgeRequest(item=item, reason=EscalationReason.DISAGREEMENT, policy="forged", policy_version=0,
                           partition=_home(t, t.tag), ticket="guessed")  # fmt: skip
    topics = t.settings.topics
    return _on(t, topics.judge_topic, key(t.tag), encode(request), "unsolicited_verdict", dlq_of=topics.verdicts_topic)


def misrouted_request(t: _Target) -> HostileRecord:
    item = Item(id=t.tag, text="misrouted request", task="sentiment3")
    request = JudgeRequest(item=item, reason=EscalationReason.DEADLINE, policy="forged", policy_version=0,
                           partition=t.settings.topics.partitions + 7, ticket="guessed")  # fmt: skip
    return _on(t, t.settings.topics.judge_topic, key(t.tag), encode(request), "bad_partition")


def forged_verdict(t: _Target) -> HostileRecord:
    """A verdict for a good item with a guessed ticket: never its label."""
    verdict = Verdict(item_id=t.good_id, task="sentiment3", label="negative", decided_by=DecidedBy.JUDGE,
                      policy="forged", policy_version=0, item_produced_at=0.0, ticket=f"guess-{t.serial}")  # fmt: skip
    value = encode(verdict)
    return _on(t, t.settings.topics.verdicts_topic, key(t.good_id), value, "unsolicited_verdict", _home(t, t.good_id))


def garbage_verdict(t: _Target) -> HostileRecord:
    return _on(t, t.settings.topics.verdicts_topic, key(t.tag), b'"a string"', "decode")


# --- a source topic (another system's JSON records; the chaos run's [[source]]) ---------------------
def _source(t: _Target, value: bytes | None, kind: str) -> HostileRecord:
    topic = t.settings.source[0].topic
    partitions = t.settings.topics.partitions
    return _on(t, topic, t.tag.encode(), value, kind, partition=t.rng.randrange(partitions))


def not_json_source(t: _Target) -> HostileRecord:
    return _source(t, b"{this is not json", "not_json")


def missing_field_source(t: _Target) -> HostileRecord:
    return _source(t, orjson.dumps({"ref": t.tag, "subject": "no body"}), "missing_field")


def wrong_type_source(t: _Target) -> HostileRecord:
    return _source(t, orjson.dumps({"ref": [t.tag], "body": "a list for an id"}), "wrong_type")


def tombstone_source(t: _Target) -> HostileRecord:
    return _source(t, None, "tombstone")


def invalid_utf8_source(t: _Target) -> HostileRecord:
    return _source(t, b'{"ref": "' + t.tag.encode() + b'", "body": "\xff\xfe"}', "not_utf8")


MAKERS: dict[str, Maker] = {
    "garbage_item": garbage_item,
    "wrong_schema_item": wrong_schema_item,
    "tombstone_item": tombstone_item,
    "empty_item": empty_item,
    "oversized_item": oversized_item,
    "overlong_text_item": overlong_text_item,
    "unknown_task_item": unknown_task_item,
    "bogus_gold_item": bogus_gold_item,
    "rekeyed_item": rekeyed_item,
    "misplaced_item": misplaced_item,
    "garbage_vote": garbage_vote,
    "label_outside_task_vote": label_outside_task_vote,
    "unexpected_worker_vote": unexpected_worker_vote,
    CROSS_TASK: cross_task_vote,
    "garbage_request": garbage_request,
    "forged_request": forged_request,
    "misrouted_request": misrouted_request,
    "forged_verdict": forged_verdict,
    "garbage_verdict": garbage_verdict,
    "not_json_source": not_json_source,
    "missing_field_source": missing_field_source,
    "wrong_type_source": wrong_type_source,
    "tombstone_source": tombstone_source,
    "invalid_utf8_source": invalid_utf8_source,
}


def hostile_records(
    settings: Settings, good_ids: list[str], count: int, rng: random.Random
) -> list[tuple[str, HostileRecord]]:
    """`count` (maker name, record) pairs, every kind in turn; good ids are borrowed without reuse."""
    borrowed = rng.sample(good_ids, k=min(count, len(good_ids)))
    names = list(MAKERS)
    records = []
    for n in range(count):
        name = names[n % len(names)]
        target = _Target(settings, n, borrowed[n % len(borrowed)], rng)
        records.append((name, MAKERS[name](target)))
    return records


def account(records: Iterable[tuple[str, HostileRecord]], letters: Iterable[DeadLetter]) -> dict[str, Any]:
    """How many hostile records became exactly one dead letter of the right kind, none, or several,
    with up to five examples of each failure (`letters`: every letter of every DLQ topic; a
    letter's DLQ is `<source_topic>.dlq`)."""
    found: dict[tuple[str, bytes, str], list[DeadLetter]] = defaultdict(list)
    for letter in letters:
        letter_key = base64.b64decode(letter.key_b64) if letter.key_b64 is not None else b""
        found[(f"{letter.source_topic}.dlq", letter_key, letter.error_kind)].append(letter)
    outcome: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    for name, record in records:
        matches = found[(record.dlq_topic, record.letter_key, record.kind)]
        verdict = "accounted_once" if len(matches) == 1 else "unaccounted" if not matches else "several"
        outcome[verdict] += 1
        if verdict != "accounted_once" and len(examples) < 5:
            where = [{"partition": m.partition, "offset": m.offset, "tier": m.tier, "at": m.failed_at} for m in matches]
            examples.append({"record": name, "key": record.letter_key.decode(errors="replace"), "letters": where})
    return {name: outcome[name] for name in ("accounted_once", "unaccounted", "several")} | {"problems": examples}
