"""Gaussian mixtures: full, diag, spherical and tied covariances.

Parameters are constrained values (API.md §3)::

    {"weights": (K,) simplex, "means": (K, d) real,
     "covariances": (K, d, d) | (K, d) | (K,) | (d, d)}

for ``full``, ``diag``, ``spherical`` and ``tied`` covariances. Each E-step
derives the precision Cholesky factors from the covariances (one batched
Cholesky of K d×d matrices) and evaluates the (N, K) log-joint table in row
blocks, so no N×K×d intermediate is ever built: for ``full`` covariances one
block's Mahalanobis terms are one matrix product (B, d)×(d, K·d). The M-step
is closed form from additive expected sufficient statistics taken about the
centre of the current means (a point inside the data that depends on the
parameters only, so statistics of chunks, minibatches and devices add), so
float32 does not lose the covariances to cancellation.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import constraints
from .._latent import Categorical
from .._model import ClosedForm, LatentModel

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")

# Rows per block: about this many (row, component, feature) entries at once.
_BLOCK_ENTRIES = 2**18
_LOG_2PI = math.log(2 * math.pi)
# float64 full covariances: expand the quadratic form (fewer flops).
_EXPAND_FLOAT64 = True


def covariance_shape(covariance_type: str, n_components: int, n_features: int):
    """Shape of the ``covariances`` parameter for a covariance type."""
    k, d = n_components, n_features
    return {
        "full": (k, d, d),
        "diag": (k, d),
        "spherical": (k,),
        "tied": (d, d),
    }[covariance_type]


def precision_cholesky(covariances, covariance_type: str):
    """Cholesky factors of the precisions, as scikit-learn's ``precisions_cholesky_``.

    For ``full``/``tied``, upper-triangular U with ``U @ U.T`` the precision;
    for ``diag``/``spherical``, ``1 / sqrt(covariances)``.
    """
    if covariance_type in ("full", "tied"):
        chol = jnp.linalg.cholesky(covariances)
        eye = jnp.broadcast_to(jnp.eye(chol.shape[-1], dtype=chol.dtype), chol.shape)
        inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
        return jnp.swapaxes(inv, -1, -2)
    return lax.rsqrt(covariances)


def _log_det(prec_chol, covariance_type, n_features):
    """log det of each precision Cholesky factor: (K,) (a scalar for tied)."""
    if covariance_type in ("full", "tied"):
        diag = jnp.diagonal(prec_chol, axis1=-2, axis2=-1)
        return jnp.sum(jnp.log(diag), axis=-1)
    if covariance_type == "diag":
        return jnp.sum(jnp.log(prec_chol), axis=-1)
    return n_features * jnp.log(prec_chol)


def _block_size(n, width):
    return int(max(1, min(n, max(64, _BLOCK_ENTRIES // max(width, 1)))))


def _block_start(i, block, n):
    # The last block is shifted back to end at row n; it overlaps the previous
    # one, which is harmless for a table and masked for sums.
    return jnp.minimum(i * block, n - block)


def _map_rows(fn, data, block, out_width, dtype):
    """Evaluate ``fn`` on row blocks of ``data`` into an (N, out_width) table."""
    n = data.shape[0]
    num_blocks = -(-n // block)
    if num_blocks == 1:
        return fn(data)

    def body(i, out):
        start = _block_start(i, block, n)
        rows = lax.dynamic_slice_in_dim(data, start, block, 0)
        return lax.dynamic_update_slice_in_dim(out, fn(rows), start, 0)

    return lax.fori_loop(0, num_blocks, body, jnp.zeros((n, out_width), dtype))


def _sum_rows(fn, arrays, block, init):
    """Sum ``fn(*row_blocks, mask)`` over row blocks of ``arrays``."""
    n = arrays[0].shape[0]
    num_blocks = -(-n // block)
    if num_blocks == 1:
        return fn(*arrays, jnp.ones((n,), bool))

    def body(i, acc):
        start = _block_start(i, block, n)
        blocks = [lax.dynamic_slice_in_dim(a, start, block, 0) for a in arrays]
        fresh = start + jnp.arange(block) >= i * block
        return jax.tree.map(jnp.add, acc, fn(*blocks, fresh))

    return lax.fori_loop(0, num_blocks, body, init)


def _log_table(params, data, covariance_type):
    """(N, K) ``log w_k + log N(x_n | mu_k, Sigma_k)``, evaluated in row blocks."""
    params = jax.tree.map(jnp.asarray, params)
    weights, means, cov = params["weights"], params["means"], params["covariances"]
    k, d = means.shape
    dtype = jnp.result_type(data, means)
    data = data.astype(dtype)
    prec = precision_cholesky(cov, covariance_type)
    log_det = jnp.broadcast_to(_log_det(prec, covariance_type, d), (k,))
    # Centre on the data mean so x·U and mu·U do not cancel in float32; it
    # depends on the data only, so vmapped restarts share the centred blocks.
    centre = jnp.mean(data, axis=0)
    mc = means - centre[None, :]
    const = log_det + jnp.log(weights) - 0.5 * d * _LOG_2PI

    if covariance_type == "full" and dtype == jnp.float64 and _EXPAND_FLOAT64:
        # (x-m)^T P (x-m) = pairs(x) . packed(P) - 2 x^T P m + m^T P m: half the
        # flops of projecting on every factor; its cancellation (relative
        # eps |x - centre|^2 / sigma^2) is harmless in float64.
        rows, cols = np.triu_indices(d)
        precision = prec @ jnp.swapaxes(prec, 1, 2)
        packed = precision[:, rows, cols] * jnp.where(rows == cols, 1.0, 2.0)[None]
        pm = jnp.einsum("kij,kj->ki", precision, mc)
        quad = const - 0.5 * jnp.sum(mc * pm, axis=1)

        def block(x):
            xc = x - centre[None, :]
            maha = _pair_products(xc) @ packed.T - 2 * xc @ pm.T
            return quad[None, :] - 0.5 * maha

        return _map_rows(block, data, _block_size(data.shape[0], k * d), k, dtype)
    if covariance_type == "full":
        w = jnp.transpose(prec, (1, 0, 2)).reshape(d, k * d)
        shift = jnp.einsum("ki,kij->kj", mc, prec)

        def project(xc):
            return (xc @ w).reshape(xc.shape[0], k, d) - shift[None]
    elif covariance_type == "tied":
        shift = mc @ prec

        def project(xc):
            return (xc @ prec)[:, None, :] - shift[None]
    else:
        scale = (
            prec
            if covariance_type == "diag"
            else prec[:, None] * jnp.ones((1, d), dtype)
        )
        shift = mc * scale

        def project(xc):
            return xc[:, None, :] * scale[None] - shift[None]

    def block(x):
        y = project(x - centre[None, :])
        return const[None, :] - 0.5 * jnp.sum(y * y, axis=-1)

    return _map_rows(block, data, _block_size(data.shape[0], k * d), k, dtype)


def _component_log_pdf(x, mean, cov, covariance_type):
    """log N(x | mean, cov) of ONE observation under ONE component."""
    d = x.shape[-1]
    diff = x - mean
    if covariance_type in ("full", "tied"):
        chol = jnp.linalg.cholesky(cov)
        y = jax.scipy.linalg.solve_triangular(chol, diff, lower=True)
        log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol)))
        maha = jnp.sum(y * y)
    else:
        var = cov if covariance_type == "diag" else jnp.full((d,), cov)
        log_det = jnp.sum(jnp.log(var))
        maha = jnp.sum(diff * diff / var)
    return -0.5 * (d * _LOG_2PI + log_det + maha)


def _reference(params):
    """The point sums are centred on: the mean of the current component means.

    It depends on the parameters only, so statistics of chunks, minibatches and
    devices taken at the same parameters add exactly, and it lies inside the
    data's range, so float32 sums of squares do not cancel.
    """
    return jnp.mean(params["means"], axis=0)


def _stats(data, resp, weights, covariance_type, shift):
    """Additive sufficient statistics about the reference point ``shift``.

    ``n`` (K,) = sum_n r_nk, ``s1`` (K, d) = sum_n r_nk (x_n - shift),
    ``s2`` = sum_n r_nk (x_n - shift)(x_n - shift)^T reduced to the covariance
    type's shape; ``shift`` (d,) is ``_reference(params)``.
    """
    dtype = resp.dtype
    data = data.astype(dtype)
    n, d = data.shape
    k = resp.shape[1]
    if weights is not None:
        resp = resp * weights.astype(dtype)[:, None]
    shift = shift.astype(dtype)

    def block(x, r, fresh):
        r = jnp.where(fresh[:, None], r, 0.0)
        xc = x - shift[None, :]
        if covariance_type == "full":
            # Only the upper triangle: one (K, B) x (B, d(d+1)/2) product.
            s2 = r.T @ _pair_products(xc)
        elif covariance_type == "tied":
            s2 = (xc * jnp.sum(r, axis=1)[:, None]).T @ xc
        else:
            s2 = r.T @ (xc * xc)
        return {"n": jnp.sum(r, axis=0), "s1": r.T @ xc, "s2": s2}

    s2_shape = {
        "full": (k, d * (d + 1) // 2),
        "tied": (d, d),
        "diag": (k, d),
        "spherical": (k, d),
    }[covariance_type]
    zero = {
        "n": jnp.zeros((k,), dtype),
        "s1": jnp.zeros((k, d), dtype),
        "s2": jnp.zeros(s2_shape, dtype),
    }
    sums = _sum_rows(block, (data, resp), _block_size(n, k * d), zero)
    if covariance_type == "full":
        sums["s2"] = _unpack_symmetric(sums["s2"], d)
    return sums


def _pair_products(x):
    """(B, d(d+1)/2) products x_i x_j over the upper triangle i <= j."""
    # Static slices, not a gather: row by row of the triangle, as triu_indices.
    d = x.shape[1]
    return jnp.concatenate([x[:, i : i + 1] * x[:, i:] for i in range(d)], axis=1)


def _unpack_symmetric(packed, d):
    """(..., d(d+1)/2) upper triangles to (..., d, d) symmetric matrices."""
    rows, cols = np.triu_indices(d)
    full = jnp.zeros(packed.shape[:-1] + (d, d), packed.dtype)
    return full.at[..., rows, cols].set(packed).at[..., cols, rows].set(packed)


def _update(s, params, covariance_type, reg_covar, frozen=()):
    """Closed-form M-step; collapsed components keep their mean and covariance.

    With ``"means"`` in ``frozen`` the covariances are centred on the held
    means (an ECM step), else on the new ones.
    """
    nk_raw = s["n"]
    dtype = nk_raw.dtype
    eps = jnp.finfo(dtype).eps
    total = jnp.sum(nk_raw)
    # As scikit-learn: 10 eps keeps every weight positive.
    nk = nk_raw + 10 * eps
    # Below the round-off of the sum, a component has no data: it collapsed.
    alive = nk_raw > 10 * eps * jnp.maximum(total, 1.0)
    delta = s["s1"] / nk[:, None]
    shift = _reference(params).astype(dtype)
    means = shift[None, :] + delta
    means = jnp.where(alive[:, None], means, params["means"])
    centre = params["means"] - shift[None, :] if "means" in frozen else delta
    d = means.shape[1]
    eye = jnp.eye(d, dtype=dtype)

    def outer(a, b):
        return a[:, :, None] * b[:, None, :]

    # sum_n r (x - c)(x - c)^T / n_k with c = shift + centre, from the moments.
    if covariance_type == "full":
        spread = outer(delta, centre) + outer(centre, delta) - outer(centre, centre)
        cov = s["s2"] / nk[:, None, None] - spread
        cov = 0.5 * (cov + jnp.swapaxes(cov, 1, 2)) + reg_covar * eye[None]
        cov = jnp.where(alive[:, None, None], cov, params["covariances"])
    elif covariance_type == "tied":
        spread = outer(delta, centre) + outer(centre, delta) - outer(centre, centre)
        cov = (s["s2"] - jnp.sum(nk[:, None, None] * spread, axis=0)) / jnp.sum(nk)
        cov = 0.5 * (cov + cov.T) + reg_covar * eye
    else:
        var = s["s2"] / nk[:, None] - (2 * delta - centre) * centre
        var = jnp.maximum(var, 0.0)
        if covariance_type == "spherical":
            var = jnp.mean(var, axis=1)
            cov = jnp.where(alive, var + reg_covar, params["covariances"])
        else:
            cov = jnp.where(alive[:, None], var + reg_covar, params["covariances"])
    if "means" in frozen:
        means = params["means"]
    return {"weights": nk / jnp.sum(nk), "means": means, "covariances": cov}


# ------------------------------------------------------------------ initialise
def _sq_distances(x, centres):
    """(N, K) squared Euclidean distances, as one matrix product."""
    x2 = jnp.sum(x * x, axis=1)[:, None]
    c2 = jnp.sum(centres * centres, axis=1)[None, :]
    return jnp.maximum(x2 - 2 * x @ centres.T + c2, 0.0)


def kmeans_plusplus(key, data, n_clusters, weights=None):
    """Greedy k-means++ seeding (as scikit-learn): returns seed row indices (K,)."""
    n = data.shape[0]
    dtype = data.dtype
    w = jnp.ones((n,), dtype) if weights is None else weights.astype(dtype)
    trials = 2 + int(math.log(n_clusters))
    key, sub = jax.random.split(key)
    first = jax.random.categorical(sub, jnp.log(w))
    closest = _sq_distances(data, data[first][None])[:, 0]
    indices = jnp.zeros((n_clusters,), first.dtype).at[0].set(first)

    def body(j, carry):
        indices, closest, key = carry
        key, sub = jax.random.split(key)
        logits = jnp.log(w * closest + jnp.finfo(dtype).tiny)
        cand = jax.random.categorical(sub, logits, shape=(trials,))
        d2 = jnp.minimum(closest[:, None], _sq_distances(data, data[cand]))
        potential = jnp.sum(w[:, None] * d2, axis=0)
        best = jnp.argmin(potential)
        return indices.at[j].set(cand[best]), d2[:, best], key

    indices, _, _ = lax.fori_loop(1, n_clusters, body, (indices, closest, key))
    return indices


def kmeans(key, data, n_clusters, weights=None, max_iter=300, tol=1e-4):
    """Lloyd's algorithm from k-means++ seeds; returns (centres (K, d), labels (N,)).

    Stops when the squared centre shift falls below ``tol`` times the mean
    feature variance (scikit-learn's rule) or after ``max_iter`` iterations.
    """
    dtype = data.dtype
    w = jnp.ones(data.shape[:1], dtype) if weights is None else weights.astype(dtype)
    centres0 = data[kmeans_plusplus(key, data, n_clusters, weights)]
    threshold = tol * jnp.mean(jnp.var(data, axis=0))

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


def initial_responsibilities(key, data, n_components, method="kmeans", weights=None):
    """(N, K) starting responsibilities, as scikit-learn's ``init_params``."""
    n = data.shape[0]
    dtype = data.dtype
    if method == "kmeans":
        _, labels = kmeans(key, data, n_components, weights)
        return jax.nn.one_hot(labels, n_components, dtype=dtype)
    if method == "random":
        resp = jax.random.uniform(key, (n, n_components), dtype)
        return resp / jnp.sum(resp, axis=1, keepdims=True)
    if method == "k-means++":
        rows = kmeans_plusplus(key, data, n_components, weights)
    elif method == "random_from_data":
        rows = jax.random.choice(key, n, (n_components,), replace=False)
    else:
        raise ValueError(f"method: expected one of {INIT_METHODS}, got {method!r}")
    return jnp.zeros((n, n_components), dtype).at[rows, jnp.arange(n_components)].set(1)


# ----------------------------------------------------------------------- model
@functools.lru_cache(maxsize=128)
def gaussian_mixture(
    n_components: int,
    n_features: int,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
) -> LatentModel:
    """A mixture of ``n_components`` Gaussians in ``n_features`` dimensions.

    Parameters: ``{"weights": (K,), "means": (K, d), "covariances": ...}`` with
    covariances (K, d, d) for ``full``, (K, d) for ``diag``, (K,) for
    ``spherical`` and (d, d) for ``tied``. Data: (N, d) floats.

    The M-step is closed form, with ``reg_covar`` added to the covariances'
    diagonal; with ``reg_covar=0`` it maximises exactly the expected
    ``log_joint``. Components whose responsibility mass falls below the
    round-off of its sum (collapsed) keep their mean and covariance and a weight
    near zero; :func:`collapsed_components` reports them.
    ``model.init(key, data, method="kmeans", weights=None)`` initialises as
    scikit-learn's ``init_params`` (``kmeans``, ``k-means++``, ``random``,
    ``random_from_data``), jittable and vmappable over keys;
    ``model.sample(key, params, n)`` draws ``(x (n, d), z (n,))``. The same
    arguments return the same (cached) model, so fits do not retrace.

    Args:
        n_components: K.
        n_features: d.
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``.
        reg_covar: non-negative floor added to the covariances' diagonal.

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
    k, d, ctype = n_components, n_features, covariance_type
    reg_covar = float(reg_covar)

    def log_joint(params, x, z):
        params = jax.tree.map(jnp.asarray, params)
        cov = params["covariances"]
        cov_z = cov if ctype == "tied" else cov[z]
        return jnp.log(params["weights"][z]) + _component_log_pdf(
            x, params["means"][z], cov_z, ctype
        )

    def log_joint_table(params, data):
        return _log_table(params, data, ctype)

    def stats(data, resp, weights, params):
        return _stats(data, resp, weights, ctype, _reference(params))

    def update(s, params, frozen=()):
        return _update(s, params, ctype, reg_covar, frozen)

    @functools.partial(jax.jit, static_argnames="method")
    def init(key, data, method="kmeans", weights=None):
        data = jnp.asarray(data)
        resp = initial_responsibilities(key, data, k, method, weights)
        placeholder = {
            "means": jnp.broadcast_to(jnp.mean(data, axis=0), (k, d)),
            "covariances": _identity_covariances(ctype, k, d, data.dtype),
        }
        return update(stats(data, resp, None, placeholder), placeholder)

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
    return LatentModel(
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
        name=f"gaussian_mixture({k}, {d}, {ctype!r})",
    )


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
