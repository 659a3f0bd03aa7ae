"""The OpenAI-compatible wire format, as pure functions: the request a batch becomes, the server
mode a `/models` payload names, and the `Prediction` a response gives (by label logprobs where the
server returns them, else the answer text). No I/O here: `openai_http` sends and retries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from tribunal.consumers.classifiers.base import Prediction
from tribunal.core.errors import ConfigError, InvalidOutputError

__all__ = [
    "Api",
    "Mode",
    "build_request",
    "first_model_id",
    "gbnf_grammar",
    "max_answer_tokens",
    "overload_status",
    "parse_response",
    "resolve_mode",
    "retryable_status",
    "softmax",
]

Mode = Literal["vllm", "llamacpp", "logprobs"]
Api = Literal["completions", "chat"]


def softmax(scores: Mapping[str, float]) -> dict[str, float]:
    """Normalised probabilities of log-scores (plain Python: this backend needs no numpy)."""
    top = max(scores.values())
    weights = {k: math.exp(v - top) for k, v in scores.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


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


# ---- pure status policy ------------------------------------------------------------------


def retryable_status(status: int) -> bool:
    """429 (rate limited) and 5xx (server trouble) may succeed later; other codes will not."""
    return status == 429 or status >= 500


def overload_status(status: int) -> bool:
    """The server says it has too much to do: fewer requests in flight."""
    return status in (429, 503)
