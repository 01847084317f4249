"""``GaussianMixture``: scikit-learn's estimator, over ``models.gaussian_mixture``."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import jax.numpy as jnp
import numpy as np
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
from sklearn.utils._param_validation import Interval, StrOptions

from .. import _buckets
from ..models import _gmm, _gmm_missing
from . import _base, _labels, _streaming
from ._mixture import CollapsedComponentWarning, MixtureEstimator, draw_restarts

__all__ = ["CollapsedComponentWarning", "GaussianMixture"]

ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed "
    "samples). Try to decrease the number of components, increase reg_covar, or "
    "scale the input data."
)
"""scikit-learn's message (its tests match it) for a singular covariance."""


class GaussianMixture(MixtureEstimator):
    """A Gaussian mixture fitted by EM: ``sklearn.mixture.GaussianMixture``.

    Same arguments, attributes, methods, messages, warnings and exceptions as
    scikit-learn's (it is a scikit-learn estimator: ``clone``, ``GridSearchCV``,
    ``Pipeline`` and ``check_estimator`` work). The ``n_init`` restarts run
    together as one vmapped, compiled program. The dtype follows the input:
    float64 in, float64 fit and attributes (whatever ``jax_enable_x64`` says;
    the setting is scoped to the fit, never changed); float32 stays float32.

    Differences from scikit-learn, on purpose:

    - ``init_params="kmeans"`` runs jaxem's compiled Lloyd's algorithm (one
      k-means++ start), not ``sklearn.cluster.KMeans``, and the random draws
      come from JAX: the same ``random_state`` gives another (equally valid)
      start than scikit-learn's. From identical explicit starts
      (``weights_init``, ``means_init``, ``precisions_init``) the fits agree
      to round-off.
    - A component that loses all its data is held at its last mean and
      covariance with a weight near zero (``collapsed_``, a
      ``CollapsedComponentWarning``) instead of turning singular.
    - Ill-defined covariances (``reg_covar=0`` on singleton or duplicated
      points) raise scikit-learn's ``ValueError`` by scikit-learn's own test
      (a covariance that is not positive definite), also a
      ``jaxem.estimators.FitError``. jaxem's statistics are centred, so a
      collapsed component has a variance of exactly 0 where scikit-learn's
      round-off may leave a tiny positive one (and a fit that goes on).
    - A fit whose next log-likelihood turns NaN or infinite stops there and
      keeps the last parameters with a finite one: ``converged_`` is False,
      ``fit_status_`` is ``Status.NONFINITE`` and a ``ConvergenceWarning``
      says so. When that happens in every restart before ``max_iter``, ``fit``
      raises (the message above with ``reg_covar=0``).
    - ``lower_bound_`` can differ in the last bit between ``n_init=1`` and
      ``n_init>1`` from the same start (restarts run as one vmapped program).
    - ``fit`` also takes ``sample_weight`` (integer weights act as repeated
      rows); ``max_iter`` is at most ``1_000_000`` and ``n_init`` at most
      ``10_000``.
    - ``verbose`` shows a progress bar (tqdm when installed) of the
      log-likelihood; ``verbose_interval`` is accepted and ignored.

    Args:
        n_components: number of components K.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        tol: stop when the average log-likelihood per sample changes by less.
        reg_covar: non-negative constant added to the covariances' diagonal.
        max_iter: maximum EM iterations per restart; 0 returns the
            initialisation.
        n_init: number of restarts; the one with the highest lower bound is
            kept.
        init_params: ``"kmeans"`` (Lloyd's algorithm), ``"k-means++"``,
            ``"random"`` or ``"random_from_data"``.
        weights_init: optional (K,) initial weights.
        means_init: optional (K, d) initial means.
        precisions_init: optional initial precisions, shaped as
            ``precisions_`` for the covariance type.
        random_state: None, an int, a numpy ``RandomState``/``Generator``.
        warm_start: start from the previous fit's parameters (one restart).
        verbose: show a progress display of the log-likelihood.
        verbose_interval: accepted for compatibility with scikit-learn.
        weights_prior, means_prior, means_weight, covars_prior, covars_weight:
            conjugate priors (MAP-EM; not in scikit-learn): a Dirichlet
            concentration on the weights (a number or (K,), >= 1) and
            hmmlearn's normal / inverse-Wishart prior on the means and
            covariances, as ``jaxem.models.gaussian_mixture`` documents
            (``docs/priors.md``). The defaults are no prior (scikit-learn's
            fit). With a prior, ``lower_bound_`` and ``lower_bounds_`` are the
            average log-posterior (log-likelihood + log-prior, per sample), the
            objective EM then maximises; ``log_likelihood_`` stays the
            log-likelihood.
        devices: None (the default device), ``"all"``, an int n (the first
            n of ``jax.devices()``) or a list of jax devices or device ids:
            the fit shards the data along the observation axis over them
            (``jaxem.shard``) and equals the one-device fit; see docs/scale.md
            (give a count or ids to an estimator that scikit-learn clones).
        chunk_rows: None, or stream X through exact EM this many rows at a
            time (``jaxem.fit_chunked``) instead of holding it in memory; a
            ``numpy.memmap`` X over 256 MiB streams by itself (65536 rows a
            chunk). Same iterates as in memory; initialisation on a sample of
            ``chunk_rows`` rows (see docs/scale.md). With ``devices``,
            every chunk is spread over the devices; with ``devices="all"``
            under ``jax.distributed`` (several processes), each process
            streams its own share of X's rows. Scoring and prediction read
            such an X in chunks too.
        accelerate: None for plain EM, or ``"squarem"`` (``jaxem.fit``'s
            SQUAREM: the same optimum in fewer EM steps on slow fits;
            ``n_iter_`` then counts SQUAREM cycles of three EM steps).
        semi_supervised: read ``fit``'s ``y`` as partial labels (component
            index, -1 for unlabelled; see ``fit``); False: ``y`` is ignored.
        missing: ``"raise"`` (NaN in X is a ValueError) or ``"marginalize"``:
            NaN marks a missing entry, marginalised exactly in the fit and in
            ``score``/``predict``/``predict_proba`` (docs/missing-values.md).

    Attributes:
        weights_: (K,) mixing weights.
        means_: (K, d) means.
        covariances_: (K, d, d) full, (d, d) tied, (K, d) diag or (K,) spherical.
        precisions_, precisions_cholesky_: same shapes as ``covariances_``.
        converged_, n_iter_, lower_bound_, lower_bounds_: as in scikit-learn
            (``lower_bound_`` is the average log-likelihood at the last E-step
            of the kept restart; ``-inf`` when ``max_iter=0``).
        log_likelihood_: total log-likelihood of the fitted parameters.
        fit_status_: a ``jaxem.Status``.
        n_features_in_: d; feature_names_in_: column names of a DataFrame X.
        collapsed_: (K,) bool, components that ended with no data.

    Raises:
        sklearn.utils._param_validation.InvalidParameterError: (a
            ``ValueError``) a constructor argument of the wrong type or range,
            at ``fit``.
        ValueError: bad X, ``n_components`` > number of samples, initial
            values of the wrong shape or outside their domain, ill-defined
            covariances (increase ``reg_covar``).

    Examples:
        >>> import numpy as np, jaxem
        >>> X = np.array([[1.0, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
        >>> gm = jaxem.GaussianMixture(n_components=2, random_state=0).fit(X)
        >>> np.round(np.sort(gm.means_[:, 0]), 3)
        array([ 1., 10.])
        >>> gm.means_.dtype
        dtype('float64')
    """

    _name = "GaussianMixture"

    _parameter_constraints: dict = {
        **MixtureEstimator._parameter_constraints,
        "covariance_type": [StrOptions(set(_gmm.COVARIANCE_TYPES))],
        "reg_covar": [Interval(Real, 0.0, np.inf, closed="left")],
        "init_params": [StrOptions(set(_gmm.INIT_METHODS))],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        # MAP-EM priors (values checked by models.gaussian_mixture).
        "weights_prior": [Interval(Real, 1.0, None, closed="left"), "array-like"],
        "means_prior": [Real, "array-like"],
        "means_weight": [Interval(Real, 0.0, None, closed="left"), "array-like"],
        "covars_prior": [Interval(Real, 0.0, None, closed="left"), "array-like"],
        "covars_weight": [Interval(Real, 0.0, None, closed="left"), "array-like"],
        "chunk_rows": [None, Interval(Integral, 1, None, closed="left")],
        # missing values (docs/missing-values.md)
        "missing": [StrOptions(set(_gmm_missing.MISSING_OPTIONS))],
    }

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
        weights_prior=1.0,
        means_prior=0.0,
        means_weight=0.0,
        covars_prior=0.0,
        covars_weight=1.0,
        devices=None,
        chunk_rows=None,
        accelerate=None,
        semi_supervised=False,
        missing="raise",
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
        self.weights_prior = weights_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.devices = devices
        self.chunk_rows = chunk_rows
        self.accelerate = accelerate
        self.semi_supervised = semi_supervised
        self.missing = missing

    def _model(self, n_features):
        return _gmm.gaussian_mixture(
            int(self.n_components),
            int(n_features),
            self.covariance_type,
            float(self.reg_covar),
            weights_prior=self.weights_prior,
            means_prior=self.means_prior,
            means_weight=self.means_weight,
            covars_prior=self.covars_prior,
            covars_weight=self.covars_weight,
            missing=self.missing,
        )

    def _check_X(self, X):
        return X

    def _to_data(self, X):
        if self.missing == "marginalize":
            return _gmm_missing.missing_data(X)
        return X

    def _from_data(self, x):
        return x["x"] if isinstance(x, dict) else x

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.missing == "marginalize"
        return tags

    def _check_parameters(self, X):
        """Explicit initial values, with scikit-learn's messages (its tests
        match them), as arrays of X's dtype."""
        k, d, ctype = self.n_components, X.shape[1], self.covariance_type
        inits = {}
        if self.weights_init is not None:
            inits["weights"] = _check_weights(self.weights_init, k).astype(X.dtype)
        if self.means_init is not None:
            means = _as_float("means_init", self.means_init)
            _check_shape("means_init", means, (k, d), "means")
            inits["means"] = means.astype(X.dtype)
        if self.precisions_init is not None:
            p = _check_precisions(self.precisions_init, ctype, k, d)
            cov = np.linalg.inv(p) if ctype in ("full", "tied") else 1.0 / p
            if ctype in ("full", "tied"):
                cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
            inits["covariances"] = cov.astype(X.dtype)
        self._inits = inits

    # --------------------------------------------------------------- fitting
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with EM over ``n_init`` (vmapped) restarts.

        Args:
            X: (N, d) samples.
            y: with ``semi_supervised=True``, optional (N,) partial labels:
                a component index in [0, K), or -1 for an unlabelled sample
                (labelled samples are clamped to their component, see
                ``docs/labels.md``); a labelled component starts at the mean
                of its labelled samples (unless ``means_init`` is given).
                Ignored when ``semi_supervised`` is False (the default).
            sample_weight: optional (N,) non-negative weights (an integer
                weight counts as that many repeated rows).

        Returns:
            self

        Raises:
            ValueError: bad arguments or X; ill-defined covariances (increase
                ``reg_covar``).
        """
        if _streaming.streams(self, X):  # larger than memory: exact EM in chunks
            return _streaming.fit(self, X, sample_weight, CollapsedComponentWarning, y)
        super().fit(X, y, sample_weight)
        if self.n_iter_ > 0:
            X = _base.validate_X(self, X, reset=False).astype(self._fit_dtype)
            self._check_collapsed(X, sample_weight)
        return self

    def _check_collapsed(self, X, sample_weight):
        """``collapsed_``: components whose responsibility mass is below the
        round-off of the total (``models.collapsed_components``' rule), from
        the padded scoring program that ``predict`` and ``score`` share."""
        w = _base.sample_weights(sample_weight, X)
        _, log_resp = self._validated_log_resp(X)
        resp = np.exp(log_resp)
        nk = (resp if w is None else resp * w[:, None]).sum(axis=0)
        eps = np.finfo(nk.dtype).eps
        self.collapsed_ = nk <= 10 * eps * max(float(nk.sum()), 1.0)
        if self.collapsed_.any():
            warnings.warn(
                f"GaussianMixture: {int(self.collapsed_.sum())} component(s) "
                f"{np.flatnonzero(self.collapsed_).tolist()} have no data left; "
                "they were held at their last mean and covariance with weight "
                "near zero. Try fewer components or another initialisation.",
                CollapsedComponentWarning,
                stacklevel=2,
            )

    def _initial_params(self, key, X, w):
        """(n_init, ...) starts: one compiled program for every data size of
        a size bucket (the data padded with rows of weight 0, which
        ``models.gaussian_mixture``'s initialiser never draws), then the
        explicit initial values over the drawn ones."""
        n_init = int(self.n_init)
        inits = {
            name: np.broadcast_to(value, (n_init,) + value.shape)
            for name, value in self._inits.items()
        }
        if len(inits) == 3:
            return inits
        data, weights, mask = _buckets.pad_observations(self._to_data(X), w, X.dtype)
        restarts = np.arange(n_init, dtype=np.int32)
        drawn = draw_restarts(
            self._model(X.shape[1]),
            self.init_params,
            key,
            restarts,
            data,
            weights,
            mask,
        )
        return {**drawn, **inits}

    def _init_params(self, key, data, weights):
        if len(self._inits) == 3:
            params = {}
        else:
            params = self._model(self.n_features_in_).init(
                key, data, self.init_params, weights
            )
        return {**params, **{k: jnp.asarray(v) for k, v in self._inits.items()}}

    def _label_init(self, params0, X, labels, chunk_rows=None):
        if "means" in self._inits:
            return params0
        k = self.n_components
        means, counts = _labels.labelled_means(X, labels, k, chunk_rows)
        known = counts > 0  # (K, d): NaN (missing) entries left out
        return {**params0, "means": jnp.where(known, means, params0["means"])}

    def _no_finite_restart(self, X):
        if self.reg_covar == 0:
            return _base.FitError(ILL_DEFINED)
        return _base.FitError(
            "GaussianMixture: every initialization stopped on a NaN or infinite "
            "log-likelihood before max_iter; increase reg_covar or scale the "
            "input data."
        )

    # ------------------------------------------------------------ attributes
    def _params_to_attributes(self, params):
        ctype = self.covariance_type
        covariances = np.asarray(params["covariances"])
        try:
            pc = _compute_precision_cholesky(covariances, ctype)
        except ValueError as err:  # scikit-learn's own ill-defined error
            raise _base.FitError(str(err)) from None
        self.weights_ = np.asarray(params["weights"])
        self.means_ = np.asarray(params["means"])
        self.covariances_ = covariances
        self.precisions_cholesky_ = pc
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
        """Draw samples, grouped by component as scikit-learn: ``(X, labels)``.

        Raises:
            ValueError: ``n_samples`` < 1 (scikit-learn's message).
        """
        X, labels = super().sample(n_samples)
        order = np.argsort(labels, kind="stable")
        return X[order], labels[order]


def _as_float(name, value) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot be read as numbers ({err})") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _check_shape(name, arr, shape, sk_name):
    if arr.shape != tuple(shape):
        raise ValueError(
            f"{name}: The parameter '{sk_name}' should have the shape of "
            f"{tuple(shape)}, but got {arr.shape}"
        )


def _check_weights(value, k) -> np.ndarray:
    single = getattr(value, "dtype", None) == np.float32  # sklearn's tolerance
    w = _as_float("weights_init", value)
    _check_shape("weights_init", w, (k,), "weights")
    if np.any(w < 0) or np.any(w > 1):
        raise ValueError(
            "weights_init: The parameter 'weights' should be in the range [0, 1], "
            f"but got max value {np.min(w):.5f}, min value {np.max(w):.5f}"
        )
    if not np.allclose(abs(1.0 - w.sum()), 0.0, atol=1e-6 if single else 1e-8):
        raise ValueError(
            "weights_init: The parameter 'weights' should be normalized, but got "
            f"sum(weights) = {w.sum():.5f}"
        )
    return w


def _check_precisions(value, ctype, k, d) -> np.ndarray:
    p = _as_float("precisions_init", value)
    _check_shape(
        "precisions_init", p, _gmm.covariance_shape(ctype, k, d), f"{ctype} precision"
    )
    if ctype in ("diag", "spherical"):
        if np.any(p <= 0):
            raise ValueError(f"precisions_init: '{ctype} precision' should be positive")
        return p
    mats = p.reshape((-1, d, d))
    symmetric = np.allclose(mats, np.swapaxes(mats, -1, -2))
    if not (symmetric and np.all(np.linalg.eigvalsh(mats) > 0)):
        raise ValueError(
            f"precisions_init: '{ctype} precision' should be symmetric, "
            "positive-definite"
        )
    return p
