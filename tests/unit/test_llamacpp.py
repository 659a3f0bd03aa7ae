"""Pure parts of the llama.cpp backend: KV-cache prefix reuse, label tries, spec parsing."""

from __future__ import annotations

import pytest

from tribunal.consumers.classifiers.llamacpp import LlamaCppClassifier, reusable_prefix, task_trie
from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.core.errors import ConfigError
from tribunal.schemas.tasks import Task, load_tasks

# A word-level tokenizer table for tests: text -> token ids, as a model's tokenizer would give.
VOCAB = {" yes": [1], " yes please": [1, 2], " no": [3], "\n\n": [9, 9], " pos": [4], " neg": [5]}


def tokenize(text: str) -> list[int]:
    """Token ids from the VOCAB table (KeyError for text the table does not know)."""
    return VOCAB[text]


def make_task(labels: tuple[str, ...]) -> Task:
    """A task with the given labels and the default few-shot format."""
    return Task(name="t", labels=labels, example_format="Text: {text}\nLabel: {label}\n\n")


def test_prefix_reuse_keeps_the_shared_few_shot_head() -> None:
    """A new item re-evaluates only from where it differs from what the cache holds."""
    head = [10, 11, 12, 13]
    assert reusable_prefix([*head, 20, 21, 4], [*head, 30, 31]) == 4


def test_prefix_reuse_always_decodes_at_least_one_token() -> None:
    """Identical or shorter token lists still decode their last token, the one logits come from."""
    assert reusable_prefix([1, 2, 3], [1, 2, 3]) == 2
    assert reusable_prefix([1, 2, 3, 4], [1, 2]) == 1
    assert reusable_prefix([], [1, 2]) == 0


def test_prefix_reuse_refuses_an_empty_prompt() -> None:
    """There are no logits after zero tokens."""
    with pytest.raises(ValueError, match="nothing"):
        reusable_prefix([1], [])


def test_task_trie_uses_space_prefixed_labels() -> None:
    """Labels are tokenized as they follow `Label:`, with one leading space."""
    trie = task_trie(make_task(("pos", "neg")), tokenize)
    assert set(trie.root.children) == {4, 5}
    assert trie.branch_nodes == 1


def test_task_trie_ends_labels_when_one_prefixes_another() -> None:
    """`yes` vs `yes please`: every label gets the example separator's first token as its end."""
    trie = task_trie(make_task(("yes", "yes please", "no")), tokenize)
    yes = trie.root.children[1]
    assert set(yes.children) == {9, 2}  # after " yes": stop (separator) or go on (" please")
    assert yes.children[9].label == "yes"
    assert yes.children[2].children[9].label == "yes please"


def test_task_trie_refuses_labels_with_identical_tokens() -> None:
    """Two labels the tokenizer cannot tell apart are a configuration error."""
    same = {" a": [7], " b": [7], "\n\n": [9]}
    with pytest.raises(ConfigError, match="told apart"):
        task_trie(make_task(("a", "b")), lambda text: same[text])


def test_factory_parses_options_and_loads_nothing() -> None:
    """Building from a spec reads options but defers loading the model to the first batch."""
    classifier = build_classifier("llamacpp:/nonexistent/m.gguf?n_ctx=1024&threads=1&scoring=greedy", load_tasks())
    assert isinstance(classifier, LlamaCppClassifier)
    assert classifier.model_id == "llamacpp:/nonexistent/m.gguf?n_ctx=1024&threads=1&scoring=greedy"
    with pytest.raises(ConfigError, match="does not exist"):
        classifier.engine()


def test_factory_rejects_an_unknown_scoring() -> None:
    """Only auto, full and greedy scoring exist."""
    with pytest.raises(ConfigError, match="scoring"):
        build_classifier("llamacpp?scoring=beam", load_tasks())
