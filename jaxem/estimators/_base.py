"""Host-side machinery shared by the estimators, built on scikit-learn's own.

The estimators are scikit-learn estimators: they subclass
``sklearn.base.BaseEstimator`` (parameters, ``clone``, ``repr``), declare every
constructor argument in ``_parameter_constraints`` (sklearn's ``Interval`` /
``StrOptions``; ``self._validate_params()`` at the top of ``fit`` refuses bad
values with sklearn's ``InvalidParameterError`` naming the argument), read X
with :func:`validate_X` (sklearn's ``validate_data``: ``n_features_in_``,
``feature_names_in_``, pandas) and state their needs in ``__sklearn_tags__``.

How an estimator uses this module::

    def fit(self, X, y=None):
        self._validate_params()
        X = _base.validate_X(self, X, reset=True, ensure_min_samples=2)
        with _base.precision_for(X.dtype):      # every compiled call inside
            ...                                 # restarts via fit_restarts
        self._fit_dtype = X.dtype               # predict/score follow it

    def predict(self, X):
        _base.check_fitted(self)
        X = _base.validate_X(self, X, reset=False)
        with _base.precision_for(self._fit_dtype):
            ...

Estimators are thin: they build initial parameters for ``n_init`` restarts,
run all restarts as ONE vmapped, jitted ``jaxem.fit`` (:func:`fit_restarts`),
keep the best and expose fitted attributes. Nothing here runs per iteration.
"""

from __future__ import annotations

import functools
import numbers
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import sklearn.exceptions
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from .. import _buckets, _compile_cache, _progress, _validation
from .. import _fit as _fitmod

NotFittedError = sklearn.exceptions.NotFittedError
"""scikit-learn's own: raised when an estimator is used before ``fit``."""

ConvergenceWarning = sklearn.exceptions.ConvergenceWarning
"""scikit-learn's own: the best restart did not meet ``tol`` within the budget."""


class FitError(RuntimeError, ValueError):
    """A fit could not produce a model: every restart stopped on a non-finite
    log-likelihood, or the data make the model ill-defined.

    A ``ValueError`` as well as a ``RuntimeError``, since the cause is almost
    always the data or the options (scale, ``reg_covar``, initial values).
    """


MAX_ITER = 1_000_000
"""Upper bound on ``max_iter``/``n_iter``: the fit keeps a history of that many
floats per restart, so a larger value is refused rather than allocated."""

MAX_N_INIT = 10_000
"""Upper bound on ``n_init``: the restarts run together, one vmapped program."""

ITERATIONS = Interval(numbers.Integral, 0, MAX_ITER, closed="both")
"""Constraint for ``max_iter``/``n_iter`` (0: return the initialisation)."""

RESTARTS = Interval(numbers.Integral, 1, MAX_N_INIT, closed="both")
"""Constraint for ``n_init``."""

RANDOM_STATE = ["random_state", np.random.Generator, jax.Array]
"""Constraint for ``random_state``: None, an int in [0, 2**32), a numpy
``RandomState`` or ``Generator``, or a JAX key."""


def precision_for(dtype):
    """A context manager in which JAX computes in ``dtype``'s precision.

    ``jax.enable_x64(True)`` for float64, ``(False)`` otherwise. The setting is
    scoped to the ``with`` block and to the calling thread (JAX keeps it in a
    thread-local context); ``jax.config.jax_enable_x64`` is never changed. Run
    every compiled call of an estimator, and the creation of its JAX arrays and
    keys, inside it, so float64 input gives float64 results without warnings
    whatever the global setting, and float32 input stays float32.

    Examples:
        >>> import jax, numpy as np
        >>> from jaxem.estimators import _base
        >>> with _base.precision_for(np.float64):
        ...     print(jax.numpy.asarray(np.ones(2)).dtype)
        float64

    It also turns on jaxem's persistent compilation cache (unless the user
    configured or disabled one, see ``jaxem._compile_cache``) before the
    estimator compiles anything, so a second process reads every program of
    the fit back (the initialisation included).
    """
    _compile_cache.enable()
    return jax.enable_x64(bool(np.dtype(dtype) == np.float64))


