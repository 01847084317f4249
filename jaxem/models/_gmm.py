"""Gaussian mixtures: full, diag, spherical and tied covariances.

Parameters are constrained values (API.md §3)::

    {"weights": (K,) simplex, "means": (K, d) real,
     "covariances": (K, d, d) | (K, d) | (K,) | (d, d)}

for ``full``, ``diag``, ``spherical`` and ``tied`` covariances. This module
builds the model and its initialisers; the E-step kernel (the (N, K) table in
row blocks) is in ``_gmm_estep`` and the additive statistics and closed-form
M-step (sums about each component's current mean) in ``_gmm_stats``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from .. import constraints
from .._latent import Categorical
from .._model import ClosedForm, LatentModel
from . import _gmm_estep, _gmm_missing, _gmm_prior, _gmm_stats
from ._gmm_estep import precision_cholesky as precision_cholesky
from ._gmm_stats import reg_covar_allowance as reg_covar_allowance

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")

# Rows per block: about this many (row, component, feature) entries at once
# (read at trace time, so tests can shrink it).
_BLOCK_ENTRIES = 2**18


def covariance_shape(covariance_type: str, n_components: int, n_features: int):
    """Shape of the ``covariances`` parameter for a covariance type."""
    k, d = n_components, n_features
    return {
        "full": (k, d, d),
        "diag": (k, d),
        "spherical": (k,),
        "tied": (d, d),
    }[covariance_type]


# ------------------------------------------------------------------ initialise
# Every random draw below is independent of the number of rows (inverse-CDF
# draws from a fixed number of uniforms; one key per row, folded from its
# index), and rows outside ``mask`` or of weight 0 are never drawn, so data
# padded to a size bucket (``jaxem._buckets``) start exactly where the data
# do: one compiled initialisation serves every data size of a bucket.


def _sq_distances(x, centres):
    """(N, K) squared Euclidean distances, as one matrix product."""
    x2 = jnp.sum(x * x, axis=1)[:, None]
    c2 = jnp.sum(centres * centres, axis=1)[None, :]
    return jnp.maximum(x2 - 2 * x @ centres.T + c2, 0.0)


def _row_weights(data, weights, mask):
    """(N,) weights of the rows (1 when None), 0 outside ``mask``."""
    w = jnp.ones(data.shape[:1], data.dtype) if weights is None else weights
    w = w.astype(data.dtype)
    return w if mask is None else jnp.where(mask, w, 0)


def _draw_rows(key, p, shape=()):
    """Rows drawn with probability proportional to ``p >= 0`` (inverse CDF, as
    scikit-learn's k-means++): a row of ``p = 0`` is never drawn."""
    cdf = jnp.cumsum(p)
    u = jax.random.uniform(key, shape, p.dtype) * cdf[-1]
    last = jnp.max(jnp.where(p > 0, jnp.arange(p.shape[0]), 0))
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), last)


def _row_uniforms(key, n, shape, dtype):
    """(n, *shape) uniforms, row i from ``fold_in(key, i)``: the first rows are
    the same whatever n."""
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n))
    return jax.vmap(lambda k: jax.random.uniform(k, shape, dtype))(keys)


def kmeans_plusplus(key, data, n_clusters, weights=None, mask=None):
    """Greedy k-means++ seeding (as scikit-learn): returns seed row indices (K,).

    Rows outside the (N,) bool ``mask`` (padding) or of weight 0 are never
    chosen.
    """
    dtype = data.dtype
    w = _row_weights(data, weights, mask)
    trials = 2 + int(math.log(n_clusters))
    key, sub = jax.random.split(key)
    first = _draw_rows(sub, w)
    closest = _sq_distances(data, data[first][None])[:, 0]
    indices = jnp.zeros((n_clusters,), first.dtype).at[0].set(first)

    def body(j, carry):
        indices, closest, key = carry
        key, sub = jax.random.split(key)
        # tiny: duplicates of a chosen row stay drawable when nothing else is
        cand = _draw_rows(sub, w * (closest + jnp.finfo(dtype).tiny), (trials,))
        d2 = jnp.minimum(closest[:, None], _sq_distances(data, data[cand]))
        potential = jnp.sum(w[:, None] * d2, axis=0)
        best = jnp.argmin(potential)
        return indices.at[j].set(cand[best]), d2[:, best], key

    indices, _, _ = lax.fori_loop(1, n_clusters, body, (indices, closest, key))
    return indices


