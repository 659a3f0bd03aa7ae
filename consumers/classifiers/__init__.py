"""Model backends behind the one `Classifier` protocol."""

from tribunal.consumers.classifiers.base import Classifier, Prediction, check_predictions
from tribunal.consumers.classifiers.registry import ClassifierSpec, build_classifier, parse_spec

__all__ = ["Classifier", "ClassifierSpec", "Prediction", "build_classifier", "check_predictions", "parse_spec"]
