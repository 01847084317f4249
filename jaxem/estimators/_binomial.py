"""``BinomialMixture``: the coin mixture as a scikit-learn-style estimator."""

from __future__ import annotations

import numpy as np

from .. import constraints
from .. import models as _models
from . import _base
from ._mixture import MixtureEstimator


class BinomialMixture(MixtureEstimator):
    """A mixture of coins: each sample is a number of heads out of ``n_trials``.

    Args:
        n_components: number of coins K.
        n_trials: tosses per sample.
        tol: stop when the average log-likelihood per sample changes by less.
        max_iter: maximum EM iterations per restart.
        n_init: number of restarts, run together as one vmapped program.
        init_params: ``"quantiles"`` (head rates at spread quantiles of the
            data) or ``"random"`` (random responsibilities).
        weights_init: optional (K,) initial mixing weights.
        p_init: optional (K,) initial head probabilities.
        random_state: seed (int), numpy generator or None.
        warm_start: start from the previous fit's parameters.
        verbose: print the log-likelihood at each iteration.

    Attributes:
        weights_: (K,) mixing weights.
        p_: (K,) probability of heads of each coin.
        converged_, n_iter_, lower_bound_: as in scikit-learn.

    Examples:
        >>> import numpy as np, jaxem
        >>> X = np.array([[5], [9], [8], [4], [7]])
        >>> est = jaxem.BinomialMixture(2, n_trials=10, random_state=0).fit(X)
        >>> est.predict_proba(X).shape
        (5, 2)
    """

    _name = "BinomialMixture"

    def __init__(
        self,
        n_components=2,
        n_trials=1,
        *,
        tol=1e-3,
        max_iter=100,
        n_init=1,
        init_params="quantiles",
        weights_init=None,
        p_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
    ):
        self.n_components = n_components
        self.n_trials = n_trials
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.p_init = p_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    def _model(self):
        _base.check_positive_int("n_trials", self.n_trials)
        return _models.binomial_mixture(int(self.n_components), int(self.n_trials))

    def _check_X(self, X, fitting):
        X = _base.check_array(
            "X",
            X,
            min_rows=self.n_components if fitting else 1,
            n_features=1,
        )
        if np.any(X < 0) or np.any(X > self.n_trials) or np.any(X != np.round(X)):
            raise ValueError(
                f"X: head counts must be whole numbers in [0, n_trials={self.n_trials}]"
            )
        if fitting and self.init_params not in ("quantiles", "random"):
            raise ValueError(
                "init_params: expected 'quantiles' or 'random', got "
                f"{self.init_params!r}"
            )
        return X

    def _to_data(self, X):
        return X[:, 0]

    def _from_data(self, x):
        return x.reshape(-1, 1)

    def _init_params(self, key, data, weights):
        params = self._model().init(key, data, method=self.init_params)
        dtype = data.dtype
        if self.weights_init is not None:
            params["weights"] = np.asarray(self.weights_init, dtype)
        if self.p_init is not None:
            params["p"] = np.asarray(self.p_init, dtype)
        return params

    def fit(self, X, y=None, sample_weight=None):
        k = self.n_components
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, float)
            if w.shape != (k,):
                raise ValueError(f"weights_init: expected shape ({k},), got {w.shape}")
            problem = constraints.simplex.check(w)
            if problem:
                raise ValueError(f"weights_init: {problem}")
        if self.p_init is not None:
            p = np.asarray(self.p_init, float)
            if p.shape != (k,):
                raise ValueError(f"p_init: expected shape ({k},), got {p.shape}")
            problem = constraints.unit_interval.check(p)
            if problem:
                raise ValueError(f"p_init: {problem}")
        return super().fit(X, y, sample_weight)

    def _params_to_attributes(self, params):
        self.weights_ = params["weights"]
        self.p_ = params["p"]

    def _attributes_to_params(self, dtype):
        return {
            "weights": np.asarray(self.weights_, dtype),
            "p": np.asarray(self.p_, dtype),
        }
