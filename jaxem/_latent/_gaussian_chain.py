"""``GaussianChain``: a real latent state per time step, smoothed by autodiff.

The joint log-density of one sequence,

    f(z_0..z_{T-1}) = initial(z_0) + sum_t transition(z_{t-1}, z_t)
                      + sum_t emission(x_t, z_t),

has a block-tridiagonal Hessian in z: each block is the Hessian of one factor,
taken by autodiff. The posterior is N(m, J^-1) with m the mode of f and J the
negative Hessian there, found by damped Newton steps; each step, and the
posterior covariances, come from a block-tridiagonal Cholesky factorisation in
a ``lax.scan`` (forward Schur complements S_t, backward RTS-form recursions):

    Sigma_t = S_t^-1 + G_t Sigma_{t+1} G_t^T,  Cov(z_t, z_{t+1}) = G_t Sigma_{t+1},

with G_t = -S_t^-1 J_{t,t+1}, and log|J| = sum_t log|S_t|. For linear-Gaussian
factors f is quadratic: one Newton step is exact, the smoother equals the
Kalman (RTS) smoother and the log-likelihood is exact. Otherwise this is the
Laplace (iterated extended Kalman) smoother, with the same caveats as
``Gaussian``.

Padded steps (past ``lengths``) carry an independent standard normal state
instead of the factors: it integrates to one, so they add exactly nothing to
the log-likelihood, and they are reported as mean, cov and cross_cov 0.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _validation
from . import _gaussian_chain_quadratic as _quadratic
from . import _markov_chain as _chain
from ._base import EStep, check_positive_ints
from ._markov_chain import ChainFactors

_LOG_2PI = math.log(2 * math.pi)
_MAX_HALVINGS = 30


class GaussianChainPosterior(NamedTuple):
    """Posterior of the latent states of a ``GaussianChain`` (Gaussian, jointly).

    Every entry is exactly 0 at padded steps (past a sequence's length).

    Attributes:
        mean: (B, T, dim) posterior means E[z_t | x].
        cov: (B, T, dim, dim) posterior covariances Cov(z_t | x).
        cross_cov: (B, T-1, dim, dim) lag-one cross-covariances
            ``cross_cov[:, t] = Cov(z_t, z_{t+1} | x)``.
    """

    mean: jax.Array
    cov: jax.Array
    cross_cov: jax.Array

    @property
    def valid(self) -> jax.Array:
        """(B, T) bool: the steps inside each sequence's length."""
        return jnp.trace(self.cov, axis1=-2, axis2=-1) > 0


class _Blocks(NamedTuple):
    """f, its gradient and the block-tridiagonal factor of -H at one z."""

    value: jax.Array  # scalar
    grad: jax.Array  # (T, n)
    chol: jax.Array  # (T, n, n) Cholesky factors of the Schur complements S_t
    off: jax.Array  # (T-1, n, n) blocks J_{t,t+1} of the negative Hessian
    direction: jax.Array  # (T, n) Newton direction J^-1 grad (grad if J not PD)


class _Newton(NamedTuple):
    z: jax.Array
    blocks: _Blocks
    step: jax.Array
    done: jax.Array


@dataclasses.dataclass(frozen=True)
class GaussianChain:
    """A real latent state z_t in R^dim per time step (linear dynamical systems).

    Declared like ``MarkovChain`` with ``ChainFactors(initial, transition,
    emission)``, each a scalar log-density of real (dim,) states. The E-step
    is the smoother described in the module docstring; ``jaxem.posterior``
    returns a :class:`GaussianChainPosterior`. Data are padded (B, T, ...)
    sequences with ``lengths`` as for ``MarkovChain``. A sequence whose Newton
    solve does not converge within ``max_steps`` gets a NaN log-likelihood, so
    ``fit`` stops with ``Status.NONFINITE``.

    Args:
        dim: size of the latent state.
        max_steps: bound on Newton steps per sequence and E-step.
        quadratic: declare every factor quadratic in the states (true of every
            linear-Gaussian model). The Hessian blocks are then taken once per
            E-step and one Newton step from 0 is exact; when the emission's
            curvature does not read the observation (checked on the traced
            program) the factorisation is shared by all steps and sequences,
            and ``filter`` is available. Declaring it for a model that is not
            quadratic gives one Newton step from 0, not the Laplace mode.

    Examples:
        >>> import jax.numpy as jnp, jax.scipy.stats as st, jaxem
        >>> factors = jaxem.ChainFactors(     # a local-level (random walk) model
        ...     initial=lambda p, z: st.norm.logpdf(z[0], 0.0, 10.0),
        ...     transition=lambda p, zp, z: st.norm.logpdf(z[0], zp[0], p["q"]),
        ...     emission=lambda p, x, z: st.norm.logpdf(x, z[0], p["r"]))
        >>> model = jaxem.LatentModel(factors, jaxem.GaussianChain(1))
        >>> x = jnp.array([[1.0, 1.2, 0.9, 1.1]])                # (B=1, T=4)
        >>> post = jaxem.posterior(model, {"q": 0.1, "r": 0.5}, x)
        >>> post.mean.shape, post.cross_cov.shape
        ((1, 4, 1), (1, 3, 1, 1))
    """

    dim: int
    max_steps: int = 20
    quadratic: bool = False

    def __post_init__(self):
        check_positive_ints(self, "dim", "max_steps")
        if not isinstance(self.quadratic, bool):
            raise ValueError(f"quadratic: expected a bool, got {self.quadratic!r}")

    num_batch_axes = 2

    @property
    def num_values(self) -> int:
        """The state dimension (the size every latent structure reports)."""
        return self.dim

    def check_log_joint(self, log_joint) -> None:
        if not isinstance(log_joint, ChainFactors) or not all(
            callable(f) for f in log_joint
        ):
            raise ValueError(
                "log_joint: a GaussianChain model needs "
                "jaxem.ChainFactors(initial, transition, emission), each a "
                f"function of real (dim,) states returning a scalar; got {log_joint!r}"
            )

    # -------------------------------------------------------------- E-step
    def e_step(self, model, params, data, weights=None, lengths=None) -> EStep:
        """Posterior means, covariances, cross-covariances and log-likelihoods.

        Returns:
            ``EStep(GaussianChainPosterior, total weighted log-likelihood, (B,)
            per-sequence log-likelihoods)``.
        """
        data = _chain._as_batch(model, data)
        valid = _chain._valid_mask(data, lengths)
        data = data if lengths is None else _chain._fill_padding(data, valid)
        dtype = _float_dtype(params, data)
        if self._shared_curvature(model, params, data, dtype):
            mean, cov, cross, per_seq = _quadratic.smooth(
                model.log_joint, params, data, valid, self.dim, dtype
            )
            post = GaussianChainPosterior(mean, cov, cross)
            return EStep(post, _chain._weighted_sum(per_seq, weights), per_seq)
        t = valid.shape[1]
        z0 = jnp.zeros((t, self.dim), dtype)
        max_steps = 1 if self.quadratic else self.max_steps

        def one(x, mask):
            f = _sequence_density(model.log_joint, params, x, mask)
            s = _newton(f, z0, max_steps)
            mean = s.z
            cov, cross = _moments(s.blocks)
            log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(s.blocks.chol, 0, -2, -1)))
            ll = s.blocks.value + 0.5 * t * self.dim * _LOG_2PI - 0.5 * log_det
            step_ok = mask[:, None, None]
            pair_ok = (mask[1:] & mask[:-1])[:, None, None]
            post = (
                jnp.where(mask[:, None], mean, 0.0),
                jnp.where(step_ok, cov, 0.0),
                jnp.where(pair_ok, cross, 0.0),
            )
            return post, jnp.where(s.done, ll, jnp.nan)

        (mean, cov, cross), per_seq = jax.vmap(one)(data, valid)
        post = GaussianChainPosterior(mean, cov, cross)
        return EStep(post, _chain._weighted_sum(per_seq, weights), per_seq)

    def _shared_curvature(self, model, params, data, dtype) -> bool:
        """Quadratic, and the emission's curvature never reads the data."""
        if not self.quadratic:
            return False
        x_step = jax.tree.map(lambda a: a[0, 0], data)
        zero = jnp.zeros(self.dim, dtype)
        emission = model.log_joint.emission
        return not _quadratic.curvature_reads_data(emission, params, x_step, zero)

    def filter(self, model, params, data, lengths=None):
        """Filtered means and covariances: the Kalman filter, p(z_t | x_{0:t}).

        Needs ``quadratic=True`` and an emission whose curvature in z does not
        read the observation (every linear-Gaussian model).

        Args:
            model: the ``LatentModel``. params: its parameters.
            data: (B, T, ...) padded sequences. lengths: (B,) ints or None.

        Returns:
            ``(mean (B, T, dim), cov (B, T, dim, dim))``, 0 at padded steps.
        """
        data = _chain._as_batch(model, data)
        valid = _chain._valid_mask(data, lengths)
        data = data if lengths is None else _chain._fill_padding(data, valid)
        dtype = _float_dtype(params, data)
        if not self._shared_curvature(model, params, data, dtype):
            raise ValueError(
                "model: filter needs GaussianChain(dim, quadratic=True) and an "
                "emission whose curvature in z does not read the observation"
            )
        return _quadratic.smooth(
            model.log_joint, params, data, valid, self.dim, dtype, filtered=True
        )

    def expected_log_joint(
        self, model, params, data, posterior, weights=None, lengths=None
    ) -> jax.Array:
        """Q(params) = sum_b w_b E_q[log p(x_b, z_b | params)], to second order.

        Each factor contributes its value at the posterior means plus half the
        trace of its Hessian (in the states it reads) against their posterior
        covariance: exact for factors quadratic in z.
        """
        valid = _chain._valid_mask(data, lengths)
        data = data if lengths is None else _chain._fill_padding(data, valid)
        factors = model.log_joint

        def expected(fn, mean, cov):
            return fn(mean) + 0.5 * jnp.sum(jax.hessian(fn)(mean) * cov)

        def one(x, mask, mean, cov, cross):
            first = expected(lambda z: factors.initial(params, z), mean[0], cov[0])
            pair_mean = jnp.concatenate([mean[:-1], mean[1:]], axis=-1)
            pair_cov = jnp.concatenate(
                [
                    jnp.concatenate([cov[:-1], cross], axis=-1),
                    jnp.concatenate([jnp.swapaxes(cross, -1, -2), cov[1:]], axis=-1),
                ],
                axis=-2,
            )
            n = self.dim

            def trans(zz):
                return factors.transition(params, zz[:n], zz[n:])

            steps = jax.vmap(lambda m, c: expected(trans, m, c))(pair_mean, pair_cov)
            emits = jax.vmap(
                lambda xt, m, c: expected(
                    lambda z: factors.emission(params, xt, z), m, c
                )
            )(x, mean, cov)
            total = jnp.where(mask[0], first, 0.0)
            total += jnp.sum(jnp.where(mask[1:], steps, 0.0))
            return total + jnp.sum(jnp.where(mask, emits, 0.0))

        per_seq = jax.vmap(one)(
            data, valid, posterior.mean, posterior.cov, posterior.cross_cov
        )
        return _chain._weighted_sum(per_seq, weights)

    def num_observations(self, data, weights=None, lengths=None) -> jax.Array:
        """Total number of valid time steps (weighted by sequence weights)."""
        return _chain.MarkovChain.num_observations(self, data, weights, lengths)

    def validate(self, model, data, weights=None, lengths=None) -> None:
        """Host-side checks of ``fit``'s inputs; raises ``ValueError``.

        One unbatched sequence (T, ...) is read as a batch of one when the
        model declares its ``event_shape``, as ``e_step`` reads it.
        """
        data = _chain._as_batch(model, data)
        b, t = _validation.check_data_leaves("data", data, 2)
        _validation.check_event_shape("data", data, 2, model.event_shape)
        _chain.check_lengths(lengths, b, t)
        _validation.check_weights("weights", weights, b)


