"""The categorical (and multinomial) HMM as a ``LatentModel``."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .. import constraints
from .._latent._markov_chain import MarkovChain
from .._model import ClosedForm, LatentModel
from . import _priors
from ._hmm import (
    _call_name,
    _chain_constraints,
    _chain_init,
    _check_size,
    _prior,
    _resolve_parallel,
    _sample_chain,
    _valid,
    _weighted,
    chain_log_prior,
    chain_stats,
    chain_update,
    hmm_factors,
    is_default,
)

# Up to this many symbols the emission counts are a product with the one-hot
# symbols (B*T*M numbers); beyond it, a scatter-add.
_ONE_HOT_SYMBOLS = 64

_CATEGORICAL_DEFAULTS = {
    "startprob_prior": 1.0,
    "transmat_prior": 1.0,
    "emissionprob_prior": 1.0,
    "parallel": False,
    "n_draws": None,
}


def categorical_hmm(
    n_states: int,
    n_symbols: int,
    *,
    startprob_prior=1.0,
    transmat_prior=1.0,
    emissionprob_prior=1.0,
    parallel: bool | None = None,
    n_draws: int | None = None,
) -> LatentModel:
    """An HMM with categorical emissions over symbols {0, ..., M-1}.

    Parameters: ``startprob`` (K,), ``transmat`` (K, K), ``emissionprob``
    (K, M). Data: (B, T) integer symbols. Closed-form M-step as hmmlearn's
    ``CategoricalHMM`` (Dirichlet priors default to 1, i.e. none). With
    ``n_draws=c``, each step emits c symbols independently from the state's
    ``emissionprob`` row (data (B, T, c)); None is one symbol per step.
    ``parallel`` selects the forward-backward: True the
    ``lax.associative_scan`` form, False the sequential ``lax.scan``, None
    (the default) by JAX's default backend (parallel on a GPU or TPU,
    sequential on a CPU).

    Examples:
        >>> import jax, jaxem
        >>> model = jaxem.models.categorical_hmm(2, 6)
        >>> sorted(model.init(jax.random.key(0), jax.numpy.zeros((1, 5), int)))
        ['emissionprob', 'startprob', 'transmat']
    """
    _check_size("n_states", n_states)
    _check_size("n_symbols", n_symbols)
    if n_draws is not None:
        _check_size("n_draws", n_draws)
    k, m = int(n_states), int(n_symbols)
    options = {
        "startprob_prior": _prior("startprob_prior", startprob_prior, (k,)),
        "transmat_prior": _prior("transmat_prior", transmat_prior, (k, k)),
        "emissionprob_prior": _prior("emissionprob_prior", emissionprob_prior, (k, m)),
        "parallel": _resolve_parallel(parallel),
        "n_draws": None if n_draws is None else int(n_draws),
    }
    return _categorical_hmm(int(n_states), int(n_symbols), *options.values())


@functools.cache
def _categorical_hmm(
    n_states,
    n_symbols,
    startprob_prior,
    transmat_prior,
    emissionprob_prior,
    parallel,
    n_draws,
):
    k, m = n_states, n_symbols

    def emission(params, x, z):
        return jnp.sum(jnp.log(params["emissionprob"][z, jnp.asarray(x, jnp.int32)]))

    def table(params, data):
        logs = jnp.log(params["emissionprob"]).T[jnp.asarray(data, jnp.int32)]
        return logs if n_draws is None else jnp.sum(logs, axis=-2)

    def stats(data, posterior, weights):
        gamma = _weighted(posterior.marginals, weights)
        symbols = jnp.asarray(data, jnp.int32)
        columns = [symbols] if n_draws is None else jnp.moveaxis(symbols, -1, 0)
        counts = 0
        for column in columns:  # n_draws is static and small
            if m <= _ONE_HOT_SYMBOLS:
                # A (K, B*T) @ (B*T, M) product with the one-hot symbols; a
                # scatter-add (segment_sum) is a serial loop over the steps.
                # Padded steps have gamma = 0, whatever symbol they hold.
                onehot = jax.nn.one_hot(column, m, dtype=gamma.dtype)
                counts = counts + jnp.einsum("btk,btm->km", gamma, onehot)
            else:
                x = jnp.where(_valid(posterior), column, 0)
                counts = (
                    counts
                    + jax.ops.segment_sum(
                        gamma.reshape(-1, k), x.reshape(-1), num_segments=m
                    ).T
                )
        return {"obs": counts, "chain": chain_stats(posterior, weights)}

    def update(s, params):
        new = chain_update(s["chain"], params, startprob_prior, transmat_prior)
        prior = jnp.broadcast_to(
            jnp.asarray(emissionprob_prior, s["obs"].dtype), s["obs"].shape
        )
        e = jnp.maximum(prior - 1 + s["obs"], 0.0)
        total = e.sum(-1, keepdims=True)
        alive = total > 0
        e = jnp.where(alive, e / jnp.where(alive, total, 1.0), params["emissionprob"])
        return {**new, "emissionprob": e}

    def init(key, data, lengths=None):
        dtype = jnp.result_type(float)
        kc, ke = jax.random.split(key)
        e = jax.random.uniform(ke, (k, m), dtype)
        return {
            **_chain_init(kc, k, dtype),
            "emissionprob": e / e.sum(-1, keepdims=True),
        }

    def emit(key, params, z):
        shape = () if n_draws is None else (n_draws,)
        return jax.random.categorical(
            key, jnp.log(params["emissionprob"][z]), shape=shape
        )

    def log_prior(params):
        chain = chain_log_prior(params, startprob_prior, transmat_prior)
        return chain + _priors.dirichlet_log_prior(
            emissionprob_prior, params["emissionprob"]
        )

    has_prior = not all(
        is_default(v, 1.0)
        for v in (startprob_prior, transmat_prior, emissionprob_prior)
    )

    options = dict(
        zip(
            _CATEGORICAL_DEFAULTS,
            (startprob_prior, transmat_prior, emissionprob_prior, parallel, n_draws),
            strict=True,
        )
    )
    return LatentModel(
        hmm_factors(emission),
        latent=MarkovChain(k, parallel=parallel),
        constraints=_chain_constraints(emissionprob=constraints.simplex),
        m_step=ClosedForm(stats, update),
        log_joint_table=table,
        init=init,
        sample=lambda key, params, n: _sample_chain(key, params, n, emit),
        event_shape=() if n_draws is None else (n_draws,),
        name=_call_name("categorical_hmm", (k, m), options, _CATEGORICAL_DEFAULTS),
        log_prior=log_prior if has_prior else None,
    )


# ------------------------------------------------------------- Poisson HMM