def validate_X(estimator, X, *, reset: bool, ensure_min_samples: int = 1, **kwargs):
    """scikit-learn's ``validate_data`` for a float (N, d) X, as a numpy array.

    float32 stays float32; anything else numeric (ints, nullable pandas floats)
    becomes float64. NaN/inf, sparse matrices, objects, too few rows are
    refused with scikit-learn's messages. ``reset=True`` (in ``fit``) records
    ``n_features_in_`` and ``feature_names_in_``; ``reset=False`` checks
    them (a DataFrame with other or reordered columns is refused). Other
    keyword arguments go to ``validate_data``.
    """
    # missing="marginalize" (GaussianMixture, GaussianHMM, PoissonHMM): NaN
    # marks a missing entry; infinity is still refused.
    if getattr(estimator, "missing", "raise") == "marginalize":
        kwargs.setdefault("ensure_all_finite", "allow-nan")
    return validate_data(
        estimator,
        X,
        reset=reset,
        dtype=[np.float64, np.float32],
        ensure_min_samples=ensure_min_samples,
        **kwargs,
    )


def check_fitted(estimator) -> None:
    """Raise :data:`NotFittedError` unless ``fit`` ran (scikit-learn's check)."""
    check_is_fitted(estimator)


def check_n_components(n_components: int, n_samples: int) -> None:
    """scikit-learn's error for more components than samples (a mixture needs
    at least one sample per component)."""
    if n_samples < n_components:
        raise ValueError(
            "Expected n_samples >= n_components "
            f"but got n_components = {n_components}, n_samples = {n_samples}"
        )


def sample_weights(sample_weight, X) -> np.ndarray | None:
    """(N,) non-negative weights in X's dtype, or None; not all zero."""
    if sample_weight is None:
        return None
    w = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
    _validation.check_weights("sample_weight", w, X.shape[0])
    return w


def fit_restarts(
    model,
    params0,
    data,
    weights,
    lengths,
    tol,
    *,
    max_iter,
    frozen=(),
    callback=None,
    evidence=None,
    accelerate=None,
):
    """Run ``jaxem.fit`` for a stack of initial parameters (leading axis R).

    All restarts run as one vmapped program; returns a batched ``FitResult``
    whose ``history`` has shape (R, max_iter). Concrete data are padded to a
    size bucket (exactly, see ``jaxem._buckets``) and ``max_iter`` and ``tol``
    are not compile-time constants, so a fit on other data sizes or with
    another ``max_iter`` reuses the compiled program. ``evidence`` is
    ``fit``'s ``latent_evidence`` (labels), ``accelerate`` None or
    ``"squarem"``.
    """
    from .. import _evidence

    max_iter = _fitmod.check_max_iter(max_iter)
    _compile_cache.enable()
    padded = _fitmod._pad(model, params0, data, weights, lengths)
    evidence = _evidence.pad(evidence, padded.data, model.latent.num_batch_axes)
    results = _fit_restarts(
        model,
        params0,
        padded.data,
        padded.weights,
        padded.lengths,
        padded.mask,
        tol,
        max_iter,
        history_size=_fitmod._history_size(max_iter),
        m_step_optimizer=None,
        m_step_iters=None,
        frozen=tuple(frozen),
        callback=callback,
        evidence=evidence,
        accelerate=accelerate,
    )
    history = _buckets.take(results.history, (slice(None), slice(max_iter)))
    return results._replace(history=history)


@functools.partial(
    jax.jit, static_argnames=_fitmod.FIT_STATIC_ARGNAMES + ("accelerate",)
)
def _fit_restarts(
    model, params0, data, weights, lengths, mask, tol, max_iter, accelerate, **kw
):
    from .._squarem import squarem_loop

    loop = squarem_loop if accelerate == "squarem" else _fitmod.fit_loop

    def one(p):
        return loop(model, p, data, weights, lengths, mask, tol, max_iter, **kw)

    if jax.tree.leaves(params0)[0].shape[0] == 1:
        # One restart: a plain fit, without vmap's batched while_loop, which
        # selects over the whole loop carry every iteration (measured 1.2-1.7x
        # slower for a Gaussian mixture).
        result = one(jax.tree.map(lambda a: a[0], params0))
        return jax.tree.map(lambda a: a[None], result)
    return jax.vmap(one)(params0)


