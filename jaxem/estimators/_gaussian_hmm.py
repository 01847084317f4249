"""``GaussianHMM``: hmmlearn's Gaussian-emission HMM as a scikit-learn estimator."""

from __future__ import annotations

import logging
from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .. import constraints
from .. import models as _models
from .._validation import check_finite
from ..models._gmm_missing import MISSING_OPTIONS, missing_data
from . import _base
from ._hmm_base import PRIOR, BaseHMM, _parallel_option, chain_fit_scalars
from ._hmm_sequences import check_prior

_log = logging.getLogger(__name__)

COVARIANCE_TYPES = ("spherical", "diag", "full", "tied")


class GaussianHMM(BaseHMM):
    """Hidden Markov model with Gaussian emissions (as ``hmmlearn.hmm.GaussianHMM``).

    Args:
        n_components: number of states K.
        covariance_type: ``"diag"`` (default), ``"spherical"``, ``"full"`` or
            ``"tied"``.
        min_covar: added to the data covariance's diagonal at initialisation
            (as hmmlearn), and to the diagonal of a state's covariance that
            turns singular during the fit (see below).
        startprob_prior: Dirichlet concentrations, a number or (K,).
        transmat_prior: Dirichlet concentrations, a number or (K, K).
        means_prior: prior means, a number or an array broadcastable to (K, d).
        means_weight: prior precision of the means, a number or (K,).
        covars_prior: inverse-gamma (diag, spherical) or inverse-Wishart
            (full, tied) scale, a number or an array broadcastable to the
            covariances' own shape: (K,) spherical, (K, d) diag, (K, d, d)
            full, (d, d) tied (a number is added to every entry, as hmmlearn).
        covars_weight: its weight, a number or (K,) (a number for ``"tied"``).
        algorithm: decoder, ``"viterbi"`` or ``"map"``.
        random_state: seed, numpy generator or None.
        n_iter: maximum number of EM iterations (0: initialise only).
        tol: stop when the gain in total log-likelihood is below ``tol``.
        verbose: show progress.
        params, init_params: letters of the parameters to update / initialise:
            ``s`` startprob, ``t`` transmat, ``m`` means, ``c`` covars.
        implementation: ``"log"`` or ``"scaling"`` (hmmlearn's names; both
            run jaxem's scaled forward-backward, and leave the form to the
            backend: the sequential ``lax.scan`` on a CPU, the
            ``lax.associative_scan`` on a GPU or TPU), ``"sequential"`` or
            ``"parallel"`` (that form whatever the backend; the parallel one
            is much faster for long sequences on a GPU, slower on a CPU).
        n_init: number of restarts (best log-likelihood wins), vmapped.
        devices: None (the default device), ``"all"``, an int n (the first
            n of ``jax.devices()``) or a list of jax devices or device ids:
            the fit shards the data along the sequence axis over them
            (``jaxem.shard``) and equals the one-device fit; see docs/scale.md
            (give a count or ids to an estimator that scikit-learn clones).
        chunk_rows: None, or stream X through exact EM in chunks of whole
            sequences of at most this many samples (``jaxem.fit_chunked``; a
            longer sequence is a chunk of its own) instead of holding it in
            memory; a ``numpy.memmap`` X over 256 MiB streams by itself
            (65536 samples a chunk). Same iterates as in memory;
            initialisation on a sample of whole sequences of about
            ``chunk_rows`` samples (see docs/scale.md). Scoring and
            decoding read such an X in the same chunks.
        accelerate: None for plain EM, or ``"squarem"`` (``jaxem.fit``'s
            SQUAREM; ``monitor_.iter`` then counts cycles of three EM steps).
        missing: ``"raise"`` (NaN in X is a ValueError) or ``"marginalize"``:
            NaN marks a missing entry; a step with nothing observed has no
            emission term and a partly observed one marginalises its missing
            features, in ``fit``, ``score``, ``predict`` and ``decode``
            (docs/missing-values.md).

    Attributes:
        startprob_: (K,) initial state probabilities.
        transmat_: (K, K) transition probabilities.
        means_: (K, d) state means.
        covars_: (K, d, d) covariances, full matrices whatever the covariance
            type (as hmmlearn); the type's own form is ``_covars_``.
        monitor_: a ``ConvergenceMonitor`` (``history``, ``iter``,
            ``converged``).
        fit_status_: the ``jaxem.Status`` of the fit.
        unvisited_states_: states that received no posterior mass.
        singular_states_: states whose covariance turned singular (their
            covariance had ``min_covar`` added to its diagonal).
        n_features_in_, feature_names_in_: scikit-learn's.

    Differences from hmmlearn: where a state's covariance turns singular
    (a constant feature, fewer points than dimensions), hmmlearn's full
    covariance silently adds 1e-7 to the diagonal when evaluating densities
    (and diag/spherical may produce NaN); jaxem adds ``min_covar`` to that
    state's diagonal in the M-step, lists the state in ``singular_states_``
    and logs a warning, so the model stays usable. The log-likelihood is
    unbounded there, so the history may fall at that step.

    Examples:
        >>> import numpy as np, jaxem
        >>> X = np.r_[np.zeros((20, 1)), np.ones((20, 1)) * 5]
        >>> X = X + np.random.default_rng(0).normal(size=X.shape)
        >>> hmm = jaxem.GaussianHMM(2, n_iter=20, random_state=0).fit(X)
        >>> hmm.transmat_.shape, hmm.covars_.shape
        ((2, 2), (2, 1, 1))
    """

    _name = "GaussianHMM"
    _letters = {"s": "startprob", "t": "transmat", "m": "means", "c": "covars"}
    _label_letter = "m"  # fit(..., states=...): labelled states' means start
    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        # missing values (docs/missing-values.md)
        "missing": [StrOptions(set(MISSING_OPTIONS))],
        "min_covar": [Interval(Real, 0, None, closed="left")],
        "means_prior": PRIOR,
        "means_weight": PRIOR,
        "covars_prior": PRIOR,
        "covars_weight": PRIOR,
    }

    def __init__(
        self,
        n_components=1,
        covariance_type="diag",
        min_covar=1e-3,
        startprob_prior=1.0,
        transmat_prior=1.0,
        means_prior=0,
        means_weight=0,
        covars_prior=1e-2,
        covars_weight=1,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="stmc",
        init_params="stmc",
        implementation="log",
        n_init=1,
        devices=None,
        accelerate=None,
        missing="raise",
        chunk_rows=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
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

    # ------------------------------------------------------- hmmlearn's API
    @property
    def n_features(self) -> int:
        """Number of features d (from ``means_``, or as set)."""
        if hasattr(self, "means_"):
            return np.shape(self.means_)[1]
        return self._n_features

    @n_features.setter
    def n_features(self, value):
        self._n_features = value

    @property
    def covars_(self) -> np.ndarray:
        """Covariances as full (K, d, d) matrices, whatever the covariance type."""
        return _full_covars(
            self._covars_, self.covariance_type, self.n_components, self.n_features
        )

    @covars_.setter
    def covars_(self, covars):
        covars = np.array(covars, copy=True)
        if covars.dtype.kind != "f":
            covars = covars.astype(np.float64)
        self._covars_ = _own_form(covars, self.covariance_type, self.n_components)

    def _get_n_fit_scalars_per_param(self) -> dict[str, int]:
        k, d = self.n_components, self.n_features
        cov = {
            "spherical": k,
            "diag": k * d,
            "full": k * d * (d + 1) // 2,
            "tied": d * (d + 1) // 2,
        }[self.covariance_type]
        return {**chain_fit_scalars(k), "m": k * d, "c": cov}

    # ------------------------------------------------------ model and data
    def _check_options(self):
        super()._check_options()
        if not np.isfinite(self.min_covar):
            raise ValueError(f"min_covar: must be finite, got {self.min_covar!r}")

    def _priors(self, d: int) -> dict:
        """The emission priors, checked against K and d, in the model's form."""
        k, cov = self.n_components, self.covariance_type
        cov_shape = {
            "spherical": (k,),
            "diag": (k, d),
            "full": (k, d, d),
            "tied": (d, d),
        }
        means_prior = check_prior("means_prior", self.means_prior, (k, d))
        means_weight = _per_state("means_weight", self.means_weight, k, (k, d))
        covars_prior = check_prior("covars_prior", self.covars_prior, cov_shape[cov])
        if cov == "spherical" and covars_prior.ndim == 1:
            covars_prior = covars_prior[:, None]  # one value per state, all d
        weight_shape = (k, d) if cov in ("diag", "spherical") else (k, 1, 1)
        if cov == "tied":
            covars_weight = check_prior("covars_weight", self.covars_weight, ())
        else:
            covars_weight = _per_state(
                "covars_weight", self.covars_weight, k, weight_shape
            )
        return {
            "means_prior": means_prior,
            "means_weight": means_weight,
            "covars_prior": covars_prior,
            "covars_weight": covars_weight,
        }

    def _model(self, X=None):
        d = int(self.n_features if X is None else X.shape[1])
        return _models.gaussian_hmm(
            self.n_components,
            d,
            self.covariance_type,
            startprob_prior=self.startprob_prior,
            transmat_prior=self.transmat_prior,
            parallel=_parallel_option(self.implementation),
            singular_floor=float(self.min_covar),
            missing=self.missing,
            **self._priors(d),
        )

    def _validate_X(self, X, reset):
        X = _base.validate_X(self, X, reset=reset)
        if hasattr(self, "means_") and not (reset and "m" in self.init_params):
            d = np.shape(self.means_)[1]
            if X.shape[1] != d:
                raise ValueError(f"X: has {X.shape[1]} features, but means_ has {d}")
        if reset:
            self._n_features = X.shape[1]
        return X

    def _to_data(self, padded):
        if self.missing == "marginalize":
            return missing_data(padded)
        return padded

    def _from_data(self, x):
        return np.asarray(x["x"] if isinstance(x, dict) else x)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.missing == "marginalize"
        return tags

    def _init_options(self):
        return (("min_covar", float(self.min_covar)),)

    def _emission_params(self, dtype, only=None):
        out = {}
        if only in (None, "means"):
            out["means"] = np.asarray(self.means_, dtype)
        if only in (None, "covars"):
            out["covars"] = np.asarray(self._covars_, dtype)
        return out

    def _emission_to_attributes(self, params):
        self.means_ = np.array(params["means"])
        self._covars_ = np.array(params["covars"])

    def _check_emission_attributes(self):
        means = np.asarray(self.means_)
        if means.ndim != 2 or means.shape[0] != self.n_components:
            raise ValueError(
                f"means_: expected shape ({self.n_components}, n_features), got "
                f"{means.shape}"
            )
        check_finite("means_", means)
        _check_covars(
            np.asarray(self._covars_),
            self.covariance_type,
            self.n_components,
            means.shape[1],
        )

    def _se_to_attributes(self, se):
        k, d = self.n_components, np.shape(self.means_)[1]
        covars = _full_covars(se.pop("covars"), self.covariance_type, k, d)
        return {**se, "covars": covars}

    def _after_fit(self):
        cov = np.asarray(self.covars_)
        smallest = np.linalg.eigvalsh(cov)[:, 0]
        floor = float(self.min_covar)
        floored = (smallest <= floor * (1 + 1e-6)) & (smallest >= floor * (1 - 1e-6))
        if self.covariance_type == "tied":
            floored = floored[:1]
        self.singular_states_ = (
            np.flatnonzero(floored) if floor > 0 else np.array([], int)
        )
        if self.singular_states_.size:
            _log.warning(
                "GaussianHMM: the covariance of state(s) %s turned singular; "
                "min_covar=%g was added to its diagonal.",
                self.singular_states_.tolist(),
                floor,
            )


def _per_state(name, value, k, shape):
    """A weight given as a number or one value per state (K,), in ``shape``."""
    arr = check_prior(name, value, (k,), minimum=0)
    if arr.ndim == 1:
        arr = arr.reshape((k,) + (1,) * (len(shape) - 1))
    return arr


def _full_covars(covars, covariance_type, k, d):
    covars = np.asarray(covars)
    if covariance_type == "full":
        return covars
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in covars])
    if covariance_type == "tied":
        return np.tile(covars, (k, 1, 1))
    return np.ravel(covars)[:, None, None] * np.eye(d, dtype=covars.dtype)[None]


