"""The shared table plumbing without Kafka: keys, changed rows per transaction, forgetting partitions."""

from __future__ import annotations

import pytest

from tribunal.consumers.tables.base import PartitionTable, parse_table_key, table_key
from tribunal.core.settings import load_settings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"intent|2", ("intent", 2)),
        (b"a|b|7", ("a|b", 7)),  # the task is everything before the last bar
        (b"intent|calibration", ("intent", -1)),
        (b"intent|\xc2\xb2", None),  # '²' passes isdigit(), not int()
        (b"intent|1234567890", None),
        (b"|3", None),
        (b"nonsense", None),
        (None, None),
    ],
)
def test_parse_table_key(raw: bytes | None, expected: tuple[str, int] | None) -> None:
    assert parse_table_key(raw) == expected


def test_table_keys_round_trip_history_included() -> None:
    for task, partition in [("intent", 0), ("intent", 11), ("sentiment", -1)]:
        assert parse_table_key(table_key(task, partition)) == (task, partition)


class Counts(PartitionTable[int]):
    def encode_row(self, row: int) -> bytes:
        return str(row).encode()


def test_outputs_hold_each_changed_row_once_then_nothing_and_forget_drops_partitions() -> None:
    settings = load_settings()
    table = Counts(settings, settings.tasks(), "t")
    table._rows.update({("a", 0): 1, ("a", 1): 2, ("b", 1): 3})
    table.changed(("a", 1))
    table.changed(("b", 1))
    table.changed(("a", 1))
    assert [(o.key, o.value) for o in table.outputs()] == [(b"a|1", b"2"), (b"b|1", b"3")]
    assert table.outputs() == []
    table.changed(("a", 1))
    table.forget({1})
    assert table.outputs() == []
    assert table._rows == {("a", 0): 1}
