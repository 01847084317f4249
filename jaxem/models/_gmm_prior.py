"""The Gaussian mixture's conjugate prior: hyperparameters, log-density, MAP step.

A Dirichlet(``weights_prior``) prior on the weights and, per component, the
normal / inverse-Wishart (inverse-gamma for ``diag`` and ``spherical``) prior
of hmmlearn's ``GaussianHMM``, in its parametrisation (``means_prior`` mu,
``means_weight`` w, ``covars_prior`` Psi, ``covars_weight`` nu); see
:mod:`jaxem.models._priors` for the log-density and ``docs/priors.md`` for the
formulas and their relation to mclust's ``priorControl`` (Fraley & Raftery
2007). The MAP step works from the same additive statistics as the plain
M-step (sums about each component's current mean, ``_gmm_stats``), so
chunked, minibatch and sharded fits need no change.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import _priors

DEFAULTS = {
    "weights_prior": 1.0,
    "means_prior": 0.0,
    "means_weight": 0.0,
    "covars_prior": 0.0,
    "covars_weight": 1.0,
}
"""No prior: the plain maximum-likelihood M-step."""


def _hashable(arr):
    return float(arr) if arr.ndim == 0 else tuple(_hashable(a) for a in arr)


def check_hyperparameters(k: int, d: int, covariance_type: str, **hyper) -> dict:
    """Each hyperparameter as a hashable literal, or ``ValueError`` naming it.

    Shapes: ``weights_prior`` a number or (K,), each >= 1; ``means_prior`` a
    number, (d,) or (K, d); ``means_weight`` a number or (K,), >= 0;
    ``covars_prior`` >= 0: a number (times the identity for ``full`` and
    ``tied``), (d, d) or (K, d, d) positive semi-definite for ``full``, (d, d)
    for ``tied``, (d,) or (K, d) for ``diag``, (K,) for ``spherical``;
    ``covars_weight`` a number or (K,) (a number for ``tied``), >= 0.
    """
    cov_shapes = {
        "full": [(), (d, d), (k, d, d)],
        "tied": [(), (d, d)],
        "diag": [(), (d,), (k, d)],
        "spherical": [(), (k,)],
    }[covariance_type]
    allowed = {
        "weights_prior": ([(), (k,)], 1.0),
        "means_prior": ([(), (d,), (k, d)], None),
        "means_weight": ([(), (k,)], 0.0),
        "covars_prior": (cov_shapes, 0.0),
        "covars_weight": ([()] if covariance_type == "tied" else [(), (k,)], 0.0),
    }
    out = {}
    for name, value in hyper.items():
        shapes, minimum = allowed[name]
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name}: expected a number or an array, got {_show(value)}"
            ) from None
        if arr.shape not in shapes:
            raise ValueError(
                f"{name}: expected a number or an array of shape "
                f"{' or '.join(map(str, shapes[1:]))}, got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: must be finite, got {_show(value)}")
        if minimum is not None and np.any(arr < minimum):
            raise ValueError(f"{name}: must be >= {minimum:g}, got {_show(value)}")
        if name == "covars_prior" and arr.ndim >= 2:
            if not np.allclose(arr, np.swapaxes(arr, -1, -2)) or np.any(
                np.linalg.eigvalsh(arr) < -1e-12 * max(1.0, np.abs(arr).max())
            ):
                raise ValueError(
                    "covars_prior: expected a symmetric positive semi-definite "
                    "matrix (or a stack of them)"
                )
        out[name] = _hashable(arr)
    return out


def is_default(hyper: dict, covariance_type: str, d: int) -> bool:
    """True when the hyperparameters change nothing (the plain MLE step)."""
    offset = d if covariance_type in ("full", "tied") else 1
    return (
        np.all(np.asarray(hyper["weights_prior"]) == 1.0)
        and np.all(np.asarray(hyper["means_weight"]) == 0.0)
        and np.all(np.asarray(hyper["covars_prior"]) == 0.0)
        and np.all(np.asarray(hyper["covars_weight"]) <= offset)
    )


def _arrays(hyper, covariance_type, k, d, dtype):
    """Hyperparameters broadcast to the shapes of the formulas."""
    m_prior = jnp.broadcast_to(jnp.asarray(hyper["means_prior"], dtype), (k, d))
    m_weight = jnp.broadcast_to(jnp.asarray(hyper["means_weight"], dtype), (k,))
    c_weight = jnp.asarray(hyper["covars_weight"], dtype)
    psi = jnp.asarray(hyper["covars_prior"], dtype)
    eye = jnp.eye(d, dtype=dtype)
    if covariance_type in ("full", "tied"):
        shape = (k, d, d) if covariance_type == "full" else (d, d)
        psi = jnp.broadcast_to(psi * eye if psi.ndim == 0 else psi, shape)
        c = jnp.maximum(c_weight - d, 0)
        c = jnp.broadcast_to(c, (k,)) if covariance_type == "full" else c
    else:
        c = jnp.maximum(c_weight - 1, 0)
        c = jnp.broadcast_to(c.reshape(c.shape + (1,) * (c.ndim > 0)), (k, d))
        psi = psi[:, None] if covariance_type == "spherical" and psi.ndim else psi
        psi = jnp.broadcast_to(psi, (k, d))
    return m_prior, m_weight, psi, c


def log_prior(params, hyper, covariance_type):
    """The Dirichlet and normal / inverse-Wishart log-prior (a scalar)."""
    means = params["means"]
    k, d = means.shape
    m_prior, m_weight, psi, c = _arrays(hyper, covariance_type, k, d, means.dtype)
    weights = _priors.dirichlet_log_prior(hyper["weights_prior"], params["weights"])
    return weights + _priors.gaussian_log_prior(
        means,
        params["covariances"],
        covariance_type,
        m_prior,
        jnp.broadcast_to(m_weight[:, None], (k, d)),
        psi,
        c,
    )


def map_update(s, params, hyper, covariance_type, reg_covar, frozen=()):
    """The MAP M-step from ``_gmm_stats.stats`` (sums about the current means).

    Maximises the expected complete-data log-likelihood plus :func:`log_prior`
    exactly (then adds ``reg_covar`` to the diagonal, as the plain step):
    ``m_k = (w mu + sum r x) / (w + n_k)``, ``Sigma_k = (Psi + w (m_k - mu)
    (m_k - mu)' + sum r (x - m_k)(x - m_k)') / (c + n_k)``, weights
    ``∝ n_k + alpha_k - 1``. A component without data keeps its parameters
    unless the prior defines them (``w > 0`` for the mean; ``c > 0`` and
    ``Psi`` non-zero for the covariance).
    """
    n_raw = s["n"]
    dtype = n_raw.dtype
    k, d = s["s1"].shape
    eps = jnp.finfo(dtype).eps
    m_prior, w, psi, c = _arrays(hyper, covariance_type, k, d, dtype)
    alpha = jnp.broadcast_to(jnp.asarray(hyper["weights_prior"], dtype), (k,))
    nk = n_raw + 10 * eps
    weights = (nk + alpha - 1) / jnp.sum(nk + alpha - 1)
    threshold = 10 * eps * jnp.maximum(jnp.sum(n_raw), 1.0)
    ref = params["means"].astype(dtype)
    step = (w[:, None] * (m_prior - ref) + s["s1"]) / (w + nk)[:, None]
    has_mean = (n_raw > threshold) | (w > 0)
    if "means" in frozen:
        means, centre = ref, jnp.zeros_like(step)
    else:
        means = jnp.where(has_mean[:, None], ref + step, ref)
        centre = jnp.where(has_mean[:, None], step, 0.0)
    diff = (ref + centre - m_prior) * jnp.sqrt(w)[:, None]
    eye = jnp.eye(d, dtype=dtype)
    old = params["covariances"]
    if covariance_type in ("full", "tied"):
        cross = s["s1"][:, :, None] * centre[:, None, :]
        c_n = (
            diff[:, :, None] * diff[:, None, :]
            - cross
            - jnp.swapaxes(cross, 1, 2)
            + nk[:, None, None] * centre[:, :, None] * centre[:, None, :]
        )
        if covariance_type == "full":
            c_n = c_n + s["s2"]
            cov = (psi + c_n) / (c + nk)[:, None, None]
            cov = 0.5 * (cov + jnp.swapaxes(cov, 1, 2)) + reg_covar * eye[None]
            prior_cov = (c > 0) & (jnp.trace(psi, axis1=1, axis2=2) > 0)
            alive = (n_raw > threshold) | prior_cov
            cov = jnp.where(alive[:, None, None], cov, old)
        else:
            cov = (psi + s["s2"] + jnp.sum(c_n, axis=0)) / (c + jnp.sum(nk))
            cov = 0.5 * (cov + cov.T) + reg_covar * eye
    else:
        c_n = diff**2 + s["s2"] - 2 * centre * s["s1"] + nk[:, None] * centre**2
        c_n = jnp.maximum(c_n, 0.0)
        if covariance_type == "diag":
            cov = (psi + c_n) / (c + nk[:, None]) + reg_covar
            prior_cov = (c > 0) & (psi > 0)
            alive = (n_raw > threshold)[:, None] | prior_cov
        else:
            total = jnp.sum(c + nk[:, None], axis=1)
            cov = jnp.sum(psi + c_n, axis=1) / total + reg_covar
            prior_cov = jnp.all((c > 0) & (psi > 0), axis=1)
            alive = (n_raw > threshold) | prior_cov
        cov = jnp.where(alive, cov, old)
    return {"weights": weights, "means": means, "covariances": cov}


def describe(hyper: dict) -> str:
    """The non-default hyperparameters, for the model's name."""
    parts = [
        f"{name}={value!r}"
        for name, value in hyper.items()
        if np.any(np.asarray(value) != DEFAULTS[name])
    ]
    return ", ".join(parts)


def _show(value) -> str:
    """A value on one short line, for an error message."""
    return " ".join(repr(value).split())[:60]
