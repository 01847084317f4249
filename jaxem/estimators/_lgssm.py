"""``LinearGaussianSSM``: a Kalman-smoother EM estimator in hmmlearn's layout."""

from __future__ import annotations

import functools
import numbers

import jax
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _buckets
from .. import _fit as _fitmod
from .. import models as _models
from .._io import SaveLoadMixin
from . import _base
from . import _hmm_sequences as _seq

_KEYS = (
    "initial_mean",
    "initial_cov",
    "transition_matrix",
    "transition_bias",
    "transition_cov",
    "emission_matrix",
    "emission_bias",
    "emission_cov",
)


@functools.partial(jax.jit, static_argnums=0)
def _filter(model, params, data, lengths):
    return model.latent.filter(model, params, data, lengths)


class LinearGaussianSSM(SaveLoadMixin, BaseEstimator):
    """A linear-Gaussian state-space model fitted by EM (Kalman smoother).

    The model is ``jaxem.models.linear_gaussian_ssm``: a latent state z_t of
    size ``state_dim`` with linear-Gaussian dynamics and observations. X is
    hmmlearn's layout: the sequences concatenated, with ``lengths``.

    Args:
        state_dim: size of the latent state.
        n_iter: maximum EM iterations.
        tol: stop when the total log-likelihood gains less than ``tol``.
        reg_covar: added to the diagonal of every fitted covariance.
        init_params: ``"pca"`` (emission loadings on the principal directions
            of X) or ``"random"``.
        random_state: seed (int), numpy generator or None.

    Attributes:
        initial_mean_, initial_cov_: (s,), (s, s) distribution of z_0.
        transition_matrix_, transition_bias_, transition_cov_: (s, s), (s,),
            (s, s) dynamics z_t = A z_{t-1} + b + noise.
        emission_matrix_, emission_bias_, emission_cov_: (o, s), (o,), (o, o)
            observations x_t = C z_t + d + noise.
        loglike_: total log-likelihood at each iteration (a list).
        n_iter_: iterations run. converged_: whether ``tol`` was met.

    Examples:
        >>> import numpy as np, jaxem
        >>> rng = np.random.default_rng(0)
        >>> walk = np.cumsum(rng.normal(size=(60, 1)), axis=0)
        >>> X = np.hstack([walk, 2 * walk]) + 0.1 * rng.normal(size=(60, 2))
        >>> ssm = jaxem.LinearGaussianSSM(1, n_iter=20).fit(X, [30, 30])
        >>> means, covs = ssm.smooth(X, [30, 30])
        >>> means.shape, covs.shape
        ((60, 1), (60, 1, 1))
        >>> ssm.filter(X, [30, 30])[0].shape     # the Kalman filter
        (60, 1)
    """

    _parameter_constraints: dict = {
        "state_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_iter": [Interval(numbers.Integral, 1, _base.MAX_ITER, closed="both")],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "init_params": [StrOptions({"pca", "random"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        state_dim=1,
        *,
        n_iter=100,
        tol=1e-2,
        reg_covar=1e-8,
        init_params="pca",
        random_state=None,
    ):
        self.state_dim = state_dim
        self.n_iter = n_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.random_state = random_state

    def _model(self):
        obs_dim = self.emission_matrix_.shape[0]
        return _models.linear_gaussian_ssm(
            self.state_dim, obs_dim, reg_covar=float(self.reg_covar)
        )

    def _sequences(self, X, lengths, reset):
        X = validate_data(
            self, X, reset=reset, dtype=[np.float64, np.float32], ensure_min_samples=1
        )
        lengths = _seq.lengths_or_y(lengths, X.shape[0])
        return X, _seq.to_padded(X, lengths), lengths

    def fit(self, X, lengths=None):
        """Fit by EM from X (n_samples, o) and sequence ``lengths``; returns self."""
        self._validate_params()
        X, padded, lengths = self._sequences(X, lengths, reset=True)
        with _base.precision_for(X.dtype):
            model = _models.linear_gaussian_ssm(
                self.state_dim, X.shape[1], reg_covar=float(self.reg_covar)
            )
            key = _base.check_random_state(self.random_state)
            params0 = model.init(key, padded, lengths, method=self.init_params)
            result = _fitmod.fit(
                model,
                params0,
                padded,
                lengths=lengths,
                max_iter=self.n_iter,
                tol=self.tol / X.shape[0],
            )
            params = jax.tree.map(np.asarray, result.params)
            history = np.asarray(result.history)
        if int(result.status) == _fitmod.Status.NONFINITE:
            raise _base.FitError(
                "LinearGaussianSSM: the log-likelihood became non-finite; check "
                "the data scale or raise reg_covar"
            )
        for key in _KEYS:
            setattr(self, key + "_", params[key])
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        self.loglike_ = [float(v) for v in history[: self.n_iter_]]
        return self

    def _params(self):
        return {key: getattr(self, key + "_") for key in _KEYS}

    def _attributes_to_params(self, dtype):
        return {k: np.asarray(v, dtype) for k, v in self._params().items()}

    def smooth(self, X, lengths=None):
        """Smoothed state means (n_samples, s) and covariances (n_samples, s, s)."""
        check_is_fitted(self)
        X, padded, lengths = self._sequences(X, lengths, reset=False)
        with _base.precision_for(X.dtype):
            post = _fitmod.posterior(
                self._model(), self._params(), padded, lengths=lengths
            )
            valid = _seq.valid_steps(lengths)
            return np.asarray(post.mean)[valid], np.asarray(post.cov)[valid]

    def filter(self, X, lengths=None):
        """Filtered state means (n_samples, s) and covariances (n_samples, s, s).

        The Kalman filter: step t of a sequence is p(z_t | x_0, ..., x_t).
        The sequences are padded to a size bucket, so a new number of
        sequences or steps rarely compiles anew.
        """
        check_is_fitted(self)
        X, padded, lengths = self._sequences(X, lengths, reset=False)
        with _base.precision_for(X.dtype):
            data, bucketed, _ = _buckets.pad_sequences(padded, lengths, None)
            mean, cov = _filter(self._model(), self._params(), data, bucketed)
            valid = _seq.valid_steps(lengths)
            b, t = padded.shape[:2]
            mean, cov = np.asarray(mean)[:b, :t], np.asarray(cov)[:b, :t]
            return mean[valid], cov[valid]

    def score(self, X, lengths=None):
        """Total log-likelihood of the sequences in X (hmmlearn's ``score``)."""
        check_is_fitted(self)
        X, padded, lengths = self._sequences(X, lengths, reset=False)
        with _base.precision_for(X.dtype):
            return float(
                _fitmod.log_likelihood(
                    self._model(), self._params(), padded, lengths=lengths
                )
            )

    def sample(self, n_samples=1, random_state=None):
        """One sequence of ``n_samples`` steps: (X (n, o), states (n, s))."""
        check_is_fitted(self)
        n_samples = _base.check_positive_int("n_samples", n_samples)
        dtype = self.emission_matrix_.dtype
        with _base.precision_for(dtype):
            key = _base.check_random_state(
                self.random_state if random_state is None else random_state
            )
            x, z = self._model().sample(key, self._params(), n_samples)
            return np.asarray(x, dtype), np.asarray(z, dtype)
