"""The EM fit loop, and inference helpers (``posterior``, ``log_likelihood``)."""

from __future__ import annotations

import enum
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import (
    _buckets,
    _compile_cache,
    _evidence,
    _fit_args,
    _model_checks,
    _mstep,
    _stationarity,
    _validation,
)
from ._latent import Categorical, EStep, MarkovChain, _markov_chain
from ._latent._gaussian import Gaussian
from ._latent._gaussian_chain import GaussianChain, GaussianChainPosterior
from ._model import LatentModel

MAX_ITER = 10_000_000
"""Upper bound on ``max_iter``: the fit keeps a history of that many floats
(80 MB in float64), so a larger value is refused before anything is allocated.
"""


class Status(enum.IntEnum):
    """Why a fit stopped (``FitResult.status``)."""

    CONVERGED = 0
    """The change of average log-likelihood fell below ``tol`` (a slow EM can
    meet that far from a maximum: see ``FitResult.gradient_norm``)."""
    MAX_ITER = 1
    """``max_iter`` iterations ran without meeting ``tol``."""
    NONFINITE = 2
    """A log-likelihood or a parameter was NaN or infinite; the last finite
    params are returned."""


class FitResult(NamedTuple):
    """The outcome of :func:`fit` (a pytree: it jits and vmaps).

    Attributes:
        params: fitted parameters (the params pytree). For a ``NONFINITE`` stop,
            the last parameters whose log-likelihood was finite.
        log_likelihood: scalar total (weighted) log marginal likelihood of
            ``params``.
        history: (max_iter,) the objective after each iteration's E-step
            (history[i] is that of the parameters after i M-steps), NaN after
            the last iteration. The objective is the total log-likelihood, or
            for a model with a ``log_prior`` (MAP-EM) the log-posterior
            ``log_likelihood + log_prior`` (up to the prior's constant). The
            stopping rule uses the same objective.
        n_iter: number of iterations run (each an E-step and an M-step).
        converged: True when the stopping rule was met: the average
            log-likelihood changed by less than ``tol`` in one iteration, with
            every parameter finite. It does not prove a maximum: a slow EM
            meets it early (see ``gradient_norm``).
        status: a :class:`Status` code (0 converged, 1 max_iter, 2 non-finite).
        gradient_norm: None unless ``fit(..., gradient_norm=True)``; then the
            norm of the gradient of the average log-likelihood at ``params``
            in unconstrained coordinates (:func:`jaxem.gradient_norm`), about 0
            at a stationary point.
        log_prior: None for a model without a ``log_prior``; else the scalar
            ``log_prior(params)``, so ``log_likelihood + log_prior`` is the
            MAP objective the fit maximised (``history[n_iter - 1]`` up to
            the last step). ``log_likelihood`` stays the plain likelihood.
    """

    params: Any
    log_likelihood: jax.Array
    history: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    status: jax.Array
    gradient_norm: Any = None
    log_prior: Any = None


def objective(model, params, log_likelihood):
    """What EM maximises: ``log_likelihood``, plus ``log_prior(params)`` for a
    model with a prior (MAP-EM), in the likelihood's dtype (traceable)."""
    if model.log_prior is None:
        return log_likelihood
    prior = jnp.asarray(model.log_prior(params))
    return log_likelihood + prior.astype(jnp.result_type(log_likelihood))


class _FitState(NamedTuple):
    params: Any
    estep: EStep
    iteration: jax.Array
    history: jax.Array
    previous: jax.Array
    converged: jax.Array
    status: jax.Array
    aux: Any = None  # the state of a custom ``step`` (fit_loop)


def has_converged(log_likelihood, previous, num_observations, tol):
    """The stopping rule shared by ``fit`` and the estimators.

    True when the change of the average log-likelihood per observation (per
    time step for chains) between two iterations is below ``tol``.

    Examples:
        >>> import jaxem
        >>> bool(jaxem.has_converged(-100.0, -100.0005, 1000, 1e-6))
        True
        >>> bool(jaxem.has_converged(-100.0, -101.0, 1000, 1e-6))
        False
    """
    return jnp.abs(log_likelihood - previous) < tol * num_observations


def _e_step(model, params, data, weights, lengths, mask=None, evidence=None) -> EStep:
    if evidence is None:
        estep = model.latent.e_step(model, params, data, weights, lengths)
    else:
        estep = model.latent.e_step(
            model, params, data, weights, lengths, evidence=evidence
        )
    if mask is None:
        return estep

    # Padding rows (mask False) get posterior 0, so statistics that ignore
    # ``weights`` still count only the real rows.
    def zero(p):
        return jnp.where(mask.reshape((-1,) + (1,) * (p.ndim - 1)), p, 0)

    return estep._replace(posterior=jax.tree.map(zero, estep.posterior))


