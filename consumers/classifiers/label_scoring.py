"""Pure label scoring shared by the LLM backends: softmax, label tries, prompt fitting.

A language model answers a classification prompt by continuing it with one of the task's labels.
Each label is a token sequence; the sequences form a trie whose root is "right after the prompt".
Scoring walks the trie asking the model only for the logits it needs:

- At a node with one child the model has no choice, so that step has probability 1 and is never
  evaluated (most tokens of long labels like `card_payment_wrong_exchange_rate` are such steps).
- At a node with several children, the model's logits of those children are softmaxed among
  themselves ("local normalisation"). This is exactly the distribution that constrained decoding
  (a grammar or a choice list) samples from, so P(label) is the product of the local
  probabilities along its path and the label probabilities sum to 1. Unlike a softmax over summed
  raw log-probs it has no bias toward labels with fewer tokens.

Nothing here imports a model: the model is a `LogitsFn` callback, so everything is unit-tested
with plain arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "LabelTrie",
    "LogitsFn",
    "TrieNode",
    "build_trie",
    "common_prefix_len",
    "fit_to_context",
    "greedy_label",
    "label_distribution",
    "softmax",
]

# `LogitsFn(path, candidates)` returns the model's next-token logits for `candidates` (token ids),
# given the prompt followed by `path`; one float per candidate, in order.
LogitsFn = Callable[[tuple[int, ...], tuple[int, ...]], npt.NDArray[np.float64]]


def softmax(scores: Mapping[str, float]) -> dict[str, float]:
    """Softmax over named scores (log-probs or logits); `-inf` scores get probability 0.

    Raises `ValueError` when `scores` is empty or every score is `-inf` (nothing to choose)."""
    if not scores:
        raise ValueError("softmax of no scores")
    top = max(scores.values())
    if top == -math.inf:
        raise ValueError("softmax where every score is -inf")
    weights = {name: math.exp(score - top) for name, score in scores.items()}
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()}


@dataclass(slots=True)
class TrieNode:
    """One position in the label trie: `label` is set on leaves, `children` is keyed by token id."""

    children: dict[int, TrieNode] = field(default_factory=dict)
    label: str | None = None


@dataclass(frozen=True, slots=True)
class LabelTrie:
    """The token trie of a label set; `branch_nodes` = model calls a full scoring makes."""

    root: TrieNode
    labels: tuple[str, ...]
    branch_nodes: int
    depth: int


def build_trie(sequences: Mapping[str, Sequence[int]]) -> LabelTrie:
    """Build the trie of label -> token ids.

    Raises `ValueError` when a sequence is empty, two labels share a sequence, or one label's
    sequence is a proper prefix of another's (the caller then appends an end-of-label token)."""
    root = TrieNode()
    for label, tokens in sequences.items():
        if not tokens:
            raise ValueError(f"label {label!r} has no tokens")
        node = root
        for token in tokens:
            if node.label is not None:
                raise ValueError(f"label {node.label!r} is a token prefix of {label!r}")
            node = node.children.setdefault(token, TrieNode())
        if node.label is not None or node.children:
            raise ValueError(f"label {label!r} collides with another label's tokens")
        node.label = label
    return LabelTrie(root, tuple(sequences), _count_branches(root), max(map(len, sequences.values())))


def _count_branches(node: TrieNode) -> int:
    own = 1 if len(node.children) > 1 else 0
    return own + sum(_count_branches(child) for child in node.children.values())


def _local_logprobs(node: TrieNode, path: tuple[int, ...], logits_fn: LogitsFn) -> list[tuple[int, float]]:
    """(token, log P(token | node)) for each child, normalised among the children only."""
    tokens = tuple(node.children)
    if len(tokens) == 1:
        return [(tokens[0], 0.0)]  # a forced step: no model call
    logits = np.asarray(logits_fn(path, tokens), dtype=np.float64)
    if logits.shape != (len(tokens),) or not np.all(np.isfinite(logits)):
        raise ValueError(f"logits function returned {logits!r} for {len(tokens)} candidates")
    shifted = logits - logits.max()
    logprobs = shifted - math.log(float(np.exp(shifted).sum()))
    return list(zip(tokens, (float(v) for v in logprobs), strict=True))


def label_distribution(trie: LabelTrie, logits_fn: LogitsFn) -> dict[str, float]:
    """P(label) for every label: the product of local probabilities along its path.

    Calls `logits_fn` once per branching node, depth-first, so consecutive calls share the
    longest possible prefix (the caller's KV cache stays warm)."""
    logprobs: dict[str, float] = {}
    stack: list[tuple[TrieNode, tuple[int, ...], float]] = [(trie.root, (), 0.0)]
    while stack:
        node, path, acc = stack.pop()
        if node.label is not None:
            logprobs[node.label] = acc
            continue
        for token, lp in reversed(_local_logprobs(node, path, logits_fn)):
            stack.append((node.children[token], (*path, token), acc + lp))
    return {label: math.exp(logprobs[label]) for label in trie.labels}


def greedy_label(trie: LabelTrie, logits_fn: LogitsFn) -> tuple[str, float]:
    """Follow the most likely child at every branch: (label, its exact local probability).

    Costs one model call per branch on the chosen path instead of one per branch in the trie;
    the label is what greedy constrained decoding would answer."""
    node, acc = trie.root, 0.0
    path: tuple[int, ...] = ()
    while node.label is None:
        token, lp = max(_local_logprobs(node, path, logits_fn), key=lambda pair: pair[1])
        node, path, acc = node.children[token], (*path, token), acc + lp
    return node.label, math.exp(acc)


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def fit_to_context(tokens: Sequence[int], budget: int, keep_tail: int) -> list[int]:
    """Cut tokens from the middle so at most `budget` remain, keeping the last `keep_tail`.

    The head (instructions, few-shot examples) and the tail (the `Label:` cue the answer follows)
    survive; a long item text loses its end. Raises `ValueError` if `budget <= keep_tail`."""
    if len(tokens) <= budget:
        return list(tokens)
    if budget <= keep_tail:
        raise ValueError(f"context budget {budget} leaves no room beyond the {keep_tail}-token tail")
    return [*tokens[: budget - keep_tail], *tokens[len(tokens) - keep_tail :]]
