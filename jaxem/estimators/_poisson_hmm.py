"""``PoissonHMM``: hmmlearn's Poisson-emission HMM as a scikit-learn estimator."""

from __future__ import annotations

import numpy as np
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_non_negative

from .. import models as _models
from ..models._gmm_missing import MISSING_OPTIONS, missing_data
from . import _base
from ._hmm_base import PRIOR, BaseHMM, _parallel_option, chain_fit_scalars
from ._hmm_sequences import check_prior


class PoissonHMM(BaseHMM):
    """Hidden Markov model with Poisson emissions (``hmmlearn`` ``PoissonHMM``).

    X is (n_samples, n_features) non-negative counts.

    Args:
        n_components: number of states K.
        startprob_prior: Dirichlet concentrations, a number or (K,).
        transmat_prior: Dirichlet concentrations, a number or (K, K).
        lambdas_prior, lambdas_weight: hmmlearn's gamma prior on the rates,
            numbers or arrays broadcastable to (K, n_features), >= 0.
        algorithm, random_state, n_iter, tol, verbose, implementation, n_init,
        devices, chunk_rows: as for :class:`GaussianHMM`.
        accelerate:
            as for :class:`GaussianHMM`.
        params, init_params: letters ``s``, ``t``, ``l`` (lambdas).
        missing: ``"raise"`` (NaN in X is a ValueError) or ``"marginalize"``:
            NaN marks a missing entry; a step with nothing observed has no
            emission term and a partly observed one marginalises its missing
            features, in ``fit``, ``score``, ``predict`` and ``decode``
            (docs/missing-values.md).

    Attributes:
        startprob_: (K,) initial state probabilities.
        transmat_: (K, K) transition probabilities.
        lambdas_: (K, n_features) rates, >= 0.
        monitor_, fit_status_, unvisited_states_, n_features_in_: as for
            :class:`GaussianHMM`.

    A rate that reaches 0 in the M-step (a state that only sees zero counts)
    is kept at the smallest positive normal number of the dtype (about
    2.2e-308 in float64) rather than 0, which changes no printed digit of
    the log-likelihood; hand-set rates of 0 are accepted (0 log 0 = 0).

    Examples:
        >>> import numpy as np, jaxem
        >>> X = np.random.default_rng(0).poisson(np.repeat([[1.0], [9.0]], 30, 0))
        >>> jaxem.PoissonHMM(2, n_iter=10, random_state=0).fit(X).lambdas_.shape
        (2, 1)
    """

    _name = "PoissonHMM"
    _letters = {"s": "startprob", "t": "transmat", "l": "lambdas"}
    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "lambdas_prior": PRIOR,
        "lambdas_weight": PRIOR,
        # missing values (docs/missing-values.md)
        "missing": [StrOptions(set(MISSING_OPTIONS))],
    }

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        lambdas_prior=0.0,
        lambdas_weight=0.0,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="stl",
        init_params="stl",
        implementation="log",
        n_init=1,
        devices=None,
        accelerate=None,
        missing="raise",
        chunk_rows=None,
    ):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.implementation = implementation
        self.n_init = n_init
        self.devices = devices
        self.accelerate = accelerate
        self.missing = missing
        self.chunk_rows = chunk_rows

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        # Counts are whole numbers: scikit-learn's checks round their data to
        # non-negative integers for this tag only.
        tags.input_tags.categorical = True
        tags.input_tags.allow_nan = self.missing == "marginalize"
        return tags

    @property
    def n_features(self) -> int:
        """Number of count features (from ``lambdas_``, or as set)."""
        if hasattr(self, "lambdas_"):
            return np.shape(np.atleast_2d(self.lambdas_))[1]
        return self._n_features

    @n_features.setter
    def n_features(self, value):
        self._n_features = value

    def _get_n_fit_scalars_per_param(self) -> dict[str, int]:
        k = self.n_components
        return {**chain_fit_scalars(k), "l": k * self.n_features}

    def _model(self, X=None):
        k, d = self.n_components, int(self.n_features if X is None else X.shape[1])
        return _models.poisson_hmm(
            k,
            d,
            startprob_prior=self.startprob_prior,
            transmat_prior=self.transmat_prior,
            parallel=_parallel_option(self.implementation),
            lambdas_prior=check_prior(
                "lambdas_prior", self.lambdas_prior, (k, d), minimum=0
            ),
            lambdas_weight=check_prior(
                "lambdas_weight", self.lambdas_weight, (k, d), minimum=0
            ),
            missing=self.missing,
        )

    def _validate_X(self, X, reset):
        X = _base.validate_X(self, X, reset=reset)
        check_non_negative(X, f"{self._name} (X: counts)")
        seen = X[~np.isnan(X)] if self.missing == "marginalize" else X
        if np.any(seen != np.round(seen)):
            raise ValueError("X: counts must be whole numbers")
        if hasattr(self, "lambdas_") and not (reset and "l" in self.init_params):
            d = np.shape(np.atleast_2d(self.lambdas_))[1]
            if X.shape[1] != d:
                raise ValueError(f"X: has {X.shape[1]} features, but lambdas_ has {d}")
        if reset:
            self._n_features = X.shape[1]
        return X

    def _to_data(self, padded):
        if self.missing == "marginalize":
            return missing_data(padded)
        return padded

    def _from_data(self, x):
        return np.asarray(x["x"] if isinstance(x, dict) else x)

    def _emission_params(self, dtype, only=None):
        # The model's rates are positive: a hand-set 0 becomes the tiniest
        # positive number, which gives the same log-likelihood.
        lam = np.asarray(self.lambdas_, dtype)
        return {"lambdas": np.maximum(lam, np.finfo(dtype).tiny)}

    def _emission_to_attributes(self, params):
        self.lambdas_ = np.array(params["lambdas"])

    def _check_emission_attributes(self):
        lam = np.asarray(self.lambdas_)
        if lam.ndim != 2 or lam.shape[0] != self.n_components:
            raise ValueError(
                f"lambdas_: expected shape ({self.n_components}, n_features), got "
                f"{lam.shape}"
            )
        if not np.all(np.isfinite(lam)) or np.any(lam < 0):
            raise ValueError("lambdas_: rates must be finite and non-negative")
