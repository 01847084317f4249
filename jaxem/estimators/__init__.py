"""scikit-learn / hmmlearn-style estimators over the prebuilt models."""

from ._base import ConvergenceWarning as ConvergenceWarning
from ._base import FitError as FitError
from ._base import NotFittedError as NotFittedError
from ._binomial import BinomialMixture as BinomialMixture

__all__ = [
    "BinomialMixture",
    "ConvergenceWarning",
    "FitError",
    "NotFittedError",
]
