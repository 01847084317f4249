"""scikit-learn / hmmlearn-style estimators over the prebuilt models."""

from ._base import ConvergenceWarning as ConvergenceWarning
from ._base import FitError as FitError
from ._base import NotFittedError as NotFittedError
from ._binomial import BinomialMixture as BinomialMixture
from ._gmm import CollapsedComponentWarning as CollapsedComponentWarning
from ._gmm import GaussianMixture as GaussianMixture

__all__ = [
    "BinomialMixture",
    "CollapsedComponentWarning",
    "GaussianMixture",
    "ConvergenceWarning",
    "FitError",
    "NotFittedError",
]

from ._hmm import CategoricalHMM as CategoricalHMM  # noqa: E402
from ._hmm import ConvergenceMonitor as ConvergenceMonitor  # noqa: E402
from ._hmm import GaussianHMM as GaussianHMM  # noqa: E402
from ._hmm import PoissonHMM as PoissonHMM  # noqa: E402

__all__ += ["CategoricalHMM", "ConvergenceMonitor", "GaussianHMM", "PoissonHMM"]

from ._factor_analysis import FactorAnalysis as FactorAnalysis  # noqa: E402

__all__ += ["FactorAnalysis"]

from ._lgssm import LinearGaussianSSM as LinearGaussianSSM  # noqa: E402

__all__ += ["LinearGaussianSSM"]
