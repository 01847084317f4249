"""The linear-Gaussian state-space model (Kalman smoother EM).

With a state of size s and observations of size o, one sequence is

    z_0 ~ N(initial_mean, initial_cov)
    z_t | z_{t-1} ~ N(transition_matrix z_{t-1} + transition_bias, transition_cov)
    x_t | z_t ~ N(emission_matrix z_t + emission_bias, emission_cov)

Parameters::

    {"initial_mean": (s,), "initial_cov": (s, s) PD,
     "transition_matrix": (s, s), "transition_bias": (s,), "transition_cov": (s, s) PD,
     "emission_matrix": (o, s), "emission_bias": (o,), "emission_cov": (o, o) PD}

The latent is ``GaussianChain(s)``: the E-step is the Kalman (RTS) smoother,
derived by autodiff of the three factors. The closed-form M-step (Shumway &
Stoffer 1982; Ghahramani & Hinton 1996) regresses z_t on [z_{t-1}, 1] and x_t
on [z_t, 1] from the additive statistics sum E[z z^T], sum E[z_t z_{t-1}^T],
sum x_t E[z_t]^T and sum x x^T over the valid steps.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from .. import constraints
from .._latent import ChainFactors, GaussianChain
from .._latent import _markov_chain as _chain
from .._model import ClosedForm, LatentModel

_PD = constraints.positive_definite
_LOG_2PI = math.log(2 * math.pi)


def _mvn(x, mean, cov):
    """log N(x | mean, cov) through the whitening matrix L^-1 (cov = L L^T).

    L^-1 and the log-determinant depend on the parameters only, so under the
    E-step's vmap over steps and sequences they are computed once and each
    step costs one small matrix product (a batched solve per step, as in
    ``jax.scipy.stats.multivariate_normal``, is ~500x slower on a CPU). The
    quadratic form is sum(w * w), not r @ P @ r: under vmap a vector-vector
    product is a batched dot that XLA's CPU backend runs one at a time, and
    its gradient takes one product where r P r's takes two.
    """
    chol = jnp.linalg.cholesky(cov)
    eye = jnp.eye(cov.shape[-1], dtype=cov.dtype)
    whiten = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
    w = (x - mean) @ whiten.T  # under vmap: (N, o) @ (o, o), no transposes
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * jnp.sum(w * w) - half_log_det - 0.5 * w.shape[-1] * _LOG_2PI


def lgssm_factors() -> ChainFactors:
    """The three factors of the linear-Gaussian state-space model."""
    return ChainFactors(
        initial=lambda p, z: _mvn(z, p["initial_mean"], p["initial_cov"]),
        transition=lambda p, zp, z: _mvn(
            z, zp @ p["transition_matrix"].T + p["transition_bias"], p["transition_cov"]
        ),
        emission=lambda p, x, z: _mvn(
            x, z @ p["emission_matrix"].T + p["emission_bias"], p["emission_cov"]
        ),
    )


def _stats(data, posterior, weights):
    """Additive statistics of the three regressions (masked to valid steps).

    Every sum is a matrix product over the flattened (sequence, step) axes,
    with one weight row per statistic (all steps, first steps, steps with a
    successor, steps with a predecessor), so no (B, T, s, s) slice is copied.
    """
    mean, cov, cross = posterior.mean, posterior.cov, posterior.cross_cov
    b, t, s = mean.shape
    valid = posterior.valid.astype(mean.dtype)
    if weights is not None:
        valid = valid * weights[:, None]
    pair = valid[:, 1:] * (posterior.valid[:, :-1]).astype(mean.dtype)
    no_pair = jnp.zeros_like(valid[:, :1])
    first = jnp.zeros_like(valid).at[:, 0].set(valid[:, 0])
    w = jnp.stack(
        [
            valid,
            first,
            jnp.concatenate([pair, no_pair], axis=1),  # z_{t-1} of a pair
            jnp.concatenate([no_pair, pair], axis=1),  # z_t of a pair
        ]
    ).reshape(4, b * t)
    m = mean.reshape(b * t, s)
    x = jnp.where(valid[..., None] > 0, data, 0.0).reshape(b * t, -1)
    sums = w @ m  # (4, s)
    # sum w E[z z^T] = sum w (Cov + m m^T), for each weight row
    second = (w @ cov.reshape(b * t, s * s)).reshape(4, s, s)
    second += jnp.einsum("kn,ni,nj->kij", w, m, m)
    # E[z_t z_{t-1}^T] = Cov(z_{t-1}, z_t)^T + m_t m_{t-1}^T
    cross_sum = (pair.reshape(-1) @ cross.reshape(-1, s * s)).reshape(s, s)
    m_prev = (mean[:, :-1] * pair[..., None]).reshape(-1, s)
    cur_prev = cross_sum.T + mean[:, 1:].reshape(-1, s).T @ m_prev
    xw = x * w[0][:, None]
    return {
        "n0": jnp.sum(w[1]),
        "z0": sums[1],
        "zz0": second[1],
        "n_pair": jnp.sum(pair),
        "prev": sums[2],
        "prev_prev": second[2],
        "cur": sums[3],
        "cur_cur": second[3],
        "cur_prev": cur_prev,
        "n": jnp.sum(w[0]),
        "z": sums[0],
        "zz": second[0],
        "x": jnp.sum(xw, axis=0),
        "xx": xw.T @ x,
        "xz": xw.T @ m,
    }


def _regress(syy, syu_z, sy, suu_z, su, n, reg):
    """Least squares y ~ A u + c from sums; returns (A, c, residual cov)."""
    gram = jnp.block([[suu_z, su[:, None]], [su[None, :], n[None, None]]])
    cross = jnp.concatenate([syu_z, sy[:, None]], axis=1)
    coef = jnp.linalg.solve(gram, cross.T).T
    resid = (syy - coef @ cross.T) / n
    resid = 0.5 * (resid + resid.T) + reg * jnp.eye(resid.shape[0], dtype=resid.dtype)
    return coef[:, :-1], coef[:, -1], resid


def _update(reg_covar):
    def update(s, params):
        m0 = s["z0"] / s["n0"]
        p0 = s["zz0"] / s["n0"] - jnp.outer(m0, m0)
        p0 = 0.5 * (p0 + p0.T) + reg_covar * jnp.eye(m0.shape[0], dtype=m0.dtype)
        f, b, q = _regress(
            s["cur_cur"], s["cur_prev"], s["cur"], s["prev_prev"], s["prev"],
            s["n_pair"], reg_covar,
        )  # fmt: skip
        h, d, r = _regress(s["xx"], s["xz"], s["x"], s["zz"], s["z"], s["n"], reg_covar)
        return {
            "initial_mean": m0,
            "initial_cov": p0,
            "transition_matrix": f,
            "transition_bias": b,
            "transition_cov": q,
            "emission_matrix": h,
            "emission_bias": d,
            "emission_cov": r,
        }

    return update


def _initializer(state_dim, obs_dim):
    def init(key, data, lengths=None, method="pca"):
        """Initial params from padded sequences (B, T, o): ``"pca"`` or ``"random"``.

        The emission matrix spans the top principal directions of the valid
        observations (or is random), the dynamics start as 0.9 I.
        """
        if method not in ("pca", "random"):
            raise ValueError(f"method: expected 'pca' or 'random', got {method!r}")
        data = jnp.asarray(data)
        valid = _chain._valid_mask(data, lengths).astype(data.dtype)
        count = jnp.sum(valid)
        mean = jnp.einsum("bto,bt->o", data, valid) / count
        centred = (data - mean[None, None, :]) * valid[..., None]
        cov = jnp.einsum("bti,btj->ij", centred, centred) / count
        evals, evecs = jnp.linalg.eigh(cov)
        evals, evecs = evals[::-1], evecs[:, ::-1]
        k = min(state_dim, obs_dim)
        key = jax.random.key(0) if key is None else key
        # Small random loadings break the symmetry of states PCA cannot fill.
        h = jax.random.normal(key, (obs_dim, state_dim), data.dtype)
        h = h * 0.1 * jnp.sqrt(jnp.mean(evals))
        if method == "pca":
            scale = jnp.sqrt(jnp.maximum(evals[:k], 1e-6 * jnp.mean(evals)))
            h = h.at[:, :k].set(evecs[:, :k] * scale[None, :])
        else:
            h = h * 10.0
        eye = jnp.eye(state_dim, dtype=data.dtype)
        rest = jnp.mean(evals[k:]) if obs_dim > k else 0.1 * jnp.mean(evals)
        noise = jnp.maximum(rest, 1e-3 * jnp.mean(evals))
        return {
            "initial_mean": jnp.zeros(state_dim, data.dtype),
            "initial_cov": eye,
            "transition_matrix": 0.9 * eye,
            "transition_bias": jnp.zeros(state_dim, data.dtype),
            "transition_cov": 0.19 * eye,
            "emission_matrix": h,
            "emission_bias": mean,
            "emission_cov": noise * jnp.eye(obs_dim, dtype=data.dtype),
        }

    return init


def _sample(key, params, n):
    """One sequence of ``n`` steps: (x (n, o), z (n, s))."""
    params = jax.tree.map(jnp.asarray, params)
    k0, kz, kx = jax.random.split(key, 3)
    z0 = jax.random.multivariate_normal(
        k0, params["initial_mean"], params["initial_cov"]
    )
    s = z0.shape[0]
    noise = jax.random.multivariate_normal(
        kz, jnp.zeros(s, z0.dtype), params["transition_cov"], (n - 1,)
    )

    def step(z, eps):
        z = params["transition_matrix"] @ z + params["transition_bias"] + eps
        return z, z

    _, rest = jax.lax.scan(step, z0, noise)
    z = jnp.concatenate([z0[None], rest])
    o = params["emission_bias"].shape[0]
    eps = jax.random.multivariate_normal(
        kx, jnp.zeros(o, z.dtype), params["emission_cov"], (n,)
    )
    x = z @ params["emission_matrix"].T + params["emission_bias"][None, :] + eps
    return x, z


@functools.cache
def linear_gaussian_ssm(
    state_dim: int, obs_dim: int, reg_covar: float = 1e-8
) -> LatentModel:
    """The linear-Gaussian state-space model, fitted by Kalman smoother EM.

    Args:
        state_dim: s, the size of the latent state.
        obs_dim: o, the size of one observation.
        reg_covar: added to the diagonal of every fitted covariance (keeps
            them positive definite when the data do not pin them down).

    Returns:
        A ``LatentModel`` with a ``GaussianChain(s)`` latent, a closed-form
        M-step, an initialiser ``init(key, data, lengths=None,
        method="pca")`` and a sampler of one sequence.

    Examples:
        >>> import jax, jaxem
        >>> model = jaxem.models.linear_gaussian_ssm(2, 3)
        >>> params = model.init(None, jax.numpy.zeros((1, 5, 3)) + 1.0)
        >>> x, z = model.sample(jax.random.key(0), params, 20)
        >>> x.shape, z.shape
        ((20, 3), (20, 2))
    """
    for name, value in (("state_dim", state_dim), ("obs_dim", obs_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if not (isinstance(reg_covar, (int, float)) and reg_covar >= 0):
        raise ValueError(f"reg_covar: expected a number >= 0, got {reg_covar!r}")
    return LatentModel(
        lgssm_factors(),
        GaussianChain(state_dim, quadratic=True),
        constraints={
            "initial_cov": _PD,
            "transition_cov": _PD,
            "emission_cov": _PD,
        },
        m_step=ClosedForm(_stats, _update(float(reg_covar))),
        init=_initializer(state_dim, obs_dim),
        sample=_sample,
        event_shape=(obs_dim,),
        name=(
            f"linear_gaussian_ssm({state_dim!r}, {obs_dim!r}, reg_covar={reg_covar!r})"
        ),
    )
