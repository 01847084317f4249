"""jaxem: generic Expectation-Maximization in JAX.

Declare a latent-variable model as a joint log-density; jaxem derives the
E-step (enumeration, forward-backward) and the M-step (a registered closed form,
otherwise gradient ascent with optax) and runs the whole fit as one compiled
``lax.while_loop`` that works under ``jax.jit`` and ``jax.vmap``.
"""

import importlib as _importlib
from importlib import metadata as _metadata

from . import constraints as constraints
from . import data as data
from . import models as models
from ._fit import FitResult as FitResult
from ._fit import Status as Status
from ._fit import fit as fit
from ._fit import has_converged as has_converged
from ._fit import log_likelihood as log_likelihood
from ._fit import posterior as posterior
from ._io import Saved as Saved
from ._io import load as load
from ._io import save as save
from ._latent import Categorical as Categorical
from ._latent import ChainFactors as ChainFactors
from ._latent import ChainPosterior as ChainPosterior
from ._latent import Gaussian as Gaussian
from ._latent import GaussianChain as GaussianChain
from ._latent import GaussianChainPosterior as GaussianChainPosterior
from ._latent import GaussianPosterior as GaussianPosterior
from ._latent import MarkovChain as MarkovChain
from ._latent import viterbi as viterbi
from ._model import ClosedForm as ClosedForm
from ._model import LatentModel as LatentModel
from ._mstep import m_step as m_step
from ._online import OnlineState as OnlineState
from ._online import fit_minibatch as fit_minibatch
from ._online import online_init as online_init
from ._online import online_update as online_update
from ._stationarity import gradient_norm as gradient_norm

try:
    __version__ = _metadata.version("jaxem")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "BinomialMixture",
    "Categorical",
    "ClosedForm",
    "FitResult",
    "GaussianMixture",
    "LatentModel",
    "Saved",
    "SelectionResult",
    "Status",
    "constraints",
    "data",
    "fit",
    "fit_minibatch",
    "online_init",
    "online_update",
    "OnlineState",
    "has_converged",
    "load",
    "log_likelihood",
    "m_step",
    "models",
    "posterior",
    "save",
    "select_gaussian_mixture",
]

__all__ += [
    "ChainFactors",
    "CategoricalHMM",
    "ChainPosterior",
    "GaussianHMM",
    "MarkovChain",
    "PoissonHMM",
    "viterbi",
]

__all__ += [
    "FactorAnalysis",
    "Gaussian",
    "GaussianChain",
    "GaussianChainPosterior",
    "GaussianPosterior",
    "LinearGaussianSSM",
]

__all__ += ["gradient_norm"]

# The estimator layer (and scikit-learn under it) is imported on first use, so
# ``import jaxem`` for the functional core stays light. Add an estimator here,
# not as an eager ``from .estimators import ...`` above.
_LAZY = {
    "BinomialMixture": "estimators",
    "FactorAnalysis": "estimators",
    "LinearGaussianSSM": "estimators",
    "CategoricalHMM": "estimators",
    "GaussianHMM": "estimators",
    "GaussianMixture": "estimators",
    "PoissonHMM": "estimators",
    "SelectionResult": "_selection",
    "select_gaussian_mixture": "_selection",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxem' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
