"""Gaussian densities and moments with missing coordinates, in fixed shapes.

Missing entries travel in a data pytree ``{"x": (..., d) floats with the
missing entries set to 0, "mask": (..., d) bool, True where observed}``
(:func:`missing_data` builds it from an array with NaN), so every array keeps
its shape whatever the pattern of missingness, and one compiled program serves
all of them.

For a row with observed coordinates ``o`` and missing ``m``, under a Gaussian
``N(mu, Sigma)``:

- the E-step uses the observed block's marginal ``N(x_o | mu_o, Sigma_oo)``.
  With ``M = diag(o)`` the masked matrix ``S = M Sigma M + (I - M)`` is
  ``Sigma_oo`` and an identity block after a permutation, so its Cholesky
  factor gives ``log det S = log det Sigma_oo`` and, for the residual
  ``r = M (x - mu)``, ``r^T S^-1 r = r_o^T Sigma_oo^-1 r_o``;
- the M-step uses the conditional moments (Ghahramani & Jordan 1994):
  ``E[x | x_o] = mu + Sigma S^-1 r`` (equal to ``x_o`` on the observed
  coordinates and to ``mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o)`` on the
  missing ones) and ``Cov[x | x_o] = Sigma - Sigma M S^-1 M Sigma`` (zero but
  on the missing block, where it is ``Sigma_mm - Sigma_mo Sigma_oo^-1
  Sigma_om``), added to the second moments.

A row with nothing observed has density 1 (log 0) under every component and
is left out of the M-step's sums: its term of the expected complete-data
log-likelihood does not depend on the data, and EM on the remaining rows is
EM on the same likelihood (so a fit with such rows equals one without them).
Diagonal and spherical covariances need no factorisation: the observed
block's density is the product over the observed coordinates.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._gmm_estep import block_size, map_rows, sum_rows

LOG_2PI = math.log(2 * math.pi)

MISSING_OPTIONS = ("raise", "marginalize")


def check_missing(missing) -> str:
    """``missing`` validated: ``"raise"`` or ``"marginalize"`` (a ValueError else)."""
    if not isinstance(missing, str) or missing not in MISSING_OPTIONS:
        raise ValueError(f"missing: expected one of {MISSING_OPTIONS}, got {missing!r}")
    return missing


def missing_data(x) -> dict:
    """The data pytree of a model with ``missing="marginalize"``, from NaN.

    Args:
        x: (..., d) floats, NaN where an entry is missing (numpy or JAX).

    Returns:
        ``{"x": x with NaN replaced by 0, "mask": (..., d) bool, True where
        observed}``, numpy arrays for numpy input, JAX arrays otherwise.

    Raises:
        ValueError: ``x`` has infinite entries (infinity is not "missing").

    Examples:
        >>> import numpy as np
        >>> data = missing_data(np.array([[1.0, np.nan], [2.0, 3.0]]))
        >>> data["x"].tolist(), data["mask"].tolist()
        ([[1.0, 0.0], [2.0, 3.0]], [[True, False], [True, True]])
    """
    if isinstance(x, jax.Array):
        mask = ~jnp.isnan(x)
        return {"x": jnp.where(mask, x, 0), "mask": mask}
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"x: expected numbers, got dtype {x.dtype}")
    if np.isinf(x).any():
        raise ValueError("x: contains infinite values (only NaN marks a missing entry)")
    mask = ~np.isnan(x)
    return {"x": np.where(mask, x, 0).astype(x.dtype), "mask": mask}


def _full_covariances(cov, covariance_type, k, d):
    """(K, d, d) covariances of any type (diagonal ones as matrices); (1, d, d)
    for tied, so each row's factorisation is shared by the components."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return cov[None]
    var = (
        cov if covariance_type == "diag" else cov[:, None] * jnp.ones((1, d), cov.dtype)
    )
    return var[:, :, None] * jnp.eye(d, dtype=cov.dtype)[None]


def _variances(cov, covariance_type, d):
    """(K, d) variances of diagonal or spherical covariances."""
    if covariance_type == "diag":
        return cov
    return cov[:, None] * jnp.ones((1, d), cov.dtype)


# Up to this many features the small factorisations are unrolled into
# elementwise operations over the (row, component) batch: XLA's batched
# Cholesky and triangular solves on CPU loop over the batch one small matrix
# at a time, many times slower for d of a few.
_UNROLL_FEATURES = 16


