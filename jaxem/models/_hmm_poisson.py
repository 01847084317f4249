"""The Poisson HMM as a ``LatentModel``."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .. import constraints
from .._latent._markov_chain import MarkovChain
from .._model import ClosedForm, LatentModel
from . import _gmm_missing, _hmm_missing
from ._hmm import (
    _call_name,
    _chain_constraints,
    _chain_init,
    _check_size,
    _flat_valid,
    _masked,
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
from ._logpmf import poisson_logpmf

_POISSON_DEFAULTS = {
    "startprob_prior": 1.0,
    "transmat_prior": 1.0,
    "lambdas_prior": 0.0,
    "lambdas_weight": 0.0,
    "parallel": False,
}


def poisson_hmm(
    n_states: int,
    n_features: int,
    *,
    startprob_prior=1.0,
    transmat_prior=1.0,
    lambdas_prior=0.0,
    lambdas_weight=0.0,
    parallel: bool | None = None,
    missing: str = "raise",
) -> LatentModel:
    """An HMM with independent Poisson emissions per feature.

    Parameters: ``startprob`` (K,), ``transmat`` (K, K), ``lambdas`` (K, d)
    rates. Data: (B, T, d) counts. Closed-form M-step as hmmlearn's
    ``PoissonHMM`` (its gamma prior defaults to 0, i.e. none).
    ``parallel`` selects the forward-backward: True the
    ``lax.associative_scan`` form, False the sequential ``lax.scan``, None
    (the default) by JAX's default backend (parallel on a GPU or TPU,
    sequential on a CPU).
    ``missing="marginalize"``: data ``{"x": (B, T, d), "mask": (B, T, d)
    bool}`` (``jaxem.models.missing_data``), missing counts marginalised
    exactly (``docs/missing-values.md``).

    Examples:
        >>> import jax, jaxem
        >>> model = jaxem.models.poisson_hmm(2, 1)
        >>> counts = jax.numpy.ones((1, 5, 1)) * 3
        >>> model.init(jax.random.key(0), counts)["lambdas"].shape
        (2, 1)
    """
    _check_size("n_states", n_states)
    _check_size("n_features", n_features)
    k, d = int(n_states), int(n_features)
    options = {
        "startprob_prior": _prior("startprob_prior", startprob_prior, (k,)),
        "transmat_prior": _prior("transmat_prior", transmat_prior, (k, k)),
        "lambdas_prior": _prior("lambdas_prior", lambdas_prior, (k, d), 0.0),
        "lambdas_weight": _prior("lambdas_weight", lambdas_weight, (k, d), 0.0),
        "parallel": _resolve_parallel(parallel),
    }
    model = _poisson_hmm(int(n_states), int(n_features), *options.values())
    if _gmm_missing.check_missing(missing) == "marginalize":
        return _hmm_missing.poisson(model)
    return model


@functools.cache
def _poisson_hmm(
    n_states,
    n_features,
    startprob_prior,
    transmat_prior,
    lambdas_prior,
    lambdas_weight,
    parallel,
):
    k, d = n_states, n_features

    # The saddle-point form: x log(lambda) - lambda - log x! cancels for large
    # counts (a nat per count near 1e6 in float32); 0 log 0 = 0.
    def emission(params, x, z):
        return jnp.sum(poisson_logpmf(x, params["lambdas"][z]))

    def table(params, data):
        lam = params["lambdas"]
        data = jnp.asarray(data, lam.dtype)
        lead = tuple(range(data.ndim - 1))
        rates = jnp.expand_dims(lam, lead)  # (..., K, d)
        return jnp.sum(poisson_logpmf(data[..., None, :], rates), axis=-1)

    def stats(data, posterior, weights):
        x = _masked(jnp.asarray(data, posterior.marginals.dtype), _valid(posterior))
        gamma = _weighted(posterior.marginals, weights)
        return {
            "post": jnp.sum(gamma, axis=(0, 1)),
            "obs": jnp.einsum("btk,btd->kd", gamma, x),
            "chain": chain_stats(posterior, weights),
        }

    def update(s, params):
        new = chain_update(s["chain"], params, startprob_prior, transmat_prior)
        post = s["post"]
        alive = post > 0
        n = post.sum()
        y_bar = s["obs"] / jnp.where(alive, post, 1.0)[:, None]
        l_prior = jnp.broadcast_to(jnp.asarray(lambdas_prior, y_bar.dtype), (k, d))
        l_weight = jnp.broadcast_to(jnp.asarray(lambdas_weight, y_bar.dtype), (k, d))
        lam = (l_prior + n * y_bar) / (l_weight + n)
        # A rate of exactly 0 (a state that only saw zero counts) is the
        # maximum, but it leaves the positive support: keep the smallest
        # positive normal number instead (its log-likelihood differs by ~1e-308).
        lam = jnp.maximum(lam, jnp.finfo(lam.dtype).tiny)
        lam = jnp.where(alive[:, None], lam, params["lambdas"])
        return {**new, "lambdas": lam}

    def init(key, data, lengths=None):
        data = jnp.asarray(data)
        dtype = jnp.result_type(data.dtype, float)
        x, w = _flat_valid(jnp.asarray(data, dtype), lengths)
        n = w.sum() * d
        mean = jnp.sum(w[:, None] * x) / n
        var = jnp.sum(w[:, None] * (x - mean) ** 2) / n
        kc, kl = jax.random.split(key)
        # hmmlearn's gamma with the data's mean and variance; constant counts
        # (variance 0, e.g. all zeros) get an exponential around max(mean, 1).
        spread = var > 0
        shape = jnp.where(spread, mean**2 / jnp.where(spread, var, 1.0), 1.0)
        scale = jnp.where(spread, var / jnp.where(mean > 0, mean, 1.0), 1.0)
        scale = jnp.where(spread, scale, jnp.maximum(mean, 1.0))
        lam = jax.random.gamma(kl, shape, (k, d), dtype) * scale
        lam = jnp.maximum(lam, jnp.finfo(dtype).tiny)
        return {**_chain_init(kc, k, dtype), "lambdas": lam}

    def emit(key, params, z):
        return jax.random.poisson(key, params["lambdas"][z])

    # hmmlearn's rate update (l_prior + n y_bar) / (l_weight + n) pools the
    # total count n over states: a shrinkage, not the MAP of a fixed prior on
    # the rates, so only the Dirichlet priors enter the MAP objective.
    def log_prior(params):
        return chain_log_prior(params, startprob_prior, transmat_prior)

    has_prior = not all(is_default(v, 1.0) for v in (startprob_prior, transmat_prior))

    options = dict(
        zip(
            _POISSON_DEFAULTS,
            (startprob_prior, transmat_prior, lambdas_prior, lambdas_weight, parallel),
            strict=True,
        )
    )
    return LatentModel(
        hmm_factors(emission),
        latent=MarkovChain(k, parallel=parallel),
        constraints=_chain_constraints(lambdas=constraints.positive),
        m_step=ClosedForm(stats, update),
        log_joint_table=table,
        init=init,
        sample=lambda key, params, n: _sample_chain(key, params, n, emit),
        event_shape=(d,),
        name=_call_name("poisson_hmm", (k, d), options, _POISSON_DEFAULTS),
        log_prior=log_prior if has_prior else None,
    )
