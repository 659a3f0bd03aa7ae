"""The README's custom-classifier example, run as written: a user's model in a worker embedded in
the user's own asyncio program, and the same factory by `py:MODULE:ATTR` spec in a child process."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from tests.integration.kit import REPO, isolated_settings, make_topics, read_votes, running, start_tier
from tests.modules import load_module
from tribunal.consumers.classifiers import build_classifier
from tribunal.core.errors import ConfigError
from tribunal.producers.ingest import ingest
from tribunal.schemas.messages import Item

EXAMPLE = REPO / "examples" / "custom_classifier.py"


def load_example() -> ModuleType:
    return load_module("custom_classifier_example", EXAMPLE)


def write_items(path: Path, texts: list[str]) -> None:
    lines = [orjson.dumps({"id": f"c{n}", "text": text, "task": "sentiment"}) for n, text in enumerate(texts)]
    path.write_bytes(b"\n".join(lines) + b"\n")


TEXTS = ["great stuff!", "meh", "wow!", "it broke", "fine"]


async def test_example_worker_votes_inside_the_host_program_without_touching_logging(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    example = load_example()
    settings = isolated_settings(kafka_bootstrap, worker={"name": "w1"})
    await make_topics(settings)
    write_items(tmp_path / "items.jsonl", TEXTS)
    assert (await ingest(settings, str(tmp_path / "items.jsonl"))).published == len(TEXTS)
    handlers_before = list(logging.getLogger().handlers)

    async with running(lambda stop: example.main(settings, stop)):
        votes = await read_votes(settings, len(TEXTS))

    assert logging.getLogger().handlers == handlers_before, "embedding a tier must not reconfigure logging"
    by_id = {vote.item_id: vote for vote in votes}
    assert {vote.model for vote in votes} == {"exclamation-v1"}
    assert [by_id[f"c{n}"].label for n in range(len(TEXTS))] == [
        "positive" if "!" in text else "negative" for text in TEXTS
    ]


async def test_example_factory_by_module_spec_in_a_child_process(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, worker={"name": "w2"})
    await make_topics(settings)
    write_items(tmp_path / "items.jsonl", TEXTS)
    await ingest(settings, str(tmp_path / "items.jsonl"))
    spec = "py:examples.custom_classifier:make"

    process = await start_tier(settings, "worker", "--name", "w2", "--classifier", spec, instance="custom")
    try:
        votes = await read_votes(settings, len(TEXTS))
    finally:
        process.terminate()
        await process.wait()
    assert {(vote.worker, vote.model) for vote in votes} == {("w2", "exclamation-v1")}


async def test_module_spec_builds_the_factory_and_bad_specs_say_what_to_write() -> None:
    settings = isolated_settings("127.0.0.1:1")
    sys.path.insert(0, str(REPO))
    try:
        classifier = build_classifier("py:examples.custom_classifier:make", settings.tasks())
    finally:
        sys.path.remove(str(REPO))
    [prediction] = await classifier.classify([Item(id="x", text="yes!", task="sentiment")])
    assert prediction.label == "positive"
    with pytest.raises(ConfigError, match="py:MODULE:ATTR"):
        build_classifier("py:no_colon_here", settings.tasks())
    with pytest.raises(ConfigError, match="cannot import"):
        build_classifier("py:surely_not_a_module_xyz:make", settings.tasks())
