"""`tribunal dlq show|replay` and `topics list` through the real CLI on a real broker: dead letters
decoded with their reasons, fixed ones and then all re-published to their source partition,
each exactly once however often the replay runs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.kit import REPO, child_env, isolated_settings, make_topics, read_topic
from tribunal.core import kafka
from tribunal.core.records import DeadLetterSource, dead_letter
from tribunal.core.settings import Settings

pytestmark = pytest.mark.broker

BAD = [b"not json at all", b'{"id": "i-2", "text": "ok", "task": "no-such-task"}', b"\xff\xfe binary"]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`tribunal ARGS -b BOOTSTRAP` (the bootstrap given after the command, as users do)."""
    env = child_env(settings, "dlq-test")
    env.pop("TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS", None)
    command = [sys.executable, "-m", "tribunal.cli", *args, "-b", settings.kafka.bootstrap_servers]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=180, check=False)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout)


async def _dead_letters(settings: Settings) -> str:
    """Three dead letters on the items DLQ, as a worker writes them, for records at items[p]@o."""
    dlq = settings.topics.dlq(settings.topics.items_topic)
    producer = kafka.idempotent_producer(settings.kafka)
    await producer.start()
    try:
        for n, value in enumerate(BAD):
            source = DeadLetterSource(settings.topics.items_topic, n % 3, 10 + n, f"k{n}".encode(), value)
            out = dead_letter(dlq, "worker", source, "decode", f"reason {n}")
            await producer.send_and_wait(out.topic, out.value, key=out.key)
    finally:
        await producer.stop()
    return dlq


async def test_show_then_replay_fixed_then_all_each_exactly_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap)
    await make_topics(settings)
    listed = as_json(cli(settings, "topics", "list", "--json"))["topics"]
    assert {t["name"]: t["exists"] for t in listed}[settings.topics.items_topic] is True
    dlq = await _dead_letters(settings)

    shown = as_json(cli(settings, "dlq", "show", "--json"))
    letters = {entry["source_offset"]: entry for entry in shown["letters"]}
    assert shown["topics"][dlq] == 3 and sorted(letters) == [10, 11, 12]
    assert letters[10]["value"] == "not json at all" and letters[10]["error_message"] == "reason 0"
    assert letters[12]["value_encoding"] == "base64"
    text = cli(settings, "dlq", "show", "--topic", dlq)
    assert text.returncode == 0 and "reason 1" in text.stdout and "no-such-task" in text.stdout

    # Fix the first letter (edit the show output, keep only it) and replay just that one, twice.
    fixed_item = {"id": "i-1", "text": "fixed text", "task": "sentiment"}
    fixes = {"letters": [{**letters[10], "value": json.dumps(fixed_item)}]}
    (tmp_path / "fixes.json").write_text(json.dumps(fixes))
    first = as_json(cli(settings, "dlq", "replay", "--topic", dlq, "--fixed", str(tmp_path / "fixes.json"), "--json"))
    again = as_json(cli(settings, "dlq", "replay", "--topic", dlq, "--fixed", str(tmp_path / "fixes.json"), "--json"))
    assert (first["replayed"], first["fixed"]) == (1, 1)
    assert (again["replayed"], again["already_replayed"]) == (0, 1)

    # Then everything: only the two not replayed yet, with their original bytes; a rerun adds nothing.
    dry = as_json(cli(settings, "dlq", "replay", "--topic", dlq, "--all", "--dry-run", "--json"))
    everything = as_json(cli(settings, "dlq", "replay", "--topic", dlq, "--all", "--json"))
    rerun = as_json(cli(settings, "dlq", "replay", "--all", "--json"))  # the items DLQ is the default
    assert dry["replayed"] == 2 and everything["replayed"] == 2 and everything["already_replayed"] == 1
    assert rerun["replayed"] == 0 and rerun["already_replayed"] == 3

    records = await read_topic(settings, settings.topics.items_topic)
    published = Counter((r.partition, r.key, r.value) for r in records)
    assert published == Counter(
        {
            (0, b"k0", json.dumps(fixed_item).encode()): 1,
            (1, b"k1", BAD[1]): 1,
            (2, b"k2", BAD[2]): 1,
        }
    ), "each letter once, to its source partition, with its key; the fixed one with its new bytes"
