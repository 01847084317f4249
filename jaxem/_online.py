"""Online (stepwise) EM for data that does not fit: minibatches of statistics.

Each minibatch's E-step gives expected sufficient statistics; a running average
of them (normalised per observation) replaces the full-data sums, and the
closed-form update maps the average to parameters (Cappé & Moulines, 2009;
Liang & Klein, 2009). The step sizes rho_t = (t + offset) ** -exponent with
exponent in (0.5, 1] make the average converge to a stationary point of the
likelihood. Needs a ``ClosedForm`` whose ``update`` returns every parameter.

``online_init`` / ``online_update`` serve a loop over batches read from disk or
a data loader; ``fit_minibatch`` runs epochs over in-memory data in one
compiled ``lax.scan``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _model_checks, _mstep, _validation
from . import constraints as _constraints
from ._fit import FitResult, Status
from ._model import LatentModel

MAX_EPOCHS = 10_000_000
"""Upper bound on ``num_epochs`` (the history keeps one float per epoch)."""


class OnlineState(NamedTuple):
    """State of online EM.

    Attributes:
        params: current parameters.
        stats: running average of per-observation sufficient statistics.
        step: number of minibatches seen (scalar int).
    """

    params: Any
    stats: Any
    step: jax.Array


def _check_model(model):
    if not isinstance(model, LatentModel):
        raise ValueError(f"model: expected a jaxem.LatentModel, got {model!r}")
    if model.m_step is None:
        raise ValueError(
            "model: online EM needs a ClosedForm M-step (sufficient statistics); "
            "this model has none"
        )


def online_init(model: LatentModel, params0: Any, example_batch: Any) -> OnlineState:
    """Start online EM at ``params0``; ``example_batch`` gives the shapes.

    Returns:
        An ``OnlineState`` with zero statistics; the first update replaces them
        entirely (rho_0 = 1).

    Examples:
        >>> import jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.3, 0.7])}
        >>> batches = jnp.array([[5.0, 9.0, 8.0], [4.0, 7.0, 1.0]])
        >>> state = jaxem.online_init(model, params0, batches[0])
        >>> for batch in batches:
        ...     state, batch_ll = jaxem.online_update(model, state, batch)
        >>> int(state.step)
        2
    """
    _check_model(model)
    if _validation.is_concrete(params0, example_batch):
        _validation.check_data_leaves(
            "example_batch", example_batch, model.latent.num_batch_axes
        )
        _validation.check_params_finite("params0", params0)
        _constraints.check_params(model.constraints, params0, "params0")
    params0 = _validation.as_float_params(params0, example_batch)
    _model_checks.check_model(model, params0, example_batch)
    post = jax.eval_shape(
        lambda p, b: model.latent.e_step(model, p, b).posterior, params0, example_batch
    )
    shapes = jax.eval_shape(
        lambda b, q, p: _mstep.call_stats(model.m_step.stats, b, q, None, p),
        example_batch,
        post,
        params0,
    )
    stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return OnlineState(jax.tree.map(jnp.asarray, params0), stats, jnp.asarray(0))


def online_update(
    model: LatentModel,
    state: OnlineState,
    batch: Any,
    weights: Any = None,
    step_exponent: float = 0.6,
    step_offset: float = 1.0,
) -> tuple[OnlineState, jax.Array]:
    """One online-EM step on a minibatch (compiled; reuse for every batch).

    Args:
        model: a model with a full ``ClosedForm`` M-step.
        state: the current ``OnlineState``.
        batch: a minibatch of data, leading axis n (or (b, T) for chains).
        weights: optional (n,) weights (zero weights mark padding).
        step_exponent: kappa in rho_t = (t + offset) ** -kappa, in (0.5, 1].
        step_offset: offset >= 1 (1 makes the first step replace the stats).

    Returns:
        ``(new_state, batch_log_likelihood)``, the latter at the parameters
        before the update.

    Raises:
        ValueError: for a model without a closed form, a ``state`` that is not
            an ``OnlineState``, bad batch, weights or step sizes (values checked
            when concrete).
    """
    _check_model(model)
    if not isinstance(state, OnlineState):
        raise ValueError(
            f"state: expected a jaxem.OnlineState (from jaxem.online_init), got "
            f"{state!r:.60}"
        )
    if _validation.is_concrete(batch, weights):
        (n,) = _validation.check_data_leaves(
            "batch", batch, model.latent.num_batch_axes
        )[:1]
        _validation.check_weights("weights", weights, n)
    _check_step_sizes(step_exponent, step_offset)
    return _online_update(model, state, batch, weights, step_exponent, step_offset)


def _check_step_sizes(step_exponent, step_offset) -> None:
    if _validation.is_concrete(step_exponent) and not (
        0.5 < _validation.check_tolerance("step_exponent", step_exponent) <= 1.0
    ):
        raise ValueError(
            f"step_exponent: expected a number in (0.5, 1], got {step_exponent!r}"
        )
    if _validation.is_concrete(step_offset) and not (
        _validation.check_tolerance("step_offset", step_offset) >= 1.0
    ):
        raise ValueError(f"step_offset: expected a number >= 1, got {step_offset!r}")


@functools.partial(jax.jit, static_argnames=("model",))
def _online_update(model, state, batch, weights, step_exponent, step_offset):
    """:func:`online_update` without argument checks (compiled)."""
    estep = model.latent.e_step(model, state.params, batch, weights)
    count = model.latent.num_observations(batch, weights)
    batch_stats = _mstep.call_stats(
        model.m_step.stats, batch, estep.posterior, weights, state.params
    )
    rho = (state.step + step_offset) ** (-step_exponent)
    stats = jax.tree.map(
        lambda old, new: (1 - rho) * old + rho * new / count, state.stats, batch_stats
    )
    # Updates are ratios of statistics; scaling by the batch size keeps any
    # additive constants (regularisation) on the scale of one batch.
    scaled = jax.tree.map(lambda s: s * count, stats)
    params = model.m_step.update(scaled, state.params)
    params = {**state.params, **params} if isinstance(params, dict) else params
    keep = jnp.isfinite(estep.log_likelihood)
    params = jax.tree.map(lambda a, b: jnp.where(keep, a, b), params, state.params)
    return OnlineState(params, stats, state.step + 1), estep.log_likelihood


def fit_minibatch(
    model: LatentModel,
    params0: Any,
    data: Any,
    *,
    batch_size: int,
    num_epochs: int = 10,
    key: jax.Array | None = None,
    weights: Any = None,
    step_exponent: float = 0.6,
) -> FitResult:
    """Online EM over shuffled minibatches of in-memory ``data``.

    Args:
        model: a model with a full ``ClosedForm`` M-step (``Categorical``).
        params0: initial parameters.
        data: (N, ...) array or pytree.
        batch_size: observations per minibatch; the last batch is padded with
            zero-weight rows.
        num_epochs: passes over the data.
        key: PRNG key for shuffling (default ``jax.random.key(0)``).
        weights: optional (N,) observation weights.
        step_exponent: kappa of the step sizes, in (0.5, 1].

    Returns:
        A ``FitResult``: ``history`` (num_epochs,) holds each epoch's summed
        minibatch log-likelihoods (a running estimate), ``log_likelihood`` the
        exact full-data value at the final parameters, ``n_iter`` the epochs.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> heads, _ = model.sample(jax.random.key(0), {
        ...     "weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.2, 0.8])}, 2000)
        >>> params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.4, 0.6])}
        >>> result = jaxem.fit_minibatch(model, params0, heads.astype(float),
        ...                              batch_size=200, num_epochs=5)
        >>> [round(float(p), 1) for p in jnp.sort(result.params["p"])]
        [0.2, 0.8]
    """
    _check_model(model)
    batch_size = _validation.check_int("batch_size", batch_size)
    num_epochs = _validation.check_int("num_epochs", num_epochs, high=MAX_EPOCHS)
    _check_step_sizes(step_exponent, 1.0)
    _check_key(key)
    if _validation.is_concrete(params0, data, weights):
        model.latent.validate(model, data, weights)
        _validation.check_params_finite("params0", params0)
        _constraints.check_params(model.constraints, params0, "params0")
    # A batch larger than the data is the whole data (padding rows weigh 0).
    batch_size = min(batch_size, jax.tree.leaves(data)[0].shape[0])
    key = jax.random.key(0) if key is None else key
    data = jax.tree.map(jnp.asarray, data)
    params0 = _validation.as_float_params(params0, data)
    _model_checks.check_model(model, params0, data, weights)
    weights = None if weights is None else jnp.asarray(weights)
    return _fit_minibatch(
        model,
        params0,
        data,
        weights,
        key,
        jnp.asarray(step_exponent),
        batch_size=int(batch_size),
        num_epochs=int(num_epochs),
    )


def _check_key(key) -> None:
    """None, a typed key (``jax.random.key``) or a legacy uint32 (2,) key."""
    if key is None:
        return
    typed = isinstance(key, jax.Array) and jnp.issubdtype(
        key.dtype, jax.dtypes.prng_key
    )
    legacy = (
        isinstance(key, jax.Array | np.ndarray)
        and key.shape == (2,)
        and key.dtype == np.uint32
    )
    if not (typed or legacy):
        raise ValueError(
            f"key: expected a jax.random.key(...) or None, got {key!r:.60}"
        )


@functools.partial(jax.jit, static_argnames=("model", "batch_size", "num_epochs"))
def _fit_minibatch(
    model, params0, data, weights, key, step_exponent, *, batch_size, num_epochs
):
    n = jax.tree.leaves(data)[0].shape[0]
    num_batches = -(-n // batch_size)
    padded = num_batches * batch_size
    base_w = jnp.ones(n) if weights is None else weights
    dtype = jax.tree.leaves(params0)[0].dtype
    base_w = jnp.concatenate([base_w, jnp.zeros(padded - n)]).astype(dtype)

    def gather(index):
        # Padding rows repeat row 0 (finite values) with weight 0.
        safe = jnp.where(index < n, index, 0)
        return jax.tree.map(lambda x: x[safe], data), base_w[index]

    example, _ = gather(jnp.arange(batch_size))
    state = online_init(model, params0, example)

    def epoch(state, epoch_key):
        order = jnp.concatenate(
            [jax.random.permutation(epoch_key, n), jnp.arange(n, padded)]
        ).reshape(num_batches, batch_size)

        def step(state, index):
            batch, w = gather(index)
            return _online_update(model, state, batch, w, step_exponent, 1.0)

        state, lls = jax.lax.scan(step, state, order)
        return state, jnp.sum(lls)

    state, history = jax.lax.scan(epoch, state, jax.random.split(key, num_epochs))
    final = model.latent.e_step(model, state.params, data, weights)
    ok = jnp.isfinite(final.log_likelihood)
    return FitResult(
        params=state.params,
        log_likelihood=final.log_likelihood,
        history=history,
        n_iter=jnp.asarray(num_epochs),
        converged=jnp.asarray(False),
        status=jnp.where(ok, Status.MAX_ITER, Status.NONFINITE).astype(jnp.int32),
    )
