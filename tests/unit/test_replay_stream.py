"""The streamed replay's join: items are decided once their votes are in or passed, not at the end."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from tribunal.consumers.policy.voting import Majority
from tribunal.core.settings import load_settings
from tribunal.producers.redecide import Redecider
from tribunal.producers.replay_votes import Summary, VerdictIndex, _Stream
from tribunal.schemas.codec import encode
from tribunal.schemas.messages import DecidedBy, Item, JudgeRequest, Verdict, Vote, VoteBatch

SETTINGS = load_settings(topics={"prefix": "s-"})
WORKERS = ("w1", "w2", "w3")


def _record(topic: str, offset: int, value: bytes, timestamp_ms: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, timestamp_ms, 0, None, value, None, 0, len(value), ())


def _item(offset: int, item_id: str, at_ms: int = 0) -> ConsumerRecord[bytes, bytes]:
    return _record("s-items", offset, encode(Item(id=item_id, text="t", task="sentiment3")), at_ms)


def _batch(offset: int, worker: str, rows: list[tuple[str, str]], position: int) -> ConsumerRecord[bytes, bytes]:
    votes = tuple((i, "sentiment3", label, 0.9, 0.0, None) for i, label in rows)
    batch = VoteBatch(worker=worker, model="m", next_offset=position, votes=votes)
    return _record("s-votes", offset, encode(batch))


def _stream(index: VerdictIndex | None = None) -> tuple[_Stream, list[Verdict | JudgeRequest]]:
    out: list[Verdict | JudgeRequest] = []
    redecider = Redecider(lambda _task: Majority(2, workers=WORKERS), WORKERS, 1.0, emit=out.append)
    return _Stream(SETTINGS, redecider, index or VerdictIndex()), out


def test_an_item_is_decided_once_every_worker_voted_or_passed_it() -> None:
    """i0 gets two votes and w3's position passes it: decided; i1 still waits for w2 and w3."""
    stream, out = _stream()
    for record in [_item(0, "i0"), _item(1, "i1"), _batch(0, "w1", [("i0", "positive"), ("i1", "negative")], 2)]:
        stream.record(record)
    stream.decide_ready(0)
    assert out == []
    stream.record(_batch(1, "w2", [("i0", "positive")], 1))
    stream.record(_batch(2, "w3", [], 1))  # w3 passed i0 without voting (say it dead-lettered it)
    stream.decide_ready(0)
    assert [(v.item_id, v.label) for v in out if isinstance(v, Verdict)] == [("i0", "positive")]
    assert stream.held(0) == (1, 0)


def test_the_end_of_the_log_decides_the_rest_with_what_they_have() -> None:
    """Items whose workers never got to them escalate (the deadline case) when the log ends."""
    stream, out = _stream()
    stream.record(_item(0, "i0"))
    stream.record(_batch(0, "w1", [("i0", "positive")], 1))
    stream.decide_ready(0, final=True)
    [request] = out
    assert isinstance(request, JudgeRequest) and request.reason.value == "deadline"


def test_a_recorded_judge_label_is_reused_and_the_original_counted() -> None:
    """A three-way split escalates; the source's judge verdict labels it, and the diff sees a change."""
    index = VerdictIndex(originals={"i0": Summary("neutral", DecidedBy.JUDGE, 0.8, 12.0)})
    stream, out = _stream(index)
    stream.record(_item(0, "i0"))
    for offset, (worker, label) in enumerate([("w1", "positive"), ("w2", "negative"), ("w3", "neutral")]):
        stream.record(_batch(offset, worker, [("i0", label)], 1))
    stream.decide_ready(0)
    [verdict] = out
    assert isinstance(verdict, Verdict) and (verdict.label, verdict.decided_by) == ("neutral", DecidedBy.JUDGE)


def test_an_item_sent_twice_is_decided_once_and_old_vote_records_still_count() -> None:
    """The first copy counts; a vote log of single `Vote` records (before VoteBatch) is read too."""
    stream, out = _stream()
    stream.record(_item(0, "i0"))
    stream.record(_item(1, "i0"))
    for offset, worker in enumerate(("w1", "w2")):
        vote = Vote(item_id="i0", worker=worker, model="m", task="sentiment3", label="positive", confidence=0.9)
        stream.record(_record("s-votes", offset, encode(vote)))
    stream.decide_ready(0, final=True)
    assert [v.item_id for v in out if isinstance(v, Verdict)] == ["i0"] and len(out) == 1


def test_votes_ahead_of_their_items_are_held_and_counted() -> None:
    """Votes for items not read yet are held (and counted, for flow control) until the items arrive."""
    stream, out = _stream()
    stream.record(_batch(0, "w1", [("i0", "positive"), ("i1", "positive")], 2))
    stream.record(_batch(1, "w2", [("i0", "positive"), ("i1", "positive")], 2))
    stream.record(_batch(2, "w3", [], 1))
    assert stream.held(0) == (0, 2)
    stream.record(_item(0, "i0"))
    stream.decide_ready(0)
    assert [v.item_id for v in out if isinstance(v, Verdict)] == ["i0"] and len(out) == 1
    assert stream.held(0) == (0, 1)


def test_votes_for_decided_items_are_ignored_not_held() -> None:
    """A worker voting again on decided items (after a rebalance) adds nothing to what is held."""
    stream, out = _stream()
    stream.record(_item(0, "i0"))
    for offset, worker in enumerate(WORKERS):
        stream.record(_batch(offset, worker, [("i0", "positive")], 1))
    stream.decide_ready(0)
    stream.record(_batch(3, "w1", [("i0", "negative")], 1))
    assert len(out) == 1 and stream.held(0) == (0, 0)
