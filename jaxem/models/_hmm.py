"""Hidden Markov models: the pieces every prebuilt HMM shares.

Every prebuilt HMM (``_hmm_gaussian``, ``_hmm_categorical``,
``_hmm_poisson``) has parameters ``{"startprob": (K,), "transmat": (K, K),
...emission}`` and a closed-form M-step that follows hmmlearn 0.3.3 update for
update, including its optional Dirichlet / normal / inverse-gamma priors (whose
defaults here are the maximum-likelihood values). States that receive no
posterior mass keep their previous parameters instead of turning into NaN.

``hmm_factors`` and ``hmm_closed_form`` let a user declare an HMM with any
emission: the initial and transition probabilities get their closed form, the
emission parameters the gradient M-step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import constraints
from .._latent._markov_chain import ChainFactors, _parallel_by_default
from .._model import ClosedForm
from . import _priors

COVARIANCE_TYPES = ("spherical", "diag", "full", "tied")


# ------------------------------------------------------- shared chain parts
def _log_startprob(params, z):
    return jnp.log(params["startprob"][z])


def _log_transmat(params, z_prev, z):
    return jnp.log(params["transmat"][z_prev, z])


def hmm_factors(emission) -> ChainFactors:
    """``ChainFactors`` with the standard initial and transition factors.

    ``initial(params, z) = log params["startprob"][z]`` and
    ``transition(params, i, j) = log params["transmat"][i, j]``; ``emission``
    is yours: ``emission(params, x, z) -> scalar`` for ONE time step.

    Examples:
        >>> import jax.numpy as jnp, jax.scipy.stats as st, jaxem
        >>> factors = jaxem.models.hmm_factors(
        ...     lambda p, x, z: st.t.logpdf(x, 3.0, p["loc"][z]))
        >>> model = jaxem.LatentModel(
        ...     factors, jaxem.MarkovChain(2),
        ...     constraints={"startprob": jaxem.constraints.simplex,
        ...                  "transmat": jaxem.constraints.simplex},
        ...     m_step=jaxem.models.hmm_closed_form())
        >>> model.num_values
        2
    """
    if not callable(emission):
        raise ValueError("emission: expected a function emission(params, x, z)")
    return ChainFactors(_log_startprob, _log_transmat, emission)


def _weighted(gamma, weights):
    return gamma if weights is None else gamma * weights[:, None, None]


def chain_stats(posterior, weights=None) -> dict:
    """Expected initial-state and transition counts, summed over sequences."""
    gamma = posterior.marginals[:, 0, :]
    xi = posterior.transitions
    if weights is not None:
        gamma = gamma * weights[:, None]
        xi = xi * weights[:, None, None]
    return {"start": jnp.sum(gamma, axis=0), "trans": jnp.sum(xi, axis=0)}


def _dirichlet_update(counts, prior, previous):
    """hmmlearn's MAP update: max(prior - 1 + counts, 0), normalised; zeros of
    ``previous`` stay zero (forbidden transitions); empty rows keep
    ``previous`` (hmmlearn would leave a zero row)."""
    prior = jnp.broadcast_to(jnp.asarray(prior, counts.dtype), counts.shape)
    new = jnp.maximum(prior - 1 + counts, 0.0)
    new = jnp.where(previous == 0, 0.0, new)
    total = jnp.sum(new, axis=-1, keepdims=True)
    alive = total > 0
    return jnp.where(alive, new / jnp.where(alive, total, 1.0), previous)


def chain_update(stats, params, startprob_prior=1.0, transmat_prior=1.0) -> dict:
    """New ``startprob`` and ``transmat`` from :func:`chain_stats`."""
    return {
        "startprob": _dirichlet_update(
            stats["start"], startprob_prior, params["startprob"]
        ),
        "transmat": _dirichlet_update(
            stats["trans"], transmat_prior, params["transmat"]
        ),
    }


def chain_log_prior(params, startprob_prior=1.0, transmat_prior=1.0):
    """The Dirichlet log-prior of ``startprob`` and each ``transmat`` row
    (hmmlearn's priors; entries fixed at 0 contribute 0)."""
    return _priors.dirichlet_log_prior(
        startprob_prior, params["startprob"]
    ) + _priors.dirichlet_log_prior(transmat_prior, params["transmat"])


def is_default(value, default) -> bool:
    """Whether a hashable prior literal equals ``default`` everywhere."""
    return bool(np.all(np.asarray(value, np.float64) == default))


def hmm_closed_form(
    emission_stats=None,
    emission_update=None,
    *,
    startprob_prior=1.0,
    transmat_prior=1.0,
) -> ClosedForm:
    """A ``ClosedForm`` for ``startprob``/``transmat`` (and optionally emissions).

    Without ``emission_stats``/``emission_update`` it updates only
    ``"startprob"`` and ``"transmat"``: every other parameter (the emission's)
    is then fitted by the gradient M-step, so any emission density works.

    Args:
        emission_stats: optional ``(data, posterior, weights) -> pytree`` of
            additive emission statistics.
        emission_update: optional ``(stats, params) -> dict`` of new emission
            parameters.
        startprob_prior, transmat_prior: Dirichlet concentrations (1 = none).

    Returns:
        A ``jaxem.ClosedForm``.
    """
    if (emission_stats is None) != (emission_update is None):
        raise ValueError("emission_stats, emission_update: give both or neither")

    def stats(data, posterior, weights):
        out = {"chain": chain_stats(posterior, weights)}
        if emission_stats is not None:
            out["emission"] = emission_stats(data, posterior, weights)
        return out

    def update(s, params):
        new = chain_update(s["chain"], params, startprob_prior, transmat_prior)
        if emission_update is not None:
            new.update(emission_update(s["emission"], params))
        return new

    return ClosedForm(stats, update)


def _chain_constraints(**emission):
    return {
        "startprob": constraints.simplex,
        "transmat": constraints.simplex,
        **emission,
    }


def _valid(posterior):
    """(B, T) mask of valid steps: marginals sum to 1 there and to 0 in padding."""
    return jnp.sum(posterior.marginals, axis=-1) > 0


def _masked(x, valid):
    return jnp.where(valid.reshape(valid.shape + (1,) * (x.ndim - 2)), x, 0)


def _chain_init(key, num_states, dtype):
    """hmmlearn's start: startprob and transmat rows ~ Dirichlet(1/K)."""
    k1, k2 = jax.random.split(key)
    alpha = jnp.full((num_states,), 1.0 / num_states, dtype)
    startprob = jax.random.dirichlet(k1, alpha, dtype=dtype)
    transmat = jax.random.dirichlet(k2, alpha, (num_states,), dtype=dtype)
    return {"startprob": startprob, "transmat": transmat}


def _sample_chain(key, params, n, emit):
    """One sequence of ``n`` steps: (x (n, ...), z (n,))."""
    params = jax.tree.map(jnp.asarray, params)
    k0, kz, kx = jax.random.split(key, 3)
    z0 = jax.random.categorical(k0, jnp.log(params["startprob"]))
    log_trans = jnp.log(params["transmat"])

    def step(z, k):
        nxt = jax.random.categorical(k, log_trans[z])
        return nxt, nxt

    _, rest = jax.lax.scan(step, z0, jax.random.split(kz, n - 1))
    z = jnp.concatenate([z0[None], rest])
    x = jax.vmap(emit, in_axes=(0, None, 0))(jax.random.split(kx, n), params, z)
    return x, z


def _flat_valid(data, lengths):
    """(B*T, ...) observations and (B*T,) 0/1 weights of the valid steps."""
    b, t = data.shape[:2]
    if lengths is None:
        mask = jnp.ones((b, t), data.dtype)
    else:
        mask = (jnp.arange(t)[None, :] < jnp.asarray(lengths)[:, None]).astype(
            data.dtype
        )
    return data.reshape((b * t,) + data.shape[2:]), mask.reshape(-1)


def _hashable(x):
    """A prior as a hashable literal (float or nested tuple) for caching."""
    arr = np.asarray(x, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else tuple(map(_hashable, arr))


def _call_name(factory, args, options, defaults):
    extra = [f"{k}={v!r}" for k, v in options.items() if v != defaults[k]]
    return f"{factory}({', '.join([*map(repr, args), *extra])})"


def _resolve_parallel(parallel) -> bool:
    """``parallel`` of an HMM factory: None chooses by JAX's default backend
    (the parallel scan on a GPU or TPU, the sequential one on a CPU), as
    ``MarkovChain(parallel=None)``; resolved before the model cache, so the
    cached model records the choice."""
    return _parallel_by_default() if parallel is None else bool(parallel)


def _check_size(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or (value < 1)
    ):
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def _prior(name, value, shape, minimum=None):
    """A finite prior broadcastable to ``shape``, as a hashable literal."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected a number or an array, got {value!r}"
        ) from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if minimum is not None and np.any(arr < minimum):
        raise ValueError(f"{name}: must be >= {minimum}, got {value!r}")
    if np.broadcast_shapes(arr.shape, shape) != tuple(shape):
        raise ValueError(
            f"{name}: expected a number or an array broadcastable to {tuple(shape)}, "
            f"got shape {arr.shape}"
        )
    return _hashable(arr)
