"""hmmlearn-style HMM estimators: ``GaussianHMM``, ``CategoricalHMM``, ``PoissonHMM``.

Same constructor arguments, attributes and methods as hmmlearn 0.3.3, with X
the concatenation of the sequences and ``lengths`` their lengths. Inside, the
sequences are padded into a (B, T, ...) batch and all ``n_init`` restarts run
as ONE vmapped, jitted ``jaxem.fit``; ``params`` letters that are left out
become ``fit``'s ``frozen`` keys.

Differences from hmmlearn, by design: restarts (``n_init``); states that
receive no posterior mass keep their previous parameters (hmmlearn produces
NaN means or zero transition rows) and are listed in ``unvisited_states_``;
initial values are drawn with JAX (k-means++ then Lloyd for Gaussian means),
so the same ``random_state`` gives other numbers than hmmlearn's; emission
priors (``means_prior``, ``covars_prior``, ...) must be scalars; the
convergence test is ``abs(gain) < tol`` (hmmlearn: ``gain < tol``), which
only differs when the log-likelihood falls, as it may under a prior.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np

from .. import _fit as _fitmod
from .. import _validation, constraints
from .. import models as _models
from .._io import SaveLoadMixin
from .._latent import _markov_chain
from . import _base

_log = logging.getLogger(__name__)

DECODER_ALGORITHMS = frozenset(("viterbi", "map"))


class ConvergenceMonitor:
    """hmmlearn's ``monitor_``: log-likelihood history and convergence.

    Attributes:
        tol: threshold on the gain in total log-likelihood.
        n_iter: maximum number of iterations.
        verbose: whether progress was printed.
        history: ``collections.deque`` of the total log-likelihood at each
            iteration's E-step (of the parameters before its M-step).
        iter: number of iterations run.
    """

    def __init__(self, tol, n_iter, verbose):
        self.tol = tol
        self.n_iter = n_iter
        self.verbose = verbose
        self.history = collections.deque()
        self.iter = 0

    def _reset(self):
        self.iter = 0
        self.history.clear()

    @property
    def converged(self) -> bool:
        """hmmlearn's rule: the budget is spent or the last gain is below tol."""
        return self.iter == self.n_iter or (
            len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol
        )

    def __repr__(self):
        return (
            f"ConvergenceMonitor(tol={self.tol}, n_iter={self.n_iter}, "
            f"iter={self.iter}, history={list(self.history)})"
        )


@functools.partial(jax.jit, static_argnames=("model", "options"))
def _draw_initial(model, keys, data, lengths, options):
    """``model.init`` for each key (restarts), as one compiled program."""
    return jax.vmap(lambda k: model.init(k, data, lengths, **dict(options)))(keys)


def check_lengths(lengths, n_samples: int) -> np.ndarray:
    """Validated (B,) int lengths summing to ``n_samples`` (None: one sequence)."""
    if lengths is None:
        return np.array([n_samples], dtype=np.int64)
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"lengths: expected a non-empty 1-D array of sequence lengths, got shape "
            f"{arr.shape}"
        )
    arr = _validation.check_integers("lengths", arr)
    if np.any(arr < 1):
        raise ValueError(f"lengths: every length must be >= 1, got min {arr.min()}")
    if arr.sum() != n_samples:
        raise ValueError(f"lengths: sum to {arr.sum()}, but X has {n_samples} samples")
    return arr


