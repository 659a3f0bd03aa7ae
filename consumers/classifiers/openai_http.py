"""OpenAI-compatible HTTP backend: any server speaking `/v1/completions` (vLLM, llama.cpp, ...).

Spec: `openai:BASE_URL[?model=NAME&mode=auto&api=completions&concurrency=8&timeout_s=30&retries=3&
backoff_s=0.5&breaker_failures=5&breaker_cooldown_s=10&logprobs=K&fallback_confidence=0.5&
api_key_env=OPENAI_API_KEY]`.

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

As a client of a shared server (consumers/classifiers/server_policy.py):
- One request per item, at most `concurrency` in flight, fewer while the server signals overload
  (AIMD): with continuous batching, what is in flight is the batch the server gets.
- This is the ONE retry layer for this backend: 429, 5xx, timeouts and connection errors are
  retried up to `retries` times, after the server's `Retry-After` when it sends one, else after
  jittered exponential backoff. A circuit breaker counts consecutive failures across requests;
  once open, requests fail fast until its cooldown ends and one trial request goes through.
- Outcomes per item: a label; an abstention (`label=None`, the reason) when the server refuses
  that item (other 4xx, e.g. a text beyond the context) or answers outside the label set; or,
  for the whole batch, `ServerUnavailableError` once retries are spent or the breaker is open
  (callers must not split and retry the batch: the server, not an item, is the problem), and
  `ConfigError` on 401/403/404.
The API key is read from the env var named by `api_key_env` and only ever sent as a header.

Why not the official `openai` SDK: its 3.x releases bring their own HTTP stack (httpx2, anyio,
jiter) beside the httpx this project uses, and what they would replace (the retry loop) must be
visible to the breaker and the limiter anyway; the request bodies are server extensions
(`structured_outputs`, `grammar`) that would pass through `extra_body` untouched.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from tribunal.consumers.classifiers.base import Classifier, Prediction, Stopwatch
from tribunal.consumers.classifiers.openai_wire import (
    Api,
    Mode,
    build_request,
    first_model_id,
    overload_status,
    parse_response,
    resolve_mode,
    retryable_status,
)
from tribunal.consumers.classifiers.registry import ClassifierSpec
from tribunal.consumers.classifiers.server_policy import (
    AdaptiveLimit,
    AdaptiveLimiter,
    CircuitBreaker,
    parse_retry_after,
    retry_delay,
)
from tribunal.core.errors import ConfigError, FatalError, InvalidOutputError, PoisonError, ServerUnavailableError
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["OpenAIClassifier", "openai"]

TribunalErrorType = ConfigError | PoisonError
MODES: tuple[str, ...] = ("auto", "vllm", "llamacpp", "logprobs")
DEFAULT_LOGPROBS: dict[str, int] = {"vllm": 1, "llamacpp": 0, "logprobs": 20}
# A Retry-After longer than this is not waited out inside a batch: the call fails instead.
MAX_RETRY_AFTER_S = 60.0
BACKOFF_CAP_S = 10.0


def _refusal(response: httpx.Response, url: str) -> TribunalErrorType:
    """The error a non-retryable 4xx means: the configuration (401/403/404) or this item."""
    detail = f"{url} answered HTTP {response.status_code}: {response.text[:300]}"
    if response.status_code in (401, 403, 404):
        return ConfigError(detail)
    return PoisonError(detail)


# ---- the classifier ----------------------------------------------------------------------


class OpenAIClassifier:
    """One request per item over one pooled client, behind an adaptive limit and a breaker."""

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
        breaker: CircuitBreaker | None = None,
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
        self.breaker = breaker or CircuitBreaker()
        self.limiter = AdaptiveLimiter(AdaptiveLimit(maximum=concurrency))

    def __repr__(self) -> str:
        return f"OpenAIClassifier({self.model_id!r})"  # never the key, never the headers

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        """One prediction per item, in order; an item the server refuses abstains. Raises
        `ServerUnavailableError` (the server is down: retrying the batch or splitting it would
        not help) or `ConfigError`."""
        watch = Stopwatch()
        mode = await self._resolved_mode()
        outcomes = await asyncio.gather(*(self._one(mode, item) for item in items), return_exceptions=True)
        per_item = watch.per_item_ms(len(items))
        predictions = []
        for outcome in outcomes:
            if isinstance(outcome, FatalError | ServerUnavailableError):
                raise outcome
            if isinstance(outcome, PoisonError):
                # Poison to this server (refused, or answered outside the label set): a failed
                # abstention, which the worker votes and dead-letters and the judge falls back on.
                predictions.append(Prediction(None, 0.0, latency_ms=per_item, reason=str(outcome)[:1000], failed=True))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                predictions.append(
                    Prediction(
                        outcome.label,
                        outcome.confidence,
                        outcome.probabilities,
                        per_item,
                        outcome.reason,
                        outcome.failed,
                    )
                )
        return predictions

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
        """The JSON answer to one request; the retry layer of this backend (module docstring)."""
        url = self._base_url + path
        last = "no attempt"
        for attempt in range(self._retries + 1):
            if not self.breaker.allow(time.monotonic()):
                raise ServerUnavailableError(
                    f"{self.model_id}: circuit open after {self.breaker.failures} consecutive failures "
                    f"({last}); next try in {self.breaker.retry_in(time.monotonic()):.1f}s"
                )
            response, last, wait = await self._attempt(method, url, body, attempt)
            if response is not None:
                return _json(response, url)
            if wait is None or attempt == self._retries:
                break
            await asyncio.sleep(wait)
        raise ServerUnavailableError(f"{self.model_id}: {url} failed after {self._retries + 1} tries: {last}")

    async def _attempt(
        self, method: str, url: str, body: dict[str, Any] | None, attempt: int
    ) -> tuple[httpx.Response | None, str, float | None]:
        """(response, _, _) on an answer; else (None, what failed, seconds to wait or None to
        give up). Feeds the breaker and the limiter; raises what must not be retried."""
        async with self.limiter:
            try:
                response = await self._http().request(method, url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self.breaker.failure(time.monotonic())
                self.limiter.limit.overloaded()
                return None, repr(exc), retry_delay(attempt, None, self._backoff_s, BACKOFF_CAP_S, random.random)
        status = response.status_code
        if not retryable_status(status):
            self.breaker.success()  # the server is up, whatever it thinks of this request
            self.limiter.limit.succeeded()
            if status >= 400:
                raise _refusal(response, url)
            return response, "", None
        self.breaker.failure(time.monotonic())
        if overload_status(status):
            self.limiter.limit.overloaded()
        after = parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
        failure = f"HTTP {status}: {response.text[:200]}"
        if after is not None and after > MAX_RETRY_AFTER_S:
            return None, f"{failure} (Retry-After {after:.0f}s)", None
        return None, failure, retry_delay(attempt, after, self._backoff_s, BACKOFF_CAP_S, random.random)

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


def _json(response: httpx.Response, url: str) -> dict[str, Any]:
    try:
        payload = response.json()
    except json.JSONDecodeError as exc:
        raise InvalidOutputError(f"{url} answered non-JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidOutputError(f"{url} answered {str(payload)[:200]}, not an object")
    return payload


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
        breaker=CircuitBreaker(
            threshold=spec.int_option("breaker_failures", 5),
            cooldown_s=spec.float_option("breaker_cooldown_s", 10.0),
        ),
    )