def _own_form(covars, covariance_type, k):
    """Covariances in the type's own shape, from it or from full matrices.

    So that ``h.covars_ = h.covars_`` works for every type (the getter gives
    full (K, d, d) matrices); spherical also takes (K,), (K, d) rows of one
    value, or hmmlearn's (K, 1, ..., 1).
    """
    if covariance_type == "diag" and covars.ndim == 3:
        return np.array([np.diag(c) for c in covars])
    if covariance_type == "tied" and covars.ndim == 3 and len(covars) == k:
        if not np.allclose(covars, covars[:1]):
            raise ValueError("covars_: tied covariances must be equal for every state")
        return covars[0].copy()
    if covariance_type == "spherical" and covars.ndim >= 2 and len(covars) == k:
        flat = covars.reshape(k, -1)
        if covars.ndim == 3 and covars.shape[1] == covars.shape[2]:
            d = covars.shape[1]
            if not np.allclose(
                covars, np.diagonal(covars, axis1=1, axis2=2)[:, :1, None] * np.eye(d)
            ):
                raise ValueError(
                    "covars_: spherical covariances must be multiples of the identity"
                )
            return covars[:, 0, 0].copy()
        if not np.allclose(flat, flat[:, :1]):
            raise ValueError("covars_: spherical covariances take one value per state")
        return flat[:, 0].copy()
    return covars


def _check_covars(covars, covariance_type, k, d):
    """hmmlearn's covariance checks, as ``ValueError``s naming ``covars_``."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type: expected one of {COVARIANCE_TYPES}, got "
            f"{covariance_type!r}"
        )
    shape = {"spherical": (k,), "diag": (k, d), "full": (k, d, d), "tied": (d, d)}[
        covariance_type
    ]
    if covars.shape != shape:
        raise ValueError(
            f"covars_: expected shape {shape} for covariance_type "
            f"{covariance_type!r}, got {covars.shape}"
        )
    con = (
        constraints.positive
        if covariance_type in ("spherical", "diag")
        else constraints.positive_definite
    )
    problem = con.check(covars)
    if problem:
        raise ValueError(f"covars_: {problem}")