def to_padded(X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(B, T_max, ...) batch of the concatenated sequences, zero-padded."""
    b, t = len(lengths), int(lengths.max())
    if np.all(lengths == t):
        return X.reshape((b, t) + X.shape[1:])
    out = np.zeros((b, t) + X.shape[1:], X.dtype)
    out[_mask(lengths)] = X
    return out


def _mask(lengths):
    return np.arange(lengths.max())[None, :] < lengths[:, None]


class _BaseHMM(_base.EstimatorParams, SaveLoadMixin):
    """Shared hmmlearn logic over a prebuilt chain model.

    Subclasses set ``_name``, ``_letters`` (params letter -> parameter key) and
    implement ``_model()``, ``_check_X(X)``, ``_to_data(X)``,
    ``_emission_to_attributes(params)``, ``_emission_params(dtype)`` and
    ``_check_emission_attributes()``.
    """

    _name = "HMM"
    _letters: dict[str, str] = {}

    # ------------------------------------------------------------ helpers
    def _check_common(self):
        self.n_components = _base.check_positive_int("n_components", self.n_components)
        _base.check_positive_int("n_iter", self.n_iter)
        _base.check_positive_int("n_init", self.n_init)
        _base.check_tol("tol", self.tol)
        for name in ("params", "init_params"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"{name}: expected a string of letters, got {value!r}")
        if self.algorithm not in DECODER_ALGORITHMS:
            raise ValueError(
                f"algorithm: expected 'viterbi' or 'map', got {self.algorithm!r}"
            )
        if self.implementation not in ("log", "scaling", "parallel"):
            raise ValueError(
                f"implementation: expected 'log', 'scaling' or 'parallel', got "
                f"{self.implementation!r}"
            )

    def _frozen(self) -> tuple[str, ...]:
        letters = self._letters.items()
        return tuple(key for code, key in letters if code not in self.params)

    def _data(self, X, lengths, fitting=False):
        X = self._check_X(X, fitting)
        lengths = check_lengths(lengths, X.shape[0])
        return X, lengths, self._to_data(to_padded(X, lengths))

    def _dtype(self):
        return getattr(self, "_fit_dtype", jax.dtypes.canonicalize_dtype(np.float64))

    def _attributes_to_params(self, dtype=None):
        dtype = self._dtype() if dtype is None else dtype
        params = {
            "startprob": np.asarray(self.startprob_, dtype),
            "transmat": np.asarray(self.transmat_, dtype),
        }
        params.update(self._emission_params(dtype))
        return params

    def _params_to_attributes(self, params):
        self.startprob_ = np.asarray(params["startprob"])
        self.transmat_ = np.asarray(params["transmat"])
        self._emission_to_attributes(params)

    def _check(self):
        """Fitted (or user-set) attributes have the right shapes and supports."""
        if not hasattr(self, "startprob_"):
            raise _base.NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit "
                "first."
            )
        k = self.n_components
        for name, shape in (("startprob_", (k,)), ("transmat_", (k, k))):
            value = np.asarray(getattr(self, name))
            if value.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {value.shape}")
            problem = constraints.simplex.check(value)
            if problem:
                raise ValueError(f"{name}: {problem}")
        self._check_emission_attributes()

    # ------------------------------------------------------------ fitting
    def _initial_params(self, model, data, lengths, key):
        """(R, ...) stacked starting values of the ``n_init`` restarts.

        As hmmlearn: parameters whose letter is in ``init_params``, or that
        have no attribute yet, are drawn; the others start from the attributes.
        """
        given = {}
        for code, name in self._letters.items():
            if code in self.init_params:
                if self._has_attribute(name):
                    _log.warning(
                        "Even though the %r attribute is set, it will be "
                        "overwritten during initialization because 'init_params' "
                        "contains %r",
                        name + "_",
                        code,
                    )
            elif self._has_attribute(name):
                given[name] = self._attribute_param(name, self._dtype())
        drawn = {}
        if len(given) < len(self._letters):
            keys = jax.random.split(key, self.n_init)
            drawn = _draw_initial(
                model,
                keys,
                jnp.asarray(data),
                jnp.asarray(lengths),
                self._init_options(),
            )
            drawn = jax.tree.map(np.asarray, drawn)
        params0 = {}
        for name in self._letters.values():
            if name not in given:
                params0[name] = drawn[name]
                continue
            value = given[name]
            want = drawn[name].shape[1:] if name in drawn else value.shape
            if value.shape != want:
                raise ValueError(f"{name}_: expected shape {want}, got {value.shape}")
            params0[name] = np.broadcast_to(value, (self.n_init,) + want).copy()
        return params0

    def _init_options(self):
        return ()

    def _attribute_param(self, key_name, dtype):
        if key_name in ("startprob", "transmat"):
            return np.asarray(getattr(self, key_name + "_"), dtype)
        return self._emission_params(dtype, only=key_name)[key_name]

    def _has_attribute(self, key_name):
        return hasattr(self, key_name + "_") or (
            key_name == "covars" and hasattr(self, "_covars_")
        )

    def fit(self, X, lengths=None):
        """Estimate the parameters with EM (``n_init`` restarts, vmapped).

        Args:
            X: (n_samples, n_features) concatenated sequences.
            lengths: (n_sequences,) lengths summing to n_samples (None: one).

        Returns:
            self
        """
        self._check_common()
        X, lengths, data = self._data(X, lengths, fitting=True)
        self._fit_dtype = jax.dtypes.canonicalize_dtype(
            X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        )
        model = self._model()
        key = _base.check_random_state(self.random_state)
        params0 = self._initial_params(model, data, lengths, key)
        for r in range(self.n_init):
            constraints.check_params(
                model.constraints, _base.take(params0, r), "initial parameters"
            )
        model.latent.validate(model, data, None, lengths)
        n_steps = int(lengths.sum())
        tol = jnp.asarray(float(self.tol) / n_steps, self._fit_dtype)
        progress = (
            _base.progress_printer(self._name, self.n_iter)
            if self.verbose
            else contextlib.nullcontext()
        )
        kwargs = dict(max_iter=int(self.n_iter), frozen=self._frozen())
        with progress as callback:
            kwargs["callback"] = callback
            if self.n_init == 1:  # no restart axis: a smaller program to compile
                result = _fitmod.fit(
                    model,
                    _base.take(params0, 0),
                    jnp.asarray(data),
                    lengths=jnp.asarray(lengths),
                    tol=tol,
                    **kwargs,
                )
                _base.best_restart(jax.tree.map(lambda a: a[None], result))
            else:
                results = _base.fit_restarts(
                    model,
                    params0,
                    jnp.asarray(data),
                    None,
                    jnp.asarray(lengths),
                    tol,
                    **kwargs,
                )
                result = _base.take(results, _base.best_restart(results))
        self._params_to_attributes(jax.tree.map(np.asarray, result.params))
        self._set_monitor(result)
        self.n_features_in_ = X.shape[1]
        self._report_unvisited(model, data, lengths)
        return self

    def _set_monitor(self, result):
        n_iter = int(result.n_iter)
        monitor = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
        monitor.history.extend(float(v) for v in np.asarray(result.history)[:n_iter])
        monitor.iter = n_iter
        self.monitor_ = monitor
        self.fit_status_ = _fitmod.Status(int(result.status))
        if self.fit_status_ == _fitmod.Status.NONFINITE:
            raise _base.FitError(
                f"{self._name}: the log-likelihood became NaN or infinite; check "
                "the data scale or the initial parameters"
            )

    def _report_unvisited(self, model, data, lengths):
        post = self._posterior(model, data, lengths)
        occupancy = np.asarray(post.marginals.sum(axis=(0, 1)))
        tiny = np.finfo(occupancy.dtype).eps * lengths.sum()
        self.unvisited_states_ = np.flatnonzero(occupancy <= tiny)
        if self.unvisited_states_.size:
            _log.warning(
                "%s: state(s) %s received no posterior mass; their parameters were "
                "kept from the previous iteration instead of becoming NaN.",
                self._name,
                self.unvisited_states_.tolist(),
            )

    # ----------------------------------------------------------- inference
    def _posterior(self, model, data, lengths):
        params = self._attributes_to_params()
        return _fitmod._e_step_jit(
            model, params, jnp.asarray(data), None, jnp.asarray(lengths)
        ).posterior

    def _e_step(self, X, lengths):
        self._check()
        X, lengths, data = self._data(X, lengths)
        model = self._model()
        estep = _fitmod._e_step_jit(
            model,
            self._attributes_to_params(),
            jnp.asarray(data),
            None,
            jnp.asarray(lengths),
        )
        return estep, lengths

    def score_samples(self, X, lengths=None):
        """Total log-likelihood of X and the (n_samples, K) state posteriors."""
        estep, lengths = self._e_step(X, lengths)
        posteriors = np.asarray(estep.posterior.marginals)[_mask(lengths)]
        return float(estep.log_likelihood), posteriors

    def score(self, X, lengths=None) -> float:
        """Total log-likelihood of X (summed over its sequences)."""
        estep, _ = self._e_step(X, lengths)
        return float(estep.log_likelihood)

    def predict_proba(self, X, lengths=None) -> np.ndarray:
        """Posterior probability of each state, (n_samples, K)."""
        return self.score_samples(X, lengths)[1]

    def decode(self, X, lengths=None, algorithm=None):
        """Most likely states: ``(log_prob, state_sequence (n_samples,))``.

        ``"viterbi"`` gives the jointly most likely path and its log joint
        density; ``"map"`` the per-step most likely states and, as hmmlearn,
        the sum over steps of their posterior probabilities.
        """
        algorithm = algorithm or self.algorithm
        if algorithm not in DECODER_ALGORITHMS:
            raise ValueError(
                f"algorithm: expected 'viterbi' or 'map', got {algorithm!r}"
            )
        if algorithm == "map":
            _, posteriors = self.score_samples(X, lengths)
            return float(posteriors.max(axis=1).sum()), posteriors.argmax(axis=1)
        self._check()
        X, lengths, data = self._data(X, lengths)
        paths, scores = _markov_chain._viterbi_jit(
            self._model(),
            self._attributes_to_params(),
            jnp.asarray(data),
            jnp.asarray(lengths),
        )
        return float(np.sum(scores)), np.asarray(paths)[_mask(lengths)]

    def predict(self, X, lengths=None) -> np.ndarray:
        """Most likely state of each sample (by ``algorithm``), (n_samples,)."""
        return self.decode(X, lengths)[1]

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw one sequence: ``(X (n_samples, ...), states (n_samples,))``.

        Args:
            n_samples: number of time steps.
            random_state: seed or generator (default: the estimator's).
            currstate: optional state to start from.
        """
        self._check()
        n = _base.check_positive_int("n_samples", n_samples)
        params = self._attributes_to_params()
        if currstate is not None:
            if not 0 <= int(currstate) < self.n_components:
                raise ValueError(
                    f"currstate: expected a state in [0, {self.n_components}), got "
                    f"{currstate!r}"
                )
            start = np.zeros(self.n_components, params["startprob"].dtype)
            start[int(currstate)] = 1.0
            params["startprob"] = start
        key = _base.check_random_state(
            self.random_state if random_state is None else random_state
        )
        x, z = self._model().sample(key, params, n)
        return self._from_data(np.asarray(x)), np.asarray(z).astype(int)

    def _from_data(self, x):
        return x

    def _n_parameters(self) -> int:
        return self._model().num_free_parameters(self._attributes_to_params())

    def aic(self, X, lengths=None) -> float:
        """Akaike information criterion: -2 log-likelihood + 2 n_params."""
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()

    def bic(self, X, lengths=None) -> float:
        """Bayesian information criterion: -2 log-likelihood + n_params log n."""
        n = len(np.asarray(X))
        return -2 * self.score(X, lengths) + self._n_parameters() * np.log(n)

    def get_stationary_distribution(self) -> np.ndarray:
        """Stationary distribution of ``transmat_`` (left eigenvector for 1)."""
        self._check()
        eigvals, eigvecs = np.linalg.eig(np.asarray(self.transmat_).T)
        vec = np.real_if_close(eigvecs[:, np.argmax(eigvals)])
        return vec / vec.sum()


def _scalar_prior(name, value):
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 0:
        raise ValueError(
            f"{name}: only scalar priors are supported by jaxem, got shape {arr.shape}"
        )
    return float(arr)


def _full_covars(covars, covariance_type, k, d):
    covars = np.asarray(covars)
    if covariance_type == "full":
        return covars
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in covars])
    if covariance_type == "tied":
        return np.tile(covars, (k, 1, 1))
    return np.ravel(covars)[:, None, None] * np.eye(d)[None]


