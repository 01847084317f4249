"""Standard errors from autodiff: the observed information and the delta method.

jaxem computes the marginal log-likelihood ``l(theta) = sum_n w_n log p(x_n |
theta)`` exactly (log-sum-exp for ``Categorical``, the forward algorithm for
``MarkovChain``), so the observed information (Louis 1982; Efron & Hinkley
1978) is minus its Hessian, obtained by differentiating the E-step twice. It is
taken in the unconstrained coordinates ``u`` of the gradient M-step, where the
maximum is an interior point, and mapped back to the constrained parameters
``theta = g(u)`` by the delta method:

    Cov(theta_hat) ~= J I(u_hat)^+ J^T,    J = d g / d u.

Unconstrained coordinates that no parameter depends on (the unused upper
triangle of a ``positive_definite`` leaf) carry no information and are dropped
by the pseudo-inverse. A direction ``v`` with ``I v = 0`` along which the
parameters DO move (``J v != 0``) is not identified by the data (a parameter the
likelihood ignores, a component with no data): its parameters' standard errors
are reported as NaN rather than as a falsely small number.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _validation
from . import constraints as _constraints
from ._model import LatentModel


def _check(model, params, data, weights, lengths):
    if not isinstance(model, LatentModel):
        raise ValueError(f"model: expected a jaxem.LatentModel, got {model!r}")
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params: expected a pytree of arrays, got no arrays")
    dtype = jnp.result_type(*leaves)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"params: expected floating-point arrays, got {dtype}")
    if _validation.is_concrete(params, data, weights, lengths):
        _constraints.check_params(model.constraints, params, "params")
        model.latent.validate(model, data, weights, lengths)


def _unconstrained_log_likelihood(model, params, data, weights, lengths):
    """``(flat_u, l)``: the flat unconstrained point and ``l`` as a function of it."""
    unconstrained = _constraints.to_unconstrained(model.constraints, params)
    flat_u, unravel = ravel_pytree(unconstrained)

    def constrained(flat):
        return _constraints.from_unconstrained(model.constraints, unravel(flat), params)

    def log_lik(flat):
        p = constrained(flat)
        return model.latent.e_step(model, p, data, weights, lengths).log_likelihood

    return flat_u, log_lik, constrained


@functools.partial(jax.jit, static_argnames="model")
def _information(model, params, data, weights, lengths):
    flat_u, log_lik, _ = _unconstrained_log_likelihood(
        model, params, data, weights, lengths
    )
    return -jax.hessian(log_lik)(flat_u)


def observed_information(
    model: LatentModel, params: Any, data: Any, *, weights=None, lengths=None
) -> jax.Array:
    """Minus the Hessian of the marginal log-likelihood in unconstrained coordinates.

    The coordinates are those of ``jax.flatten_util.ravel_pytree`` applied to
    ``jaxem.constraints.to_unconstrained(model.constraints, params)``: one per
    unconstrained entry, in the params pytree's leaf order (a (K,) simplex leaf
    has K-1 entries; a (d, d) positive-definite leaf has d*d entries of which the
    upper triangle is unused and has zero rows and columns).

    Args:
        model: a ``LatentModel``.
        params: the parameters, usually the maximum-likelihood estimate.
        data: the data, as given to ``fit``.
        weights: optional (N,) (or (B,)) non-negative weights (counts of
            repeated observations).
        lengths: (B,) valid lengths of padded sequences (chains only).

    Returns:
        A (P, P) symmetric matrix, P the number of unconstrained entries.

    Raises:
        ValueError: for a non-``LatentModel``, params off their constraints or
            bad data (when called with concrete arrays).

    Examples:
        >>> import jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.3, 0.8])}
        >>> heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0, 2.0, 9.0, 3.0])
        >>> jaxem.observed_information(model, params, heads).shape
        (3, 3)
    """
    _check(model, params, data, weights, lengths)
    params = jax.tree.map(jnp.asarray, params)
    return _information(model, params, data, weights, lengths)


@functools.partial(jax.jit, static_argnames="model")
def _standard_errors(model, params, data, weights, lengths):
    flat_u, log_lik, constrained = _unconstrained_log_likelihood(
        model, params, data, weights, lengths
    )
    info = -jax.hessian(log_lik)(flat_u)
    info = (info + info.T) / 2
    flat_theta, unravel_theta = ravel_pytree(constrained(flat_u))
    jac = jax.jacobian(lambda f: ravel_pytree(constrained(f))[0])(flat_u)
    values, vectors = jnp.linalg.eigh(info)
    eps = jnp.finfo(info.dtype).eps
    scale = jnp.max(jnp.abs(values))
    tiny = jnp.abs(values) <= jnp.sqrt(eps) * jnp.maximum(scale, eps)
    inverse = jnp.where(tiny, 0.0, 1.0 / jnp.where(tiny, 1.0, values))
    cov_u = (vectors * inverse[None, :]) @ vectors.T
    cov = jac @ cov_u @ jac.T
    # Null directions of the information that move the parameters: the
    # parameters they move are not identified by the data.
    moved = jnp.abs(jac @ vectors)  # (P_theta, P_u)
    jac_scale = jnp.max(jnp.abs(jac), axis=1, keepdims=True)
    unidentified = jnp.any(tiny[None, :] & (moved > jnp.sqrt(eps) * jac_scale), axis=1)
    # A non-positive curvature means params is not a maximum: no standard errors.
    negative = jnp.any((values < 0) & ~tiny)
    se = jnp.sqrt(jnp.clip(jnp.diagonal(cov), 0.0, None))
    se = jnp.where(unidentified | negative, jnp.nan, se)
    return unravel_theta(se.astype(flat_theta.dtype))


def standard_errors(
    model: LatentModel, params: Any, data: Any, *, weights=None, lengths=None
) -> Any:
    """Asymptotic standard errors of the parameters, shaped like ``params``.

    The inverse observed information in unconstrained coordinates (see
    :func:`observed_information`), mapped to the constrained parameters by the
    delta method. Valid at a maximum of the likelihood (a converged fit).

    Entries are NaN where they cannot be given: parameters moved by a direction
    the data do not identify (zero curvature: a parameter the likelihood
    ignores, a component or state that gets no data), and every entry when
    ``params`` is not a maximum (a direction of negative curvature). Deterministic
    directions of a constraint are not errors: the entries of a simplex leaf
    (mixture weights) each get a standard error, and their sum has none.

    Args:
        model: a ``LatentModel``.
        params: the parameters, usually the maximum-likelihood estimate.
        data: the data, as given to ``fit``.
        weights: optional (N,) (or (B,)) non-negative weights.
        lengths: (B,) valid lengths of padded sequences (chains only).

    Returns:
        A pytree with the structure, shapes and dtype of ``params``.

    Examples:
        The genetic linkage data of Dempster, Laird & Rubin (1977): 197 animals
        in four phenotype cells with probabilities (1/2 + t/4, (1-t)/4,
        (1-t)/4, t/4); the first cell splits into latent halves.

        >>> import jax.numpy as jnp, jaxem
        >>> cell = jnp.array([0, 0, 1, 2, 3])  # phenotype of each latent value
        >>> def log_joint(params, x, z):
        ...     t = params["t"]
        ...     prob = jnp.stack([0.5, t / 4, (1 - t) / 4, (1 - t) / 4, t / 4])[z]
        ...     return jnp.where(cell[z] == x, jnp.log(prob), -jnp.inf)
        >>> model = jaxem.LatentModel(log_joint, jaxem.Categorical(5),
        ...     constraints={"t": jaxem.constraints.unit_interval})
        >>> counts = jnp.array([125.0, 18.0, 20.0, 34.0])
        >>> t_hat = {"t": jnp.array(0.626821497)}
        >>> se = jaxem.standard_errors(model, t_hat, jnp.arange(4), weights=counts)
        >>> round(float(se["t"]), 4)
        0.0515
    """
    _check(model, params, data, weights, lengths)
    params = jax.tree.map(jnp.asarray, params)
    return _standard_errors(model, params, data, weights, lengths)
