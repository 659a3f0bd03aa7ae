"""Label tries, local normalisation, greedy walks and prompt fitting, with plain logit tables."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from tribunal.consumers.classifiers.label_scoring import (
    LogitsFn,
    build_trie,
    common_prefix_len,
    fit_to_context,
    greedy_label,
    label_distribution,
    softmax,
)

# Labels as token ids: "card_arrival" = 1 2, "card_linking" = 1 3, "age_limit" = 4 5 6.
SEQUENCES = {"card_arrival": [1, 2], "card_linking": [1, 3], "age_limit": [4, 5, 6]}


def table_logits(table: dict[tuple[int, ...], dict[int, float]]) -> tuple[LogitsFn, list[tuple[int, ...]]]:
    """A logits function reading `table[path][token]`, and the list of paths it was asked for."""
    calls: list[tuple[int, ...]] = []

    def logits_fn(path: tuple[int, ...], candidates: tuple[int, ...]) -> npt.NDArray[np.float64]:
        calls.append(path)
        return np.array([table[path][c] for c in candidates], dtype=np.float64)

    return logits_fn, calls


def test_softmax_sums_to_one_and_orders_by_score() -> None:
    """Softmax gives probabilities summing to 1, larger for larger scores, 0 for -inf."""
    probs = softmax({"a": 0.0, "b": math.log(3.0), "c": -math.inf})
    assert probs["b"] == pytest.approx(0.75)
    assert probs["a"] == pytest.approx(0.25)
    assert probs["c"] == 0.0


def test_softmax_rejects_nothing_to_choose() -> None:
    """An all -inf score table has no distribution."""
    with pytest.raises(ValueError, match="-inf"):
        softmax({"a": -math.inf})


def test_trie_counts_branches_and_depth() -> None:
    """Root and the shared `card` token branch; depth is the longest label."""
    trie = build_trie(SEQUENCES)
    assert trie.branch_nodes == 2
    assert trie.depth == 3


@pytest.mark.parametrize(
    "sequences",
    [{"a": [1], "ab": [1, 2]}, {"ab": [1, 2], "a": [1]}, {"a": [1, 2], "b": [1, 2]}, {"a": []}],
)
def test_trie_rejects_labels_it_cannot_tell_apart(sequences: dict[str, list[int]]) -> None:
    """A label whose tokens prefix or equal another's, or an empty one, cannot be scored."""
    with pytest.raises(ValueError, match="label"):
        build_trie(sequences)


def test_distribution_is_product_of_local_probabilities() -> None:
    """P(label) multiplies the softmax among siblings at each branch; forced steps cost nothing."""
    logits_fn, calls = table_logits({(): {1: math.log(3.0), 4: 0.0}, (1,): {2: 0.0, 3: math.log(2.0)}})
    probs = label_distribution(build_trie(SEQUENCES), logits_fn)
    assert probs["age_limit"] == pytest.approx(0.25)
    assert probs["card_arrival"] == pytest.approx(0.75 / 3)
    assert probs["card_linking"] == pytest.approx(0.75 * 2 / 3)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert sorted(calls) == [(), (1,)]  # the chain 4 -> 5 -> 6 is never evaluated


def test_distribution_ignores_logits_of_tokens_that_are_no_label() -> None:
    """Only label tokens compete: a huge logit elsewhere in the vocabulary changes nothing."""
    trie = build_trie({"negative": [7], "positive": [9]})

    def logits_fn(path: tuple[int, ...], candidates: tuple[int, ...]) -> npt.NDArray[np.float64]:
        vocab = np.full(20, -5.0)
        vocab[[3, 7, 9]] = [50.0, 1.0, 2.0]  # token 3 would win an unconstrained argmax
        return vocab[list(candidates)]

    probs = label_distribution(trie, logits_fn)
    assert set(probs) == {"negative", "positive"}
    assert probs["positive"] == pytest.approx(1 / (1 + math.exp(-1.0)))


def test_greedy_follows_the_likeliest_branch_only() -> None:
    """Greedy answers the branch-by-branch argmax with its exact probability, skipping other branches."""
    logits_fn, calls = table_logits({(): {1: 1.0, 4: 0.0}, (1,): {2: 0.0, 3: 2.0}})
    label, confidence = greedy_label(build_trie(SEQUENCES), logits_fn)
    p_card = 1 / (1 + math.exp(-1.0))
    assert label == "card_linking"
    assert confidence == pytest.approx(p_card / (1 + math.exp(-2.0)))
    assert calls == [(), (1,)]


def test_greedy_can_prefer_a_label_the_full_distribution_ranks_lower() -> None:
    """Greedy commits at the first branch: a split sub-branch can lose to a single label."""
    table = {(): {1: 0.2, 4: 0.0}, (1,): {2: 0.0, 3: 0.0}}
    full = label_distribution(build_trie(SEQUENCES), table_logits(table)[0])
    greedy, _ = greedy_label(build_trie(SEQUENCES), table_logits(table)[0])
    assert max(full, key=full.__getitem__) == "age_limit"
    assert greedy in {"card_arrival", "card_linking"}


def test_bad_logits_are_refused() -> None:
    """A logits function returning NaN or the wrong shape is an error, not a label."""
    trie = build_trie({"a": [1], "b": [2]})
    with pytest.raises(ValueError, match="logits"):
        label_distribution(trie, lambda path, cands: np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="logits"):
        label_distribution(trie, lambda path, cands: np.array([0.0]))


def test_common_prefix_len() -> None:
    """The shared head of two token lists is measured exactly."""
    assert common_prefix_len([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2
    assert common_prefix_len([], [1]) == 0


def test_fit_to_context_cuts_the_middle_keeping_head_and_tail() -> None:
    """A too-long prompt loses middle tokens; the few-shot head and the label cue survive."""
    tokens = list(range(100))
    fitted = fit_to_context(tokens, budget=30, keep_tail=5)
    assert len(fitted) == 30
    assert fitted[:25] == list(range(25))
    assert fitted[-5:] == [95, 96, 97, 98, 99]
    assert fit_to_context(tokens[:10], budget=30, keep_tail=5) == tokens[:10]


def test_fit_to_context_refuses_a_budget_smaller_than_the_tail() -> None:
    """No room for anything but the tail is a configuration error."""
    with pytest.raises(ValueError, match="budget"):
        fit_to_context(list(range(10)), budget=4, keep_tail=5)
