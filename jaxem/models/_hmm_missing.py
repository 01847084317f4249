"""Gaussian and Poisson HMMs on data with missing entries, marginalised exactly.

The data are ``{"x": (B, T, d) with missing entries set to 0, "mask": (B, T, d)
bool, True where observed}`` (:func:`jaxem.models.missing_data` from NaN).

- A step with nothing observed has emission log-density 0 under every state:
  the chain passes through it on its transitions alone. It is left out of
  the emission statistics (its expected emission term does not depend on the
  data), and kept in the transition statistics.
- A partly observed step marginalises its missing coordinates: Gaussian
  emissions use the observed block's density ``N(x_o | mu_o, Sigma_oo)`` and,
  in the M-step, the conditional moments of the missing block (as the
  Gaussian mixture, :mod:`jaxem.models._gmm_missing`); Poisson emissions are a
  product over features, so the observed features' factors remain and each
  rate is fitted from the steps where its feature is observed.

Each wrapper keeps the complete-data model's parameters, priors and update:
only the emission table, the statistics, ``init`` (on imputed data) and
``sample`` (fully observed data in this format) change.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .._model import ClosedForm, LatentModel
from . import _gmm_missing
from ._hmm import _valid, _weighted, chain_stats, hmm_factors
from ._logpmf import poisson_logpmf

# About this many (step, state, feature, feature) entries per block.
_BLOCK_ENTRIES = 2**18


def _flat(data):
    x, m = data["x"], jnp.asarray(data["mask"])
    d = x.shape[-1]
    return x.reshape(-1, d), m.reshape(-1, d)


def _imputed(data, lengths):
    """``data["x"]`` (B, T, d) with missing entries set to the column mean of the
    observed entries of the real steps."""
    x, m = _flat(data)
    b, t = data["x"].shape[:2]
    valid = jnp.ones((b, t), x.dtype)
    if lengths is not None:
        valid = (jnp.arange(t)[None, :] < jnp.asarray(lengths)[:, None]).astype(x.dtype)
    flat = _gmm_missing.imputed({"x": x, "mask": m}, valid.reshape(-1))
    return flat.reshape(data["x"].shape)


def _emission_gamma(data, posterior, weights):
    """(B*T, K) posterior weights of the steps with something observed."""
    gamma = _weighted(posterior.marginals, weights)
    gamma = jnp.where(_valid(posterior)[..., None], gamma, 0.0)
    seen = jnp.any(jnp.asarray(data["mask"]), axis=-1)
    gamma = jnp.where(seen[..., None], gamma, 0.0)
    return gamma.reshape(-1, gamma.shape[-1])


@functools.cache
def gaussian(base, covariance_type: str) -> LatentModel:
    """``base`` (a complete-data ``gaussian_hmm``) with missing entries marginalised."""
    ctype = covariance_type
    update = base.m_step.update

    def table(params, data):
        x, m = _flat(data)
        means = jnp.asarray(params["means"])
        x = x.astype(jnp.result_type(x, means))
        k = means.shape[0]
        flat = _gmm_missing.log_table(
            {
                "weights": jnp.ones((k,), x.dtype),
                "means": means,
                "covariances": params["covars"],
            },
            {"x": x, "mask": m},
            ctype,
            _BLOCK_ENTRIES,
        )
        return flat.reshape(data["x"].shape[:-1] + (k,))

    def emission(params, x, z):
        return table(params, jax.tree.map(lambda a: a[None, None], x))[0, 0, z]

    def all_stats(data, posterior, weights, params):
        x, m = _flat(data)
        dtype = posterior.marginals.dtype
        gamma = _emission_gamma(data, posterior, weights)
        s = _gmm_missing.stats(
            {"x": x.astype(dtype), "mask": m},
            gamma,
            None,
            {"means": params["means"], "covariances": params["covars"]},
            ctype,
            _BLOCK_ENTRIES,
            sum_tied=False,
        )
        second = "obs2" if ctype in ("diag", "spherical") else "obsobs"
        return {
            "post": s["n"],
            "obs": s["s1"],
            second: s["s2"],
            "chain": chain_stats(posterior, weights),
        }

    def init(key, data, lengths=None, min_covar=1e-3):
        return base.init(key, _imputed(data, lengths), lengths, min_covar)

    def sample(key, params, n):
        x, z = base.sample(key, params, n)
        return {"x": x, "mask": jnp.ones(x.shape, bool)}, z

    return _wrap(base, emission, table, all_stats, update, init, sample)


@functools.cache
def poisson(base) -> LatentModel:
    """``base`` (a complete-data ``poisson_hmm``) with missing entries marginalised.

    Each rate ``lambda_kj`` is fitted from the steps where feature ``j`` is
    observed: the statistics carry the per-feature posterior mass, and the
    base update (hmmlearn's formula, priors included) sees the per-feature
    mean ``sum gamma x / sum gamma`` over those steps.
    """
    base_update = base.m_step.update

    def table(params, data):
        lam = jnp.asarray(params["lambdas"])
        x = jnp.asarray(data["x"], lam.dtype)
        m = jnp.asarray(data["mask"])
        lead = tuple(range(x.ndim - 1))
        rates = jnp.expand_dims(lam, lead)
        logp = poisson_logpmf(x[..., None, :], rates)
        return jnp.sum(jnp.where(m[..., None, :], logp, 0.0), axis=-1)

    def emission(params, x, z):
        return table(params, jax.tree.map(lambda a: a[None], x))[0, z]

    def all_stats(data, posterior, weights):
        x, m = _flat(data)
        dtype = posterior.marginals.dtype
        gamma = _emission_gamma(data, posterior, weights)
        mf = m.astype(dtype)
        return {
            "post": jnp.sum(gamma, axis=0),
            "post_obs": gamma.T @ mf,
            "obs": gamma.T @ (x.astype(dtype) * mf),
            "chain": chain_stats(posterior, weights),
        }

    def update(s, params):
        # The base update divides obs by post: give it obs rescaled so that
        # this is the mean over the steps where the feature is observed.
        post, post_obs = s["post"], s["post_obs"]
        seen = post_obs > 0
        lam = jnp.asarray(params["lambdas"]).astype(post.dtype)
        mean = jnp.where(seen, s["obs"] / jnp.where(seen, post_obs, 1.0), lam)
        new = base_update({**s, "obs": mean * post[:, None]}, params)
        # A feature never observed in a visited state keeps its rate.
        alive = post[:, None] > 0
        keep = alive & ~seen
        return {**new, "lambdas": jnp.where(keep, lam, new["lambdas"])}

    def init(key, data, lengths=None):
        return base.init(key, _imputed(data, lengths), lengths)

    def sample(key, params, n):
        x, z = base.sample(key, params, n)
        return {"x": x, "mask": jnp.ones(x.shape, bool)}, z

    return _wrap(base, emission, table, all_stats, update, init, sample)


def _wrap(base, emission, table, stats, update, init, sample):
    return LatentModel(
        hmm_factors(emission),
        latent=base.latent,
        constraints=base.constraints,
        m_step=ClosedForm(stats, update),
        log_joint_table=table,
        init=init,
        sample=sample,
        event_shape=base.event_shape,
        name=base.name[:-1] + ", missing='marginalize')",
        log_prior=base.log_prior,
    )
