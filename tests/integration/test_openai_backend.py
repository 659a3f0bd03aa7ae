"""The OpenAI-compatible backend against a real llama.cpp server (llama-cpp-python[server])
running the real Gemma 3 270M model on 127.0.0.1: no mocks.

The server is started as `python -m consumers.classifiers.llamacpp`, which is
`python -m llama_cpp.server` with CPU weight repacking turned off (see that module)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tribunal.consumers.classifiers.base import check_predictions
from tribunal.consumers.classifiers.llamacpp import DEFAULT_CACHE_DIR, ensure_gemma
from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import load_tasks

pytestmark = pytest.mark.slow

pytest.importorskip("llama_cpp.server", reason="install the models extra: pip install -e '.[models]'")

READY_TIMEOUT_S = 120.0  # loading a 253 MB GGUF takes seconds; a shared 2-core box is slow
OBVIOUS = {
    "I loved this movie, it was wonderful from start to finish.": "positive",
    "Terrible service, the worst experience I have ever had.": "negative",
    "The package arrived on time and works perfectly. Great product!": "positive",
    "Complete waste of money, it broke after one day.": "negative",
    "Absolutely fantastic, I would recommend it to everyone.": "positive",
    "I can't log into my account and support won't answer.": "negative",
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(base_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `GET /models` until it answers 200; fail with the server log if it dies or stalls."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"llama.cpp server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.5)
    pytest.fail(f"llama.cpp server not ready after {READY_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A llama-cpp-python OpenAI-compatible server with Gemma on a free port, stopped afterwards.

    `logits_all` stays on (the server's default) so the logprobs mode can be tested too."""
    model = ensure_gemma(Path(DEFAULT_CACHE_DIR))
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    # llama_cpp.server's own CLI, run with CPU weight repacking off (it segfaults on AMX CPUs).
    command = [
        sys.executable,
        "-m",
        "tribunal.consumers.classifiers.llamacpp",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
    ]
    command += ["--port", str(port), "--n_ctx", "1024", "--n_threads", "2"]
    with log.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        wait_until_ready(base_url, server, log)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


def sentiment_items() -> list[Item]:
    """The obvious sentences as sentiment items."""
    return [Item(id=str(i), text=text) for i, text in enumerate(OBVIOUS)]


def right_answers(labels: list[str | None]) -> int:
    """How many labels match the obvious gold labels."""
    return sum(label == gold for label, gold in zip(labels, OBVIOUS.values(), strict=True))


async def test_grammar_mode_labels_obvious_sentiment(server_url: str) -> None:
    """Auto mode picks the grammar for llama.cpp; answers are in the set and mostly right."""
    tasks = load_tasks()
    classifier = build_classifier(f"openai:{server_url}?mode=auto&concurrency=2&timeout_s=60", tasks)
    items = sentiment_items()
    predictions = await classifier.classify(items)
    await classifier.close()
    check_predictions(items, predictions, tasks, classifier.model_id)
    assert right_answers([p.label for p in predictions]) >= 5, [p.label for p in predictions]


async def test_grammar_mode_with_logprobs_gives_real_confidences(server_url: str) -> None:
    """With logprobs requested, confidences come from the model, not the 0.5 fallback."""
    tasks = load_tasks()
    spec = f"openai:{server_url}?mode=llamacpp&logprobs=1&concurrency=2&timeout_s=60"
    classifier = build_classifier(spec, tasks)
    items = sentiment_items()[:3]
    predictions = await classifier.classify(items)
    await classifier.close()
    check_predictions(items, predictions, tasks, classifier.model_id)
    assert all(0.0 < p.confidence <= 1.0 and p.confidence != 0.5 for p in predictions)


async def test_logprobs_mode_scores_labels_from_top_tokens(server_url: str) -> None:
    """The unconstrained logprobs mode still only ever answers a label, with a softmax confidence."""
    tasks = load_tasks()
    classifier = build_classifier(f"openai:{server_url}?mode=logprobs&concurrency=2&timeout_s=60", tasks)
    items = sentiment_items()
    predictions = await classifier.classify(items)
    await classifier.close()
    check_predictions(items, predictions, tasks, classifier.model_id)
    assert right_answers([p.label for p in predictions]) >= 5, [p.label for p in predictions]
    assert all(p.probabilities and sum(p.probabilities.values()) == pytest.approx(1.0) for p in predictions)