class GaussianHMM(_BaseHMM):
    """Hidden Markov model with Gaussian emissions (as ``hmmlearn.hmm.GaussianHMM``).

    Args:
        n_components: number of states K.
        covariance_type: ``"diag"`` (default), ``"spherical"``, ``"full"`` or
            ``"tied"``.
        min_covar: added to the data covariance's diagonal at initialisation.
        startprob_prior, transmat_prior: Dirichlet concentrations.
        means_prior, means_weight, covars_prior, covars_weight: hmmlearn's
            normal / inverse-gamma (Wishart) priors; scalars.
        algorithm: decoder, ``"viterbi"`` or ``"map"``.
        random_state: seed, numpy generator or None.
        n_iter: maximum number of EM iterations.
        tol: stop when the gain in total log-likelihood is below ``tol``.
        verbose: show progress.
        params, init_params: letters of the parameters to update / initialise:
            ``s`` startprob, ``t`` transmat, ``m`` means, ``c`` covars.
        implementation: ``"log"`` or ``"scaling"`` (hmmlearn's names; both
            run jaxem's sequential forward-backward) or ``"parallel"`` (the
            ``lax.associative_scan`` form, for long sequences on a GPU).
        n_init: number of restarts (best log-likelihood wins), vmapped.

    Attributes:
        startprob_, transmat_, means_ (K, d), covars_ (K, d, d) whatever the
        covariance type, monitor_, n_features, unvisited_states_.

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

    @property
    def covars_(self) -> np.ndarray:
        """Covariances as full (K, d, d) matrices, whatever the covariance type."""
        return _full_covars(
            self._covars_,
            self.covariance_type,
            self.n_components,
            np.shape(self.means_)[1],
        )

    @covars_.setter
    def covars_(self, covars):
        covars = np.array(covars, copy=True)
        _check_covars(covars, self.covariance_type, self.n_components)
        self._covars_ = covars

    def _n_features(self, X=None):
        if X is not None:
            return X.shape[1]
        return np.shape(self.means_)[1]

    def _model(self):
        return _models.gaussian_hmm(
            self.n_components,
            int(self.n_features),
            self.covariance_type,
            startprob_prior=self.startprob_prior,
            transmat_prior=self.transmat_prior,
            parallel=self.implementation == "parallel",
            means_prior=_scalar_prior("means_prior", self.means_prior),
            means_weight=_scalar_prior("means_weight", self.means_weight),
            covars_prior=_scalar_prior("covars_prior", self.covars_prior),
            covars_weight=_scalar_prior("covars_weight", self.covars_weight),
        )

    def _check_X(self, X, fitting):
        X = _base.check_array("X", X)
        if hasattr(self, "means_") and (not fitting or "m" not in self.init_params):
            d = np.shape(self.means_)[1]
            if X.shape[1] != d:
                raise ValueError(f"X: has {X.shape[1]} features, but means_ has {d}")
        self.n_features = X.shape[1]
        if self.covariance_type not in _models._hmm.COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type: expected one of {_models._hmm.COVARIANCE_TYPES}, "
                f"got {self.covariance_type!r}"
            )
        return X

    def _to_data(self, padded):
        return padded

    def _init_options(self):
        return (("min_covar", float(self.min_covar)),)

    def _emission_params(self, dtype, only=None):
        out = {}
        if only in (None, "means"):
            out["means"] = np.asarray(self.means_, dtype)
        if only in (None, "covars"):
            covars = np.asarray(self._covars_, dtype)
            if self.covariance_type == "spherical" and covars.ndim == 2:
                covars = covars.mean(axis=1)
            out["covars"] = covars
        return out

    def _emission_to_attributes(self, params):
        self.means_ = np.asarray(params["means"])
        self._covars_ = np.asarray(params["covars"])

    def _check_emission_attributes(self):
        means = np.asarray(self.means_)
        if means.ndim != 2 or means.shape[0] != self.n_components:
            raise ValueError(
                f"means_: expected shape ({self.n_components}, n_features), got "
                f"{means.shape}"
            )
        _validation.check_finite("means_", means)
        self.n_features = means.shape[1]
        _check_covars(
            np.asarray(self._covars_), self.covariance_type, self.n_components
        )


def _check_covars(covars, covariance_type, k):
    """hmmlearn's covariance checks, as ``ValueError``s naming ``covars_``."""
    if covariance_type not in _models._hmm.COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type: expected one of {_models._hmm.COVARIANCE_TYPES}, got "
            f"{covariance_type!r}"
        )
    expected = {"spherical": 1, "diag": 2, "full": 3, "tied": 2}[covariance_type]
    ok_rank = covars.ndim == expected or (
        covariance_type == "spherical" and covars.ndim == 2
    )
    if not ok_rank or (covariance_type != "tied" and covars.shape[0] != k):
        raise ValueError(
            f"covars_: shape {covars.shape} does not fit covariance_type "
            f"{covariance_type!r} with {k} components"
        )
    con = (
        constraints.positive
        if covariance_type in ("spherical", "diag")
        else constraints.positive_definite
    )
    problem = con.check(covars)
    if problem:
        raise ValueError(f"covars_: {problem}")


