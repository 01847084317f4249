"""The coin (binomial) mixture: K coins, each observation a count of heads."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.stats as st

from .. import constraints
from .._latent import Categorical
from .._model import ClosedForm, LatentModel


@functools.cache
def binomial_mixture(n_components: int, n_trials: int) -> LatentModel:
    """A mixture of ``n_components`` coins, each tossed ``n_trials`` times.

    Parameters: ``{"weights": (K,) simplex, "p": (K,) head probabilities}``.
    Data: (N,) head counts in {0, ..., n_trials}. The M-step is closed form;
    ``model.init(key, data, method="quantiles" | "random")`` initialises and
    ``model.sample(key, params, n)`` draws ``(heads (n,), coins (n,))``.
    The same arguments return the same (cached) model, so fits do not retrace.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
        >>> params = model.init(jax.random.key(0), heads)
        >>> sorted(params)
        ['p', 'weights']
    """
    if not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components: expected a positive int, got {n_components!r}")
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials: expected a positive int, got {n_trials!r}")

    def log_joint(params, x, z):
        return jnp.log(params["weights"][z]) + st.binom.logpmf(
            x, n_trials, params["p"][z]
        )

    def log_joint_table(params, data):
        return jnp.log(params["weights"])[None, :] + st.binom.logpmf(
            data[:, None], n_trials, params["p"][None, :]
        )

    def stats(data, resp, weights):
        if weights is not None:
            resp = resp * weights[:, None]
        return {"counts": resp.sum(0), "heads": resp.T @ data}

    def update(s, params):
        total = s["counts"].sum()
        eps = jnp.finfo(s["counts"].dtype).eps
        alive = s["counts"] > eps * total
        p = s["heads"] / (n_trials * jnp.where(alive, s["counts"], 1.0))
        p = jnp.where(alive, jnp.clip(p, eps, 1 - eps), params["p"])
        return {"weights": s["counts"] / total, "p": p}

    def init(key, data, method="quantiles"):
        data = jnp.asarray(data)
        if method == "quantiles":
            levels = (jnp.arange(n_components) + 0.5) / n_components
            p = jnp.quantile(data / n_trials, levels)
            p = jnp.clip(0.1 + 0.8 * p, 0.05, 0.95)
            weights = jnp.full(n_components, 1.0 / n_components, data.dtype)
            jitter = 0.01 * jax.random.uniform(key, (n_components,), data.dtype)
            return {"weights": weights, "p": jnp.sort(p) + jitter}
        if method == "random":
            resp = jax.random.dirichlet(
                key, jnp.ones(n_components, data.dtype), (data.shape[0],)
            )
            return update(stats(data, resp, None), {"p": jnp.full(n_components, 0.5)})
        raise ValueError(f"method: expected 'quantiles' or 'random', got {method!r}")

    def sample(key, params, n):
        kz, kx = jax.random.split(key)
        z = jax.random.categorical(kz, jnp.log(params["weights"]), shape=(n,))
        x = jax.random.binomial(kx, n_trials, params["p"][z])
        return x, z

    return LatentModel(
        log_joint,
        latent=Categorical(n_components),
        constraints={
            "weights": constraints.simplex,
            "p": constraints.unit_interval,
        },
        m_step=ClosedForm(stats=stats, update=update),
        log_joint_table=log_joint_table,
        init=init,
        sample=sample,
        event_shape=(),
        name=f"binomial_mixture({n_components}, {n_trials})",
    )
