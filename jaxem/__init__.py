"""jaxem: generic Expectation-Maximization in JAX.

Declare a latent-variable model as a joint log-density; jaxem derives the
E-step (enumeration, forward-backward) and the M-step (a registered closed form,
otherwise gradient ascent with optax) and runs the whole fit as one compiled
``lax.while_loop`` that works under ``jax.jit`` and ``jax.vmap``.
"""

import importlib as _importlib
import typing as _typing
from importlib import metadata as _metadata

# Every public name, with the module that defines it ("" for a subpackage).
# They load on first use (module __getattr__, PEP 562), so `import jaxem` and
# `jaxem --help` import neither JAX nor scikit-learn until something is used.
_EXPORTS = {
    "constraints": "",
    "data": "",
    "estimators": "",
    "models": "",
    "Batch": "_chunked",
    "fit_chunked": "_chunked",
    "fit_online": "_online_chunks",
    "OnlineResult": "_online_chunks",
    "fit": "_fit",
    "FitResult": "_fit",
    "has_converged": "_fit",
    "log_likelihood": "_fit",
    "posterior": "_fit",
    "Status": "_fit",
    "observed_information": "_information",
    "standard_errors": "_information",
    "load": "_io",
    "save": "_io",
    "Saved": "_io",
    "Categorical": "_latent",
    "ChainFactors": "_latent",
    "ChainPosterior": "_latent",
    "Gaussian": "_latent",
    "GaussianChain": "_latent",
    "GaussianChainPosterior": "_latent",
    "GaussianPosterior": "_latent",
    "MarkovChain": "_latent",
    "viterbi": "_latent",
    "ClosedForm": "_model",
    "LatentModel": "_model",
    "m_step": "_mstep",
    "fit_minibatch": "_online",
    "online_init": "_online",
    "online_update": "_online",
    "OnlineState": "_online",
    "select_gaussian_mixture": "_selection",
    "SelectionResult": "_selection",
    "shard": "_shard",
    "Sharded": "_shard",
    "gradient_norm": "_stationarity",
    "BinomialMixture": "estimators",
    "CategoricalHMM": "estimators",
    "FactorAnalysis": "estimators",
    "GaussianHMM": "estimators",
    "GaussianMixture": "estimators",
    "LinearGaussianSSM": "estimators",
    "PoissonHMM": "estimators",
}

if _typing.TYPE_CHECKING:  # what static tools (mkdocstrings, type checkers) read
    from . import constraints as constraints
    from . import data as data
    from . import estimators as estimators
    from . import models as models
    from ._chunked import Batch as Batch
    from ._chunked import fit_chunked as fit_chunked
    from ._fit import FitResult as FitResult
    from ._fit import Status as Status
    from ._fit import fit as fit
    from ._fit import has_converged as has_converged
    from ._fit import log_likelihood as log_likelihood
    from ._fit import posterior as posterior
    from ._information import observed_information as observed_information
    from ._information import standard_errors as standard_errors
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
    from ._online_chunks import OnlineResult as OnlineResult
    from ._online_chunks import fit_online as fit_online
    from ._selection import SelectionResult as SelectionResult
    from ._selection import select_gaussian_mixture as select_gaussian_mixture
    from ._shard import Sharded as Sharded
    from ._shard import shard as shard
    from ._stationarity import gradient_norm as gradient_norm
    from .estimators import BinomialMixture as BinomialMixture
    from .estimators import CategoricalHMM as CategoricalHMM
    from .estimators import FactorAnalysis as FactorAnalysis
    from .estimators import GaussianHMM as GaussianHMM
    from .estimators import GaussianMixture as GaussianMixture
    from .estimators import LinearGaussianSSM as LinearGaussianSSM
    from .estimators import PoissonHMM as PoissonHMM

__all__ = sorted(_EXPORTS)

try:
    __version__ = _metadata.version("jaxem")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxem' has no attribute {name!r}")
    if module:
        value = getattr(_importlib.import_module(f".{module}", __name__), name)
    else:
        value = _importlib.import_module(f".{name}", __name__)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
