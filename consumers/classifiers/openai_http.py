"""OpenAI-compatible HTTP backend: any server speaking `/v1/completions` (vLLM, llama.cpp, ...).

Spec: `openai:BASE_URL[?model=NAME&mode=auto&api=completions&concurrency=8&timeout_s=30&retries=3&
backoff_s=0.5&logprobs=K&fallback_confidence=0.5&api_key_env=OPENAI_API_KEY]`.

The answer is constrained to the task's labels by the server's own mechanism (`mode`):

- `vllm`: `structured_outputs: {"choice": labels}` (vLLM >= 0.12; `guided_choice` was removed).
- `llamacpp`: a GBNF `grammar` allowing exactly " LABEL" (llama.cpp server, llama-cpp-python).
- `logprobs`: no constraint; one token is generated and the labels are scored from its
  `top_logprobs` (a label scores the best top token its text starts with), then softmaxed.
- `auto`: asks `GET /models` once; `owned_by: vllm` means `vllm`, anything else `llamacpp`.

Without `model`, the first model `GET /models` lists is used.

Confidence is exp(sum of the answer's token log-probs) when the server returns log-probs
(`logprobs=K`, default 1 for vllm, 0 for llamacpp because llama-cpp-python needs `logits_all`
for them, 20 for the logprobs mode). Without log-probs it is `fallback_confidence` (default 0.5):
the model committed to a label but said nothing about how sure it was, and 0.5 keeps such a vote
from looking certain to the aggregator.

Failures: 429, 5xx, timeouts and connection errors are retried with exponential backoff, then
raise `ClassifierError`; 401/403/404 raise `ConfigError`; other 4xx (e.g. a text longer than the
server's context) raise `PoisonError`; an answer outside the label set raises `InvalidOutputError`.
The API key is read from the env var named by `api_key_env` and only ever sent as a header.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx

from tribunal.consumers.classifiers.base import Classifier, Prediction, Stopwatch
from tribunal.consumers.classifiers.label_scoring import softmax
from tribunal.consumers.classifiers.registry import ClassifierSpec
from tribunal.core.errors import ClassifierError, ConfigError, InvalidOutputError, PoisonError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import TaskRegistry

__all__ = [
    "OpenAIClassifier",
    "backoff_delay",
    "build_request",
    "first_model_id",
    "gbnf_grammar",
    "openai",
    "parse_response",
    "resolve_mode",
    "retryable_status",
]

Mode = Literal["vllm", "llamacpp", "logprobs"]
Api = Literal["completions", "chat"]
MODES: tuple[str, ...] = ("auto", "vllm", "llamacpp", "logprobs")
DEFAULT_LOGPROBS: dict[str, int] = {"vllm": 1, "llamacpp": 0, "logprobs": 20}


# ---- pure request building ---------------------------------------------------------------


def gbnf_grammar(labels: Sequence[str]) -> str:
    """A GBNF grammar matching exactly one of `labels` preceded by one space."""
    quoted = " | ".join(json.dumps(label) for label in labels)  # JSON escaping is valid GBNF
    return f'root ::= " " ({quoted})'


def max_answer_tokens(labels: Sequence[str]) -> int:
    """An upper bound on an answer's tokens: a token is at least one character (+ the space)."""
    return max(len(label) for label in labels) + 2


def build_request(
    mode: Mode, api: Api, model: str, prompt: str, labels: Sequence[str], logprobs: int
) -> tuple[str, dict[str, Any]]:
    """(path relative to the base URL, JSON body) for one item; temperature 0 for stable votes."""
    body: dict[str, Any] = {"model": model, "temperature": 0.0}
    body["max_tokens"] = 1 if mode == "logprobs" else max_answer_tokens(labels)
    if mode == "vllm":
        body["structured_outputs"] = {"choice": list(labels)}
    elif mode == "llamacpp":
        body["grammar"] = gbnf_grammar(labels)
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        if logprobs > 0:
            body["logprobs"] = True
            body["top_logprobs"] = logprobs
        return "chat/completions", body
    body["prompt"] = prompt
    if logprobs > 0:
        body["logprobs"] = logprobs
    return "completions", body


