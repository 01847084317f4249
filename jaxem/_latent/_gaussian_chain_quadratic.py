"""The exact smoother (and filter) of a ``GaussianChain`` quadratic in z.

When every factor is quadratic in the states (every linear-Gaussian model,
declared by ``GaussianChain(dim, quadratic=True)``), the Hessian blocks do not
depend on z: they are taken once per E-step, at z = 0, and one Newton step
from 0 is the exact posterior mean. When moreover the emission's curvature
does not depend on the observation (checked on the traced program, see
:func:`curvature_reads_data`), every block of the negative Hessian J is the
same at every step of every sequence, so the block-tridiagonal factorisation
(the information-form Kalman filter's covariances) is computed once for a
single chain of length T and shared by all sequences; the per-sequence work
is then batched matrix products only.

Notation, all (n, n) and shared, from the negative Hessians of the factors:
``A`` = the transition's block in z_{t-1}, ``O`` = its cross block
(z_{t-1}, z_t), ``C`` = its block in z_t, ``E`` = the emission's, ``P`` = the
initial factor's. The forward pass gives the filtered precisions

    Lam_0 = P + E,   Lam_t = C + E - O^T S_{t-1}^-1 O,   S_t = Lam_t + A,

(S_t is the Schur complement of J for a step that has a successor), the
filtered information vectors ``eta_t`` (the gradient at 0, eliminated forward)
and the filtered means ``Lam_t^-1 eta_t``. A sequence's last valid step uses
``Lam``, the earlier ones ``S``; padded steps (past ``lengths``) are 0 and add
nothing. The backward pass is the RTS recursion of ``_gaussian_chain``.
"""

from __future__ import annotations

import math

import jax
import jax.extend.core
import jax.numpy as jnp

_LOG_2PI = math.log(2 * math.pi)


def curvature_reads_data(emission, params, x_step, zero) -> bool:
    """Whether the emission's Hessian in z depends on the observation.

    Decided on the traced program (a dependency walk over the jaxpr of
    ``x -> hessian_z emission(params, x, 0)``), so it costs nothing at run
    time. Any doubt answers True (the per-step path is always correct).
    """

    def hess(x):
        return jax.hessian(lambda z: emission(params, x, z))(zero)

    try:
        jaxpr = jax.make_jaxpr(hess)(x_step).jaxpr
    except Exception:  # pragma: no cover - any tracing trouble: be safe
        return True
    reads = set(jaxpr.invars)
    for eqn in jaxpr.eqns:
        if any(_is_var(v) and v in reads for v in eqn.invars):
            reads.update(eqn.outvars)
    return any(_is_var(v) and v in reads for v in jaxpr.outvars)


def _is_var(v) -> bool:
    return not isinstance(v, jax.extend.core.Literal)


def _shared_blocks(factors, params, x_step, n, dtype):
    """The negative Hessian blocks (P, E, A, O, C) and the gradients at 0."""
    zero, zero2 = jnp.zeros(n, dtype), jnp.zeros(2 * n, dtype)

    def init_fn(z):
        return factors.initial(params, z)

    def trans_fn(zz):
        return factors.transition(params, zz[:n], zz[n:])

    def emit_fn(z):
        return factors.emission(params, x_step, z)

    ht = -jax.hessian(trans_fn)(zero2)
    blocks = {
        "P": -jax.hessian(init_fn)(zero),
        "E": -jax.hessian(emit_fn)(zero),
        "A": ht[:n, :n],
        "O": ht[:n, n:],
        "C": ht[n:, n:],
    }
    grads = {"init": jax.grad(init_fn)(zero), "trans": jax.grad(trans_fn)(zero2)}
    return blocks, grads


def _inverse(chol):
    eye = jnp.eye(chol.shape[-1], dtype=chol.dtype)
    return jax.scipy.linalg.cho_solve((chol, True), eye)


def _log_det(chol):
    return 2 * jnp.sum(jnp.log(jnp.diagonal(chol, 0, -2, -1)), axis=-1)


def _common_filter(blk, t):
    """Filtered precisions of one chain of length t, factorised once.

    Returns (T, n, n) arrays: ``lam_inv`` (filtered covariances), ``s_inv``,
    ``k`` (O^T S_{t-1}^-1, zero at t = 0), and (T,) ``log_det_lam``,
    ``log_det_s``.
    """
    p, e, a, o, c = (blk[k] for k in "PEAOC")

    def factor(lam):
        chol_lam = jnp.linalg.cholesky(lam)
        chol_s = jnp.linalg.cholesky(lam + a)
        s_inv = _inverse(chol_s)
        return (_inverse(chol_lam), s_inv, _log_det(chol_lam), _log_det(chol_s))

    first = factor(p + e)

    def step(prev, _):
        s_inv_prev = prev[1]
        k = o.T @ s_inv_prev
        out = factor(c + e - k @ o)
        return out, (out, k)

    _, (rest, k_rest) = jax.lax.scan(step, first, None, length=t - 1)
    stacked = [jnp.concatenate([f[None], r]) for f, r in zip(first, rest, strict=True)]
    k = jnp.concatenate([jnp.zeros_like(o)[None], k_rest])
    lam_inv, s_inv, ld_lam, ld_s = stacked
    return lam_inv, s_inv, k, ld_lam, ld_s


def _time_major(a):
    return jnp.swapaxes(a, 0, 1)


