"""``GaussianMixture``: scikit-learn's estimator, over ``models.gaussian_mixture``."""

from __future__ import annotations

import functools
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from .. import constraints
from ..models import _gmm
from . import _base
from ._mixture import MixtureEstimator


class CollapsedComponentWarning(UserWarning):
    """Some components ended with (almost) no data and were held, not fitted."""


class GaussianMixture(MixtureEstimator):
    """A Gaussian mixture fitted by EM, with scikit-learn's interface.

    Same arguments, attributes and methods as
    ``sklearn.mixture.GaussianMixture``; the ``n_init`` restarts run together
    as one vmapped, compiled program. numpy in, numpy out; float32 input is
    fitted in float32, anything else in float64 (with ``jax_enable_x64``).

    Args:
        n_components: number of components K.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        tol: stop when the average log-likelihood per sample changes by less.
        reg_covar: non-negative constant added to the covariances' diagonal.
        max_iter: maximum EM iterations per restart.
        n_init: number of restarts; the best (highest likelihood) is kept.
        init_params: ``"kmeans"`` (Lloyd's algorithm), ``"k-means++"``,
            ``"random"`` or ``"random_from_data"``.
        weights_init: optional (K,) initial weights.
        means_init: optional (K, d) initial means.
        precisions_init: optional initial precisions, shaped as
            ``precisions_`` for the covariance type.
        random_state: seed (int), numpy generator or None.
        warm_start: start from the previous fit's parameters (one restart).
        verbose: show a progress display of the log-likelihood.
        verbose_interval: accepted for compatibility with scikit-learn.

    Attributes:
        weights_: (K,) mixing weights.
        means_: (K, d) means.
        covariances_: (K, d, d) full, (d, d) tied, (K, d) diag or (K,) spherical.
        precisions_, precisions_cholesky_: same shapes as ``covariances_``.
        converged_, n_iter_, lower_bound_, lower_bounds_: as in scikit-learn
            (``lower_bound_`` is the average log-likelihood at the last E-step).
        n_features_in_: d.
        collapsed_: (K,) bool, components that ended with no data (held at
            their last mean and covariance, weight near zero); a
            ``CollapsedComponentWarning`` is raised when any did.

    Examples:
        >>> import numpy as np, jaxem
        >>> X = np.array([[1.0, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
        >>> gm = jaxem.GaussianMixture(n_components=2, random_state=0).fit(X)
        >>> np.round(np.sort(gm.means_[:, 0]), 3)
        array([ 1., 10.])
    """

    _name = "GaussianMixture"

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # ------------------------------------------------------------ validation
    def _check_options(self):
        if self.covariance_type not in _gmm.COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type: expected one of {_gmm.COVARIANCE_TYPES}, got "
                f"{self.covariance_type!r}"
            )
        if self.init_params not in _gmm.INIT_METHODS:
            raise ValueError(
                f"init_params: expected one of {_gmm.INIT_METHODS}, got "
                f"{self.init_params!r}"
            )
        reg = self.reg_covar
        if (
            isinstance(reg, bool)
            or not isinstance(reg, numbers.Real)
            or not (0 <= reg < np.inf)
        ):
            raise ValueError(
                f"reg_covar: expected a finite non-negative number, got {reg!r}"
            )

    def _model(self):
        return _gmm.gaussian_mixture(
            int(self.n_components),
            int(self._n_features),
            self.covariance_type,
            float(self.reg_covar),
        )

    def _check_X(self, X, fitting):
        if fitting:
            X = _base.check_array("X", X, min_rows=max(2, self.n_components))
            self._n_features = X.shape[1]
            return X
        return _base.check_array("X", X, n_features=self.n_features_in_)

    def _to_data(self, X):
        return X

    def _check_inits(self, d, dtype):
        """Validated explicit initial values, as float arrays of ``dtype``."""
        k, ctype = self.n_components, self.covariance_type
        inits = {}
        if self.weights_init is not None:
            w = _init_array("weights_init", self.weights_init, (k,), dtype)
            problem = constraints.simplex.check(w)
            if problem:
                raise ValueError(f"weights_init: {problem}")
            inits["weights"] = w
        if self.means_init is not None:
            inits["means"] = _init_array("means_init", self.means_init, (k, d), dtype)
        if self.precisions_init is not None:
            shape = _gmm.covariance_shape(ctype, k, d)
            p = _init_array("precisions_init", self.precisions_init, shape, dtype)
            con = (
                constraints.positive_definite
                if ctype in ("full", "tied")
                else constraints.positive
            )
            problem = con.check(p)
            if problem:
                raise ValueError(f"precisions_init: {problem}")
            cov = np.linalg.inv(p) if ctype in ("full", "tied") else 1.0 / p
            if ctype in ("full", "tied"):
                cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
            inits["covariances"] = cov.astype(dtype)
        return inits

    # --------------------------------------------------------------- fitting
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with EM over ``n_init`` (vmapped) restarts.

        Args:
            X: (N, d) samples.
            y: ignored.
            sample_weight: optional (N,) non-negative weights (an integer
                weight counts as that many repeated rows).

        Returns:
            self
        """
        self._check_options()
        self._check_common()
        X = self._check_X(X, fitting=True)
        self._inits = self._check_inits(X.shape[1], X.dtype)
        super().fit(X, y, sample_weight)
        model = self._model()
        params = self._attributes_to_params(X.dtype)
        w = None if sample_weight is None else jnp.asarray(sample_weight, X.dtype)
        collapsed = _collapsed(model, params, jnp.asarray(X), w)
        self.collapsed_ = np.asarray(collapsed)
        if self.collapsed_.any():
            warnings.warn(
                f"GaussianMixture: {int(self.collapsed_.sum())} component(s) "
                f"{np.flatnonzero(self.collapsed_).tolist()} have no data left; "
                "they were held at their last mean and covariance with weight "
                "near zero. Try fewer components or another initialisation.",
                CollapsedComponentWarning,
                stacklevel=2,
            )
        return self

    def _init_params(self, key, data, weights):
        if len(self._inits) == 3:
            params = {}
        else:
            params = self._model().init(key, data, self.init_params, weights)
        return {**params, **{k: jnp.asarray(v) for k, v in self._inits.items()}}

    # ------------------------------------------------------------ attributes
    def _params_to_attributes(self, params):
        ctype = self.covariance_type
        self.weights_ = np.asarray(params["weights"])
        self.means_ = np.asarray(params["means"])
        self.covariances_ = np.asarray(params["covariances"])
        self.precisions_cholesky_ = _precision_cholesky(self.covariances_, ctype)
        pc = self.precisions_cholesky_
        if ctype in ("full", "tied"):
            self.precisions_ = pc @ np.swapaxes(pc, -1, -2)
        else:
            self.precisions_ = pc**2

    def _attributes_to_params(self, dtype):
        return {
            "weights": np.asarray(self.weights_, dtype),
            "means": np.asarray(self.means_, dtype),
            "covariances": np.asarray(self.covariances_, dtype),
        }

    def sample(self, n_samples=1):
        """Draw samples, grouped by component as scikit-learn: ``(X, labels)``."""
        X, labels = super().sample(n_samples)
        order = np.argsort(labels, kind="stable")
        return X[order], labels[order]


def _init_array(name, value, shape, dtype):
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr.astype(dtype)


def _precision_cholesky(covariances, covariance_type):
    """scikit-learn's ``precisions_cholesky_`` from covariances, in numpy."""
    if covariance_type in ("full", "tied"):
        cov = np.asarray(covariances, np.float64)
        single = cov.ndim == 2
        cov = cov[None] if single else cov
        out = np.empty_like(cov)
        eye = np.eye(cov.shape[-1])
        for k, c in enumerate(cov):
            chol = scipy.linalg.cholesky(c, lower=True)
            out[k] = scipy.linalg.solve_triangular(chol, eye, lower=True).T
        out = out[0] if single else out
        return out.astype(covariances.dtype)
    return 1.0 / np.sqrt(covariances)


@functools.partial(jax.jit, static_argnames="model")
def _collapsed(model, params, data, weights):
    return _gmm.collapsed_components(model, params, data, weights)
