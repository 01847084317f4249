"""The Gaussian HMM: hmmlearn's GaussianHMM as a ``LatentModel``."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import constraints
from .._latent._markov_chain import MarkovChain
from .._model import ClosedForm, LatentModel
from . import _gmm_missing, _hmm_missing, _priors
from ._hmm import (
    COVARIANCE_TYPES,
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

# ------------------------------------------------------------ Gaussian HMM
# Up to this many features, per-feature sums in the emission table and the
# statistics are written out feature by feature (see _gaussian_log_table).
_UNROLL_FEATURES = 16

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
    parallel: bool | None = None,
    singular_floor: float = 0.0,
    missing: str = "raise",
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
    ``parallel`` selects the forward-backward: True the
    ``lax.associative_scan`` form, False the sequential ``lax.scan``, None
    (the default) by JAX's default backend (parallel on a GPU or TPU,
    sequential on a CPU).
    ``missing="marginalize"``: data ``{"x": (B, T, d), "mask": (B, T, d)
    bool}`` (``jaxem.models.missing_data``), missing entries marginalised
    exactly (``docs/missing-values.md``).
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
        "parallel": _resolve_parallel(parallel),
        "singular_floor": _prior("singular_floor", singular_floor, (), 0.0),
    }
    model = _gaussian_hmm(int(n_states), int(n_features), *options.values())
    if _gmm_missing.check_missing(missing) == "marginalize":
        return _hmm_missing.gaussian(model, covariance_type)
    return model


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
    const = d * math.log(2 * math.pi)
    if covariance_type in ("diag", "spherical"):
        var = covars if covariance_type == "diag" else covars[:, None]
        var = jnp.broadcast_to(var, (k, d))
        logdet = jnp.sum(jnp.log(var), axis=-1)
        if d <= _UNROLL_FEATURES:
            # A sum of d elementwise terms fuses into one pass over the
            # (..., K) table; a reduction over a minor axis of d = 1..16
            # would materialise the (..., K, d) differences first.
            m, v = jnp.expand_dims(means, lead), jnp.expand_dims(var, lead)
            quad = sum((x[..., j, None] - m[..., j]) ** 2 / v[..., j] for j in range(d))
        else:
            diff = x[..., None, :] - jnp.expand_dims(means, lead)  # (..., K, d)
            quad = jnp.sum(diff**2 / jnp.expand_dims(var, lead), axis=-1)
    else:
        diff = x[..., None, :] - jnp.expand_dims(means, lead)  # (..., K, d)
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
        gamma = _weighted(posterior.marginals, weights)
        s = {"post": jnp.sum(gamma, axis=(0, 1))}
        if covariance_type in ("diag", "spherical") and d <= _UNROLL_FEATURES:
            # Fused multiply-and-reduce passes over (B, T, K) per feature; an
            # einsum is a batched dot over states that first materialises the
            # (B, T, K, d) differences. Padded steps have gamma = 0 (their x
            # may hold anything, NaN included): the where keeps them out.
            x = jnp.asarray(data)
            ref = ref.astype(x.dtype).reshape((1,) * (x.ndim - 1) + ref.shape)
            obs, obs2 = [], []
            for j in range(d):
                xc = jnp.where(gamma > 0, x[..., j, None] - ref[..., j], 0.0)
                gx = gamma * xc
                obs.append(jnp.sum(gx, axis=(0, 1)))
                obs2.append(jnp.sum(gx * xc, axis=(0, 1)))
            s["obs"], s["obs2"] = jnp.stack(obs, -1), jnp.stack(obs2, -1)
            return s
        x = _masked(data, _valid(posterior))
        lead = (1,) * (x.ndim - 1)
        xc = x[..., None, :] - ref.astype(x.dtype).reshape(lead + ref.shape)
        s["obs"] = jnp.einsum("btk,btkd->kd", gamma, xc)
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

    def log_prior(params):
        dtype = params["means"].dtype
        m_prior, m_weight, c_prior, c_weight = (
            jnp.broadcast_to(jnp.asarray(v, dtype), shape)
            for v, shape in (
                (means_prior, (k, d)),
                (means_weight, (k, d)),
                (covars_prior, cov_shape),
                (covars_weight, weight_shape),
            )
        )
        if covariance_type in ("full", "tied"):
            c = jnp.maximum(c_weight - d, 0).reshape(
                -1 if covariance_type == "full" else ()
            )
        else:
            c = jnp.maximum(c_weight - 1, 0)
        emission = _priors.gaussian_log_prior(
            params["means"],
            params["covars"],
            covariance_type,
            m_prior,
            m_weight,
            c_prior,
            c,
        )
        return chain_log_prior(params, startprob_prior, transmat_prior) + emission

    has_prior = not (
        is_default(startprob_prior, 1.0)
        and is_default(transmat_prior, 1.0)
        and is_default(means_weight, 0.0)
        and is_default(covars_prior, 0.0)
        and is_default(
            np.maximum(
                np.asarray(covars_weight)
                - (d if covariance_type in ("full", "tied") else 1),
                0,
            ),
            0.0,
        )
    )

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
        log_prior=log_prior if has_prior else None,
    )


# --------------------------------------------------------- categorical HMM