_e_step_jit = jax.jit(_e_step, static_argnames="model")


class _Padded(NamedTuple):
    """Data padded to a size bucket (``_pad``), and how to undo it."""

    data: Any
    weights: Any
    lengths: Any
    mask: Any  # (M,) bool real rows (Categorical), else None
    num_rows: int | None  # N (Categorical) or B (MarkovChain); None: unpadded
    num_steps: int | None  # T (MarkovChain)


def _float_dtype(*trees):
    """The float dtype the fit computes in: that of the float leaves given."""
    floats = [
        leaf
        for leaf in jax.tree.leaves(trees)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
    ]
    dtype = jnp.result_type(*floats) if floats else float
    return jax.dtypes.canonicalize_dtype(dtype)


def _is_paddable(data) -> bool:
    return bool(jax.tree.leaves(data)) and _buckets.can_pad(data)


def _pad(model, params, data, weights, lengths) -> _Padded:
    """Pad concrete data to a size bucket, so the compiled program is reused.

    Only ``Categorical``/``Gaussian`` rows and ``MarkovChain``/``GaussianChain``
    sequences are padded (exactly: see ``jaxem._buckets``); traced or sharded
    data, and other latent structures, pass through unchanged.
    """
    latent = model.latent
    unpadded = _Padded(data, weights, lengths, None, None, None)
    if not _is_paddable(data) or not _validation.is_concrete(weights, lengths):
        return unpadded
    shapes = {jnp.shape(x)[: latent.num_batch_axes] for x in jax.tree.leaves(data)}
    if len(shapes) != 1 or len(next(iter(shapes))) != latent.num_batch_axes:
        return unpadded
    if isinstance(latent, (Categorical, Gaussian)):
        n = next(iter(shapes))[0]
        data, weights, mask = _buckets.pad_observations(
            data, weights, _float_dtype(params, data)
        )
        return _Padded(data, weights, None, mask, n, None)
    if isinstance(latent, (MarkovChain, GaussianChain)):
        b, t = next(iter(shapes))
        data, lengths, weights = _buckets.pad_sequences(data, lengths, weights)
        return _Padded(data, weights, lengths, None, b, t)
    return unpadded


def _unpad_posterior(padded: _Padded, posterior):
    """The posterior of the real rows (sequences and steps) only."""
    if padded.num_rows is None:
        return posterior
    if padded.num_steps is None:
        return _buckets.unpad_rows(posterior, padded.num_rows)
    b, t = padded.num_rows, padded.num_steps
    if isinstance(posterior, GaussianChainPosterior):
        return GaussianChainPosterior(
            *(_buckets.take(a, (slice(b), slice(t))) for a in posterior[:2]),
            _buckets.take(posterior.cross_cov, (slice(b), slice(max(t - 1, 0)))),
        )
    return posterior._replace(
        marginals=_buckets.take(posterior.marginals, (slice(b), slice(t))),
        transitions=_buckets.take(posterior.transitions, (slice(b),)),
    )


def _history_size(max_iter: int) -> int:
    """The history buffer's length: a power of two >= max_iter (at least 128),
    so a new ``max_iter`` rarely needs a new program."""
    return max(128, 1 << (int(max_iter) - 1).bit_length())


def check_max_iter(max_iter, name: str = "max_iter") -> int:
    """``max_iter`` as an int in [0, MAX_ITER], else a ``ValueError``."""
    if (
        isinstance(max_iter, bool)
        or not isinstance(max_iter, numbers.Integral)
        or not 0 <= max_iter <= MAX_ITER
    ):
        raise ValueError(
            f"{name}: expected an int in [0, {MAX_ITER}], got {max_iter!r}"
        )
    return int(max_iter)


