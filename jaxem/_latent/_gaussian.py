"""``Gaussian``: a real latent vector per observation, posterior by autodiff.

For one observation x the posterior over z in R^dim is approximated by
N(m, S) with m the mode of f(z) = log p(x, z | params) and S = (-H)^-1, H the
Hessian of f at m (Laplace). Both come from autodiff (``jax.grad`` and
``jax.hessian`` in z, vmapped over observations) and a damped Newton solve.

When f is quadratic in z (every linear-Gaussian model: factor analysis, PPCA,
random effects with Gaussian noise) the posterior is exactly Gaussian, one
Newton step from any point reaches m, and

    log p(x) = f(m) + dim/2 log 2 pi + 1/2 log |S|
    E_q[log p(x, z)] = f(m) + 1/2 tr(H S)

are exact, so EM is exact and monotone. Otherwise both are the Laplace
approximation (Tierney & Kadane 1986): the likelihood is approximate and
monotonicity of the history is no longer a theorem.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _validation
from ._base import EStep, check_positive_ints

_LOG_2PI = math.log(2 * math.pi)
_MAX_HALVINGS = 30


class GaussianPosterior(NamedTuple):
    """Posterior of a ``Gaussian`` latent: one normal distribution per observation.

    Attributes:
        mean: (N, dim) posterior means (the modes of ``log_joint`` in z).
        cov: (N, dim, dim) posterior covariances, the inverse negative Hessian
            of ``log_joint`` in z at the mean.
    """

    mean: jax.Array
    cov: jax.Array


class _Newton(NamedTuple):
    z: jax.Array
    value: jax.Array
    chol: jax.Array  # Cholesky factor of -H at z (NaN where -H is not PD)
    direction: jax.Array  # Newton direction (-H)^-1 g (g where -H is not PD)
    step: jax.Array
    done: jax.Array


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """A real latent vector z in R^dim per observation (exact or Laplace).

    ``log_joint(params, x, z)`` takes ONE observation ``x`` and a real (dim,)
    vector ``z``. The E-step finds the mode of ``log_joint`` in z by damped
    Newton steps (gradient and Hessian by autodiff) and returns a
    :class:`GaussianPosterior`. For a ``log_joint`` quadratic in z this is
    exact; otherwise it is the Laplace approximation. An observation whose
    Newton solve has not converged within ``max_steps`` gets a NaN
    log-likelihood, so ``fit`` stops with ``Status.NONFINITE`` instead of
    reporting a wrong answer as converged.

    Args:
        dim: size of the latent vector.
        max_steps: bound on Newton steps per observation and E-step (each step
            backtracks, halving, until ``log_joint`` does not decrease).

    Examples:
        >>> import jax.numpy as jnp, jax.scipy.stats as st, jaxem
        >>> def log_joint(params, x, z):   # z ~ N(0, 1), x | z ~ N(z, s^2)
        ...     return st.norm.logpdf(z[0]) + st.norm.logpdf(x, z[0], params["s"])
        >>> model = jaxem.LatentModel(log_joint, jaxem.Gaussian(1))
        >>> post = jaxem.posterior(model, {"s": jnp.array(1.0)}, jnp.array([2.0]))
        >>> round(float(post.mean[0, 0]), 6), round(float(post.cov[0, 0, 0]), 6)
        (1.0, 0.5)
    """

    dim: int
    max_steps: int = 20

    def __post_init__(self):
        check_positive_ints(self, "dim", "max_steps")

    num_batch_axes = 1

    @property
    def num_values(self) -> int:
        """The latent dimension (the size every latent structure reports)."""
        return self.dim

    def check_log_joint(self, log_joint) -> None:
        if not callable(log_joint):
            raise ValueError(
                "log_joint: expected a function log_joint(params, x, z) -> scalar "
                "with z a real (dim,) vector"
            )

    # -------------------------------------------------------------- E-step
    def solve(self, model, params, data) -> tuple[GaussianPosterior, jax.Array]:
        """Posterior of every observation and its (N,) log marginal likelihood.

        Observations whose Newton solve did not converge get NaN.
        """
        z0 = jnp.zeros((self.dim,), _float_dtype(params, data))

        def one(x):
            s = _newton(lambda z: model.log_joint(params, x, z), z0, self.max_steps)
            chol = s.chol
            eye = jnp.eye(self.dim, dtype=z0.dtype)
            cov = jax.scipy.linalg.cho_solve((chol, True), eye)
            half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol)))
            ll = s.value + 0.5 * self.dim * _LOG_2PI - half_log_det
            return s.z, cov, jnp.where(s.done, ll, jnp.nan)

        mean, cov, per_obs = jax.vmap(one)(data)
        return GaussianPosterior(mean, cov), per_obs

    def e_step(self, model, params, data, weights=None, lengths=None) -> EStep:
        """Posterior (a ``GaussianPosterior``) and the total log-likelihood."""
        post, per_obs = self.solve(model, params, data)
        return EStep(post, _weighted_sum(per_obs, weights), per_obs)

    def expected_log_joint(
        self, model, params, data, posterior, weights=None, lengths=None
    ) -> jax.Array:
        """Q(params) = sum_n w_n [f_n(m_n) + 1/2 tr(H_n(m_n) S_n)].

        The second-order expansion of E_q[log_joint] about the posterior mean:
        exact when ``log_joint`` is quadratic in z.
        """

        def one(x, mean, cov):
            f = lambda z: model.log_joint(params, x, z)  # noqa: E731
            return f(mean) + 0.5 * jnp.sum(jax.hessian(f)(mean) * cov)

        per_obs = jax.vmap(one)(data, posterior.mean, posterior.cov)
        return _weighted_sum(per_obs, weights)

    def num_observations(self, data, weights=None, lengths=None) -> jax.Array:
        """N, or the sum of the weights."""
        if weights is not None:
            return jnp.sum(weights)
        return jnp.asarray(jax.tree.leaves(data)[0].shape[0])

    def validate(self, model, data, weights=None, lengths=None) -> None:
        """Host-side checks of ``fit``'s inputs; raises ``ValueError``."""
        if lengths is not None:
            raise ValueError(
                "lengths: only meaningful for chain models, got lengths for a "
                "Gaussian model"
            )
        (n,) = _validation.check_data_leaves("data", data, 1)
        _validation.check_event_shape("data", data, 1, model.event_shape)
        _validation.check_weights("weights", weights, n)