def kmeans(key, data, n_clusters, weights=None, max_iter=300, tol=1e-4, mask=None):
    """Lloyd's algorithm from k-means++ seeds; returns (centres (K, d), labels (N,)).

    Stops when the squared centre shift falls below ``tol`` times the mean
    feature variance (scikit-learn's rule) or after ``max_iter`` iterations.
    Rows outside the (N,) bool ``mask`` (padding) count for nothing.
    """
    dtype = data.dtype
    w = _row_weights(data, weights, mask)
    centres0 = data[kmeans_plusplus(key, data, n_clusters, weights, mask)]
    real = _row_weights(data, None, mask)
    mean = (real @ data) / jnp.sum(real)
    var = (real @ (data - mean[None, :]) ** 2) / jnp.sum(real)
    threshold = tol * jnp.mean(var)

    def step(centres):
        labels = jnp.argmin(_sq_distances(data, centres), axis=1)
        onehot = jax.nn.one_hot(labels, n_clusters, dtype=dtype) * w[:, None]
        counts = jnp.sum(onehot, axis=0)
        new = (onehot.T @ data) / jnp.maximum(counts, 1e-30)[:, None]
        return jnp.where(counts[:, None] > 0, new, centres), labels

    def cond(carry):
        _, shift, i = carry
        return (i < max_iter) & (shift > threshold)

    def body(carry):
        centres, _, i = carry
        new, _ = step(centres)
        return new, jnp.sum((new - centres) ** 2), i + 1

    init = (centres0, jnp.asarray(jnp.inf, dtype), jnp.asarray(0))
    centres, _, _ = lax.while_loop(cond, body, init)
    return centres, jnp.argmin(_sq_distances(data, centres), axis=1)


def initial_responsibilities(
    key, data, n_components, method="kmeans", weights=None, mask=None
):
    """(N, K) starting responsibilities, as scikit-learn's ``init_params``.

    Rows outside the (N,) bool ``mask`` (padding) get responsibility 0 and are
    never drawn; the rows inside get the same values whatever the padding.
    """
    n = data.shape[0]
    dtype = data.dtype
    if method == "kmeans":
        _, labels = kmeans(key, data, n_components, weights, mask=mask)
        resp = jax.nn.one_hot(labels, n_components, dtype=dtype)
    elif method == "random":
        resp = _row_uniforms(key, n, (n_components,), dtype)
        resp = resp / jnp.sum(resp, axis=1, keepdims=True)
    else:
        if method == "k-means++":
            rows = kmeans_plusplus(key, data, n_components, weights, mask)
        elif method == "random_from_data":
            # K distinct rows, uniformly: the K largest of one uniform per row
            u = _row_uniforms(key, n, (), dtype)
            u = u if mask is None else jnp.where(mask, u, -1)
            rows = lax.top_k(u, n_components)[1]
        else:
            raise ValueError(f"method: expected one of {INIT_METHODS}, got {method!r}")
        cols = jnp.arange(n_components)
        resp = jnp.zeros((n, n_components), dtype).at[rows, cols].set(1)
    return resp if mask is None else jnp.where(mask[:, None], resp, 0)


