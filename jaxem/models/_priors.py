"""Conjugate priors of the prebuilt models: their log-densities and MAP updates.

Each ``*_log_prior`` is the log-density (up to a constant) whose maximiser,
added to EM's expected complete-data log-likelihood Q, is the model's closed
form MAP update, so MAP-EM reports ``log_likelihood + log_prior`` and it never
decreases (``docs/priors.md`` lists the formulas).

Dirichlet(alpha) on a probability vector p (mixture weights, HMM start and
transition rows, emission rows)::

    log p(p) = sum_k (alpha_k - 1) log p_k,    MAP p_k ∝ max(n_k + alpha_k - 1, 0)

Beta(a, b) on a probability p: ``(a - 1) log p + (b - 1) log(1 - p)``.

Gaussian means and covariances, in hmmlearn's parametrisation (``means_prior``
mu, ``means_weight`` w, ``covars_prior`` Psi, ``covars_weight`` nu)::

    full:  sum_k -1/2 [w_k (m_k - mu_k)' S_k^-1 (m_k - mu_k)
                       + c_k log|S_k| + tr(Psi_k S_k^-1)],   c_k = max(nu_k - d, 0)
    tied:  the same with one S, one Psi and one c = max(nu - d, 0)
    diag:  sum_kj -1/2 [(w_kj (m_kj - mu_kj)^2 + Psi_kj) / s_kj + c_kj log s_kj],
           c_kj = max(nu_kj - 1, 0)
    spherical: diag's terms with s_kj = s_k (one variance per state)

whose MAP is ``m_k = (w mu + sum_n r_nk x_n) / (w + n_k)`` and
``S_k = (Psi + w (m_k - mu)(m_k - mu)' + sum_n r_nk (x_n - m_k)(x_n - m_k)') /
(c + n_k)``: Fraley & Raftery's (2007) normal-inverse-Wishart MAP with
shrinkage kappa_p = w, mean mu_p = mu, scale Lambda_p = Psi and degrees of
freedom nu_p = c - d - 2 (``full``). The match is exact when ``means_weight``
is the same for every feature of a state (``full``, ``tied``) and, for
``spherical``, when ``covars_weight`` is the same for every feature.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.linalg as sla


def dirichlet_log_prior(alpha, p):
    """``sum (alpha - 1) log p`` over the entries of ``p`` (any shape).

    Entries with ``p == 0`` (structural zeros of an HMM's transition matrix,
    which the MAP update keeps at 0) contribute 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(dirichlet_log_prior(2.0, jnp.array([0.5, 0.5])))  # 2 log 0.5
        -1.386...
    """
    p = jnp.asarray(p)
    alpha = jnp.broadcast_to(jnp.asarray(alpha, p.dtype), p.shape)
    positive = p > 0
    terms = (alpha - 1) * jnp.log(jnp.where(positive, p, 1.0))
    return jnp.sum(jnp.where(positive & (alpha != 1), terms, 0.0))


def dirichlet_map(counts, alpha):
    """MAP of a Dirichlet(alpha) probability vector (last axis) given counts."""
    alpha = jnp.broadcast_to(jnp.asarray(alpha, counts.dtype), counts.shape)
    new = jnp.maximum(counts + alpha - 1, 0.0)
    return new / jnp.sum(new, axis=-1, keepdims=True)


def beta_log_prior(a, b, p):
    """``sum (a - 1) log p + (b - 1) log(1 - p)`` over the entries of ``p``."""
    p = jnp.asarray(p)
    a = jnp.asarray(a, p.dtype)
    b = jnp.asarray(b, p.dtype)
    heads = jnp.where(a != 1, (a - 1) * jnp.log(p), 0.0)
    tails = jnp.where(b != 1, (b - 1) * jnp.log1p(-p), 0.0)
    return jnp.sum(heads + tails)


def gaussian_log_prior(
    means, covars, covariance_type, means_prior, means_weight, covars_prior, c
):
    """The normal / inverse-Wishart (inverse-gamma) log-prior of Gaussian
    components, in hmmlearn's parametrisation (module docstring).

    Args:
        means: (K, d) means.
        covars: (K, d, d) full, (d, d) tied, (K, d) diag or (K,) spherical.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        means_prior, means_weight: (K, d) arrays (mu and w).
        covars_prior: Psi, (K, d, d) full, (d, d) tied, (K, d) diag/spherical.
        c: the exponent of the log-determinant: (K,) full, () tied, (K, d)
            diag and spherical (``max(covars_weight - d, 0)`` or ``- 1``).

    Returns:
        A scalar.
    """
    diff = means - means_prior
    if covariance_type in ("full", "tied"):
        chol = jnp.linalg.cholesky(covars)
        logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
        scaled = jnp.sqrt(means_weight) * diff  # (K, d)
        if covariance_type == "tied":
            chol_k = jnp.broadcast_to(chol, (means.shape[0],) + chol.shape)
        else:
            chol_k = chol
        # (m - mu)' S^-1 (m - mu) = |L^-1 (m - mu)|^2 with S = L L'.
        solved = _solve_lower(chol_k, scaled[..., None])[..., 0]
        quad = jnp.sum(solved**2)
        # tr(Psi S^-1) = tr(L^-1 Psi L^-T)
        inner = _solve_lower(chol, _solve_lower(chol, covars_prior).swapaxes(-1, -2))
        trace = jnp.sum(jnp.trace(inner, axis1=-2, axis2=-1))
        return -0.5 * (quad + jnp.sum(c * logdet) + trace)
    var = covars if covariance_type == "diag" else covars[:, None]
    terms = means_weight * diff**2 / var + c * jnp.log(var) + covars_prior / var
    return -0.5 * jnp.sum(terms)


def _solve_lower(chol, b):
    return sla.solve_triangular(chol, b, lower=True)
