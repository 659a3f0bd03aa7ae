"""Sentiment lexicons as workers: VADER, TextBlob and AFINN, with calibrated confidence.

Spec strings: `vader`, `textblob`, `afinn` (no argument, no options).

Each lexicon gives one raw polarity score `s` per text (VADER compound in [-1, 1], TextBlob
polarity in [-1, 1], AFINN an integer sum of word valences). The score becomes per-label
probabilities with a small multinomial logistic model over the features `(s, |s|)`:

    p(label) = softmax_label(w_s * s + w_abs * |s| + b)

`|s|` is what lets the 3-class model carve a neutral band around 0 (neutral wins where the
score is small in either direction). The coefficients in `CALIBRATION` were fitted with
`fit_calibration` on dev splits only, never on test: 2-class on `sst2/dev.jsonl` (6,735
phrases), 3-class on `tweeteval_sentiment/val.jsonl` (2,000 tweets); see docs/model-eval.md.

Contract: a prediction's label is always in the item's task label set. Items of a task whose
label set is not {negative, positive} or {negative, neutral, positive} get an abstention
(label None) saying why, never a guess. Confidence is the top calibrated probability, in [0, 1].
Latency is measured per item.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence

from tribunal.consumers.classifiers.base import Classifier, Prediction
from tribunal.consumers.classifiers.registry import ClassifierSpec
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import TaskRegistry

__all__ = [
    "CALIBRATION",
    "LexiconClassifier",
    "afinn",
    "fit_calibration",
    "probabilities",
    "textblob",
    "vader",
]

Scorer = Callable[[str], float]
# label -> (w_s, w_abs, bias); one table per (lexicon, label set).
Coefficients = Mapping[str, tuple[float, float, float]]

BINARY = frozenset({"negative", "positive"})
TERNARY = frozenset({"negative", "neutral", "positive"})

# Fitted by `fit_calibration` on sst2/dev (binary) and tweeteval_sentiment/val (ternary);
# C=100 (almost unregularised: 2-3 parameters per label). Regenerate with docs/model-eval.md's
# recipe whenever a scorer or its package version changes.
CALIBRATION: dict[tuple[str, frozenset[str]], Coefficients] = {
    ("vader", BINARY): {"negative": (0.0, 0.0, 0.0), "positive": (3.0328, -0.1787, -0.0438)},
    ("vader", TERNARY): {
        "negative": (-1.8322, 0.7643, -0.8388),
        "neutral": (0.2059, -1.0942, 0.8821),
        "positive": (1.6263, 0.3299, -0.0433),
    },
    ("textblob", BINARY): {"negative": (0.0, 0.0, 0.0), "positive": (3.4973, -0.2911, 0.0144)},
    ("textblob", TERNARY): {
        "negative": (-1.8101, 0.3759, -0.6173),
        "neutral": (-0.1565, -0.4980, 0.5575),
        "positive": (1.9666, 0.1221, 0.0598),
    },
    ("afinn", BINARY): {"negative": (0.0, 0.0, 0.0), "positive": (0.4691, -0.0312, 0.0498)},
    ("afinn", TERNARY): {
        "negative": (-0.2653, 0.0599, -0.7149),
        "neutral": (0.0020, -0.1274, 0.7174),
        "positive": (0.2633, 0.0674, -0.0025),
    },
}


def probabilities(score: float, coefficients: Coefficients) -> dict[str, float]:
    """Softmax over labels of `w_s*s + w_abs*|s| + b`; sums to 1, each value in [0, 1]."""
    logits = {label: ws * score + wa * abs(score) + b for label, (ws, wa, b) in coefficients.items()}
    top = max(logits.values())
    # Subtracting the max keeps exp() finite for any score (AFINN sums can be large).
    exps = {label: math.exp(z - top) for label, z in logits.items()}
    total = sum(exps.values())
    return {label: value / total for label, value in exps.items()}


def fit_calibration(scores: Sequence[float], labels: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Fit the multinomial logistic map from raw scores to the gold labels (needs scikit-learn).

    Returns coefficients for `probabilities`; with two labels the first (alphabetical) label is
    the zero reference, so softmax reduces to the usual sigmoid."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    features = np.array([[s, abs(s)] for s in scores], dtype=np.float64)
    model = LogisticRegression(C=100.0, max_iter=1000).fit(features, list(labels))
    classes = [str(c) for c in model.classes_]
    if len(classes) == 2:
        w = model.coef_[0]
        return {classes[0]: (0.0, 0.0, 0.0), classes[1]: (float(w[0]), float(w[1]), float(model.intercept_[0]))}
    return {
        label: (float(model.coef_[i][0]), float(model.coef_[i][1]), float(model.intercept_[i]))
        for i, label in enumerate(classes)
    }


class LexiconClassifier:
    """A rule-based scorer plus a calibration table per label set it supports."""

    def __init__(
        self, model_id: str, scorer: Scorer, tables: Mapping[frozenset[str], Coefficients], tasks: TaskRegistry
    ) -> None:
        self.model_id = model_id
        self._scorer = scorer
        self._tables = dict(tables)
        self._tasks = tasks

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        """Label a batch off the event loop (a big batch of TextBlob takes tens of ms)."""
        return await asyncio.to_thread(self.classify_sync, items)

    def classify_sync(self, items: Sequence[Item]) -> list[Prediction]:
        """One prediction per item, in order; abstains on tasks it has no calibration for."""
        return [self._one(item) for item in items]

    async def close(self) -> None:
        return None

    def _one(self, item: Item) -> Prediction:
        started = time.perf_counter()
        table = self._tables.get(frozenset(self._tasks.get(item.task).labels))
        if table is None:
            return Prediction(None, 0.0, reason=f"{self.model_id} only labels sentiment tasks, not {item.task!r}")
        probs = probabilities(self._scorer(item.text), table)
        label = max(probs, key=lambda name: probs[name])
        latency = (time.perf_counter() - started) * 1000.0
        return Prediction(label, min(1.0, max(0.0, probs[label])), probabilities=probs, latency_ms=latency)


def _tables(kind: str) -> dict[frozenset[str], Coefficients]:
    return {labels: table for (name, labels), table in CALIBRATION.items() if name == kind}


def vader_scorer() -> Scorer:
    """VADER's compound score in [-1, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return lambda text: float(analyzer.polarity_scores(text)["compound"])


def textblob_scorer() -> Scorer:
    """TextBlob's pattern-lexicon polarity in [-1, 1] (needs no corpus download)."""
    from textblob import TextBlob

    return lambda text: float(TextBlob(text).sentiment.polarity)


def afinn_scorer() -> Scorer:
    """AFINN-165's summed word valences (unbounded integer)."""
    from afinn import Afinn

    scorer = Afinn()
    return lambda text: float(scorer.score(text))


SCORERS: dict[str, Callable[[], Scorer]] = {
    "vader": vader_scorer,
    "textblob": textblob_scorer,
    "afinn": afinn_scorer,
}


def _build(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    return LexiconClassifier(str(spec), SCORERS[spec.kind](), _tables(spec.kind), tasks)


def vader(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    return _build(spec, tasks)


def textblob(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    return _build(spec, tasks)


def afinn(spec: ClassifierSpec, tasks: TaskRegistry) -> Classifier:
    return _build(spec, tasks)
