"""The local broker's cluster ids: what Kafka's storage tool accepts, every time."""

from __future__ import annotations

import base64
from unittest import mock

from tribunal.localkafka import new_cluster_id


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    """An id drawn as '-...' (1 in 64 draws) is drawn again: the storage tool would take it for an option."""
    dashed = base64.urlsafe_b64decode("-" + "A" * 21 + "==")
    plain = base64.urlsafe_b64decode("B" * 22 + "==")
    draws = iter([mock.Mock(bytes=dashed), mock.Mock(bytes=plain)])
    with mock.patch("tribunal.localkafka.uuid.uuid4", side_effect=lambda: next(draws)):
        assert new_cluster_id() == base64.urlsafe_b64encode(plain).decode().rstrip("=")
    ids = [new_cluster_id() for _ in range(2_000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