# ----------------------------------------------------------------------- model
def gaussian_mixture(
    n_components: int,
    n_features: int,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
    *,
    weights_prior=1.0,
    means_prior=0.0,
    means_weight=0.0,
    covars_prior=0.0,
    covars_weight=1.0,
    missing: str = "raise",
) -> LatentModel:
    """A mixture of ``n_components`` Gaussians in ``n_features`` dimensions.

    Parameters: ``{"weights": (K,), "means": (K, d), "covariances": ...}`` with
    covariances (K, d, d) for ``full``, (K, d) for ``diag``, (K,) for
    ``spherical`` and (d, d) for ``tied``. Data: (N, d) floats.

    The M-step is closed form, with ``reg_covar`` added to the covariances'
    diagonal; with ``reg_covar=0`` it maximises exactly the expected
    ``log_joint`` (EM: the log-likelihood never decreases beyond round-off).
    With ``reg_covar > 0`` it maximises that expectation minus
    ``(reg_covar / 2) sum_k n_k tr(Sigma_k^-1)``, which is not the
    likelihood's EM step: a step can lower the log-likelihood, by at most
    :func:`reg_covar_allowance` (noticeable only when a covariance is near
    the floor, e.g. data whose variance is near ``reg_covar``). Components
    whose responsibility mass falls below the round-off of its sum
    (collapsed) keep their mean and covariance and a weight near zero;
    :func:`collapsed_components` reports them.
    ``model.init(key, data, method="kmeans", weights=None, mask=None)``
    initialises as scikit-learn's ``init_params`` (``kmeans``, ``k-means++``,
    ``random``, ``random_from_data``), jittable and vmappable over keys; rows
    outside the (N,) bool ``mask`` (padding to a size bucket) count for
    nothing, and the start does not depend on how many there are;
    ``model.sample(key, params, n)`` draws ``(x (n, d), z (n,))``. The same
    arguments return the same (cached) model, so fits do not retrace.

    Conjugate priors (MAP-EM, ``docs/priors.md``): a Dirichlet on the weights
    and hmmlearn's normal / inverse-Wishart prior on the means and
    covariances (mclust's ``priorControl`` in another parametrisation). With
    any of them set, the closed form is the MAP step and the model has a
    ``log_prior``, so ``jaxem.fit`` reports (and never decreases) the
    log-posterior. The defaults are no prior: the model and every result are
    exactly those of maximum likelihood.

    Args:
        n_components: K.
        n_features: d.
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``.
        reg_covar: non-negative floor added to the covariances' diagonal.
        weights_prior: Dirichlet concentration, a number or (K,), each >= 1
            (1: none); the weights' MAP is ``∝ n_k + alpha_k - 1``.
        means_prior: prior mean mu, a number, (d,) or (K, d).
        means_weight: shrinkage w of the means towards ``means_prior``
            (mclust's kappa_p), a number or (K,), >= 0 (0: none).
        covars_prior: scale Psi, >= 0: a number (times the identity for
            ``full``/``tied``), (d, d) or (K, d, d) (full), (d, d) (tied),
            (d,) or (K, d) (diag), (K,) (spherical). 0: none.
        covars_weight: degrees of freedom nu (hmmlearn's): the covariance's
            MAP divides by ``n_k + max(nu - d, 0)`` (``full``, ``tied``) or
            ``n_k + max(nu - 1, 0)`` (``diag``, ``spherical``); a number or
            (K,) (a number for tied). 1: none.
        missing: ``"raise"`` (data are an (N, d) array) or ``"marginalize"``:
            data are ``{"x": (N, d), "mask": (N, d) bool}``
            (``jaxem.models.missing_data(X)`` from NaN) and missing entries
            are marginalised exactly (``docs/missing-values.md``).

    Returns:
        A ``LatentModel`` with a closed-form M-step.

    Raises:
        ValueError: for a bad argument, naming it.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxem
        >>> model = jaxem.models.gaussian_mixture(2, 1, "diag")
        >>> x = jnp.array([[-2.0], [-1.8], [-2.2], [2.0], [2.1], [1.9]])
        >>> params = model.init(jax.random.key(0), x)
        >>> result = jaxem.fit(model, params, x)
        >>> sorted(round(float(m), 2) for m in result.params["means"][:, 0])
        [-2.0, 2.0]
    """
    for name, value in (("n_components", n_components), ("n_features", n_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type: expected one of {COVARIANCE_TYPES}, got "
            f"{covariance_type!r}"
        )
    if not (isinstance(reg_covar, (int, float)) and 0 <= reg_covar < math.inf):
        raise ValueError(
            f"reg_covar: expected a finite non-negative number, got {reg_covar!r}"
        )
    hyper = _gmm_prior.check_hyperparameters(
        n_components,
        n_features,
        covariance_type,
        weights_prior=weights_prior,
        means_prior=means_prior,
        means_weight=means_weight,
        covars_prior=covars_prior,
        covars_weight=covars_weight,
    )
    if _gmm_prior.is_default(hyper, covariance_type, n_features):
        hyper = None
    else:
        hyper = tuple(hyper.items())
    _gmm_missing.check_missing(missing)
    return _gaussian_mixture(
        n_components, n_features, covariance_type, float(reg_covar), hyper, missing
    )


@functools.lru_cache(maxsize=128)
def _gaussian_mixture(
    n_components, n_features, covariance_type, reg_covar, hyper, missing
):
    """:func:`gaussian_mixture` for checked, hashable arguments (cached)."""
    k, d, ctype = n_components, n_features, covariance_type
    prior = None if hyper is None else dict(hyper)

    def log_joint(params, x, z):
        params = jax.tree.map(jnp.asarray, params)
        cov = params["covariances"]
        cov_z = cov if ctype == "tied" else cov[z]
        return jnp.log(params["weights"][z]) + _gmm_estep.component_log_pdf(
            x, params["means"][z], cov_z, ctype
        )

    def log_joint_table(params, data):
        return _gmm_estep.log_table(params, data, ctype, _BLOCK_ENTRIES)

    def stats(data, resp, weights, params):
        means = jnp.asarray(params["means"])
        return _gmm_stats.stats(data, resp, weights, ctype, means, _BLOCK_ENTRIES)

    def update(s, params, frozen=()):
        if prior is not None:
            return _gmm_prior.map_update(s, params, prior, ctype, reg_covar, frozen)
        return _gmm_stats.update(s, params, ctype, reg_covar, frozen)

    def log_prior(params):
        return _gmm_prior.log_prior(params, prior, ctype)

    @functools.partial(jax.jit, static_argnames="method")
    def init(key, data, method="kmeans", weights=None, mask=None):
        data = jnp.asarray(data)
        resp = initial_responsibilities(key, data, k, method, weights, mask)
        real = _row_weights(data, None, mask)
        placeholder = {
            "weights": jnp.full((k,), 1.0 / k, data.dtype),
            "means": jnp.broadcast_to((real @ data) / jnp.sum(real), (k, d)),
            "covariances": _identity_covariances(ctype, k, d, data.dtype),
        }

        # Two passes: the second takes its sums about the first's means, so
        # a tight cluster far from the data mean keeps its covariance. A loop,
        # so the statistics are compiled once; a component without data keeps
        # the placeholder's mean and identity covariance in both passes.
        def one_pass(_, p):
            return update(stats(data, resp, None, p), p)

        return lax.fori_loop(0, 2, one_pass, placeholder)

    def sample(key, params, n):
        kz, kx = jax.random.split(key)
        means = params["means"]
        z = jax.random.categorical(kz, jnp.log(params["weights"]), shape=(n,))
        eps = jax.random.normal(kx, (n, d), means.dtype)
        cov = params["covariances"]
        if ctype == "full":
            chol = jnp.linalg.cholesky(cov)
            noise = jnp.einsum("nij,nj->ni", chol[z], eps)
        elif ctype == "tied":
            noise = eps @ jnp.linalg.cholesky(cov).T
        elif ctype == "diag":
            noise = eps * jnp.sqrt(cov[z])
        else:
            noise = eps * jnp.sqrt(cov[z])[:, None]
        return means[z] + noise, z

    cov_constraint = {
        "full": constraints.positive_definite,
        "tied": constraints.positive_definite,
        "diag": constraints.positive,
        "spherical": constraints.positive,
    }[ctype]
    model = LatentModel(
        log_joint,
        latent=Categorical(k),
        constraints={
            "weights": constraints.simplex,
            "means": constraints.real,
            "covariances": cov_constraint,
        },
        m_step=ClosedForm(stats=stats, update=update),
        log_joint_table=log_joint_table,
        init=init,
        sample=sample,
        event_shape=(d,),
        name=f"gaussian_mixture({k}, {d}, {ctype!r}{_name_suffix(prior)})",
        log_prior=None if prior is None else log_prior,
    )
    if missing == "marginalize":
        return _gmm_missing.marginalizing(model, ctype, lambda: _BLOCK_ENTRIES)
    return model


def _name_suffix(prior):
    return "" if prior is None else ", " + _gmm_prior.describe(prior)


def _identity_covariances(covariance_type, k, d, dtype):
    shape = covariance_shape(covariance_type, k, d)
    if covariance_type in ("full", "tied"):
        return jnp.broadcast_to(jnp.eye(d, dtype=dtype), shape)
    return jnp.ones(shape, dtype)


def collapsed_components(model, params, data, weights=None) -> jax.Array:
    """(K,) bool: components with (almost) no responsibility mass under ``params``.

    A component is collapsed when its total responsibility is below the
    round-off of the sum (10 eps times the number of observations): the closed
    form M-step then keeps its mean and covariance instead of fitting them to
    no data. Works for any ``Categorical`` mixture model.
    """
    posterior = model.latent.e_step(model, params, data, weights).posterior
    if weights is not None:
        posterior = posterior * weights[:, None]
    nk = jnp.sum(posterior, axis=0)
    eps = jnp.finfo(nk.dtype).eps
    return nk <= 10 * eps * jnp.maximum(jnp.sum(nk), 1.0)
