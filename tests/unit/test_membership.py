"""Reading live members per partition from a DescribeGroups answer."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from tribunal.consumers.aggregator.membership import live_partitions


def _member(assignment: dict[str, list[int]]) -> dict[str, Any]:
    rows = [ConsumerProtocolMemberAssignment.Assignment(t, p) for t, p in assignment.items()]
    return {"member_id": "m", "member_assignment": ConsumerProtocolMemberAssignment(0, rows, b"").encode()}


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ({"state": "Stable", "members": [_member({"items": [0, 2]}), _member({"items": [1]})]}, {0, 1, 2}),
        ({"state": "Stable", "members": [_member({"items": [0], "other": [5]})]}, {0}),
        ({"state": "Empty", "members": []}, False),
        ({"state": "Dead", "members": []}, False),
        ({"state": "PreparingRebalance", "members": [_member({})]}, True),
        ({"state": "Stable", "members": [{"member_id": "m", "member_assignment": b""}]}, set()),
    ],
)
def test_live_partitions(group: dict[str, Any], expected: set[int] | bool) -> None:
    """Owned partitions of the items topic; True while rebalancing with members; False with none."""
    assert live_partitions(group, "items") == expected