# ---------------------------------------------------------------- density
def _float_dtype(*trees):
    floats = [
        jnp.result_type(leaf)
        for leaf in jax.tree.leaves(trees)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
    ]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def _sequence_density(factors, params, x, mask):
    """f(z) (T, n) -> scalar for one sequence, and its derivative blocks.

    Returns a function ``blocks(z) -> (value, grad, diag, off)`` with ``diag``
    (T, n, n) and ``off`` (T-1, n, n) blocks of the NEGATIVE Hessian, plus
    ``value(z)``. Padded steps carry a standard normal state.
    """

    def init_fn(z):
        return factors.initial(params, z)

    def trans_fn(zz):
        n = zz.shape[0] // 2
        return factors.transition(params, zz[:n], zz[n:])

    def emit_fn(xt, z):
        return factors.emission(params, xt, z)

    def pad_fn(z):
        return -0.5 * jnp.sum(z * z) - 0.5 * z.shape[0] * _LOG_2PI

    def value(z):
        pairs = jnp.concatenate([z[:-1], z[1:]], axis=-1)
        trans = jax.vmap(trans_fn)(pairs)
        emits = jax.vmap(emit_fn)(x, z)
        pads = jax.vmap(pad_fn)(z)
        total = jnp.where(mask[0], init_fn(z[0]), 0.0)
        total += jnp.sum(jnp.where(mask[1:], trans, 0.0))
        return total + jnp.sum(jnp.where(mask, emits, pads))

    def derivatives(fn, *args):
        v, g = jax.value_and_grad(fn, argnums=len(args) - 1)(*args)
        return v, g, jax.hessian(fn, argnums=len(args) - 1)(*args)

    def blocks(z):
        n = z.shape[-1]
        eye = jnp.eye(n, dtype=z.dtype)
        _, g0, h0 = derivatives(init_fn, z[0])
        pairs = jnp.concatenate([z[:-1], z[1:]], axis=-1)
        _, gt, ht = jax.vmap(lambda zz: derivatives(trans_fn, zz))(pairs)
        _, ge, he = jax.vmap(lambda xt, zt: derivatives(emit_fn, xt, zt))(x, z)
        m = mask[:, None]
        grad = jnp.where(m, ge, -z).at[0].add(jnp.where(mask[0], g0, 0.0))
        grad = grad.at[:-1].add(jnp.where(mask[1:, None], gt[:, :n], 0.0))
        grad = grad.at[1:].add(jnp.where(mask[1:, None], gt[:, n:], 0.0))
        mm = mask[:, None, None]
        diag = jnp.where(mm, -he, eye).at[0].add(jnp.where(mask[0], -h0, 0.0))
        diag = diag.at[:-1].add(jnp.where(mm[1:], -ht[:, :n, :n], 0.0))
        diag = diag.at[1:].add(jnp.where(mm[1:], -ht[:, n:, n:], 0.0))
        off = jnp.where(mm[1:], -ht[:, :n, n:], 0.0)
        return value(z), grad, diag, off

    return value, blocks