def _select(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _all_finite(params) -> jax.Array:
    """True when every floating leaf of ``params`` is finite (a scalar bool)."""
    checks = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(params)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


FIT_STATIC_ARGNAMES = (
    "model",
    "history_size",
    "m_step_optimizer",
    "m_step_iters",
    "frozen",
    "callback",
)


def fit_loop(
    model,
    params0,
    data,
    weights,
    lengths,
    mask,
    tol,
    max_iter,
    *,
    history_size,
    m_step_optimizer,
    m_step_iters,
    frozen,
    callback,
    step=None,
    step_state=None,
    evidence=None,
):
    """The traceable EM loop behind :func:`fit` (history of ``history_size``).

    ``step(params, estep, state) -> (params, estep, state)`` replaces the
    plain EM iteration (an M-step, then the E-step at the new parameters),
    e.g. by a SQUAREM cycle, carrying its own ``state`` (``step_state`` at
    first); it must not lower the objective (:func:`objective`).

    ``max_iter`` and ``tol`` are traced: a new value reuses the program.
    ``mask`` (None or (N,) bool) marks the real rows of padded data;
    ``evidence`` is the (padded) ``latent_evidence`` or None.
    """
    n = model.latent.num_observations(data, weights, lengths)
    estep0 = _e_step(model, params0, data, weights, lengths, mask, evidence)
    dtype = estep0.log_likelihood.dtype
    obj0 = objective(model, params0, estep0.log_likelihood)
    nonfinite = ~jnp.isfinite(obj0) | ~_all_finite(params0)
    state = _FitState(
        params=params0,
        estep=estep0,
        iteration=jnp.asarray(0),
        history=jnp.full((history_size,), jnp.nan, dtype),
        previous=jnp.asarray(jnp.nan, dtype),
        converged=jnp.asarray(False),
        status=jnp.where(nonfinite, Status.NONFINITE, Status.MAX_ITER),
        aux=step_state,
    )

    def cond(s):
        return (s.iteration < max_iter) & ~s.converged & (s.status != Status.NONFINITE)

    def body(s):
        ll = objective(model, s.params, s.estep.log_likelihood)
        if callback is not None:
            jax.debug.callback(callback, s.iteration, ll, ordered=False)
        converged = (s.iteration > 0) & has_converged(ll, s.previous, n, tol)
        if step is None:
            params = _mstep.m_step_traced(
                model,
                s.params,
                data,
                s.estep.posterior,
                weights,
                lengths,
                frozen=frozen,
                optimizer=m_step_optimizer,
                num_iters=m_step_iters,
            )
            estep = _e_step(model, params, data, weights, lengths, mask, evidence)
            aux = s.aux
        else:
            params, estep, aux = step(s.params, s.estep, s.aux)
        # A NaN parameter the likelihood never reads (a spare leaf of a
        # closed-form update) must not pass as converged either.
        new_objective = objective(model, params, estep.log_likelihood)
        bad = ~jnp.isfinite(new_objective) | ~_all_finite(params)
        # A non-finite step ends the loop, so only the previous likelihood is
        # needed with the previous params; the posterior is never read again
        # (keeping the old one would hold a second (N, K) buffer every step).
        estep = estep._replace(
            log_likelihood=jnp.where(bad, s.estep.log_likelihood, estep.log_likelihood),
            per_item=jnp.where(bad, s.estep.per_item, estep.per_item),
        )
        return _FitState(
            params=_select(bad, s.params, params),
            estep=estep,
            iteration=s.iteration + 1,
            history=s.history.at[s.iteration].set(ll),
            previous=ll,
            converged=converged & ~bad,
            status=jnp.where(
                bad,
                Status.NONFINITE,
                jnp.where(converged, Status.CONVERGED, Status.MAX_ITER),
            ),
            aux=aux,
        )

    s = jax.lax.while_loop(cond, body, state)
    prior = None
    if model.log_prior is not None:
        prior = jnp.asarray(model.log_prior(s.params)).astype(dtype)
    return FitResult(
        params=s.params,
        log_likelihood=s.estep.log_likelihood,
        history=s.history,
        n_iter=s.iteration,
        converged=s.converged,
        status=s.status.astype(jnp.int32),
        log_prior=prior,
    )


_fit = jax.jit(fit_loop, static_argnames=FIT_STATIC_ARGNAMES)


def fit(
    model: LatentModel,
    params0: Any,
    data: Any,
    *,
    weights: Any = None,
    lengths: Any = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    m_step_optimizer: optax.GradientTransformation | None = None,
    m_step_iters: int | None = None,
    frozen: tuple[str, ...] = (),
    callback: Callable[[Any, Any], None] | None = None,
    gradient_norm: bool = False,
    accelerate: str | None = None,
    latent_evidence: Any = None,
) -> FitResult:
    """Fit ``model`` by EM from ``params0``, as one compiled ``lax.while_loop``.

    Each iteration runs an E-step (posterior and log-likelihood at the current
    parameters), tests convergence, then runs an M-step. The log-likelihood
    never decreases from one iteration to the next beyond round-off.

    Concrete data of a ``Categorical`` or ``MarkovChain`` model are padded to a
    size bucket, so fits on other numbers of rows (sequences, steps) and with
    other ``max_iter`` or ``tol`` reuse the compiled program. Padding is exact:
    padded rows have weight 0 and posterior 0 (a ``ClosedForm.stats`` that sums
    over rows weighted by the posterior needs no change; one that counts rows
    with ``data.shape[0]`` would be wrong), padded sequences have length 0.

    Args:
        model: a ``LatentModel``.
        params0: initial parameters, a pytree of arrays inside the constraints.
        data: array or pytree of arrays; leading axis N for ``Categorical``,
            leading axes (B, T) for ``MarkovChain``.
        weights: optional non-negative (N,) (or (B,) per-sequence) weights.
        lengths: (B,) valid lengths of padded sequences (``MarkovChain`` only).
        max_iter: maximum number of iterations (at most ``MAX_ITER``). A new
            value reuses the compiled program.
        tol: stop when the average log-likelihood per observation (per time step
            for chains) changes by less than ``tol`` (the average objective,
            log-likelihood + log-prior, for a model with a ``log_prior``).
        m_step_optimizer: optax optimiser for the gradient M-step (default
            ``optax.lbfgs()``).
        m_step_iters: bound on optimiser steps per M-step (default 50).
        frozen: top-level keys of a dict ``params0`` held fixed during the fit.
        callback: optional host function ``callback(iteration, log_likelihood)``
            called each iteration through ``jax.debug.callback`` (progress).
        gradient_norm: also compute ``FitResult.gradient_norm`` at the fitted
            params (one backward pass through an E-step, compiled separately).
        accelerate: None for plain EM, or ``"squarem"``: each iteration is a
            SQUAREM cycle (Varadhan & Roland 2008, S3: two EM steps, a squared
            extrapolation in unconstrained coordinates, one stabilising EM
            step, and a fall-back to the two plain steps whenever that would
            lower the log-likelihood), so the history stays non-decreasing and
            slow EMs converge in far fewer M-steps. ``n_iter`` then counts
            cycles of three M-steps each.
        latent_evidence: optional log-evidence on the latent values, added to
            the log-joint before normalising: (N, K) per observation
            (``Categorical``), (B, T, K) per step (``MarkovChain``). ``-inf``
            clamps a value out (a label), 0 leaves it free, finite values are
            soft labels. The log-likelihood reported (and maximised) is then
            ``log p(x, evidence)`` (see ``docs/labels.md``). Not with
            ``gradient_norm``; continuous latents take none.

    Returns:
        A :class:`FitResult`; ``history`` has shape (max_iter,). Integer or
        bool leaves of ``params0`` are fitted as floats: the floating dtype of
        ``data`` (else of ``params0``'s float leaves, else JAX's default).

    Raises:
        ValueError: for bad inputs (values checked when called with concrete
            arrays): non-finite data, wrong rank or feature count, fewer
            observations than latent values (the weight total, with weights),
            bad weights or lengths, ``params0`` outside its constraints or
            missing a key; options of the wrong type; a ``log_joint``, factor or
            ``ClosedForm`` function whose output has the wrong shape, structure
            or dtype (checked by abstract evaluation, before compiling).

    Examples:
        >>> import jax.numpy as jnp, jax.scipy.stats as st, jaxem
        >>> def log_joint(params, x, z):
        ...     return jnp.log(0.5) + st.binom.logpmf(x, 10, params["p"][z])
        >>> coins = jaxem.LatentModel(
        ...     log_joint, jaxem.Categorical(2),
        ...     constraints={"p": jaxem.constraints.unit_interval})
        >>> heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
        >>> result = jaxem.fit(coins, {"p": jnp.array([0.6, 0.5])}, heads,
        ...                    max_iter=10, tol=0.0)
        >>> [round(float(p), 2) for p in result.params["p"]]
        [0.8, 0.52]
    """
    if not isinstance(model, LatentModel):
        raise ValueError(f"model: expected a jaxem.LatentModel, got {model!r}")
    if (
        isinstance(max_iter, bool)
        or not isinstance(max_iter, numbers.Integral)
        or not 1 <= max_iter <= MAX_ITER
    ):
        raise ValueError(
            f"max_iter: expected a positive int (at most {MAX_ITER}), got {max_iter!r}"
        )
    params0, frozen = _fit_args.check_fit_args(
        model,
        params0,
        data,
        weights,
        lengths,
        tol,
        frozen,
        m_step_optimizer,
        m_step_iters,
        callback,
        gradient_norm,
    )
    evidence = _evidence.check(model, latent_evidence, data)
    if evidence is not None and gradient_norm:
        raise ValueError("gradient_norm: not available with latent_evidence")
    _compile_cache.enable()
    padded = _pad(model, params0, data, weights, lengths)
    evidence = _evidence.pad(evidence, padded.data, model.latent.num_batch_axes)
    # On what the loop will see (padded rows carry weights): one check per
    # model and shape class, also under a user's jit or vmap (trace time only).
    _model_checks.check_model(
        model, params0, padded.data, padded.weights, padded.lengths, frozen
    )
    if accelerate not in (None, "squarem"):
        raise ValueError(
            f"accelerate: expected None or 'squarem', got {accelerate!r:.60}"
        )
    program = _fit
    if accelerate == "squarem":
        from . import _squarem

        program = _squarem._fit_squarem
    result = program(
        model,
        params0,
        padded.data,
        padded.weights,
        padded.lengths,
        padded.mask,
        tol,
        max_iter,
        history_size=_history_size(max_iter),
        m_step_optimizer=m_step_optimizer,
        m_step_iters=m_step_iters,
        frozen=frozen,
        callback=callback,
        evidence=evidence,
    )
    result = result._replace(
        history=_buckets.take(result.history, (Ellipsis, slice(max_iter)))
    )
    if gradient_norm:
        norm = _stationarity.gradient_norm_traced(
            model, result.params, padded.data, padded.weights, padded.lengths, frozen
        )
        result = result._replace(gradient_norm=norm)
    return result


def posterior(
    model: LatentModel, params: Any, data: Any, *, lengths=None, latent_evidence=None
):
    """Posterior of the latent variables under ``params``.

    ``latent_evidence``: optional (N, K) or (B, T, K) log-evidence on the
    latent values (as in :func:`fit`): the posterior given the data and it.

    Returns:
        ``Categorical``: (N, K) responsibilities whose rows sum to 1.
        ``MarkovChain``: a ``ChainPosterior`` with ``marginals`` (B, T, K) and
        ``transitions`` (B, K, K) expected transition counts.

    Examples:
        >>> import jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.3, 0.8])}
        >>> heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
        >>> resp = jaxem.posterior(model, params, heads)
        >>> resp.shape
        (5, 2)
        >>> bool(jnp.allclose(resp.sum(axis=1), 1.0))
        True
    """
    data = _fit_args.check_inference_args(model, params, data, None, lengths)
    evidence = _evidence.check(model, latent_evidence, data)
    return e_step(model, params, data, lengths=lengths, evidence=evidence).posterior


def log_likelihood(
    model: LatentModel,
    params: Any,
    data: Any,
    *,
    weights=None,
    lengths=None,
    latent_evidence=None,
) -> jax.Array:
    """Total (weighted) log marginal likelihood ``sum_n log p(x_n | params)``.

    Args:
        model, params: the model and its parameters.
        data: (N, ...) observations, or (B, T, ...) sequences for chains.
        weights: optional (N,) (or (B,)) non-negative weights.
        lengths: (B,) valid lengths of padded sequences (chains only).
        latent_evidence: optional (N, K) or (B, T, K) log-evidence on the
            latent values (as in :func:`fit`); the result is then
            ``log p(x, evidence)``.

    Returns:
        A scalar.

    Examples:
        >>> import jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.3, 0.8])}
        >>> heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
        >>> float(jaxem.log_likelihood(model, params, heads)) < 0
        True
    """
    data = _fit_args.check_inference_args(model, params, data, weights, lengths)
    evidence = _evidence.check(model, latent_evidence, data)
    return e_step(
        model, params, data, weights=weights, lengths=lengths, evidence=evidence
    ).log_likelihood


def e_step(model, params, data, *, weights=None, lengths=None, evidence=None) -> EStep:
    """A compiled E-step for concrete data, padded to a size bucket.

    The program is compiled once per model and size bucket; the posterior and
    the per-item log-likelihoods of the real rows (sequences) are returned.
    ``evidence``: checked ``latent_evidence`` (``jaxem._evidence``) or None.
    """
    _compile_cache.enable()
    if isinstance(model.latent, (MarkovChain, GaussianChain)):
        data = _markov_chain._as_batch(model, data)
    padded = _pad(model, params, data, weights, lengths)
    evidence = _evidence.pad(evidence, padded.data, model.latent.num_batch_axes)
    estep = _e_step_jit(
        model,
        params,
        padded.data,
        padded.weights,
        padded.lengths,
        padded.mask,
        evidence,
    )
    if padded.num_rows is None:
        return estep
    return estep._replace(
        posterior=_unpad_posterior(padded, estep.posterior),
        per_item=_buckets.take(estep.per_item, (slice(padded.num_rows),)),
    )
