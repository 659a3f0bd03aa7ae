"""The peer's per-record logic, free of Quix Streams so Tribunal's tests can import it.

`hash_label` is Tribunal's `hash:SEED` classifier (consumers/classifiers/testing.py) to the byte:
the same blake2b digest of `SEED:text` picks the label, so a peer vote costs what a Tribunal vote
costs in classifier work. `step` is the aggregator's join of an item and its votes for one key.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

Record = dict[str, Any]
# One key's aggregator state: the item once seen, votes by worker, whether it was routed.
State = dict[str, Any]


def hash_label(seed: str, text: str, labels: list[str]) -> str:
    """The label Tribunal's `hash:SEED` classifier gives `text`."""
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=4).digest()
    return labels[int.from_bytes(digest, "big") % len(labels)]


def vote(item: Record, worker: str, labels: list[str]) -> Record:
    """A worker's vote on an item (keyed by the item id on the way out)."""
    return {"item_id": item["id"], "worker": worker, "label": hash_label(worker, item["text"], labels)}


def verdict(request: Record, labels: list[str]) -> Record:
    """The judge's label for an escalated item, classified with `hash:judge`."""
    item = request["item"]
    return {"item_id": item["id"], "label": hash_label("judge", item["text"], labels), "decided_by": "judge"}


def step(state: State | None, record: Record, workers: int, quorum: int) -> tuple[State | None, Record | None]:
    """Fold one item or vote into a key's state; return the new state (None: forget the key) and
    what to send, `{"route": "labels"|"judge", "value": ...}`, or None.

    Decides as soon as the item is in and `quorum` votes agree (speculative, like Tribunal: the
    slowest worker is not awaited); escalates once every worker voted without a quorum. A key is
    forgotten once routed and every vote is in: under exactly-once no later record can arrive for
    it, so the state stays bounded by the items in flight."""
    current: State = state or {"item": None, "votes": {}, "routed": False}
    if "worker" in record:
        current["votes"][record["worker"]] = record["label"]
    else:
        current["item"] = record
    out = None if current["routed"] else _route(current, workers, quorum)
    current["routed"] = current["routed"] or out is not None
    if current["routed"] and len(current["votes"]) >= workers:
        return None, out
    return current, out


def _route(state: State, workers: int, quorum: int) -> Record | None:
    item, votes = state["item"], state["votes"]
    if item is None or not votes:
        return None  # the join needs the item: a label is about an item the aggregator has seen
    label, agreeing = Counter(votes.values()).most_common(1)[0]
    if agreeing >= quorum:
        return {"route": "labels", "value": {"item_id": item["id"], "label": label, "decided_by": "workers"}}
    if len(votes) >= workers:
        return {"route": "judge", "value": {"item": item, "votes": votes}}
    return None
