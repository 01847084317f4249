"""How far parameters are from a stationary point of the likelihood.

EM stops when the average log-likelihood changes by less than ``tol`` between
two iterations. On a slowly converging EM (a large fraction of missing
information: overlapping mixture components, Hasselblad's Poisson mixture)
each iteration gains little even far from the maximum, so that rule can stop
early: with ``tol=1e-6`` Hasselblad's fit stops 0.08 nats below its maximum.
The gradient of the marginal log-likelihood tells the two cases apart: it
vanishes at a stationary point whatever the speed of EM.

jaxem computes the marginal log-likelihood exactly (log-sum-exp, the forward
algorithm), so its gradient is exact, by autodiff through one E-step. It is
taken in the unconstrained coordinates of the gradient M-step (log for
positive parameters, log-ratios for a simplex, logit, log-Cholesky), where a
maximum is an interior point with zero gradient, and divided by the number of
observations (time steps) that ``tol`` counts, so it has the scale of ``tol``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from . import _model_checks, _validation
from . import constraints as _constraints
from ._model import LatentModel


@functools.partial(jax.jit, static_argnames=("model", "frozen"))
def gradient_norm_traced(model, params, data, weights=None, lengths=None, frozen=()):
    """:func:`gradient_norm` without argument checks (traceable, compiled)."""
    cons = _constraints.full_tree(model.constraints, params)
    if isinstance(params, dict):
        free = {k: v for k, v in params.items() if k not in frozen}
        free_cons = {k: cons[k] for k in free}
    else:
        free, free_cons = params, cons
    count = model.latent.num_observations(data, weights, lengths)

    def average_log_likelihood(u):
        values = _constraints.from_unconstrained(free_cons, u, free)
        p = {**params, **values} if isinstance(params, dict) else values
        estep = model.latent.e_step(model, p, data, weights, lengths)
        ll = estep.log_likelihood
        if model.log_prior is not None:  # MAP-EM: the log-posterior's gradient
            ll = ll + jnp.asarray(model.log_prior(p)).astype(ll.dtype)
        return ll / count

    u = _constraints.to_unconstrained(free_cons, free)
    return optax.tree.norm(jax.grad(average_log_likelihood)(u))


def gradient_norm(
    model: LatentModel,
    params: Any,
    data: Any,
    *,
    weights: Any = None,
    lengths: Any = None,
    frozen: tuple[str, ...] = (),
) -> jax.Array:
    """Norm of the gradient of the average log-likelihood, in unconstrained form.

    ``|| d/du (1/N) sum_n w_n log p(x_n | params(u)) ||_2``, with ``u`` the
    unconstrained coordinates of the free parameters (those not ``frozen``)
    and N the (weighted) number of observations, or of time steps for chains.
    Zero at a stationary point of the likelihood; a fit that stopped on its
    ``tol`` rule far from one (a slow EM) shows a large value.

    Args:
        model: a ``LatentModel``.
        params: the parameters, e.g. ``fit(...).params``.
        data: the data, as given to ``fit``.
        weights: optional weights, as given to ``fit``.
        lengths: sequence lengths (chains), as given to ``fit``.
        frozen: top-level keys of a dict ``params`` left out (held fixed).

    Returns:
        A non-negative scalar.

    Raises:
        ValueError: for bad arguments (values checked when concrete).

    Examples:
        >>> import jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
        >>> params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
        >>> early = jaxem.fit(model, params0, heads, max_iter=2, tol=0.0)
        >>> late = jaxem.fit(model, params0, heads, max_iter=500, tol=0.0)
        >>> bool(jaxem.gradient_norm(model, late.params, heads) < 1e-6
        ...      < jaxem.gradient_norm(model, early.params, heads))
        True
    """
    if not isinstance(model, LatentModel):
        raise ValueError(f"model: expected a jaxem.LatentModel, got {model!r:.60}")
    frozen = _validation.check_frozen(frozen, params, "params")
    if _validation.is_concrete(params, data, weights, lengths):
        _validation.check_params_finite("params", params)
        model.latent.validate(model, data, weights, lengths)
    data = jax.tree.map(jnp.asarray, data)
    params = jax.tree.map(jnp.asarray, params)
    weights = None if weights is None else jnp.asarray(weights)
    lengths = None if lengths is None else jnp.asarray(lengths)
    _model_checks.check_model(model, params, data, weights, lengths, frozen)
    return gradient_norm_traced(model, params, data, weights, lengths, frozen)
