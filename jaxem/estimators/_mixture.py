"""A base class for scikit-learn-style mixture estimators (Categorical latent)."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from .. import _fit as _fitmod
from .._io import SaveLoadMixin
from . import _base


class MixtureEstimator(_base.EstimatorParams, SaveLoadMixin):
    """Shared ``fit``/``predict``/``score`` logic over a prebuilt mixture model.

    Subclasses implement:

    - ``_model()``: the ``LatentModel``;
    - ``_check_X(X, fitting)``: validated numpy array, (N, ...) float;
    - ``_to_data(X)``: the model's data array from a validated X;
    - ``_init_params(key, data, weights)``: initial params of ONE restart
      (jittable, so restarts vmap);
    - ``_params_to_attributes(params)`` / ``_attributes_to_params(dtype)``.
    """

    _name = "Mixture"

    def _check_common(self):
        self.n_components = _base.check_positive_int("n_components", self.n_components)
        _base.check_positive_int("max_iter", self.max_iter)
        _base.check_positive_int("n_init", self.n_init)
        _base.check_tol("tol", self.tol)

    # ----------------------------------------------------------------- fitting
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with EM over ``n_init`` restarts (vmapped).

        Args:
            X: (N, ...) samples.
            y: ignored (scikit-learn compatibility).
            sample_weight: optional (N,) non-negative weights.

        Returns:
            self
        """
        self._check_common()
        X = self._check_X(X, fitting=True)
        data = self._to_data(X)
        w = _base.check_sample_weight(sample_weight, X.shape[0], X.dtype)
        weights = _base.as_jax(w)
        model = self._model()
        warm = getattr(self, "warm_start", False) and self._is_fitted()
        if warm:
            params = self._attributes_to_params(X.dtype)
            params0 = jax.tree.map(lambda a: a[None], params)
            n_init = 1
        else:
            n_init = self.n_init
            keys = jax.random.split(_base.check_random_state(self.random_state), n_init)
            params0 = jax.vmap(lambda k: self._init_params(k, data, weights))(keys)
        model.latent.validate(model, data, weights)
        progress = (
            _base.progress_printer(self._name, self.max_iter)
            if getattr(self, "verbose", 0)
            else contextlib.nullcontext()
        )
        with progress as callback:
            results = _base.fit_restarts(
                model,
                params0,
                data,
                weights,
                None,
                jnp.asarray(self.tol, X.dtype),
                max_iter=self.max_iter,
                callback=callback,
            )
        best = _base.best_restart(results)
        result = _base.take(results, best)
        self._set_fit_result(result, model.latent.num_observations(data, weights))
        self._params_to_attributes(jax.tree.map(np.asarray, result.params))
        self.n_features_in_ = X.shape[1] if X.ndim > 1 else 1
        self._fit_dtype = X.dtype
        if not self.converged_:
            _base.warn_not_converged(self._name, n_init)
        return self

    def _set_fit_result(self, result: _fitmod.FitResult, n_obs):
        n_iter = int(result.n_iter)
        history = np.asarray(result.history)
        n_obs = float(n_obs)
        self.converged_ = bool(result.converged)
        self.n_iter_ = n_iter
        # scikit-learn's lower_bound_: the average log-likelihood at the last
        # E-step, i.e. of the parameters before the final M-step.
        self.lower_bound_ = float(history[n_iter - 1] / n_obs) if n_iter else np.nan
        self.lower_bounds_ = list(history[:n_iter] / n_obs)
        self.log_likelihood_ = float(result.log_likelihood)
        self.fit_status_ = _fitmod.Status(int(result.status))

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most likely component of each sample (N,)."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    # --------------------------------------------------------------- inference
    def _is_fitted(self) -> bool:
        return hasattr(self, "converged_")

    def _check_fitted(self):
        if not self._is_fitted():
            raise _base.NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit "
                "first."
            )

    def _table(self, X) -> jax.Array:
        """(N, K) log p(x_n, z=k) under the fitted parameters."""
        self._check_fitted()
        X = self._check_X(X, fitting=False)
        model = self._model()
        params = self._attributes_to_params(X.dtype)
        return _log_joint_table(model, params, self._to_data(X))

    def score_samples(self, X) -> np.ndarray:
        """Log-likelihood of each sample, (N,)."""
        return np.asarray(jax.nn.logsumexp(self._table(X), axis=-1))

    def score(self, X, y=None) -> float:
        """Average log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component, (N, K); rows sum to 1."""
        return np.asarray(jax.nn.softmax(self._table(X), axis=-1))

    def predict(self, X) -> np.ndarray:
        """Most likely component of each sample, (N,) int."""
        return np.asarray(jnp.argmax(self._table(X), axis=-1))

    def sample(self, n_samples: int = 1):
        """Draw ``n_samples`` from the fitted mixture: ``(X, labels)``."""
        self._check_fitted()
        n_samples = _base.check_positive_int("n_samples", n_samples)
        params = self._attributes_to_params(self._fit_dtype)
        key = _base.check_random_state(getattr(self, "random_state", None))
        x, z = self._model().sample(key, params, n_samples)
        return self._from_data(np.asarray(x)), np.asarray(z)

    def _from_data(self, x):
        return x

    def _n_parameters(self) -> int:
        params = self._attributes_to_params(self._fit_dtype)
        return self._model().num_free_parameters(params)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        X = self._check_X(X, fitting=False)
        n = X.shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        X = self._check_X(X, fitting=False)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()


def _log_joint_table_impl(model, params, data):
    return model.latent.table(model, params, data)


_log_joint_table = jax.jit(_log_joint_table_impl, static_argnames="model")