# ------------------------------------------------------------------ helpers
def _float_dtype(*trees):
    floats = [
        jnp.result_type(leaf)
        for leaf in jax.tree.leaves(trees)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
    ]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def _weighted_sum(per_obs, weights):
    if weights is None:
        return jnp.sum(per_obs)
    # 0 * NaN would hide a failed solve only where the weight is 0: harmless.
    return jnp.sum(jnp.where(weights > 0, weights * per_obs, 0.0))


def _evaluate(f, z):
    """f, its Cholesky-factored curvature and Newton direction at z, and
    whether the Newton decrement is round-off (one factorisation per point).

    Newton converges quadratically, so demanding round-off costs one step more
    than a loose test at most, and the mode is then exact to working precision.
    """
    value, grad = jax.value_and_grad(f)(z)
    chol = jnp.linalg.cholesky(-jax.hessian(f)(z))
    d = jax.scipy.linalg.cho_solve((chol, True), grad)
    d = jnp.where(jnp.all(jnp.isfinite(d)), d, grad)
    eps = jnp.finfo(grad.dtype).eps
    gain = 0.5 * jnp.dot(grad, d)
    done = jnp.isfinite(value) & (gain <= 8 * eps * (1.0 + jnp.abs(value)))
    return value, chol, d, done


def _newton(f, z0, max_steps) -> _Newton:
    """Maximise ``f`` from ``z0`` by damped Newton steps (a ``lax.while_loop``)."""
    value, chol, direction, done = _evaluate(f, z0)
    init = _Newton(z0, value, chol, direction, jnp.asarray(0), done)

    def cond(s):
        return (s.step < max_steps) & ~s.done

    def body(s):
        d = s.direction
        slack = 4 * jnp.finfo(s.value.dtype).eps * (1.0 + jnp.abs(s.value))

        def search_cond(c):
            t, f_new, k = c
            return ~(f_new >= s.value - slack) & (k < _MAX_HALVINGS)

        def search_body(c):
            t, _, k = c
            return t / 2, f(s.z + (t / 2) * d), k + 1

        one = jnp.ones((), s.value.dtype)
        t, f_new, _ = jax.lax.while_loop(
            search_cond, search_body, (one, f(s.z + d), jnp.asarray(0))
        )
        t = jnp.where(f_new >= s.value - slack, t, 0.0)
        z = s.z + t * d
        value, chol, direction, done = _evaluate(f, z)
        return _Newton(z, value, chol, direction, s.step + 1, done)

    return jax.lax.while_loop(cond, body, init)