def _forward(grads, ge, k):
    """Filtered information vectors eta (T, B, n) from the gradients at 0.

    ``ge`` (T, B, n) are the emission gradients; the initial factor's
    gradient joins step 0, the transition's (in z_t) every later step.
    """
    n = ge.shape[-1]
    g_prev, g_next = grads["trans"][None, :n], grads["trans"][None, None, n:]
    r = ge.at[0].add(grads["init"][None]).at[1:].add(g_next)

    def step(eta_prev, inputs):
        r_t, k_t = inputs
        eta = r_t - (eta_prev + g_prev) @ k_t.T
        return eta, eta

    _, rest = jax.lax.scan(step, r[0], (r[1:], k[1:]))
    return jnp.concatenate([r[:1], rest])


def _backward(blk, grads, eta, common, valid, last):
    """Smoothed means (T, B, n), covariances and cross-covariances (RTS)."""
    lam_inv, s_inv = common[0], common[1]
    b, n = eta.shape[1:]
    g_prev = grads["trans"][None, :n]
    gain = -s_inv @ blk["O"]  # (T, n, n): G_t = -S_t^-1 O

    def step(carry, inputs):
        d_next, sig_next = carry
        eta_t, li, si, g, ok, end = inputs
        y = eta_t + g_prev
        mid = y @ si.T + d_next @ g.T
        d = jnp.where(end[:, None], eta_t @ li.T, mid)
        d = jnp.where(ok[:, None], d, 0.0)
        # cross[b] = G sig[b] = (sig[b] G^T)^T (sig symmetric), and
        # sig_mid[b] = S^-1 + cross[b] G^T: two (B n, n) @ (n, n) products
        # (a batched (B, n, n) einsum runs one tiny product at a time on a CPU).
        cross = jnp.swapaxes((sig_next.reshape(-1, n) @ g.T).reshape(b, n, n), 1, 2)
        sig_mid = si[None] + (cross.reshape(-1, n) @ g.T).reshape(b, n, n)
        sig_mid = 0.5 * (sig_mid + jnp.swapaxes(sig_mid, 1, 2))
        sig = jnp.where(end[:, None, None], li[None], sig_mid)
        sig = jnp.where(ok[:, None, None], sig, 0.0)
        return (d, sig), (d, sig, cross)

    init = (jnp.zeros((b, n), eta.dtype), jnp.zeros((b, n, n), eta.dtype))
    _, (mean, cov, cross) = jax.lax.scan(
        step, init, (eta, lam_inv, s_inv, gain, valid, last), reverse=True
    )
    return mean, cov, cross[:-1]


def _sequence_values(factors, params, data, mean, valid):
    """f_b(mean_b): the sequences' log-densities at the means, (B,)."""
    pair_ok = valid[:, 1:] & valid[:, :-1]
    init = jax.vmap(lambda z: factors.initial(params, z))(mean[:, 0])
    trans = jax.vmap(jax.vmap(lambda a, b: factors.transition(params, a, b)))(
        mean[:, :-1], mean[:, 1:]
    )
    emit = jax.vmap(jax.vmap(lambda x, z: factors.emission(params, x, z)))(data, mean)
    total = jnp.where(valid[:, 0], init, 0.0)
    total += jnp.sum(jnp.where(pair_ok, trans, 0.0), axis=1)
    return total + jnp.sum(jnp.where(valid, emit, 0.0), axis=1)


def smooth(factors, params, data, valid, n, dtype, *, filtered=False):
    """The exact smoother of a quadratic chain with data-free curvature.

    Args:
        factors: the model's ``ChainFactors``.
        params: the parameters.
        data: (B, T, ...) sequences, padding already filled with real steps.
        valid: (B, T) bool, the steps inside each sequence's length.
        n: the state size. dtype: the float dtype.
        filtered: return the filtered (mean, cov) instead (Kalman filter).

    Returns:
        ``(mean (B, T, n), cov (B, T, n, n), cross (B, T-1, n, n), ll (B,))``,
        or with ``filtered`` ``(mean (B, T, n), cov (B, T, n, n))``; padded
        steps are 0.
    """
    t = valid.shape[1]
    x_step = jax.tree.map(lambda a: a[0, 0], data)
    blk, grads = _shared_blocks(factors, params, x_step, n, dtype)
    common = _common_filter(blk, t)
    zero = jnp.zeros(n, dtype)
    grad_emit = jax.grad(lambda x, z: factors.emission(params, x, z), argnums=1)
    data_tm = jax.tree.map(_time_major, data)
    ge = jax.vmap(jax.vmap(grad_emit, (0, None)), (0, None))(data_tm, zero)
    valid_tm = _time_major(valid)
    eta = _forward(grads, ge, common[2])
    nxt = jnp.concatenate([valid_tm[1:], jnp.zeros_like(valid_tm[:1])])
    last = valid_tm & ~nxt
    if filtered:
        lam_inv = common[0]
        mean = jnp.einsum("tij,tbj->tbi", lam_inv, eta)
        mean = jnp.where(valid_tm[..., None], mean, 0.0)
        cov = jnp.where(valid_tm[..., None, None], lam_inv[:, None], 0.0)
        return _time_major(mean), _time_major(cov)
    mean, cov, cross = _backward(blk, grads, eta, common, valid_tm, last)
    pair_ok = (valid_tm[1:] & valid_tm[:-1])[..., None, None]
    cross = jnp.where(pair_ok, cross, 0.0)
    mean, cov, cross = (_time_major(a) for a in (mean, cov, cross))
    ld_lam, ld_s = common[3], common[4]
    log_det = jnp.sum(
        jnp.where(last, ld_lam[:, None], jnp.where(valid_tm, ld_s[:, None], 0.0)),
        axis=0,
    )
    value = _sequence_values(factors, params, data, mean, valid)
    count = jnp.sum(valid, axis=1).astype(dtype)
    ll = value + 0.5 * count * n * _LOG_2PI - 0.5 * log_det
    return mean, cov, cross, ll