def _cholesky(s):
    """Lower Cholesky factors of a batch of SPD matrices (..., d, d)."""
    d = s.shape[-1]
    if d > _UNROLL_FEATURES:
        return jnp.linalg.cholesky(s)
    below = jnp.arange(d)
    cols = []
    for j in range(d):
        v = s[..., :, j]
        for c in cols:
            v = v - c * c[..., j : j + 1]
        # NaN for a non-positive pivot, as jnp.linalg.cholesky
        pivot = jnp.sqrt(jnp.where(v[..., j] > 0, v[..., j], jnp.nan))
        cols.append(jnp.where(below >= j, v / pivot[..., None], 0.0))
    return jnp.stack(cols, axis=-1)


def _library_solve(chol, b, trans):
    """``solve_triangular`` on the broadcast batch of ``chol`` and ``b``
    (it does not broadcast batch dimensions itself)."""
    shape = jnp.broadcast_shapes(chol.shape[:-2], b.shape[:-2])
    chol = jnp.broadcast_to(chol, shape + chol.shape[-2:])
    b = jnp.broadcast_to(b, shape + b.shape[-2:])
    return jax.scipy.linalg.solve_triangular(chol, b, lower=True, trans=trans)


def _solve_lower(chol, b):
    """``chol^-1 b`` for lower ``chol`` (..., d, d) and ``b`` (..., d, m)."""
    d = chol.shape[-1]
    if d > _UNROLL_FEATURES:
        return _library_solve(chol, b, trans=0)
    rows = []
    for j in range(d):
        v = b[..., j, :]
        for i, r in enumerate(rows):
            v = v - chol[..., j, i, None] * r
        rows.append(v / chol[..., j, j, None])
    return jnp.stack(rows, axis=-2)


def _solve_upper_t(chol, b):
    """``chol^-T b`` for lower ``chol`` (..., d, d) and ``b`` (..., d, m)."""
    d = chol.shape[-1]
    if d > _UNROLL_FEATURES:
        return _library_solve(chol, b, trans=1)
    rows = [None] * d
    for j in reversed(range(d)):
        v = b[..., j, :]
        for i in range(j + 1, d):
            v = v - chol[..., i, j, None] * rows[i]
        rows[j] = v / chol[..., j, j, None]
    return jnp.stack(rows, axis=-2)


def _masked_factor(x, m, means, cov):
    """Cholesky factors of ``S`` per (row, component) and the residuals.

    x, m: (B, d); means (K, d); cov (K, d, d) or (1, d, d) (tied). Returns
    ``chol`` (B, K, d, d) (or (B, 1, d, d)), ``r`` (B, K, d) and
    ``y = chol^-1 r`` (B, K, d).
    """
    d = x.shape[-1]
    mm = m[:, None, :, None] * m[:, None, None, :]  # (B, 1, d, d)
    eye = jnp.eye(d, dtype=x.dtype)
    s = mm * cov[None] + (1 - m)[:, None, :, None] * eye[None, None]
    chol = _cholesky(s)
    r = m[:, None, :] * (x[:, None, :] - means[None])
    y = _solve_lower(chol, r[..., None])[..., 0]
    return chol, r, y


def _log_pdf_block(x, m, means, cov, covariance_type):
    """(B, K) log N(x_o | mu_o, Sigma_oo) of a block of rows."""
    k, d = means.shape
    n_obs = jnp.sum(m, axis=-1)[:, None]  # (B, 1)
    if covariance_type in ("full", "tied"):
        chol, _, y = _masked_factor(
            x, m, means, _full_covariances(cov, covariance_type, k, d)
        )
        diag = jnp.diagonal(chol, axis1=-2, axis2=-1)
        logdet = 2 * jnp.sum(jnp.log(diag), axis=-1)  # the identity block adds 0
        maha = jnp.sum(y * y, axis=-1)
        return -0.5 * (n_obs * LOG_2PI + logdet + maha)
    var = _variances(cov, covariance_type, d)  # (K, d)
    diff = x[:, None, :] - means[None]
    terms = jnp.log(var)[None] + diff * diff / var[None]
    return -0.5 * (n_obs * LOG_2PI + jnp.sum(m[:, None, :] * terms, axis=-1))


