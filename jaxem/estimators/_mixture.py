"""The base of the mixture estimators: scikit-learn's ``BaseMixture`` semantics.

``fit`` runs the ``n_init`` restarts as one vmapped, compiled ``jaxem.fit``
and keeps the restart with the highest final lower bound, as scikit-learn
does; ``lower_bound_`` is that restart's average log-likelihood at its last
E-step (before the final M-step), so it never falls as ``n_init`` grows
(restart ``i`` starts from the same draw whatever ``n_init``). A warm start
continues from the fitted parameters and compares its first lower bound with
the previous ``lower_bound_``; ``max_iter=0`` returns the initialisation.
"""

from __future__ import annotations

import contextlib
import functools
from numbers import Integral, Real

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils._param_validation import Interval, StrOptions

from .. import _buckets, _chunk_sources, _progress
from .. import _fit as _fitmod
from .._io import SaveLoadMixin
from . import _base, _devices, _labels, _streaming


class CollapsedComponentWarning(UserWarning):
    """Some components ended with (almost) no data and were held, not fitted."""


class MixtureEstimator(
    _devices.DevicesCloneMixin, DensityMixin, BaseEstimator, SaveLoadMixin
):
    """Shared ``fit``/``predict``/``score``/``sample`` over a prebuilt mixture.

    Subclasses implement:

    - ``_model(n_features)``: the ``LatentModel``;
    - ``_check_X(X)``: model-specific checks of a validated (N, d) X;
    - ``_check_parameters(X)``: validated explicit initial values;
    - ``_to_data(X)`` / ``_from_data(x)``: the model's data from X and back;
    - ``_init_params(key, data, weights)``: initial params of ONE restart
      (jittable, so restarts vmap);
    - ``_params_to_attributes(params)`` / ``_attributes_to_params(dtype)``;
    - ``_no_finite_restart(X)``: the error when every restart went non-finite.
    """

    _name = "Mixture"

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, np.inf, closed="left")],
        "max_iter": [_base.ITERATIONS],
        "n_init": [_base.RESTARTS],
        "random_state": _base.RANDOM_STATE,
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "devices": _devices.CONSTRAINT,
        "accelerate": [StrOptions({"squarem"}), None],
        "semi_supervised": ["boolean"],
    }

    # ----------------------------------------------------------------- fitting
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with EM over ``n_init`` restarts (vmapped).

        Args:
            X: (N, d) samples (array-like or DataFrame).
            y: with ``semi_supervised=True``, optional (N,) partial labels
                (scikit-learn's semi-supervised convention): a component index
                in [0, K), or -1 for an unlabelled sample. A labelled sample
                belongs to its component (its responsibilities are clamped);
                the fit maximises the log-probability of the data with their
                labels. None: plain EM. With ``semi_supervised=False`` (the
                default) ``y`` is ignored, as scikit-learn's mixtures do, so
                the targets that ``Pipeline``, ``cross_val_score`` or
                ``check_estimator`` pass along do not become labels.
            sample_weight: optional (N,) non-negative weights (an integer
                weight counts as that many repeated rows).

        Returns:
            self
        """
        self._validate_params()
        X = _base.validate_X(self, X, reset=True, ensure_min_samples=2)
        X = self._check_X(X)
        _base.check_n_components(self.n_components, X.shape[0])
        self._check_parameters(X)
        w = _base.sample_weights(sample_weight, X)
        labels = None
        if getattr(self, "semi_supervised", False):
            labels = _labels.check_labels("y", y, X.shape[0], self.n_components)
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        notice = _progress.compile_notice(self._name, self.verbose)
        with _base.precision_for(X.dtype), notice:
            self._em(X, w, warm, labels)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit (with partial labels ``y``), then return the most likely
        component of each sample (N,) under the fitted model."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    def _label_init(self, params0, X, labels):
        """Initial params (R restarts) steered by the labels (subclasses)."""
        return params0

    def _em(self, X, w, warm, labels=None):
        dtype = X.dtype
        devices = _devices.resolve(getattr(self, "devices", None))
        # numpy, not jnp.asarray: an eager conversion compiles a small program
        # per shape; the compiled steps take numpy and pad it to a size bucket.
        data, weights = self._to_data(X), w
        model = self._model(X.shape[1])
        n_obs = float(X.shape[0] if w is None else w.sum())
        max_iter, converged_early = self.max_iter, False
        if warm:
            params = self._attributes_to_params(dtype)
            params0 = jax.tree.map(lambda a: np.asarray(a)[None], params)
            if max_iter > 0:
                # scikit-learn compares the first lower bound of a warm fit with
                # the previous fit's; a change below tol stops after one step.
                first = _mean_log_likelihood(model, params, X, self._to_data, w)
                converged_early = abs(first - self.lower_bound_) < self.tol
                max_iter = 1 if converged_early else max_iter
        else:
            key = _base.check_random_state(self.random_state)
            params0 = self._initial_params(key, X, w)
            if labels is not None:
                params0 = self._label_init(params0, X, labels)
        evidence = None
        if labels is not None:
            evidence = _labels.log_evidence(labels, self.n_components, dtype)
        if max_iter == 0:
            self._set_initialisation(jax.tree.map(lambda a: np.asarray(a[0]), params0))
            return
        model.latent.validate(model, data, weights)
        if devices is not None:  # the E-step runs where the rows live
            data, weights, evidence = _devices.shard_observations(
                data, weights, devices, evidence
            )
        progress = (
            _base.progress_printer(self._name, max_iter)
            if self.verbose
            else contextlib.nullcontext()
        )
        with progress as callback:
            results = _base.fit_restarts(
                model,
                params0,
                data,
                weights,
                None,
                np.asarray(self.tol, dtype),
                max_iter=max_iter,
                callback=callback,
                evidence=evidence,
                accelerate=getattr(self, "accelerate", None),
            )
        self._keep_best(results, n_obs, X, converged_early)

    def _keep_best(self, results, n_obs, X, converged_early):
        """Keep the restart with the highest final lower bound (scikit-learn).

        A restart that stopped on a non-finite log-likelihood is kept only when
        that happened after its last allowed M-step (scikit-learn never
        evaluates those parameters); its last finite parameters are kept, with
        a warning. When no restart qualifies, ``_no_finite_restart`` raises.
        """
        n_iter = np.asarray(results.n_iter)
        history = np.asarray(results.history, np.float64)
        status = np.asarray(results.status)
        bounds = history[np.arange(len(n_iter)), np.maximum(n_iter, 1) - 1] / n_obs
        nonfinite = status == _fitmod.Status.NONFINITE
        usable = np.isfinite(bounds) & (n_iter > 0)
        usable &= ~nonfinite | (n_iter == history.shape[1])
        if not usable.any():
            raise self._no_finite_restart(X)
        best = int(np.argmax(np.where(usable, bounds, -np.inf)))
        result = _base.take(results, best)
        self.converged_ = bool(result.converged) or converged_early
        self.n_iter_ = int(n_iter[best])
        self.lower_bound_ = float(bounds[best])
        self.lower_bounds_ = list(history[best, : self.n_iter_] / n_obs)
        self.log_likelihood_ = float(result.log_likelihood)
        self.fit_status_ = (
            _fitmod.Status.CONVERGED
            if self.converged_
            else _fitmod.Status(int(result.status))
        )
        self._params_to_attributes(jax.tree.map(np.asarray, result.params))
        self._fit_dtype = X.dtype
        if nonfinite[best] and not self.converged_:
            _base.warn_nonfinite(self._name, self.n_iter_)
        elif not self.converged_:
            _base.warn_not_converged(self._name, len(n_iter))

    def _initial_params(self, key, X, w):
        """(n_init, ...) stacked starting values, restart i from
        ``fold_in(key, i)`` (so it starts alike whatever ``n_init``).

        This default vmaps ``_init_params`` over the data as given (one
        program per data size); ``GaussianMixture`` pads to a size bucket.
        """
        data = jax.tree.map(jnp.asarray, self._to_data(X))
        weights = _base.as_jax(w)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(self.n_init))
        return jax.vmap(lambda k: self._init_params(k, data, weights))(keys)

    def _set_initialisation(self, params):
        """``max_iter=0``: the first restart's initial values, as scikit-learn."""
        self.converged_ = False
        self.n_iter_ = 0
        self.lower_bound_ = -np.inf
        self.lower_bounds_ = []
        self.log_likelihood_ = np.nan
        self.fit_status_ = _fitmod.Status.MAX_ITER
        self._params_to_attributes(params)
        self._fit_dtype = params[next(iter(params))].dtype

    def _no_finite_restart(self, X) -> Exception:
        return _base.FitError(
            f"{self._name}: every initialization stopped on a NaN or infinite "
            "log-likelihood; check the data scale and the initial values."
        )

    def _check_parameters(self, X) -> None:
        """Validate explicit initial values against X (subclasses)."""

    # --------------------------------------------------------------- inference
    def _log_resp(self, X):
        """(log p(x_n), log p(z | x_n)) under the fitted parameters, numpy."""
        _base.check_fitted(self)
        return self._validated_log_resp(
            self._check_X(_base.validate_X(self, X, reset=False))
        )

    def _validated_log_resp(self, X):
        """``_log_resp`` of an X validated already (numpy, (N, d))."""
        X = X.astype(self._fit_dtype, copy=False)
        with _base.precision_for(self._fit_dtype):
            model = self._model(X.shape[1])
            params = self._attributes_to_params(self._fit_dtype)
            return _padded_log_resp(model, params, self._to_data(X))

    def _log_resp_parts(self, X):
        """``_log_resp`` of X's rows, chunk by chunk: all of X at once, or,
        for an X that ``fit`` would stream (``chunk_rows`` set, or a memory
        map over 256 MiB), ``chunk_rows`` rows at a time, read with plain
        reads (X is never loaded whole)."""
        if not (isinstance(X, np.ndarray) and _streaming.streams(self, X)):
            yield self._log_resp(X)
            return
        _base.check_fitted(self)
        rows = _streaming.chunk_rows(self)
        for start in range(0, X.shape[0], rows):
            stop = min(start + rows, X.shape[0])
            yield self._log_resp(_chunk_sources.read_rows(X, start, stop))

    def score_samples(self, X) -> np.ndarray:
        """Log-likelihood of each sample, (N,)."""
        return np.concatenate([lp for lp, _ in self._log_resp_parts(X)])

    def score(self, X, y=None) -> float:
        """Average log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component, (N, K); rows sum to 1."""
        return np.concatenate([np.exp(lr) for _, lr in self._log_resp_parts(X)])

    def predict(self, X) -> np.ndarray:
        """Most likely component of each sample, (N,) int."""
        parts = self._log_resp_parts(X)
        return np.concatenate([np.argmax(lr, axis=1) for _, lr in parts])

    def sample(self, n_samples: int = 1):
        """Draw ``n_samples`` from the fitted mixture: ``(X, labels)``.

        Args:
            n_samples: number of samples, at least 1.

        Returns:
            X: (n_samples, d) samples; labels: (n_samples,) their components.
        """
        _base.check_fitted(self)
        if (
            isinstance(n_samples, bool)
            or not isinstance(n_samples, Integral)
            or not 1 <= n_samples <= 2**31 - 1
        ):
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling "
                "requires at least one sample."
            )
        n = int(n_samples)
        with _base.precision_for(self._fit_dtype):
            params = self._attributes_to_params(self._fit_dtype)
            key = _base.check_random_state(self.random_state)
            model = self._model(self.n_features_in_)
            x, z = _sample(model, params, key, _bucket(n))
        x = jax.tree.map(lambda a: np.asarray(a)[:n], x)
        return self._from_data(x), np.asarray(z)[:n]

    def standard_errors(self, X, y=None, sample_weight=None) -> dict:
        """Asymptotic standard errors of the fitted parameters, given ``X``.

        Minus the Hessian of the log-likelihood of ``X`` at the fitted
        parameters (exact, by autodiff), inverted in unconstrained coordinates
        and mapped back by the delta method (:func:`jaxem.standard_errors`).
        Meaningful when ``X`` is the data the model was fitted to and the fit
        converged. Entries are NaN where the data do not identify them (a
        collapsed component).

        Args:
            X: (N, d) samples, as given to ``fit``.
            y: ignored (scikit-learn compatibility).
            sample_weight: optional (N,) weights, as given to ``fit``.

        Returns:
            A dict keyed by fitted attribute names (``weights_``, ``means_``,
            ``covariances_``; ``p_`` for the binomial mixture), each value
            shaped like the attribute.
        """
        from .._information import standard_errors

        _base.check_fitted(self)
        X = self._check_X(_base.validate_X(self, X, reset=False))
        X = X.astype(self._fit_dtype, copy=False)
        w = _base.sample_weights(sample_weight, X)
        with _base.precision_for(self._fit_dtype):
            model = self._model(X.shape[1])
            params = self._attributes_to_params(self._fit_dtype)
            se = standard_errors(model, params, self._to_data(X), weights=w)
        return {f"{name}_": np.asarray(value) for name, value in se.items()}

    def _from_data(self, x):
        return x

    def _n_parameters(self) -> int:
        """Number of free parameters of the fitted model (for BIC/AIC)."""
        with _base.precision_for(self._fit_dtype):
            params = self._attributes_to_params(self._fit_dtype)
            return int(self._model(self.n_features_in_).num_free_parameters(params))

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = _num_rows(X)
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        return -2 * self.score(X) * _num_rows(X) + 2 * self._n_parameters()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