class CategoricalHMM(_BaseHMM):
    """Hidden Markov model with categorical emissions (``hmmlearn`` ``CategoricalHMM``).

    X is (n_samples, 1) integer symbols in {0, ..., n_features - 1}.

    Args:
        n_components: number of states K.
        startprob_prior, transmat_prior, emissionprob_prior: Dirichlet priors.
        n_features: number of symbols (default: inferred as X.max() + 1).
        algorithm, random_state, n_iter, tol, verbose, implementation, n_init:
            as for :class:`GaussianHMM`.
        params, init_params: letters ``s``, ``t``, ``e`` (emissionprob).

    Attributes:
        startprob_, transmat_, emissionprob_ (K, n_features), monitor_.

    Examples:
        >>> import numpy as np, jaxem
        >>> X = np.array([[0], [0], [1], [1], [1], [0]])
        >>> jaxem.CategoricalHMM(2, n_iter=5, random_state=0).fit(X).n_features
        2
    """

    _name = "CategoricalHMM"
    _letters = {"s": "startprob", "t": "transmat", "e": "emissionprob"}

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        *,
        emissionprob_prior=1.0,
        n_features=None,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="ste",
        init_params="ste",
        implementation="log",
        n_init=1,
    ):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.implementation = implementation
        self.n_init = n_init

    def _model(self):
        return _models.categorical_hmm(
            self.n_components,
            int(self.n_features),
            startprob_prior=self.startprob_prior,
            transmat_prior=self.transmat_prior,
            parallel=self.implementation == "parallel",
            emissionprob_prior=self.emissionprob_prior,
        )

    def _check_X(self, X, fitting):
        try:
            arr = np.asarray(X)
        except Exception as err:
            raise ValueError(f"X: cannot be read as an array ({err})") from err
        if arr.ndim != 2 or arr.shape[1] != 1:
            raise ValueError(
                f"X: expected shape (n_samples, 1) of integer symbols, got {arr.shape}"
            )
        if arr.dtype.kind not in "iu":
            raise ValueError(f"X: symbols should be integers, got dtype {arr.dtype}")
        if arr.shape[0] and arr.min() < 0:
            raise ValueError("X: symbols should be non-negative")
        if self.n_features is None:
            if hasattr(self, "emissionprob_") and (
                not fitting or "e" not in self.init_params
            ):
                self.n_features = np.shape(self.emissionprob_)[1]
            else:
                self.n_features = int(arr.max()) + 1
        if arr.max() >= self.n_features:
            raise ValueError(
                f"X: largest symbol is {arr.max()} but the model only emits symbols "
                f"up to {self.n_features - 1}"
            )
        return arr.astype(np.int64)

    def _to_data(self, padded):
        return padded[..., 0]

    def _from_data(self, x):
        return x.reshape(-1, 1)

    def _emission_params(self, dtype, only=None):
        return {"emissionprob": np.asarray(self.emissionprob_, dtype)}

    def _emission_to_attributes(self, params):
        self.emissionprob_ = np.asarray(params["emissionprob"])

    def _check_emission_attributes(self):
        e = np.atleast_2d(np.asarray(self.emissionprob_))
        if self.n_features is None:
            self.n_features = e.shape[1]
        shape = (self.n_components, self.n_features)
        if e.shape != shape:
            raise ValueError(f"emissionprob_: expected shape {shape}, got {e.shape}")
        problem = constraints.simplex.check(e)
        if problem:
            raise ValueError(f"emissionprob_: {problem}")