def best_restart(results: _fitmod.FitResult) -> int:
    """Index of the restart with the highest finite log-likelihood."""
    ll = np.asarray(results.log_likelihood, dtype=np.float64)
    finite = np.isfinite(ll)
    if not finite.any():
        raise FitError(
            "every restart stopped on a non-finite log-likelihood (NaN or inf); "
            "check the data scale, reg_covar, or the initial parameters"
        )
    return int(np.argmax(np.where(finite, ll, -np.inf)))


def take(tree: Any, index: int) -> Any:
    """The ``index``-th entry along the leading axis of every leaf.

    Indexes a CPU array through a numpy view: an eager ``x[index]`` compiles a
    small program per leaf shape (a dozen on a first fit).
    """
    return jax.tree.map(lambda x: _buckets.take(x, (index,)), tree)


def check_random_state(random_state) -> jax.Array:
    """A JAX key from ``random_state`` as scikit-learn reads it.

    None draws a seed from numpy's global ``RandomState`` (as scikit-learn
    does), an int is the seed, a numpy ``RandomState``/``Generator`` gives a
    seed drawn from it (so repeated fits differ), a JAX key is used as is.
    """
    if random_state is None:
        seed = np.random.mtrand._rand.randint(0, 2**31 - 1)
    elif isinstance(random_state, numbers.Integral):
        seed = int(random_state)
    elif isinstance(random_state, np.random.RandomState):
        seed = random_state.randint(0, 2**31 - 1)
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(0, 2**31 - 1))
    elif isinstance(random_state, jax.Array):
        return random_state
    else:
        raise ValueError(
            f"random_state: expected None, an int or a numpy random generator, got "
            f"{random_state!r}"
        )
    return jax.random.key(seed)


def warn_not_converged(name: str, n_init: int) -> None:
    """scikit-learn's warning (its text, which its tests match) when the kept
    restart did not meet ``tol``."""
    warnings.warn(
        f"{name}: Best performing initialization did not converge. Try "
        "different init parameters, or increase max_iter, tol, or check for "
        f"degenerate data ({n_init} initialization(s)).",
        ConvergenceWarning,
        stacklevel=3,
    )


def warn_nonfinite(name: str, n_iter: int) -> None:
    """The kept restart stopped on a NaN/inf log-likelihood (not converged)."""
    warnings.warn(
        f"{name}: the fit stopped at iteration {n_iter} because the "
        "log-likelihood of the next parameters was NaN or infinite; the last "
        "parameters with a finite log-likelihood are kept and the fit is not "
        "converged. Check the data scale, the initial values or the "
        "regularisation.",
        ConvergenceWarning,
        stacklevel=3,
    )


def progress_printer(prefix: str, total: int | None = None):
    """A progress display for ``verbose`` fits (tqdm bar, else printed lines).

    The returned ``jaxem._progress.ProgressBar`` is a ``callback(iteration,
    log_likelihood)`` and, better, a context manager: ``with progress_printer(
    name, max_iter) as callback:`` gives a callback of fixed identity, so
    verbose fits do not recompile, and closes the bar at the end.
    """
    return _progress.ProgressBar(prefix, total, min_interval=0.5)


def as_jax(x, dtype=None):
    """``jnp.asarray(x, dtype)``, None stays None (call inside ``precision_for``)."""
    return None if x is None else jnp.asarray(x, dtype=dtype)


# ---------------------------------------------------------------------------
# Still used by an estimator outside the mixtures (``_lgssm.py``); the
# scikit-learn way is an ``Interval`` in ``_parameter_constraints``.


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)
