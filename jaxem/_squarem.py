"""SQUAREM: squared extrapolation of the EM map (Varadhan & Roland 2008, scheme S3).

Plain EM converges linearly, and slowly where the data say little about the
latent variables (overlapping components, near-identical states). SQUAREM
treats one EM step as a fixed-point map ``F`` on the parameters, in the
unconstrained coordinates ``u`` of the gradient M-step, and extrapolates from
two steps:

    u1 = F(u0),  u2 = F(u1),  r = u1 - u0,  v = u2 - 2 u1 + u0,
    alpha = -|r| / |v|   (S3; in [-step_max, -1]; -1 gives u2 itself),
    u' = u0 - 2 alpha r + alpha^2 v,   then one stabilising EM step F(u').

The safeguard keeps EM's guarantee: the extrapolated point is kept only when
its stabilised objective (the log-likelihood, plus the log-prior for a model
with one: MAP-EM) is finite and at least that of u2 (two plain EM steps);
otherwise the cycle returns u2. So the history stays non-decreasing, and every
cycle is at least as good as two EM iterations. One cycle costs
three M-steps and four E-steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _fit, _mstep
from . import constraints as _constraints

M_STEPS_PER_CYCLE = 3
"""EM evaluations (M-steps) per SQUAREM cycle: two plain, one stabilising."""

STEP_FACTOR = 4.0
"""The longest extrapolation ``-alpha`` starts at 1 and is multiplied (divided)
by this after an accepted (a rejected) step at the limit (SQUAREM's ``mstep``)."""


def squarem_loop(
    model, params0, data, weights, lengths, mask, tol, max_iter, **options
):
    """The traceable SQUAREM loop: ``fit_loop``'s contract and keyword options
    (``history_size``, ``m_step_optimizer``, ``m_step_iters``, ``frozen``,
    ``callback``, ``evidence``), one SQUAREM cycle an iteration.

    ``history[i]`` is the log-likelihood after i cycles; ``n_iter`` counts
    cycles (each :data:`M_STEPS_PER_CYCLE` EM evaluations).
    """
    cons = model.constraints
    _, unravel = ravel_pytree(_constraints.to_unconstrained(cons, params0))

    def to_u(params):
        return ravel_pytree(_constraints.to_unconstrained(cons, params))[0]

    def from_u(u):
        return _constraints.from_unconstrained(cons, unravel(u), params0)

    evidence = options.get("evidence")

    def e_step(params):
        return _fit._e_step(model, params, data, weights, lengths, mask, evidence)

    def em(params, estep):
        new = _mstep.m_step_traced(
            model,
            params,
            data,
            estep.posterior,
            weights,
            lengths,
            frozen=options["frozen"],
            optimizer=options["m_step_optimizer"],
            num_iters=options["m_step_iters"],
        )
        return new, e_step(new)

    def cycle(params, estep, step_max):
        p1, e1 = em(params, estep)
        p2, e2 = em(p1, e1)
        u0, u1, u2 = to_u(params), to_u(p1), to_u(p2)
        # A parameter on its support's boundary (a probability 0: an HMM's
        # start probabilities for one sequence) is infinite in unconstrained
        # coordinates: those coordinates are not extrapolated.
        finite = jnp.isfinite(u0) & jnp.isfinite(u1) & jnp.isfinite(u2)
        u0, u1 = jnp.where(finite, u0, 0.0), jnp.where(finite, u1, 0.0)
        r, v = u1 - u0, jnp.where(finite, u2, 0.0) - 2 * u1 + u0
        norm_v = jnp.linalg.norm(v)
        alpha = -jnp.linalg.norm(r) / jnp.where(norm_v > 0, norm_v, 1.0)
        alpha = jnp.where(norm_v > 0, jnp.clip(alpha, -step_max, -1.0), -1.0)
        extrapolated = from_u(jnp.where(finite, u0 - 2 * alpha * r + alpha**2 * v, u2))
        p3, e3 = em(extrapolated, e_step(extrapolated))
        # The same objective as the loop's: the log-posterior under a prior.
        obj2 = _fit.objective(model, p2, e2.log_likelihood)
        obj3 = _fit.objective(model, p3, e3.log_likelihood)
        keep = jnp.isfinite(obj3) & _fit._all_finite(p3) & (obj3 >= obj2)
        # Varadhan & Roland's step-length control: the longest step allowed
        # grows while it is taken and shrinks back when an extrapolation fails.
        at_max = alpha <= -step_max
        step_max = jnp.where(
            keep,
            jnp.where(at_max, STEP_FACTOR * step_max, step_max),
            jnp.maximum(1.0, step_max / STEP_FACTOR),
        )
        return _fit._select(keep, p3, p2), _fit._select(keep, e3, e2), step_max

    return _fit.fit_loop(
        model,
        params0,
        data,
        weights,
        lengths,
        mask,
        tol,
        max_iter,
        **options,
        step=cycle,
        step_state=jnp.asarray(1.0, _fit._float_dtype(params0)),
    )


_fit_squarem = jax.jit(squarem_loop, static_argnames=_fit.FIT_STATIC_ARGNAMES)
