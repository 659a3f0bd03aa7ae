"""Request building, response parsing and retry policy of the OpenAI-compatible backend."""

from __future__ import annotations

import math
import socket
import time
from typing import Any

import httpx
import pytest

from tribunal.consumers.classifiers.openai_http import OpenAIClassifier
from tribunal.consumers.classifiers.openai_wire import (
    build_request,
    first_model_id,
    gbnf_grammar,
    parse_response,
    resolve_mode,
    retryable_status,
)
from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.consumers.classifiers.server_policy import CircuitBreaker
from tribunal.core.errors import ConfigError, InvalidOutputError, ServerUnavailableError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import load_tasks

LABELS = ("negative", "positive")


def completion(
    text: str, logprobs: list[float] | None = None, top: list[dict[str, float]] | None = None
) -> dict[str, Any]:
    """A /v1/completions response body."""
    choice: dict[str, Any] = {"text": text, "index": 0}
    if logprobs is not None or top is not None:
        choice["logprobs"] = {
            "tokens": ["x"] * len(logprobs or top or []),
            "token_logprobs": logprobs or [0.0],
            "top_logprobs": top,
        }
    return {"choices": [choice]}


def test_vllm_request_constrains_to_the_label_choice() -> None:
    """Mode vllm sends `structured_outputs.choice` with exactly the labels, never `guided_choice`."""
    path, body = build_request("vllm", "completions", "m", "Text: hi\nSentiment:", LABELS, 1)
    assert path == "completions"
    assert body["structured_outputs"] == {"choice": ["negative", "positive"]}
    assert "guided_choice" not in body
    assert body["logprobs"] == 1
    assert body["temperature"] == 0.0


def test_llamacpp_request_carries_a_grammar_of_the_labels() -> None:
    """Mode llamacpp sends a GBNF grammar allowing " LABEL" only, and no logprobs when k=0."""
    _, body = build_request("llamacpp", "completions", "m", "p", LABELS, 0)
    assert body["grammar"] == 'root ::= " " ("negative" | "positive")'
    assert "logprobs" not in body


def test_grammar_escapes_quotes_and_backslashes() -> None:
    """A label with a quote or backslash cannot break out of its GBNF string literal."""
    assert gbnf_grammar(['say "hi"', "a\\b"]) == 'root ::= " " ("say \\"hi\\"" | "a\\\\b")'


def test_chat_request_uses_messages_and_top_logprobs() -> None:
    """The chat API puts the prompt in a user message and asks logprobs the chat way."""
    path, body = build_request("logprobs", "chat", "m", "p", LABELS, 5)
    assert path == "chat/completions"
    assert body["messages"] == [{"role": "user", "content": "p"}]
    assert body["logprobs"] is True
    assert body["top_logprobs"] == 5
    assert body["max_tokens"] == 1


def test_parse_reads_label_and_confidence_from_logprobs() -> None:
    """The answer (whitespace stripped) is the label; confidence is exp(sum of token logprobs)."""
    prediction = parse_response("vllm", "completions", completion(" positive", [-0.1, -0.2]), LABELS, 0.5)
    assert prediction.label == "positive"
    assert prediction.confidence == pytest.approx(math.exp(-0.3))


def test_parse_without_logprobs_uses_the_fallback_confidence() -> None:
    """A server that returns no logprobs gets the documented fallback confidence."""
    prediction = parse_response("llamacpp", "completions", completion(" negative"), LABELS, 0.5)
    assert (prediction.label, prediction.confidence) == ("negative", 0.5)


@pytest.mark.parametrize("text", [" neutral", "Positive", " positive!", "", " positive negative"])
def test_parse_refuses_answers_outside_the_label_set(text: str) -> None:
    """Anything but an exact label is an InvalidOutputError, never a vote."""
    with pytest.raises(InvalidOutputError):
        parse_response("llamacpp", "completions", completion(text), LABELS, 0.5)


def test_parse_refuses_a_response_without_choices() -> None:
    """A body with no choices is invalid output."""
    with pytest.raises(InvalidOutputError, match="choices"):
        parse_response("vllm", "completions", {"error": "x"}, LABELS, 0.5)


def test_parse_chat_content() -> None:
    """Chat responses are read from message.content and logprobs.content."""
    payload = {
        "choices": [
            {
                "message": {"content": "negative"},
                "logprobs": {"content": [{"token": "negative", "logprob": -0.5, "top_logprobs": []}]},
            }
        ]
    }
    prediction = parse_response("vllm", "chat", payload, LABELS, 0.5)
    assert prediction.label == "negative"
    assert prediction.confidence == pytest.approx(math.exp(-0.5))


def test_logprobs_mode_softmaxes_label_scores_from_top_tokens() -> None:
    """Mode logprobs scores each label by the best top token it starts with, then softmaxes."""
    top = [{" pos": math.log(0.6), " neg": math.log(0.2), " the": math.log(0.15)}]
    prediction = parse_response("logprobs", "completions", completion(" the", [math.log(0.15)], top), LABELS, 0.5)
    assert prediction.label == "positive"
    assert prediction.confidence == pytest.approx(0.75)
    assert prediction.probabilities == pytest.approx({"positive": 0.75, "negative": 0.25})


def test_logprobs_mode_refuses_when_no_top_token_begins_a_label() -> None:
    """If the model's top tokens name no label, there is no vote to cast."""
    top = [{" the": -0.1, " a": -2.0}]
    with pytest.raises(InvalidOutputError, match="no top token"):
        parse_response("logprobs", "completions", completion(" the", [-0.1], top), LABELS, 0.5)