def _moments_block(x, m, means, cov, covariance_type):
    """Conditional moments of a block of rows, per component.

    Returns ``xc = E[x | x_o, z=k] - mu_k`` (B, K, d) and the conditional
    covariance: (B, K, d, d) for full and tied, its diagonal (B, K, d) else.
    """
    k, d = means.shape
    obs = m[:, None, :] > 0
    if covariance_type in ("full", "tied"):
        full = _full_covariances(cov, covariance_type, k, d)
        chol, _, y = _masked_factor(x, m, means, full)
        alpha = _solve_upper_t(chol, y[..., None])[..., 0]
        filled = jnp.matmul(full[None], alpha[..., None])[..., 0]
        xc = jnp.where(obs, x[:, None, :] - means[None], filled)
        ms = m[:, None, :, None] * full[None]  # M Sigma, (B, K, d, d)
        w = _solve_lower(chol, ms)
        cond = full[None] - jnp.einsum("bkij,bkil->bkjl", w, w)
        miss = (1 - m)[:, None, :]
        cond = cond * miss[..., :, None] * miss[..., None, :]
        cond = 0.5 * (cond + jnp.swapaxes(cond, -1, -2))
        return xc, jnp.broadcast_to(cond, xc.shape + (d,))
    var = _variances(cov, covariance_type, d)
    xc = jnp.where(obs, x[:, None, :] - means[None], 0.0)
    return xc, (1 - m)[:, None, :] * var[None]


def log_table(params, data, covariance_type, block_entries):
    """(N, K) ``log w_k + log N(x_o | mu_k,o, Sigma_k,oo)`` with missing entries.

    Args:
        params: ``{"weights": (K,), "means": (K, d), "covariances": ...}``.
        data: ``{"x": (N, d), "mask": (N, d) bool}`` (:func:`missing_data`).
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``.
        block_entries: about this many (row, component, feature, feature)
            entries per block.

    Returns:
        The (N, K) table; a row with nothing observed has ``log w_k``.

    Examples:
        >>> import jax.numpy as jnp
        >>> params = {"weights": jnp.array([1.0]), "means": jnp.zeros((1, 2)),
        ...           "covariances": jnp.eye(2)[None]}
        >>> data = {"x": jnp.zeros((1, 2)), "mask": jnp.array([[True, False]])}
        >>> round(float(log_table(params, data, "full", 2**18)[0, 0]), 4)
        -0.9189
    """
    params = jax.tree.map(jnp.asarray, params)
    means, cov = params["means"], params["covariances"]
    k, d = means.shape
    x = data["x"]
    dtype = jnp.result_type(x, means)
    x = x.astype(dtype)
    m = jnp.asarray(data["mask"]).astype(dtype)
    const = jnp.log(params["weights"]).astype(dtype)

    def block(rows):
        return const[None] + _log_pdf_block(
            rows[:, :d], rows[:, d:], means, cov, covariance_type
        )

    rows = jnp.concatenate([x, m], axis=1)
    width = k * d * (d if covariance_type in ("full", "tied") else 1)
    size = block_size(x.shape[0], width, block_entries)
    return map_rows(block, rows, size, k, dtype)


def stats(
    data, resp, weights, params, covariance_type, block_entries, *, sum_tied=True
):
    """Expected sufficient statistics about each component's current mean.

    The shapes and meaning of :func:`jaxem.models._gmm_stats.stats`, with
    each row's missing block replaced by its conditional expectation and the
    conditional covariance added to the second moments; rows with nothing
    observed are left out. ``_gmm_stats.update`` turns them into the M-step.

    Args:
        data: ``{"x": (N, d), "mask": (N, d) bool}``.
        resp: (N, K) responsibilities.
        weights: optional (N,) observation weights (None for none).
        params: the current parameters (the reference means and the
            covariances of the conditional moments).
        covariance_type: the covariance type.
        block_entries: about this many (row, component, feature, feature)
            entries per block.
        sum_tied: for ``tied``, sum ``s2`` over the components (the
            mixture's form, (d, d)); False keeps (K, d, d) (the HMM's).

    Returns:
        ``{"n": (K,), "s1": (K, d), "s2": ...}`` as ``_gmm_stats.stats``.
    """
    params = jax.tree.map(jnp.asarray, params)
    dtype = resp.dtype
    means = params["means"].astype(dtype)
    cov = params["covariances"].astype(dtype)
    k, d = means.shape
    x = data["x"].astype(dtype)
    m = jnp.asarray(data["mask"]).astype(dtype)
    seen = jnp.any(m > 0, axis=1)
    resp = jnp.where(seen[:, None], resp, 0.0)
    if weights is not None:
        resp = resp * weights.astype(dtype)[:, None]
    full_type = covariance_type in ("full", "tied")

    def block(xb, mb, r, fresh):
        r = jnp.where(fresh[:, None], r, 0.0)
        xc, cond = _moments_block(xb, mb, means, cov, covariance_type)
        weighted = r[:, :, None] * xc
        if full_type:
            s2 = jnp.einsum("nki,nkj->kij", weighted, xc)
            s2 = s2 + jnp.einsum("nk,nkij->kij", r, cond)
            if covariance_type == "tied" and sum_tied:
                s2 = jnp.sum(s2, axis=0)
        else:
            s2 = jnp.sum(weighted * xc + r[:, :, None] * cond, axis=0)
        return {"n": jnp.sum(r, axis=0), "s1": jnp.sum(weighted, axis=0), "s2": s2}

    tied_shape = (d, d) if sum_tied else (k, d, d)
    s2_shape = {"full": (k, d, d), "tied": tied_shape}.get(covariance_type, (k, d))
    zero = {
        "n": jnp.zeros((k,), dtype),
        "s1": jnp.zeros((k, d), dtype),
        "s2": jnp.zeros(s2_shape, dtype),
    }
    width = k * d * (4 * d if full_type else 16)
    size = block_size(x.shape[0], width, block_entries)
    return sum_rows(block, (x, m, resp), size, zero)