def resolve_mode(models_payload: Mapping[str, Any]) -> Mode:
    """`vllm` when `GET /models` says a model is owned by vllm, else `llamacpp`."""
    data = models_payload.get("data") or []
    owners = {str(entry.get("owned_by", "")).lower() for entry in data if isinstance(entry, dict)}
    return "vllm" if "vllm" in owners else "llamacpp"


def first_model_id(models_payload: Mapping[str, Any]) -> str:
    """The first model id `GET /models` lists; `ConfigError` when it lists none."""
    for entry in models_payload.get("data") or []:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            return str(entry["id"])
    raise ConfigError("the server lists no model; pass one: openai:URL?model=NAME")


# ---- pure response parsing ---------------------------------------------------------------


def _choice(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise InvalidOutputError(f"response has no choices: {str(payload)[:200]}")
    return choices[0]


def _text(choice: Mapping[str, Any], api: Api) -> str:
    text = choice.get("message", {}).get("content") if api == "chat" else choice.get("text")
    if not isinstance(text, str):
        raise InvalidOutputError(f"response choice has no text: {str(choice)[:200]}")
    return text


def _token_logprobs(choice: Mapping[str, Any], api: Api) -> list[tuple[str, float, dict[str, float]]]:
    """(token, logprob, top alternatives) per generated token; empty when none were returned."""
    block = choice.get("logprobs")
    if not isinstance(block, dict):
        return []
    if api == "chat":
        return [
            (
                e["token"],
                e["logprob"],
                {t["token"]: t["logprob"] for t in e.get("top_logprobs") or []},
            )
            for e in block.get("content") or []
        ]
    tokens, values = block.get("tokens") or [], block.get("token_logprobs") or []
    tops = block.get("top_logprobs") or [{}] * len(tokens)
    return [(t, v, dict(top or {})) for t, v, top in zip(tokens, values, tops, strict=False)]


def _label_scores(top: Mapping[str, float], labels: Sequence[str]) -> dict[str, float]:
    """Each label's score: the best log-prob among top tokens its text starts with."""
    scores = dict.fromkeys(labels, -math.inf)
    for token, logprob in top.items():
        piece = token.strip()
        for label in labels if piece else ():
            if label.startswith(piece):
                scores[label] = max(scores[label], logprob)
    return scores


def parse_response(
    mode: Mode,
    api: Api,
    payload: Mapping[str, Any],
    labels: Sequence[str],
    fallback_confidence: float,
) -> Prediction:
    """The prediction in a server response; `InvalidOutputError` when it names no label."""
    choice = _choice(payload)
    steps = _token_logprobs(choice, api)
    if mode == "logprobs":
        top = steps[0][2] if steps else {}
        scores = _label_scores(top, labels)
        if max(scores.values(), default=-math.inf) == -math.inf:
            raise InvalidOutputError(f"no top token begins a label: {sorted(top)[:10]}")
        probabilities = softmax(scores)
        label = max(probabilities, key=probabilities.__getitem__)
        return Prediction(label, probabilities[label], probabilities)
    answer = _text(choice, api).strip()
    if answer not in labels:
        raise InvalidOutputError(f"server answered {answer[:100]!r}, outside the label set")
    if not steps:
        return Prediction(answer, fallback_confidence)
    confidence = math.exp(min(sum(step[1] for step in steps), 0.0))
    return Prediction(answer, confidence)


# ---- pure retry policy -------------------------------------------------------------------


def retryable_status(status: int) -> bool:
    """429 (rate limited) and 5xx (server trouble) may succeed later; other codes will not."""
    return status == 429 or status >= 500


def backoff_delay(attempt: int, base_s: float, cap_s: float = 10.0) -> float:
    """Seconds to wait before retry number `attempt` (0-based): base * 2**attempt, capped."""
    return float(min(cap_s, base_s * (2**attempt)))


def _raise_for_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = f"{url} answered HTTP {status}: {response.text[:300]}"
    if retryable_status(status):
        raise ClassifierError(detail)
    if status in (401, 403, 404):
        raise ConfigError(detail)
    raise PoisonError(detail)


# ---- the classifier ----------------------------------------------------------------------


class OpenAIClassifier:
    """Sends one request per item, at most `concurrency` at a time, over one pooled client."""

    def __init__(
        self,
        model_id: str,
        tasks: TaskRegistry,
        base_url: str,
        *,
        model: str,
        mode: str,
        api: Api,
        concurrency: int,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        logprobs: int | None,
        fallback_confidence: float,
        api_key_env: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model_id = model_id
        self._tasks = tasks
        self._base_url = base_url.rstrip("/") + "/"
        self._model = model
        self._mode = mode
        self._api = api
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._logprobs = logprobs
        self._fallback_confidence = fallback_confidence
        self._api_key_env = api_key_env
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._semaphore = asyncio.Semaphore(concurrency)

    def __repr__(self) -> str:
        return f"OpenAIClassifier({self.model_id!r})"  # never the key, never the headers

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        """One prediction per item, in order; the batch fails as a whole on the first error."""
        watch = Stopwatch()
        mode = await self._resolved_mode()
        predictions = await asyncio.gather(*(self._one(mode, item) for item in items))
        per_item = watch.per_item_ms(len(items))
        return [Prediction(p.label, p.confidence, p.probabilities, per_item, p.reason) for p in predictions]

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _one(self, mode: Mode, item: Item) -> Prediction:
        task = self._tasks.get(item.task)
        logprobs = DEFAULT_LOGPROBS[mode] if self._logprobs is None else self._logprobs
        path, body = build_request(mode, self._api, self._model, task.render_prompt(item.text), task.labels, logprobs)
        payload = await self._request("POST", path, body)
        return parse_response(mode, self._api, payload, task.labels, self._fallback_confidence)

    async def _resolved_mode(self) -> Mode:
        """Ask `GET /models` once when the mode or the model name was left to the server."""
        if self._mode == "auto" or not self._model:
            models = await self._request("GET", "models", None)
            self._mode = resolve_mode(models) if self._mode == "auto" else self._mode
            self._model = self._model or first_model_id(models)
        return self._mode  # type: ignore[return-value]  # validated in the factory

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """The JSON answer to one request, retrying transient failures with backoff."""
        url = self._base_url + path
        for attempt in range(self._retries + 1):
            try:
                async with self._semaphore:
                    response = await self._http().request(method, url, json=body)
                _raise_for_status(response, url)
                payload = response.json()
                if not isinstance(payload, dict):
                    raise InvalidOutputError(f"{url} answered {str(payload)[:200]}, not an object")
                return payload
            except (httpx.TimeoutException, httpx.TransportError, ClassifierError) as exc:
                if attempt == self._retries:
                    raise ClassifierError(f"{self.model_id}: {url} failed {attempt + 1} times: {exc!r}") from exc
                await asyncio.sleep(backoff_delay(attempt, self._backoff_s))
            except json.JSONDecodeError as exc:
                raise InvalidOutputError(f"{url} answered non-JSON: {exc}") from exc
        raise AssertionError("unreachable: the loop returns or raises")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            key = os.environ.get(self._api_key_env)
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            self._client = httpx.AsyncClient(
                headers=headers,
                timeout=self._timeout_s,
                limits=httpx.Limits(max_connections=self._concurrency),
                transport=self._transport,
            )
        return self._client


def openai(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    """Factory for `openai:BASE_URL?...` (options in the module docstring)."""
    if not spec.arg.startswith(("http://", "https://")):
        raise ConfigError(f"openai classifier needs a base URL: openai:http://HOST:PORT/v1, got {spec.arg!r}")
    mode, api = spec.option("mode", "auto"), spec.option("api", "completions")
    if mode not in MODES:
        raise ConfigError(f"openai mode must be one of {', '.join(MODES)}, not {mode!r}")
    if api not in ("completions", "chat"):
        raise ConfigError(f"openai api must be completions or chat, not {api!r}")
    logprobs = spec.options.get("logprobs")
    return OpenAIClassifier(
        model_id=str(spec),
        tasks=tasks,
        base_url=spec.arg,
        model=spec.option("model", ""),
        mode=mode,
        api="chat" if api == "chat" else "completions",
        concurrency=spec.int_option("concurrency", 8),
        timeout_s=spec.float_option("timeout_s", 30.0),
        retries=spec.int_option("retries", 3),
        backoff_s=spec.float_option("backoff_s", 0.5),
        logprobs=int(logprobs) if logprobs is not None else None,
        fallback_confidence=spec.float_option("fallback_confidence", 0.5),
        api_key_env=spec.option("api_key_env", "OPENAI_API_KEY"),
    )