def test_resolve_mode_and_model_from_models_listing() -> None:
    """`owned_by: vllm` selects the vllm mode; any other server gets the grammar mode."""
    assert resolve_mode({"data": [{"id": "q", "owned_by": "vllm"}]}) == "vllm"
    assert resolve_mode({"data": [{"id": "g", "owned_by": "me"}]}) == "llamacpp"
    assert first_model_id({"data": [{"id": "g", "owned_by": "me"}]}) == "g"
    with pytest.raises(ConfigError):
        first_model_id({"data": []})


@pytest.mark.parametrize(("status", "retry"), [(429, True), (500, True), (503, True), (400, False), (404, False)])
def test_retryable_status(status: int, retry: bool) -> None:
    """Rate limits and server errors are retried; client errors are not."""
    assert retryable_status(status) is retry


def test_factory_rejects_bad_specs() -> None:
    """A missing URL or unknown mode is a configuration error."""
    tasks = load_tasks()
    with pytest.raises(ConfigError, match="base URL"):
        build_classifier("openai", tasks)
    with pytest.raises(ConfigError, match="mode"):
        build_classifier("openai:http://127.0.0.1:1/v1?mode=guided", tasks)


def client(
    handler: Any, *, retries: int = 2, breaker: CircuitBreaker | None = None, key_env: str = "X"
) -> OpenAIClassifier:
    """A classifier whose HTTP goes to `handler` (httpx's MockTransport), no real waiting."""
    return OpenAIClassifier(
        "openai-test",
        load_tasks(),
        "http://server.test/v1",
        model="m",
        mode="llamacpp",
        api="completions",
        concurrency=4,
        timeout_s=1.0,
        retries=retries,
        backoff_s=0.0,
        logprobs=None,
        fallback_confidence=0.5,
        api_key_env=key_env,
        breaker=breaker,
        transport=httpx.MockTransport(handler),
    )


async def test_server_errors_are_retried_then_the_server_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """5xx answers are retried `retries` times, then ServerUnavailableError; the key never leaks."""
    monkeypatch.setenv("TRIBUNAL_TEST_KEY", "sk-secret-123")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(503, text="overloaded")

    classifier = client(handler, key_env="TRIBUNAL_TEST_KEY")
    with pytest.raises(ServerUnavailableError) as failure:
        await classifier.classify([Item(id="1", text="great")])
    await classifier.close()
    assert seen == ["Bearer sk-secret-123"] * 3
    assert "sk-secret" not in str(failure.value) and "sk-secret" not in repr(classifier)


async def test_retry_after_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 429 with Retry-After: 2 makes the client sleep at least 2 s before the retry."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("tribunal.consumers.classifiers.openai_http.asyncio.sleep", fake_sleep)
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json=completion(" positive"))]
    )
    classifier = client(lambda request: next(answers))
    predictions = await classifier.classify([Item(id="1", text="great")])
    await classifier.close()
    assert predictions[0].label == "positive"
    assert len(slept) == 1 and slept[0] >= 2.0


async def test_an_open_breaker_stops_calling_a_down_server() -> None:
    """Once the breaker opens, the rest of a large batch fails fast: far fewer calls than items x tries."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(502, text="bad gateway")

    classifier = client(handler, retries=3, breaker=CircuitBreaker(threshold=3, cooldown_s=60))
    items = [Item(id=str(n), text="fine") for n in range(64)]
    with pytest.raises(ServerUnavailableError, match="circuit open"):
        await classifier.classify(items)
    await classifier.close()
    assert calls <= 3 + 4  # the threshold, plus what was already in flight (the initial limit)


async def test_an_item_the_server_refuses_abstains_alone() -> None:
    """A 400 for one item (say, beyond the context) abstains that item; the others get labels."""

    def handler(request: httpx.Request) -> httpx.Response:
        if b"too long" in request.content:
            return httpx.Response(400, text="context length exceeded")
        return httpx.Response(200, json=completion(" positive"))

    classifier = client(handler)
    predictions = await classifier.classify(
        [Item(id="1", text="ok"), Item(id="2", text="too long"), Item(id="3", text="ok")]
    )
    await classifier.close()
    assert [p.label for p in predictions] == ["positive", None, "positive"]
    assert "context length" in (predictions[1].reason or "")


async def test_wrong_credentials_are_a_configuration_error() -> None:
    """401 is not retried and not an abstention: the process must stop and say so."""
    classifier = client(lambda request: httpx.Response(401, text="bad key"))
    with pytest.raises(ConfigError, match="401"):
        await classifier.classify([Item(id="1", text="fine")])
    await classifier.close()


async def test_a_foreign_label_from_the_server_abstains() -> None:
    """Even a 200 answer naming a label outside the set never becomes a vote: the item abstains."""
    classifier = client(lambda request: httpx.Response(200, json=completion(" meh")), retries=0)
    predictions = await classifier.classify([Item(id="1", text="fine")])
    await classifier.close()
    assert predictions[0].label is None and "meh" in (predictions[0].reason or "")


async def test_a_port_nobody_listens_on_opens_the_breaker() -> None:
    """Real refused TCP connections (no mock): after `breaker_failures` the batch fails fast with
    ServerUnavailableError instead of retrying every item against a dead address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = f"openai:http://127.0.0.1:{port}/v1?model=m&mode=llamacpp&retries=3&backoff_s=0.01&breaker_failures=2"
    classifier = build_classifier(spec, load_tasks())
    assert isinstance(classifier, OpenAIClassifier)
    with pytest.raises(ServerUnavailableError):
        await classifier.classify([Item(id=str(n), text="fine") for n in range(32)])
    await classifier.close()
    assert classifier.breaker.state(time.monotonic()) == "open"