# ---------------------------------------------------------- block solves
def _factor_solve(diag, off, rhs):
    """Cholesky factors (T, n, n) of the Schur complements of J, and J^-1 rhs.

    One forward scan factorises and substitutes at once; one backward scan
    finishes the solve.
    """

    def forward(carry, inputs):
        chol_prev, y_prev = carry
        d, o, r = inputs
        both = jnp.concatenate([o, y_prev[:, None]], axis=1)
        x = jax.scipy.linalg.cho_solve((chol_prev, True), both)
        chol = jnp.linalg.cholesky(d - o.T @ x[:, :-1])
        y = r - o.T @ x[:, -1]
        return (chol, y), (chol, y)

    first = jnp.linalg.cholesky(diag[0])
    _, (chol_rest, y_rest) = jax.lax.scan(
        forward, (first, rhs[0]), (diag[1:], off, rhs[1:])
    )
    chol = jnp.concatenate([first[None], chol_rest])
    y = jnp.concatenate([rhs[:1], y_rest])
    last = jax.scipy.linalg.cho_solve((chol[-1], True), y[-1])

    def backward(d_next, inputs):
        c, o, yt = inputs
        d = jax.scipy.linalg.cho_solve((c, True), yt - o @ d_next)
        return d, d

    _, d_rest = jax.lax.scan(backward, last, (chol[:-1], off, y[:-1]), reverse=True)
    return chol, jnp.concatenate([d_rest, last[None]])