class PoissonHMM(_BaseHMM):
    """Hidden Markov model with Poisson emissions (``hmmlearn`` ``PoissonHMM``).

    X is (n_samples, n_features) non-negative counts.

    Args:
        n_components: number of states K.
        startprob_prior, transmat_prior: Dirichlet priors.
        lambdas_prior, lambdas_weight: hmmlearn's gamma prior; scalars.
        algorithm, random_state, n_iter, tol, verbose, implementation, n_init:
            as for :class:`GaussianHMM`.
        params, init_params: letters ``s``, ``t``, ``l`` (lambdas).

    Attributes:
        startprob_, transmat_, lambdas_ (K, n_features), monitor_.

    Examples:
        >>> import numpy as np, jaxem
        >>> X = np.random.default_rng(0).poisson(np.repeat([[1.0], [9.0]], 30, 0))
        >>> jaxem.PoissonHMM(2, n_iter=10, random_state=0).fit(X).lambdas_.shape
        (2, 1)
    """

    _name = "PoissonHMM"
    _letters = {"s": "startprob", "t": "transmat", "l": "lambdas"}

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

    def _model(self):
        return _models.poisson_hmm(
            self.n_components,
            int(self.n_features),
            startprob_prior=self.startprob_prior,
            transmat_prior=self.transmat_prior,
            parallel=self.implementation == "parallel",
            lambdas_prior=_scalar_prior("lambdas_prior", self.lambdas_prior),
            lambdas_weight=_scalar_prior("lambdas_weight", self.lambdas_weight),
        )

    def _check_X(self, X, fitting):
        X = _base.check_array("X", X)
        if np.any(X < 0) or np.any(X != np.round(X)):
            raise ValueError("X: counts must be non-negative whole numbers")
        if hasattr(self, "lambdas_") and (not fitting or "l" not in self.init_params):
            d = np.shape(self.lambdas_)[1]
            if X.shape[1] != d:
                raise ValueError(f"X: has {X.shape[1]} features, but lambdas_ has {d}")
        self.n_features = X.shape[1]
        return X

    def _to_data(self, padded):
        return padded

    def _emission_params(self, dtype, only=None):
        return {"lambdas": np.asarray(self.lambdas_, dtype)}

    def _emission_to_attributes(self, params):
        self.lambdas_ = np.asarray(params["lambdas"])

    def _check_emission_attributes(self):
        lam = np.atleast_2d(np.asarray(self.lambdas_))
        if lam.ndim != 2 or lam.shape[0] != self.n_components:
            raise ValueError(
                f"lambdas_: expected shape ({self.n_components}, n_features), got "
                f"{lam.shape}"
            )
        self.n_features = lam.shape[1]
        problem = constraints.positive.check(lam)
        if problem:
            raise ValueError(f"lambdas_: {problem}")


__all__ = ["CategoricalHMM", "ConvergenceMonitor", "GaussianHMM", "PoissonHMM"]
