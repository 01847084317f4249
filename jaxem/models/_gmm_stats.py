"""The Gaussian mixture's M-step: per-component shifted sums and the closed form.

Each component's sums are taken about its CURRENT mean ``m_k`` (a reference
point that depends on the parameters only, so the statistics of chunks,
minibatches and devices taken at the same parameters add exactly)::

    n_k  = sum_n r_nk
    s1_k = sum_n r_nk (x_n - m_k)
    s2_k = sum_n r_nk (x_n - m_k)(x_n - m_k)^T     (reduced to the type's shape)

The update is then ``m_k' = m_k + s1_k / n_k`` and
``Sigma_k' = s2_k / n_k - delta_k delta_k^T + reg_covar I`` with
``delta_k = s1_k / n_k``: both terms are of the size of the component's own
spread (EM moves a mean by about its spread per step), so nothing cancels,
however tight a component and however far from the origin or the other
components it lies. Sums about one point shared by all components (the data
mean, the centre of the means) cancel in ``s2/n - delta delta^T`` by
``eps |m_k - centre|^2 / sigma_k^2``: that lost float64 histories their
monotonicity on heavy-tailed data and made float32 fits oscillate.

With ``reg_covar = 0`` the update maximises the expected complete-data
log-likelihood exactly, so the log-likelihood never decreases (EM). With
``reg_covar = eps_r > 0`` it maximises instead that expectation minus
``(eps_r / 2) sum_k n_k tr(Sigma_k^-1)`` (the expected log-density of data
blurred by N(0, eps_r I) noise), which is not the likelihood's EM step: the
log-likelihood can then fall, by at most
``(eps_r / 2) sum_k n_k [tr(Sigma_k^-1) - tr(Sigma_k'^-1)]`` per iteration
(:func:`reg_covar_allowance`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from ._gmm_estep import block_size, sum_rows


def stats(data, resp, weights, covariance_type, means, block_entries):
    """Additive sufficient statistics about each component's current mean.

    Args:
        data: (N, d) observations.
        resp: (N, K) responsibilities.
        weights: optional (N,) observation weights (None for none).
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``.
        means: (K, d) current means, the reference points.
        block_entries: about this many (row, component, feature) entries per
            block.

    Returns:
        ``{"n": (K,), "s1": (K, d), "s2": ...}`` with ``s2`` of shape
        (K, d, d) for ``full``, (d, d) for ``tied`` (summed over components)
        and (K, d) for ``diag`` and ``spherical``.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[1.0], [3.0]])
        >>> s = stats(x, jnp.ones((2, 1)), None, "diag", jnp.array([[1.0]]), 2**18)
        >>> [float(s["n"][0]), float(s["s1"][0, 0]), float(s["s2"][0, 0])]
        [2.0, 2.0, 4.0]
    """
    dtype = resp.dtype
    data = data.astype(dtype)
    n, d = data.shape
    k = resp.shape[1]
    if weights is not None:
        resp = resp * weights.astype(dtype)[:, None]
    means = means.astype(dtype)
    if covariance_type == "full":
        return _full_stats(data, resp, means, block_entries)

    def block(x, r, fresh):
        r = jnp.where(fresh[:, None], r, 0.0)
        diff = x[:, None, :] - means[None]  # (B, K, d)
        weighted = r[:, :, None] * diff
        if covariance_type == "tied":
            s2 = jnp.einsum("nki,nkj->ij", weighted, diff)
        else:
            s2 = jnp.sum(weighted * diff, axis=0)
        return {"n": jnp.sum(r, axis=0), "s1": jnp.sum(weighted, axis=0), "s2": s2}

    s2_shape = {"full": (k, d, d), "tied": (d, d)}.get(covariance_type, (k, d))
    zero = {
        "n": jnp.zeros((k,), dtype),
        "s1": jnp.zeros((k, d), dtype),
        "s2": jnp.zeros(s2_shape, dtype),
    }
    # Smaller blocks than the E-step's: each row makes K (d + 1)-wide
    # intermediates here, which should stay in cache.
    size = block_size(n, 16 * k * d, block_entries)
    return sum_rows(block, (data, resp), size, zero)


def _full_stats(data, resp, means, block_entries):
    """:func:`stats` for full covariances: K products (d, B) x (B, d) per block.

    Each block builds ``r_nk (x_n - m_k)`` as (K, d, B) and ``x_n - m_k`` as
    (K, B, d), so the batched product needs no transposed copies of either
    (the (B, K, d) layout and an ``einsum`` over it spent more time copying
    than multiplying: 7% of an iteration at N=1e5, d=K=8). Blocks of about
    ``block_entries / 16`` (component, feature, row) entries keep both in
    cache.
    """
    n, d = data.shape
    k = resp.shape[1]
    dtype = resp.dtype

    def block(x, r, fresh):
        rt = jnp.where(fresh[None, :], r.T, 0.0)  # (K, B)
        weighted = rt[:, None, :] * (x.T[None, :, :] - means[:, :, None])
        diff = x[None, :, :] - means[:, None, :]
        s2 = lax.dot_general(weighted, diff, (((2,), (1,)), ((0,), (0,))))
        return {"n": jnp.sum(rt, axis=1), "s1": jnp.sum(weighted, axis=2), "s2": s2}

    zero = {
        "n": jnp.zeros((k,), dtype),
        "s1": jnp.zeros((k, d), dtype),
        "s2": jnp.zeros((k, d, d), dtype),
    }
    size = block_size(n, k * d, block_entries // 16)
    return sum_rows(block, (data, resp), size, zero)


def _outer(a, b):
    return a[:, :, None] * b[:, None, :]


def update(s, params, covariance_type, reg_covar, frozen=()):
    """Closed-form M-step from :func:`stats`; collapsed components are held.

    A component whose responsibility mass is below the round-off of the total
    (10 eps of it) has no data: it keeps its mean and covariance, and a weight
    near zero. With ``"means"`` in ``frozen`` the covariances are centred on
    the held means (an ECM step), else on the new ones.

    Args:
        s: summed statistics from :func:`stats`.
        params: the parameters the statistics were taken at.
        covariance_type: the covariance type.
        reg_covar: non-negative floor added to the covariances' diagonal.
        frozen: top-level parameter names held fixed.

    Returns:
        New ``{"weights", "means", "covariances"}``.
    """
    nk_raw = s["n"]
    dtype = nk_raw.dtype
    eps = jnp.finfo(dtype).eps
    # As scikit-learn: 10 eps keeps every weight positive.
    nk = nk_raw + 10 * eps
    alive = nk_raw > 10 * eps * jnp.maximum(jnp.sum(nk_raw), 1.0)
    old = params["means"].astype(dtype)
    delta = s["s1"] / nk[:, None]
    # The covariances' centre, relative to the old means: the new means, or
    # the held ones.
    c = jnp.zeros_like(delta) if "means" in frozen else delta
    means = old if "means" in frozen else jnp.where(alive[:, None], old + delta, old)
    eye = jnp.eye(delta.shape[1], dtype=dtype)
    if covariance_type in ("full", "tied"):
        spread = _outer(delta, c) + _outer(c, delta) - _outer(c, c)
        if covariance_type == "full":
            cov = s["s2"] / nk[:, None, None] - spread
            cov = 0.5 * (cov + jnp.swapaxes(cov, 1, 2)) + reg_covar * eye[None]
            cov = jnp.where(alive[:, None, None], cov, params["covariances"])
        else:
            cov = (s["s2"] - jnp.sum(nk[:, None, None] * spread, axis=0)) / jnp.sum(nk)
            cov = 0.5 * (cov + cov.T) + reg_covar * eye
    else:
        var = jnp.maximum(s["s2"] / nk[:, None] - (2 * delta - c) * c, 0.0)
        if covariance_type == "spherical":
            cov = jnp.where(
                alive, jnp.mean(var, axis=1) + reg_covar, params["covariances"]
            )
        else:
            cov = jnp.where(alive[:, None], var + reg_covar, params["covariances"])
    return {"weights": nk / jnp.sum(nk), "means": means, "covariances": cov}


def _precision_trace(covariances, covariance_type, d):
    """(K,) (or a scalar for tied) trace of each precision matrix."""
    if covariance_type in ("full", "tied"):
        return jnp.trace(jnp.linalg.inv(covariances), axis1=-2, axis2=-1)
    if covariance_type == "diag":
        return jnp.sum(1.0 / covariances, axis=-1)
    return d / covariances


def reg_covar_allowance(counts, old, new, covariance_type, reg_covar):
    """How far the log-likelihood may fall in one step because of ``reg_covar``.

    The closed-form step maximises the expected complete-data log-likelihood
    minus ``(reg_covar / 2) sum_k n_k tr(Sigma_k^-1)``; since EM's bound is
    tight at the old parameters, the log-likelihood after the step is at
    least the one before minus
    ``(reg_covar / 2) sum_k n_k [tr(Sigma_k^-1) - tr(Sigma_k'^-1)]``
    (zero or negative: no allowance, when ``reg_covar`` is 0 or the
    precisions grew).

    Args:
        counts: (K,) responsibility totals ``n_k`` of the E-step at ``old``.
        old, new: the parameters before and after the M-step.
        covariance_type: the covariance type.
        reg_covar: the floor the step added.

    Returns:
        A scalar allowance (may be negative).

    Examples:
        >>> import jax.numpy as jnp
        >>> old = {"covariances": jnp.array([1.0]), "means": jnp.zeros((1, 2))}
        >>> new = {"covariances": jnp.array([2.0]), "means": jnp.zeros((1, 2))}
        >>> float(reg_covar_allowance(jnp.array([10.0]), old, new, "spherical", 0.1))
        0.5
    """
    d = old["means"].shape[1]
    before = _precision_trace(old["covariances"], covariance_type, d)
    after = _precision_trace(new["covariances"], covariance_type, d)
    if covariance_type == "tied":
        return 0.5 * reg_covar * jnp.sum(counts) * (before - after)
    return 0.5 * reg_covar * jnp.sum(counts * (before - after))