def _moments(blocks: _Blocks):
    """Blocks of J^-1: covariances (T, n, n) and cross-covariances (T-1, n, n)."""
    chol, off = blocks.chol, blocks.off
    n = chol.shape[-1]
    eye = jnp.eye(n, dtype=chol.dtype)
    s_inv = jax.vmap(lambda c: jax.scipy.linalg.cho_solve((c, True), eye))(chol)

    def backward(sigma_next, inputs):
        s_inv_t, o = inputs
        gain = -s_inv_t @ o
        cross = gain @ sigma_next
        sigma = s_inv_t + cross @ gain.T
        return sigma, (sigma, cross)

    _, (sigma_rest, cross) = jax.lax.scan(
        backward, s_inv[-1], (s_inv[:-1], off), reverse=True
    )
    cov = jnp.concatenate([sigma_rest, s_inv[-1:]])
    return 0.5 * (cov + jnp.swapaxes(cov, -1, -2)), cross


# ----------------------------------------------------------------- Newton
def _newton(density, z0, max_steps) -> _Newton:
    """Maximise the sequence density from ``z0`` by damped Newton steps."""
    value_fn, blocks_fn = density

    def evaluate(z):
        value, grad, diag, off = blocks_fn(z)
        chol, d = _factor_solve(diag, off, grad)
        d = jnp.where(jnp.all(jnp.isfinite(d)), d, grad)
        return _Blocks(value, grad, chol, off, d)

    def is_done(b):
        eps = jnp.finfo(b.value.dtype).eps
        gain = 0.5 * jnp.sum(b.grad * b.direction)
        return jnp.isfinite(b.value) & (gain <= 8 * eps * (1.0 + jnp.abs(b.value)))

    b0 = evaluate(z0)
    init = _Newton(z0, b0, jnp.asarray(0), is_done(b0))

    def cond(s):
        return (s.step < max_steps) & ~s.done

    def body(s):
        d = s.blocks.direction
        f0 = s.blocks.value
        slack = 4 * jnp.finfo(f0.dtype).eps * (1.0 + jnp.abs(f0))

        def search_cond(c):
            _, f_new, k = c
            return ~(f_new >= f0 - slack) & (k < _MAX_HALVINGS)

        def search_body(c):
            t, _, k = c
            return t / 2, value_fn(s.z + (t / 2) * d), k + 1

        one = jnp.ones((), f0.dtype)
        t, f_new, _ = jax.lax.while_loop(
            search_cond, search_body, (one, value_fn(s.z + d), jnp.asarray(0))
        )
        t = jnp.where(f_new >= f0 - slack, t, 0.0)
        z = s.z + t * d
        b = evaluate(z)
        return _Newton(z, b, s.step + 1, is_done(b))

    return jax.lax.while_loop(cond, body, init)
