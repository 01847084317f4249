"""``FactorAnalysis``: scikit-learn's estimator, fitted by jaxem's exact EM."""

from __future__ import annotations

import numbers
import warnings

import jax
import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _fit as _fitmod
from .. import models as _models
from .._io import SaveLoadMixin
from . import _base

_LOG_2PI = np.log(2 * np.pi)


class FactorAnalysis(
    SaveLoadMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Factor analysis (``sklearn.decomposition.FactorAnalysis``) fitted by EM.

    The model is ``jaxem.models.factor_analysis``: z ~ N(0, I_k),
    x | z ~ N(mean_ + components_.T z, diag(noise_variance_)), fitted by exact
    EM (the posterior of z derived by autodiff, a closed-form M-step) as one
    compiled loop. The arguments, attributes and methods are scikit-learn's,
    so code written for scikit-learn runs with the import changed; the
    optimum is the same maximum-likelihood solution.

    Args:
        n_components: number of factors k (None: as many as features).
        tol: stop when the total log-likelihood gains less than ``tol`` in an
            iteration (scikit-learn's rule).
        copy: accepted for compatibility (X is never modified).
        max_iter: maximum EM iterations.
        noise_variance_init: optional (d,) initial noise variances.
        svd_method, iterated_power: accepted for compatibility; EM starts from
            the eigendecomposition of the sample covariance.
        rotation: None, ``"varimax"`` or ``"quartimax"``: rotate the fitted
            components as scikit-learn does.
        random_state: accepted for compatibility (the start is deterministic).

    Attributes:
        components_: (k, d) loadings.
        noise_variance_: (d,) noise variance of each feature.
        mean_: (d,) feature means.
        loglike_: total log-likelihood after each iteration (a list).
        n_iter_: number of iterations run.
        n_features_in_: number of features seen in ``fit``.

    Examples:
        >>> import numpy as np, jaxem
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 5))
        >>> X += 0.3 * rng.normal(size=(200, 5))
        >>> fa = jaxem.FactorAnalysis(2).fit(X)
        >>> fa.components_.shape, fa.transform(X).shape
        ((2, 5), (200, 2))
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "copy": ["boolean"],
        "max_iter": [Interval(numbers.Integral, 1, _base.MAX_ITER, closed="both")],
        "noise_variance_init": ["array-like", None],
        "svd_method": [StrOptions({"randomized", "lapack"})],
        "iterated_power": [Interval(numbers.Integral, 0, None, closed="left")],
        "rotation": [StrOptions({"varimax", "quartimax"}), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_components=None,
        *,
        tol=1e-2,
        copy=True,
        max_iter=1000,
        noise_variance_init=None,
        svd_method="randomized",
        iterated_power=3,
        rotation=None,
        random_state=0,
    ):
        self.n_components = n_components
        self.tol = tol
        self.copy = copy
        self.max_iter = max_iter
        self.noise_variance_init = noise_variance_init
        self.svd_method = svd_method
        self.iterated_power = iterated_power
        self.rotation = rotation
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit the factor model to X (N, d) by EM; returns ``self``."""
        self._validate_params()
        X = validate_data(
            self, X, reset=True, dtype=[np.float64, np.float32], ensure_min_samples=2
        )
        n, d = X.shape
        k = d if self.n_components is None else self.n_components
        psi0 = self._initial_noise(d, X.dtype)
        with _base.precision_for(X.dtype):
            model = _models.factor_analysis(k, d)
            params0 = model.init(None, X)
            if psi0 is not None:
                params0 = {**params0, "noise_variance": psi0}
            result = _fitmod.fit(
                model, params0, X, max_iter=self.max_iter, tol=self.tol / n
            )
            params = jax.tree.map(np.asarray, result.params)
            history = np.asarray(result.history)
        n_iter = int(result.n_iter)
        if int(result.status) == _fitmod.Status.NONFINITE:
            raise _base.FitError(
                "FactorAnalysis: the log-likelihood became non-finite; check the "
                "data scale or noise_variance_init"
            )
        if not bool(result.converged):
            warnings.warn(
                "FactorAnalysis did not converge. You might want to increase the "
                "number of iterations.",
                _base.ConvergenceWarning,
                stacklevel=2,
            )
        self.components_ = params["components"]
        if self.rotation is not None:
            self.components_ = _ortho_rotation(self.components_.T, self.rotation)
        self.noise_variance_ = params["noise_variance"]
        self.mean_ = params["mean"]
        self.loglike_ = [float(v) for v in history[:n_iter]]
        self.n_iter_ = n_iter
        return self

    def _initial_noise(self, d, dtype):
        if self.noise_variance_init is None:
            return None
        psi = np.asarray(self.noise_variance_init, dtype=dtype)
        if psi.shape != (d,):
            raise ValueError(
                f"noise_variance_init: expected shape ({d},) (one per feature), "
                f"got {psi.shape}"
            )
        if not np.all(np.isfinite(psi)) or np.any(psi <= 0):
            raise ValueError("noise_variance_init: must be finite and positive")
        return psi

    # ------------------------------------------------------------ inference
    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def transform(self, X):
        """Posterior means E[z | x] (N, k) of the factors."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        w = self.components_
        w_psi = w / self.noise_variance_
        cov_z = np.linalg.inv(np.eye(w.shape[0], dtype=w.dtype) + w_psi @ w.T)
        return ((X - self.mean_) @ w_psi.T @ cov_z).astype(w.dtype)

    def get_covariance(self):
        """Model covariance of the data, ``components_.T @ components_ + diag(psi)``."""
        check_is_fitted(self)
        cov = self.components_.T @ self.components_
        return cov + np.diag(self.noise_variance_)

    def get_precision(self):
        """Inverse of :meth:`get_covariance` (by the matrix inversion lemma)."""
        check_is_fitted(self)
        w, psi = self.components_, self.noise_variance_
        inner = np.eye(w.shape[0], dtype=w.dtype) + (w / psi) @ w.T
        middle = w.T @ np.linalg.solve(inner, w)
        return np.diag(1.0 / psi) - middle / psi[:, None] / psi[None, :]

    def score_samples(self, X):
        """Log-likelihood of each sample (N,) under the fitted model."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        xr = X - self.mean_
        precision = self.get_precision()
        _, log_det = np.linalg.slogdet(precision)
        maha = np.sum(xr * (xr @ precision), axis=1)
        return -0.5 * (maha + X.shape[1] * _LOG_2PI - log_det)

    def score(self, X, y=None):
        """Average log-likelihood of the samples."""
        return float(np.mean(self.score_samples(X)))

    # ------------------------------------------------------------- save/load
    def _model(self):
        return _models.factor_analysis(*self.components_.shape)

    def _attributes_to_params(self, dtype):
        return {
            "components": np.asarray(self.components_, dtype),
            "mean": np.asarray(self.mean_, dtype),
            "noise_variance": np.asarray(self.noise_variance_, dtype),
        }


def _ortho_rotation(components, method="varimax", tol=1e-6, max_iter=100):
    """Varimax / quartimax rotation of (d, k) loadings; returns (k, d).

    Kaiser's orthogonal rotation, as scikit-learn applies it.
    """
    nrow, ncol = components.shape
    rotation = np.eye(ncol)
    var = 0.0
    for _ in range(max_iter):
        rotated = components @ rotation
        tmp = rotated * ((rotated**2).sum(axis=0) / nrow) if method == "varimax" else 0
        u, s, v = np.linalg.svd(components.T @ (rotated**3 - tmp))
        rotation = u @ v
        var_new = np.sum(s)
        if var != 0 and var_new < var * (1 + tol):
            break
        var = var_new
    return (components @ rotation).T
