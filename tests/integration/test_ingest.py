"""`tribunal ingest`: valid lines are published exactly once, bad lines reported by number."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.integration.kit import REPO, child_env, isolated_settings, make_topics, read_topic
from tribunal.core.errors import ExitCode
from tribunal.schemas.messages import Item


def _write_mixed_file(path: Path, valid: int, malformed: int) -> set[int]:
    """`valid` good lines with `malformed` bad ones spread between them; return bad line numbers."""
    bad_every = valid // malformed
    bad_lines: set[int] = set()
    kinds = [
        "{not json",
        json.dumps({"id": "x", "text": ""}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "y", "text": "fine", "task": "no-such-task"}),
        json.dumps({"id": "z"}),
    ]
    with path.open("w") as out:
        line = 0
        for n in range(valid):
            line += 1
            out.write(json.dumps({"id": f"item-{n}", "text": f"message number {n}", "label": "positive"}) + "\n")
            if n % bad_every == 0 and len(bad_lines) < malformed:
                line += 1
                out.write(kinds[len(bad_lines) % len(kinds)] + "\n")
                bad_lines.add(line)
    return bad_lines


async def test_ingest_publishes_valid_lines_and_reports_malformed(kafka_bootstrap: str, tmp_path: Path) -> None:
    """10,000 valid and 100 malformed lines: exactly 10,000 items land; the 100 are reported by line."""
    settings = isolated_settings(kafka_bootstrap)
    await make_topics(settings)
    data = tmp_path / "items.jsonl"
    bad_lines = _write_mixed_file(data, valid=10_000, malformed=100)

    env = child_env(settings, "ingest")
    command = [sys.executable, "-m", "tribunal.cli", "ingest", "--input", str(data), "--json"]
    result = await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == ExitCode.SOME_REJECTED, result.stderr
    summary = json.loads(result.stdout)
    assert summary["published"] == 10_000
    assert {r["line"] for r in summary["rejected"]} == bad_lines
    assert all(r["reason"] for r in summary["rejected"])

    # Ingest has returned, so every item is acknowledged: read the topic to its end.
    items = await read_topic(settings, settings.topics.items_topic, Item)
    assert len(items) == 10_000
    assert len({i.id for i in items}) == 10_000
    assert items[0].metadata == {"label": "positive"}


async def test_ingest_csv_derives_stable_ids(kafka_bootstrap: str, tmp_path: Path) -> None:
    """CSV rows without an id get a content-derived id, identical across runs; extra columns become metadata."""
    from tribunal.producers.ingest import ingest

    settings = isolated_settings(kafka_bootstrap)
    await make_topics(settings)
    data = tmp_path / "items.csv"
    data.write_text("text,label,channel\nbroken on arrival,negative,email\nlove it,positive,chat\n,negative,x\n")
    first = await ingest(settings, str(data))
    second = await ingest(settings, str(data))
    assert first.published == 2 and second.published == 2
    assert [r.line for r in first.rejected] == [4]
    items = await read_topic(settings, settings.topics.items_topic, Item)
    assert len(items) == 4
    assert sorted(Counter(i.id for i in items).values()) == [2, 2], "each row keeps its id across runs"
    assert {i.metadata["channel"] for i in items} == {"email", "chat"}
