"""The M-step: a registered closed form, gradient ascent on Q, or both.

With a ``ClosedForm`` whose ``update`` returns every parameter, the M-step is
that update. Otherwise the leaves it does not return (all of them without a
closed form) are fitted by maximising the expected complete-data log-likelihood

    Q(theta) = E_posterior[log p(x, z | theta)]

over their unconstrained form with an optax optimiser (L-BFGS by default),
warm-started at the current values, with the closed-form leaves held at their
new values (an ECM step, so EM stays monotone). The optimised values are kept
only if Q did not decrease.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import optax

from . import constraints as _constraints

DEFAULT_M_STEP_ITERS = 50


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

    Args:
        model: the ``LatentModel``.
        params: current parameters (a pytree; a dict for partial updates).
        data, weights, lengths: as given to ``fit``.
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
        q = model.latent.expected_log_joint(
            model, assemble(u), data, posterior, weights, lengths
        )
        return -q / scale

    u0 = _constraints.to_unconstrained(free_cons, free_params)
    u_star = minimise(objective, u0, optimizer, num_iters)
    before, after = objective(u0), objective(u_star)
    accept = jnp.isfinite(after) & (after <= before)
    u_new = jax.tree.map(lambda a, b: jnp.where(accept, a, b), u_star, u0)
    return assemble(u_new)


def minimise(objective, u0, optimizer=None, num_iters=None):
    """Minimise a smooth scalar ``objective`` from ``u0`` with optax.

    Runs at most ``num_iters`` optimiser steps in a ``lax.while_loop``, stopping
    early once the gradient norm is below a dtype-dependent tolerance.
    """
    opt = optimizer if optimizer is not None else default_optimizer()
    opt = optax.with_extra_args_support(opt)
    num_iters = DEFAULT_M_STEP_ITERS if num_iters is None else num_iters
    dtype = jnp.result_type(*jax.tree.leaves(u0))
    gtol = 1e-10 if dtype == jnp.float64 else 1e-6
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
