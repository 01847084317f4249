"""The M-step: a registered closed form, gradient ascent on Q, or both.

With a ``ClosedForm`` whose ``update`` returns every parameter, the M-step is
that update. Otherwise the leaves it does not return (all of them without a
closed form) are fitted by maximising the expected complete-data log-likelihood

    Q(theta) = E_posterior[log p(x, z | theta)]   (+ log_prior(theta), MAP-EM)

over their unconstrained form with an optax optimiser (L-BFGS by default),
warm-started at the current values, with the closed-form leaves held at their
new values (an ECM step, so EM stays monotone). The optimised values are kept
only if Q did not decrease.

Near convergence an EM step improves Q by about |grad Q|^2 / curvature, far
below the round-off of Q itself (at |grad Q| = 1e-8, about 1e-16 relative). So
the inner solve stops when its gradient has shrunk by ``GRADIENT_RTOL``
relative to the gradient at the start (not below an absolute threshold, which
would stop it before its first step once EM is close), and a step whose change
of Q is within round-off is kept when it goes uphill to first order (the
gradient at the start points along it). EM then keeps converging to round-off,
as a closed form does.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import optax

from . import _compile_cache, _validation
from . import constraints as _constraints

DEFAULT_M_STEP_ITERS = 50
GRADIENT_RTOL = 1e-6
"""The inner solve stops once its gradient is this fraction of the first one
(or below 1e-10 in float64, 1e-6 in float32, whichever is smaller)."""
ROUNDOFF_ULPS = 16
"""Changes of Q within this many ulps of max(1, |Q / N|) are round-off."""


def default_optimizer() -> optax.GradientTransformationExtraArgs:
    """L-BFGS with a zoom line search: converges the smooth inner problem fast."""
    return optax.lbfgs()


def m_step(
    model,
    params: Any,
    data: Any,
    posterior: Any,
    weights: Any = None,
    lengths: Any = None,
    *,
    frozen: tuple[str, ...] = (),
    optimizer: optax.GradientTransformation | None = None,
    num_iters: int | None = None,
) -> Any:
    """One M-step from ``posterior``; returns new params (same structure).

    Compiled once per model, options and shapes: repeated calls (eager, or
    inside a user's ``jit``) reuse the program.

    Args:
        model: the ``LatentModel``.
        params: current parameters (a pytree; a dict for partial updates).
        data: the data, as given to ``fit``.
        weights: optional weights, as given to ``fit``.
        lengths: sequence lengths (chains), as given to ``fit``.
        posterior: the E-step posterior at ``params``.
        frozen: top-level keys of a dict ``params`` held at their current values.
        optimizer: optax optimiser for the gradient part (default L-BFGS).
        num_iters: bound on optimiser iterations (default 50).

    Returns:
        The new parameters.

    Examples:
        >>> import jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.3, 0.8])}
        >>> heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
        >>> resp = jaxem.posterior(model, params, heads)
        >>> new = jaxem.m_step(model, params, heads, resp)
        >>> bool(jaxem.log_likelihood(model, new, heads)
        ...      >= jaxem.log_likelihood(model, params, heads))
        True
    """
    frozen = _check_m_step_args(
        model, params, data, posterior, weights, lengths, frozen, optimizer, num_iters
    )
    return _m_step(
        model,
        params,
        data,
        posterior,
        weights,
        lengths,
        frozen=frozen,
        optimizer=optimizer,
        num_iters=num_iters,
    )


def _check_m_step_args(
    model, params, data, posterior, weights, lengths, frozen, optimizer, num_iters
):
    """``ValueError`` for bad arguments of :func:`m_step` (values only if concrete)."""
    from . import _model_checks
    from ._model import LatentModel

    if not isinstance(model, LatentModel):
        raise ValueError(f"model: expected a jaxem.LatentModel, got {model!r:.60}")
    frozen = _validation.check_frozen(frozen, params, "params")
    _validation.check_optimizer("optimizer", optimizer)
    if num_iters is not None:
        _validation.check_int("num_iters", num_iters)
    if _validation.is_concrete(params, data, posterior, weights, lengths):
        _validation.check_params_finite("params", params)
        model.latent.validate(model, data, weights, lengths)
        _model_checks.check_model(model, params, data, weights, lengths, frozen)
        _model_checks.check_posterior(model, params, data, posterior, lengths)
    return frozen


def _m_step(
    model,
    params: Any,
    data: Any,
    posterior: Any,
    weights: Any = None,
    lengths: Any = None,
    *,
    frozen: tuple[str, ...] = (),
    optimizer: optax.GradientTransformation | None = None,
    num_iters: int | None = None,
) -> Any:
    """:func:`m_step` without argument checks (traceable)."""
    _compile_cache.enable()
    return _m_step_jit(
        model,
        params,
        data,
        posterior,
        weights,
        lengths,
        frozen=tuple(frozen),
        optimizer=optimizer,
        num_iters=num_iters,
    )


def m_step_traced(
    model,
    params: Any,
    data: Any,
    posterior: Any,
    weights: Any = None,
    lengths: Any = None,
    *,
    frozen: tuple[str, ...] = (),
    optimizer: optax.GradientTransformation | None = None,
    num_iters: int | None = None,
) -> Any:
    """:func:`m_step` without its own ``jit``, for use inside traced code."""
    new = params
    fixed = set(frozen)
    if model.m_step is not None:
        stats = call_stats(model.m_step.stats, data, posterior, weights, params)
        update = _closed_form_update(model.m_step.update, stats, params, frozen)
        if isinstance(params, dict) and isinstance(update, dict):
            update = {k: v for k, v in update.items() if k not in frozen}
            new = {**params, **update}
            fixed |= set(update)
        else:
            return update
    if isinstance(params, dict):
        free = tuple(k for k in params if k not in fixed)
    else:
        free = None if not fixed else ()
    if free == ():
        return new
    return _gradient_m_step(
        model, new, data, posterior, weights, lengths, free, optimizer, num_iters
    )


# Compiled once per model, options and shapes: eager calls reuse the program.
_m_step_jit = jax.jit(
    m_step_traced, static_argnames=("model", "frozen", "optimizer", "num_iters")
)


def call_stats(stats, data, posterior, weights, params):
    """Call ``stats(data, posterior, weights)``, passing ``params`` if it takes them.

    Statistics taken about a reference point that depends on the current
    parameters (not on the data) stay additive across chunks, minibatches and
    devices, and keep float32 sums well conditioned.
    """
    if "params" in inspect.signature(stats).parameters:
        return stats(data, posterior, weights, params=params)
    return stats(data, posterior, weights)


def _closed_form_update(update, stats, params, frozen):
    """Call ``update(stats, params)``, passing ``frozen`` to updates that take it.

    An update whose leaves depend on each other (a covariance centred on the
    new means) needs to know which leaves are held fixed to stay an ECM step.
    """
    if frozen and "frozen" in inspect.signature(update).parameters:
        return update(stats, params, frozen=tuple(frozen))
    return update(stats, params)


def _gradient_m_step(
    model, params, data, posterior, weights, lengths, free, optimizer, num_iters
):
    """Maximise Q over the ``free`` keys (all of ``params`` if None)."""
    cons = _constraints.full_tree(model.constraints, params)
    if free is None:
        free_params, free_cons = params, cons
    else:
        free_params = {k: params[k] for k in free}
        free_cons = {k: cons[k] for k in free}

    def assemble(u):
        values = _constraints.from_unconstrained(free_cons, u, free_params)
        return values if free is None else {**params, **values}

    scale = model.latent.num_observations(data, weights, lengths)

    def objective(u):
        values = assemble(u)
        q = model.latent.expected_log_joint(
            model, values, data, posterior, weights, lengths
        )
        if model.log_prior is not None:  # MAP-EM: maximise Q + log p(params)
            q = q + jnp.asarray(model.log_prior(values)).astype(jnp.result_type(q))
        return -q / scale

    u0 = _constraints.to_unconstrained(free_cons, free_params)
    before, grad0 = jax.value_and_grad(objective)(u0)
    u_star = minimise(objective, u0, optimizer, num_iters, start=(before, grad0))
    after = objective(u_star)
    accept = jnp.isfinite(after) & _improves(before, after, grad0, u0, u_star)
    u_new = jax.tree.map(lambda a, b: jnp.where(accept, a, b), u_star, u0)
    return assemble(u_new)


def _improves(before, after, grad, u0, u1):
    """Whether the step u0 -> u1 does not worsen a minimised ``objective``.

    True when the value did not increase, or when its increase is within
    round-off and the step is a descent direction (``grad . (u1 - u0) < 0``):
    then the true change is a decrease too small to be resolved.
    """
    eps = jnp.finfo(jnp.result_type(before)).eps
    noise = ROUNDOFF_ULPS * eps * jnp.maximum(1.0, jnp.abs(before))
    slope = sum(
        jnp.vdot(g, b - a)
        for g, a, b in zip(
            jax.tree.leaves(grad), jax.tree.leaves(u0), jax.tree.leaves(u1), strict=True
        )
    )
    return (after <= before) | ((after <= before + noise) & (slope < 0))


def minimise(objective, u0, optimizer=None, num_iters=None, start=None):
    """Minimise a smooth scalar ``objective`` from ``u0`` with optax.

    Runs at most ``num_iters`` optimiser steps in a ``lax.while_loop``, stopping
    early once the gradient norm is below ``GRADIENT_RTOL`` times its value at
    ``u0`` (capped at 1e-10 in float64, 1e-6 in float32), plus a floor at the
    round-off of the objective's scale. ``start``: ``(value, gradient)`` at
    ``u0`` if already computed.
    """
    opt = optimizer if optimizer is not None else default_optimizer()
    opt = optax.with_extra_args_support(opt)
    num_iters = DEFAULT_M_STEP_ITERS if num_iters is None else num_iters
    dtype = jnp.result_type(*jax.tree.leaves(u0))
    value0, grad0 = jax.value_and_grad(objective)(u0) if start is None else start
    eps = jnp.finfo(dtype).eps
    cap = 1e-10 if dtype == jnp.float64 else 1e-6
    gtol = jnp.minimum(GRADIENT_RTOL * optax.tree.norm(grad0), cap) + eps * (
        1 + jnp.abs(value0)
    )
    value_and_grad = optax.value_and_grad_from_state(objective)
    state0 = opt.init(u0)
    uses_state = optax.tree_utils.tree_get(state0, "value") is not None
    if not uses_state:
        value_and_grad = jax.value_and_grad(objective)

    def evaluate(u, state):
        return value_and_grad(u, state=state) if uses_state else value_and_grad(u)

    def cond(carry):
        _, _, i, gnorm = carry
        return (i < num_iters) & (gnorm > gtol)

    def body(carry):
        u, state, i, _ = carry
        value, grad = evaluate(u, state)
        updates, state = opt.update(
            grad, state, u, value=value, grad=grad, value_fn=objective
        )
        u = optax.apply_updates(u, updates)
        return u, state, i + 1, optax.tree.norm(grad)

    init = (u0, state0, jnp.asarray(0), jnp.asarray(jnp.inf, dtype))
    u, *_ = jax.lax.while_loop(cond, body, init)
    return u
