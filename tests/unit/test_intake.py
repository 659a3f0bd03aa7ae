"""The gate between Kafka bytes and a tier: size, shape, key and partition; bounded dead letters."""

from __future__ import annotations

import base64
import hashlib

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from tribunal.core.intake import KEY_PREFIX_BYTES, admit, dead_letter, default_partition, murmur2, value_prefix_bytes
from tribunal.schemas import DecodeContext, DecodeError, Item, Vote, encode, load_tasks
from tribunal.schemas.messages import DeadLetter

CONTEXT = DecodeContext(tasks=load_tasks(), max_message_bytes=10_000)


@given(st.binary(max_size=300))
def test_murmur2_is_kafkas(data: bytes) -> None:
    """Our murmur2 is bit for bit aiokafka's (and so the Java client's default partitioner's)."""
    assert murmur2(data) == aiokafka_murmur2(data)


def test_default_partition_matches_known_kafka_values() -> None:
    """Known values of Kafka's default partitioner (murmur2 & 0x7fffffff mod n)."""
    assert [default_partition(b"foobar", n) for n in (1, 6, 7)] == [0, 1357151166 % 6, 1357151166 % 7]


def _admit(value: bytes | None, key: bytes | None, partition: int | None = None, partitions: int | None = 6) -> Item:
    if partition is None:
        partition = default_partition(key, partitions) if key is not None and partitions else 0
    return admit(value, key, partition, Item, CONTEXT, partitions)


def test_a_well_formed_item_on_its_partition_is_admitted() -> None:
    """The item keyed by its id, on the partition its key hashes to, passes."""
    assert _admit(encode(Item(id="a", text="t")), b"a").id == "a"


@pytest.mark.parametrize(
    ("value", "key", "partition", "kind"),
    [
        (encode(Item(id="a", text="t")), b"b", None, "key_mismatch"),
        (encode(Item(id="a", text="t")), None, 0, "key_mismatch"),
        (encode(Item(id="a", text="t")), b"a", (default_partition(b"a", 6) + 1) % 6, "wrong_partition"),
        (None, b"a", None, "tombstone"),
        (b"", b"a", None, "empty"),
        (b"{" + b" " * 10_000 + b"}", b"a", None, "oversize"),
        (b"\xff\xfe", b"a", None, "decode"),
    ],
)
def test_refusals_name_their_kind(value: bytes | None, key: bytes | None, partition: int | None, kind: str) -> None:
    """Each way a record can be refused raises DecodeError with its own kind."""
    with pytest.raises(DecodeError) as caught:
        _admit(value, key, partition)
    assert caught.value.kind == kind


def test_votes_are_not_bound_to_a_partition() -> None:
    """Workers write a vote to its item's partition, whatever partitioner the item's producer used."""
    vote = Vote(item_id="a", worker="w1", model="m", task="sentiment", label="positive")
    wrong = (default_partition(b"a", 6) + 1) % 6
    assert admit(encode(vote), b"a", wrong, Vote, CONTEXT, 6) == vote


def _letter(value: bytes | None, key: bytes | None = b"k") -> DeadLetter:
    return dead_letter(topic="items", partition=3, offset=9, record_key=key, value=value, kind="decode",
                       message="why", tier="aggregator", max_message_bytes=CONTEXT.max_message_bytes)  # fmt: skip


def test_small_records_are_kept_whole_with_length_and_hash() -> None:
    """A letter holds the whole original when it fits, plus its length and sha256."""
    letter = _letter(b"\x00junk")
    assert letter.value_b64 is not None and base64.b64decode(letter.value_b64) == b"\x00junk"
    assert (letter.value_bytes, letter.value_truncated) == (5, False)
    assert letter.value_sha256 == hashlib.sha256(b"\x00junk").hexdigest()


def test_big_records_are_cut_to_a_bounded_prefix_that_always_fits() -> None:
    """A value twice the limit leaves a letter with a prefix, the whole length and hash, within the record limit."""
    big = bytes(range(256)) * (2 * CONTEXT.max_message_bytes // 256)
    letter = _letter(big, key=b"k" * 5_000)
    assert letter.value_truncated and letter.key_truncated
    assert letter.value_b64 is not None and letter.key_b64 is not None
    assert base64.b64decode(letter.value_b64) == big[: value_prefix_bytes(CONTEXT.max_message_bytes)]
    assert base64.b64decode(letter.key_b64) == b"k" * KEY_PREFIX_BYTES
    assert (letter.value_bytes, letter.value_sha256) == (len(big), hashlib.sha256(big).hexdigest())
    assert len(encode(letter)) <= CONTEXT.max_record_bytes


def test_tombstone_and_empty_value_are_distinguishable() -> None:
    """No value is null; an empty value is an empty string of length 0."""
    tombstone, empty = _letter(None, key=None), _letter(b"")
    assert (tombstone.value_b64, tombstone.value_bytes, tombstone.key_b64) == (None, None, None)
    assert (empty.value_b64, empty.value_bytes) == ("", 0)