def conditional_moments(x, mask, means, cov, covariance_type):
    """Per-component conditional moments of rows with missing entries.

    Args:
        x: (N, d) with missing entries at any finite value; mask: (N, d) bool.
        means: (K, d); cov: the covariances of ``covariance_type``.
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``.

    Returns:
        ``(xc, cond)``: ``E[x | x_o, z=k] - mu_k`` (N, K, d) and the
        conditional covariance, (N, K, d, d) for full/tied and its diagonal
        (N, K, d) for diag/spherical (zero outside the missing block).
    """
    m = jnp.asarray(mask).astype(x.dtype)
    return _moments_block(x, m, means, cov, covariance_type)


def log_pdf(x, mask, means, cov, covariance_type):
    """(N, K) ``log N(x_o | mu_k,o, Sigma_k,oo)``; 0 for a row with nothing observed."""
    m = jnp.asarray(mask).astype(x.dtype)
    return _log_pdf_block(x, m, means, cov, covariance_type)


def imputed(data, weights=None):
    """(N, d) ``data["x"]`` with missing entries set to their column's observed mean
    (for initialisations, e.g. k-means); a column never observed gets 0."""
    x, m = data["x"], jnp.asarray(data["mask"]).astype(data["x"].dtype)
    w = jnp.ones(x.shape[:1], x.dtype) if weights is None else weights.astype(x.dtype)
    count = w @ m
    mean = (w @ (x * m)) / jnp.maximum(count, 1)
    return jnp.where(m > 0, x, mean[None, :])


def marginalizing(base, covariance_type, block_entries):
    """The Gaussian mixture ``base`` on data with missing entries.

    Same parameters, latent and M-step update as ``base``; the data are
    ``{"x": (N, d), "mask": (N, d) bool}`` (:func:`missing_data`). The E-step
    marginalises the missing coordinates, the statistics take their
    conditional moments, ``init`` runs on column-mean-imputed data and
    ``sample`` returns fully observed data in this format.

    Args:
        base: the complete-data ``gaussian_mixture`` model.
        covariance_type: its covariance type.
        block_entries: ``() -> int``, entries per row block (read at trace
            time).
    """
    from .._model import ClosedForm, LatentModel

    ctype = covariance_type
    update = base.m_step.update

    def log_joint(params, x, z):
        params = jax.tree.map(jnp.asarray, params)
        row = x["x"][None]
        table = log_pdf(
            row, x["mask"][None], params["means"], params["covariances"], ctype
        )
        return jnp.log(params["weights"][z]) + table[0, z]

    def log_joint_table(params, data):
        return log_table(params, data, ctype, block_entries())

    def all_stats(data, resp, weights, params):
        return stats(data, resp, weights, params, ctype, block_entries())

    @functools.partial(jax.jit, static_argnames="method")
    def init(key, data, method="kmeans", weights=None, mask=None):
        return base.init(key, imputed(data, weights), method, weights, mask=mask)

    def sample(key, params, n):
        x, z = base.sample(key, params, n)
        return {"x": x, "mask": jnp.ones(x.shape, bool)}, z

    return LatentModel(
        log_joint,
        latent=base.latent,
        constraints=base.constraints,
        m_step=ClosedForm(stats=all_stats, update=update),
        log_joint_table=log_joint_table,
        init=init,
        sample=sample,
        event_shape=base.event_shape,
        name=base.name[:-1] + ", missing='marginalize')",
        log_prior=base.log_prior,
    )
