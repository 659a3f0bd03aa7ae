"""Topic housekeeping on a real broker: what a bench or demo creates on a user's broker, it deletes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.integration.kit import isolated_settings, make_topics
from tribunal.core.topics import delete_topics, list_topics, topic_specs


async def _names(bootstrap: str) -> set[str]:
    return {str(t["name"]) for t in await list_topics(isolated_settings(bootstrap), everything=True)}


async def _listed_when(bootstrap: str, done: Callable[[set[str]], bool], timeout_s: float = 30.0) -> set[str]:
    """The topics listed once `done(listed)` holds (or at the timeout): creations and deletions
    reach the cluster metadata a moment after the request returns."""
    deadline = time.monotonic() + timeout_s
    listed = await _names(bootstrap)
    while not done(listed) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        listed = await _names(bootstrap)
    return listed


async def test_delete_topics_removes_a_runs_topics_and_nothing_else(kafka_bootstrap: str) -> None:
    run, other = isolated_settings(kafka_bootstrap), isolated_settings(kafka_bootstrap)
    await make_topics(run)
    await make_topics(other)
    ours = {spec.name for spec in topic_specs(run)}
    theirs = {spec.name for spec in topic_specs(other)}
    assert ours | theirs <= await _listed_when(kafka_bootstrap, lambda listed: ours | theirs <= listed)

    deleted = await delete_topics([run], extra=[f"{run.topics.prefix}never-created"])

    assert set(deleted) == ours, "only the topics that existed are named"
    left = await _listed_when(kafka_bootstrap, lambda listed: not ours & listed)
    assert not ours & left and theirs <= left
    assert await delete_topics([run]) == [], "a second call finds nothing to delete"