def _num_rows(X) -> int:
    return int(np.shape(X)[0])


def _bucket(n: int) -> int:
    """Sample count to compile ``sample`` for (``jaxem._buckets``), so drawing
    many sizes compiles a few programs, not one each."""
    return _buckets.bucket(int(n), minimum=8)


def _score_bucket(n: int) -> int:
    """Row count to compile scoring for: the fit's buckets (every data set up
    to 1024 rows shares one program), so the collapsed-component check after a
    fit, ``predict``, ``score`` and a warm start's first bound share it."""
    return _buckets.bucket(int(n), minimum=_buckets.MIN_ROWS)


@functools.partial(jax.jit, static_argnames=("model", "method"))
def draw_restarts(model, method, key, restarts, data, weights, mask):
    """``model.init(fold_in(key, i), data, method, weights, mask=mask)`` for
    each i of ``restarts``, as one compiled program.

    Call it with data padded to a size bucket
    (``jaxem._buckets.pad_observations``: weights 0 and ``mask`` False on
    the padding) and an initialiser whose start does not depend on the
    padding (``models.gaussian_mixture``'s): then one program serves every
    data size of the bucket, with the same result as on the data alone.
    """
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, restarts)
    return jax.vmap(lambda k: model.init(k, data, method, weights, mask=mask))(keys)


def _mean_log_likelihood(model, params, X, to_data, w) -> float:
    log_prob, _ = _padded_log_resp(model, params, to_data(X))
    if w is None:
        return float(np.mean(log_prob))
    return float(np.sum(w * log_prob) / np.sum(w))


def _padded_log_resp(model, params, data):
    data = jax.tree.map(np.asarray, data)
    n = jax.tree.leaves(data)[0].shape[0]
    padded = _buckets.pad_rows(data, _score_bucket(n))
    log_prob, log_resp = _log_resp_jit(model, params, padded)
    return np.asarray(log_prob)[:n], np.asarray(log_resp)[:n]


@functools.partial(jax.jit, static_argnames="model")
def _log_resp_jit(model, params, data):
    table = model.latent.table(model, params, data)
    log_prob = jax.nn.logsumexp(table, axis=1)
    return log_prob, table - log_prob[:, None]


@functools.partial(jax.jit, static_argnames=("model", "n"))
def _sample(model, params, key, n):
    return model.sample(key, params, n)
