"""The coin (binomial) mixture: K coins, each observation a count of heads."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np

from .. import constraints
from .._latent import Categorical
from .._model import ClosedForm, LatentModel
from . import _priors


def binomial_mixture(
    n_components: int, n_trials: int, *, weights_prior=1.0, p_prior=(1.0, 1.0)
) -> LatentModel:
    """A mixture of ``n_components`` coins, each tossed ``n_trials`` times.

    Parameters: ``{"weights": (K,) simplex, "p": (K,) head probabilities}``.
    Data: (N,) head counts in {0, ..., n_trials}. The M-step is closed form;
    with conjugate priors (``weights_prior``: Dirichlet concentration, a
    number or (K,), each >= 1; ``p_prior``: Beta ``(a, b)``, numbers or (K,)
    arrays, each >= 1) it is the MAP step
    ``weights ∝ n_k + alpha_k - 1``, ``p_k = (h_k + a - 1) /
    (n_trials n_k + a + b - 2)`` and the model has the matching
    ``log_prior`` (MAP-EM, ``docs/priors.md``); the defaults are no prior.
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
    alpha, ab = check_priors(n_components, weights_prior, p_prior)
    return _binomial_mixture(n_components, n_trials, alpha, ab)


def check_priors(k, weights_prior=1.0, p_prior=(1.0, 1.0)):
    """``(alpha, (a, b))``: checked priors as hashable literals, or a
    ``ValueError`` naming the argument (each a number or (K,), >= 1)."""
    alpha = _check_prior("weights_prior", weights_prior, k)
    try:
        a, b = p_prior
    except (TypeError, ValueError):
        raise ValueError(
            f"p_prior: expected a pair (a, b) of Beta parameters, got {_show(p_prior)}"
        ) from None
    return alpha, (_check_prior("p_prior", a, k), _check_prior("p_prior", b, k))


def _check_prior(name, value, k):
    """A prior >= 1, a number or (K,), as a hashable literal."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected a number or an array, got {_show(value)}"
        ) from None
    if arr.shape not in ((), (k,)):
        raise ValueError(
            f"{name}: expected a number or shape ({k},), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 1):
        raise ValueError(
            f"{name}: every value must be finite and >= 1, got {_show(value)}"
        )
    return float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr)


def map_pieces(n_trials, alpha, ab, per_column=False):
    """``(map_update, log_prior)`` of the Dirichlet and Beta priors, or
    ``(None, None)`` when they are flat (no prior). ``per_column``: ``p`` is
    (K, d) (one Beta per component, shared by its columns)."""
    if not any(np.any(np.asarray(v) != 1.0) for v in (alpha, *ab)):
        return None, None

    def beta(dtype):
        a, b = (jnp.asarray(v, dtype) for v in ab)
        if per_column:
            a, b = (v[:, None] if v.ndim else v for v in (a, b))
        return a, b

    def map_update(s, params):
        counts = s["counts"]
        dtype = counts.dtype
        eps = jnp.finfo(dtype).eps
        a, b = beta(dtype)
        weights = _priors.dirichlet_map(counts, alpha)
        counts = counts[:, None] if per_column else counts
        trials = n_trials * counts + a + b - 2
        alive = trials > eps * jnp.maximum(s["counts"].sum(), 1.0)
        p = (s["heads"] + a - 1) / jnp.where(alive, trials, 1.0)
        p = jnp.where(alive, jnp.clip(p, eps, 1 - eps), params["p"])
        return {"weights": weights, "p": p}

    def log_prior(params):
        a, b = beta(params["p"].dtype)
        weights = _priors.dirichlet_log_prior(alpha, params["weights"])
        return weights + _priors.beta_log_prior(a, b, params["p"])

    return map_update, log_prior


@functools.cache
def _binomial_mixture(n_components, n_trials, alpha, ab):
    map_update, log_prior = map_pieces(n_trials, alpha, ab)

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
        if map_update is not None:
            return map_update(s, params)
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
        name=f"binomial_mixture({n_components}, {n_trials}{_suffix(alpha, ab)})",
        log_prior=log_prior,
    )


def _suffix(alpha, ab):
    parts = []
    if np.any(np.asarray(alpha) != 1.0):
        parts.append(f"weights_prior={alpha!r}")
    if any(np.any(np.asarray(v) != 1.0) for v in ab):
        parts.append(f"p_prior={ab!r}")
    return "".join(", " + p for p in parts)


def _show(value) -> str:
    """A value on one short line, for an error message."""
    return " ".join(repr(value).split())[:60]
