"""Hidden Markov models: Gaussian, categorical and Poisson emissions.

Every prebuilt HMM has parameters ``{"startprob": (K,), "transmat": (K, K),
...emission}`` and a closed-form M-step that follows hmmlearn 0.3.3 update for
update, including its optional Dirichlet / normal / inverse-gamma priors (whose
defaults here are the maximum-likelihood values). States that receive no
posterior mass keep their previous parameters instead of turning into NaN.

``hmm_factors`` and ``hmm_closed_form`` let a user declare an HMM with any
emission: the initial and transition probabilities get their closed form, the
emission parameters the gradient M-step.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import constraints
from .._latent._markov_chain import ChainFactors, MarkovChain
from .._model import ClosedForm, LatentModel
from ._logpmf import poisson_logpmf

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


# ------------------------------------------------------------ Gaussian HMM
_GAUSSIAN_DEFAULTS = {
    "covariance_type": "diag",
    "startprob_prior": 1.0,
    "transmat_prior": 1.0,
    "means_prior": 0.0,
    "means_weight": 0.0,
    "covars_prior": 0.0,
    "covars_weight": 1.0,
    "parallel": False,
    "singular_floor": 0.0,
}


def gaussian_hmm(
    n_states: int,
    n_features: int,
    covariance_type: str = "diag",
    *,
    startprob_prior=1.0,
    transmat_prior=1.0,
    means_prior=0.0,
    means_weight=0.0,
    covars_prior=0.0,
    covars_weight=1.0,
    parallel: bool = False,
    singular_floor: float = 0.0,
) -> LatentModel:
    """An HMM with Gaussian emissions.

    Parameters: ``startprob`` (K,), ``transmat`` (K, K), ``means`` (K, d) and
    ``covars``: (K, d) variances for ``"diag"``, (K,) for ``"spherical"``,
    (K, d, d) for ``"full"``, (d, d) for ``"tied"``. Data: (B, T, d). The
    M-step is hmmlearn's closed form; the priors (hmmlearn's arguments of the
    same names) default to maximum likelihood. Each prior is a number or an
    array that broadcasts against hmmlearn's statistics: ``startprob_prior``
    (K,), ``transmat_prior`` (K, K), ``means_prior`` and ``means_weight``
    (K, d), ``covars_prior`` and ``covars_weight`` (K, d) for diag and
    spherical (before the spherical average), (K, d, d) and (K, 1, 1) for
    full, (d, d) and a number for tied. ``singular_floor`` > 0 is added to
    the diagonal of a state's new covariance when it is singular in working
    precision (a constant feature, too few points), instead of letting the
    next E-step turn NaN; 0 (the default) leaves the M-step exact.
    ``model.init(key, data, lengths=None, min_covar=1e-3)`` draws
    hmmlearn-style starting values (k-means means, data covariance);
    ``model.sample(key, params, n)`` draws one sequence of n steps. The same
    arguments return the same (cached) model, so fits do not retrace.

    Examples:
        >>> import jaxem
        >>> model = jaxem.models.gaussian_hmm(3, 2, "full")
        >>> sorted(model.constraints), model.event_shape
        (['covars', 'means', 'startprob', 'transmat'], (2,))
    """
    _check_size("n_states", n_states)
    _check_size("n_features", n_features)
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type: expected one of {COVARIANCE_TYPES}, got "
            f"{covariance_type!r}"
        )
    k, d = int(n_states), int(n_features)
    cov_shape = {"full": (k, d, d), "tied": (d, d)}.get(covariance_type, (k, d))
    weight_shape = {"full": (k, 1, 1), "tied": ()}.get(covariance_type, (k, d))
    options = {
        "covariance_type": covariance_type,
        "startprob_prior": _prior("startprob_prior", startprob_prior, (k,)),
        "transmat_prior": _prior("transmat_prior", transmat_prior, (k, k)),
        "means_prior": _prior("means_prior", means_prior, (k, d)),
        "means_weight": _prior("means_weight", means_weight, (k, d), 0.0),
        "covars_prior": _prior("covars_prior", covars_prior, cov_shape),
        "covars_weight": _prior("covars_weight", covars_weight, weight_shape, 0.0),
        "parallel": bool(parallel),
        "singular_floor": _prior("singular_floor", singular_floor, (), 0.0),
    }
    return _gaussian_hmm(int(n_states), int(n_features), *options.values())


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


def _floor_singular(cov, second_moment, floor):
    """``cov + floor * I`` where ``cov`` is singular in working precision.

    Singular: a Cholesky pivot (a conditional variance) is not finite or at
    most ``d * eps`` times its feature's second moment, i.e. lost in the
    rounding of the statistics. ``cov`` (..., d, d), ``second_moment``
    (..., d).
    """
    d = cov.shape[-1]
    eps = jnp.finfo(cov.dtype).eps
    pivots = jnp.diagonal(jnp.linalg.cholesky(cov), axis1=-2, axis2=-1) ** 2
    ok = jnp.all(jnp.isfinite(pivots) & (pivots > d * eps * second_moment), axis=-1)
    eye = jnp.broadcast_to(jnp.eye(d, dtype=cov.dtype), cov.shape)
    return jnp.where(ok[..., None, None], cov, cov + floor * eye)


def _gaussian_log_table(means, covars, covariance_type, x):
    """(..., K) log N(x | means_k, covars_k) for x of shape (..., d)."""
    k, d = means.shape
    lead = tuple(range(x.ndim - 1))
    diff = x[..., None, :] - jnp.expand_dims(means, lead)  # (..., K, d)
    const = d * math.log(2 * math.pi)
    if covariance_type in ("diag", "spherical"):
        var = covars if covariance_type == "diag" else covars[:, None]
        var = jnp.broadcast_to(var, (k, d))
        quad = jnp.sum(diff**2 / jnp.expand_dims(var, lead), axis=-1)
        logdet = jnp.sum(jnp.log(var), axis=-1)
    else:
        cov = covars if covariance_type == "full" else covars[None]
        chol = jnp.linalg.cholesky(cov)
        eye = jnp.broadcast_to(jnp.eye(d, dtype=chol.dtype), chol.shape)
        inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
        inv = jnp.broadcast_to(inv, (k, d, d))
        sol = jnp.einsum("kij,...kj->...ki", inv, diff)
        quad = jnp.sum(sol**2, axis=-1)
        diag = jnp.diagonal(chol, axis1=-2, axis2=-1)
        logdet = jnp.broadcast_to(2 * jnp.sum(jnp.log(diag), axis=-1), (k,))
    return -0.5 * (const + jnp.expand_dims(logdet, lead) + quad)


def _kmeans(key, x, w, k, iters=20):
    """Weighted k-means++ then Lloyd iterations (jittable)."""
    n = x.shape[0]

    def seed(i, carry):
        centers, key = carry
        key, sub = jax.random.split(key)
        d2 = jnp.sum((x[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
        d2 = jnp.where(jnp.arange(k)[None, :] < i, d2, jnp.inf).min(axis=1)
        p = jnp.where(i == 0, w, w * d2)
        p = jnp.where(jnp.sum(p) > 0, p, w)  # fewer distinct points than k
        idx = jax.random.choice(sub, n, p=p / jnp.sum(p))
        return centers.at[i].set(x[idx]), key

    centers, _ = jax.lax.fori_loop(
        0, k, seed, (jnp.zeros((k, x.shape[1]), x.dtype), key)
    )

    def lloyd(_, centers):
        d2 = jnp.sum((x[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
        onehot = jax.nn.one_hot(jnp.argmin(d2, axis=1), k, dtype=x.dtype)
        onehot = onehot * w[:, None]
        counts = onehot.sum(0)
        sums = onehot.T @ x
        return jnp.where(
            counts[:, None] > 0, sums / jnp.maximum(counts, 1e-300)[:, None], centers
        )

    return jax.lax.fori_loop(0, iters, lloyd, centers)


@functools.cache
def _gaussian_hmm(
    n_states,
    n_features,
    covariance_type,
    startprob_prior,
    transmat_prior,
    means_prior,
    means_weight,
    covars_prior,
    covars_weight,
    parallel,
    singular_floor,
):
    k, d = n_states, n_features
    cov_shape = {"full": (k, d, d), "tied": (d, d)}.get(covariance_type, (k, d))
    weight_shape = {"full": (k, 1, 1), "tied": ()}.get(covariance_type, (k, d))

    def emission(params, x, z):
        table = _gaussian_log_table(
            params["means"], params["covars"], covariance_type, x
        )
        return table[z]

    def table(params, data):
        return _gaussian_log_table(
            params["means"], params["covars"], covariance_type, data
        )

    def stats(data, posterior, weights, ref):
        # Moments about each state's current mean ``ref`` (a parameter, so
        # they still add across sequences and chunks): raw moments cancel
        # for data far from the origin (an offset of 1e8 in float64).
        x = _masked(data, _valid(posterior))
        gamma = _weighted(posterior.marginals, weights)
        lead = (1,) * (x.ndim - 1)
        xc = x[..., None, :] - ref.astype(x.dtype).reshape(lead + ref.shape)
        s = {
            "post": jnp.sum(gamma, axis=(0, 1)),
            "obs": jnp.einsum("btk,btkd->kd", gamma, xc),
        }
        if covariance_type in ("diag", "spherical"):
            s["obs2"] = jnp.einsum("btk,btkd->kd", gamma, xc * xc)
        else:
            s["obsobs"] = jnp.einsum("btk,btkd,btke->kde", gamma, xc, xc)
        return s

    def update(s, params, frozen=()):
        post = s["post"]
        dtype = s["obs"].dtype
        m_prior, m_weight, c_prior, c_weight = (
            jnp.broadcast_to(jnp.asarray(v, dtype), shape)
            for v, shape in (
                (means_prior, (k, d)),
                (means_weight, (k, d)),
                (covars_prior, cov_shape),
                (covars_weight, weight_shape),
            )
        )
        alive = post > 0
        denom = post[:, None]
        # The statistics are about the current means ``ref``: hmmlearn's
        # formulas with x replaced by x - ref and each centre shifted alike.
        ref = params["means"]
        step = (m_weight * (m_prior - ref) + s["obs"]) / (m_weight + denom)
        means = jnp.where(alive[:, None], ref + step, ref)
        # hmmlearn: covariances are centred on the means being fitted, or on
        # the current ones when the means are held fixed.
        centre = jnp.zeros_like(step) if "means" in frozen else step
        diff = centre + ref - m_prior
        safe_post = jnp.where(alive, post, 1.0)
        if covariance_type in ("diag", "spherical"):
            c_n = (
                m_weight * diff**2
                + s["obs2"]
                - 2 * centre * s["obs"]
                + centre**2 * denom
            )
            c_d = jnp.maximum(c_weight - 1, 0) + denom
            cov = (c_prior + c_n) / jnp.maximum(c_d, 1e-5)
            if singular_floor > 0:
                moment = s["obs2"] / safe_post[:, None]
                eps = jnp.finfo(dtype).eps
                cov = jnp.where(cov > eps * moment, cov, cov + singular_floor)
            if covariance_type == "spherical":
                cov = jnp.mean(cov, axis=1)
                covars = jnp.where(alive, cov, params["covars"])
            else:
                covars = jnp.where(alive[:, None], cov, params["covars"])
        else:
            obsmean = s["obs"][:, :, None] * centre[:, None, :]
            outer = centre[:, :, None] * centre[:, None, :]
            c_n = (
                m_weight[:, :, None] * diff[:, :, None] * diff[:, None, :]
                + s["obsobs"]
                - obsmean
                - jnp.swapaxes(obsmean, -1, -2)
                + outer * post[:, None, None]
            )
            cvweight = jnp.maximum(c_weight - d, 0)
            moment = jnp.diagonal(s["obsobs"], axis1=-2, axis2=-1)
            if covariance_type == "tied":
                cov = (c_prior + c_n.sum(0)) / (cvweight + post.sum())
                covars = 0.5 * (cov + cov.T)
                if singular_floor > 0:
                    moment = moment.sum(0) / jnp.maximum(post.sum(), 1e-300)
                    covars = _floor_singular(covars, moment, singular_floor)
            else:
                cov = (c_prior + c_n) / (cvweight + post[:, None, None])
                cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
                if singular_floor > 0:
                    moment = moment / safe_post[:, None]
                    cov = _floor_singular(cov, moment, singular_floor)
                covars = jnp.where(alive[:, None, None], cov, params["covars"])
        new = chain_update(s["chain"], params, startprob_prior, transmat_prior)
        return {**new, "means": means, "covars": covars}

    def all_stats(data, posterior, weights, params):
        return {
            **stats(data, posterior, weights, jnp.asarray(params["means"])),
            "chain": chain_stats(posterior, weights),
        }

    def init(key, data, lengths=None, min_covar=1e-3):
        data = jnp.asarray(data)
        dtype = data.dtype
        kc, km = jax.random.split(key)
        x, w = _flat_valid(data, lengths)
        means = _kmeans(km, x, w, k)
        mean = (w @ x) / w.sum()
        centred = (x - mean[None, :]) * jnp.sqrt(w)[:, None]
        # np.cov's n - 1, but one observation gives min_covar alone, not NaN
        dof = jnp.maximum(w.sum() - 1, 1)
        cv = centred.T @ centred / dof + min_covar * jnp.eye(d, dtype=dtype)
        covars = {
            "spherical": jnp.full((k,), jnp.mean(jnp.diag(cv)), dtype),
            "diag": jnp.tile(jnp.diag(cv)[None, :], (k, 1)),
            "full": jnp.tile(cv[None], (k, 1, 1)),
            "tied": cv,
        }[covariance_type]
        return {**_chain_init(kc, k, dtype), "means": means, "covars": covars}

    def emit(key, params, z):
        cov = params["covars"]
        if covariance_type == "diag":
            scale = jnp.diag(jnp.sqrt(cov[z]))
        elif covariance_type == "spherical":
            scale = jnp.sqrt(cov[z]) * jnp.eye(d, dtype=cov.dtype)
        else:
            scale = jnp.linalg.cholesky(cov[z] if covariance_type == "full" else cov)
        eps = jax.random.normal(key, (d,), params["means"].dtype)
        return params["means"][z] + scale @ eps

    cov_constraint = (
        constraints.positive
        if covariance_type in ("diag", "spherical")
        else constraints.positive_definite
    )
    options = dict(
        zip(
            _GAUSSIAN_DEFAULTS,
            (
                covariance_type,
                startprob_prior,
                transmat_prior,
                means_prior,
                means_weight,
                covars_prior,
                covars_weight,
                parallel,
                singular_floor,
            ),
            strict=True,
        )
    )
    return LatentModel(
        hmm_factors(emission),
        latent=MarkovChain(k, parallel=parallel),
        constraints=_chain_constraints(means=constraints.real, covars=cov_constraint),
        m_step=ClosedForm(all_stats, update),
        log_joint_table=table,
        init=init,
        sample=lambda key, params, n: _sample_chain(key, params, n, emit),
        event_shape=(d,),
        name=_call_name("gaussian_hmm", (k, d), options, _GAUSSIAN_DEFAULTS),
    )


# --------------------------------------------------------- categorical HMM
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
    parallel: bool = False,
    n_draws: int | None = None,
) -> LatentModel:
    """An HMM with categorical emissions over symbols {0, ..., M-1}.

    Parameters: ``startprob`` (K,), ``transmat`` (K, K), ``emissionprob``
    (K, M). Data: (B, T) integer symbols. Closed-form M-step as hmmlearn's
    ``CategoricalHMM`` (Dirichlet priors default to 1, i.e. none). With
    ``n_draws=c``, each step emits c symbols independently from the state's
    ``emissionprob`` row (data (B, T, c)); None is one symbol per step.

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
        "parallel": bool(parallel),
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
            x = jnp.where(_valid(posterior), column, 0)
            counts = counts + jax.ops.segment_sum(
                gamma.reshape(-1, k), x.reshape(-1), num_segments=m
            )
        return {"obs": counts.T, "chain": chain_stats(posterior, weights)}

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
    )


# ------------------------------------------------------------- Poisson HMM
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
    parallel: bool = False,
) -> LatentModel:
    """An HMM with independent Poisson emissions per feature.

    Parameters: ``startprob`` (K,), ``transmat`` (K, K), ``lambdas`` (K, d)
    rates. Data: (B, T, d) counts. Closed-form M-step as hmmlearn's
    ``PoissonHMM`` (its gamma prior defaults to 0, i.e. none).

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
        "parallel": bool(parallel),
    }
    return _poisson_hmm(int(n_states), int(n_features), *options.values())


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
    )
