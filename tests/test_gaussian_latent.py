"""``Gaussian``: the autodiff E-step against closed-form Gaussian conditioning."""

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import pytest
import scipy.stats

import jaxem

DIM, D, N = 3, 4, 7


def _linear_gaussian():
    """z ~ N(mu0, P0), x | z ~ N(W z + b, R), all full matrices."""

    def log_joint(p, x, z):
        return st.multivariate_normal.logpdf(
            z, p["mu0"], p["P0"]
        ) + st.multivariate_normal.logpdf(x, p["W"] @ z + p["b"], p["R"])

    return jaxem.LatentModel(log_joint, jaxem.Gaussian(DIM))


MODEL = _linear_gaussian()
E_STEP = jax.jit(lambda p, x: MODEL.latent.e_step(MODEL, p, x))


def _random_spd(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T + n * np.eye(n) * 0.3


def _random_params(seed):
    rng = np.random.default_rng(seed)
    return {
        "mu0": rng.normal(size=DIM),
        "P0": _random_spd(rng, DIM),
        "W": rng.normal(size=(D, DIM)),
        "b": rng.normal(size=D),
        "R": _random_spd(rng, D),
    }


def _closed_form(p, x):
    """Posterior mean (N, dim), cov (dim, dim), log marginal (N,) by conditioning."""
    p0_inv, r_inv = np.linalg.inv(p["P0"]), np.linalg.inv(p["R"])
    cov = np.linalg.inv(p0_inv + p["W"].T @ r_inv @ p["W"])
    info = (p0_inv @ p["mu0"])[:, None] + p["W"].T @ r_inv @ (x - p["b"]).T
    mean = (cov @ info).T
    marg_mean = p["W"] @ p["mu0"] + p["b"]
    marg_cov = p["W"] @ p["P0"] @ p["W"].T + p["R"]
    diff = x - marg_mean
    _, logdet = np.linalg.slogdet(marg_cov)
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(marg_cov), diff)
    return mean, cov, -0.5 * (D * np.log(2 * np.pi) + logdet + maha)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_e_step_equals_gaussian_conditioning(seed):
    params = _random_params(seed)
    x = np.random.default_rng(seed + 10).normal(size=(N, D)) * 3.0
    estep = E_STEP(params, jnp.asarray(x))
    mean, cov, ll = _closed_form(params, x)
    np.testing.assert_allclose(estep.posterior.mean, mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        estep.posterior.cov, np.broadcast_to(cov, (N, DIM, DIM)), rtol=0, atol=1e-10
    )
    np.testing.assert_allclose(estep.per_item, ll, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(estep.log_likelihood, ll.sum(), rtol=1e-10)
    total = jaxem.log_likelihood(MODEL, params, x)
    np.testing.assert_allclose(total, ll.sum(), rtol=1e-10)


def test_expected_log_joint_is_exact_for_linear_gaussian():
    params = _random_params(3)
    x = np.random.default_rng(4).normal(size=(N, D))
    post = jaxem.posterior(MODEL, params, x)
    weights = jnp.asarray(np.random.default_rng(5).uniform(0.5, 2.0, N))
    q = jax.jit(MODEL.latent.expected_log_joint, static_argnums=0)(
        MODEL, params, x, post, weights
    )
    m, s = np.asarray(post.mean), np.asarray(post.cov)
    p0_inv, r_inv = np.linalg.inv(params["P0"]), np.linalg.inv(params["R"])
    want = 0.0
    for n in range(N):
        # E[log N(z; mu0, P0)] + E[log N(x; W z + b, R)] under z ~ N(m, S).
        prior = scipy.stats.multivariate_normal.logpdf(
            m[n], params["mu0"], params["P0"]
        )
        mean_x = params["W"] @ m[n] + params["b"]
        lik = scipy.stats.multivariate_normal.logpdf(x[n], mean_x, params["R"])
        trace = np.trace(p0_inv @ s[n]) + np.trace(
            params["W"].T @ r_inv @ params["W"] @ s[n]
        )
        want += float(weights[n]) * (float(prior) + float(lik) - 0.5 * trace)
    np.testing.assert_allclose(q, want, rtol=1e-10)


def _poisson_lognormal(max_steps=20):
    """x | z ~ Poisson(exp(a + z)), z ~ N(0, s^2): not quadratic in z (Laplace)."""

    def log_joint(p, x, z):
        return st.norm.logpdf(z[0], 0.0, p["s"]) + st.poisson.logpmf(
            x, jnp.exp(p["a"] + z[0])
        )

    return jaxem.LatentModel(
        log_joint,
        jaxem.Gaussian(1, max_steps=max_steps),
        constraints={"s": jaxem.constraints.positive},
    )


def test_laplace_mode_and_curvature_for_a_non_quadratic_model():
    model = _poisson_lognormal()
    params = {"a": jnp.asarray(1.0), "s": jnp.asarray(0.8)}
    x = jnp.array([0.0, 3.0, 12.0, 40.0])
    post = jaxem.posterior(model, params, x)

    @jax.jit
    def derivatives(xn, z):
        f = lambda z: model.log_joint(params, xn, z)  # noqa: E731
        return jax.grad(f)(z), jax.hessian(f)(z)

    grad, hess = jax.vmap(derivatives)(x, post.mean)
    np.testing.assert_allclose(grad, 0.0, atol=1e-8)
    np.testing.assert_allclose(post.cov, np.linalg.inv(-hess), rtol=1e-12)
    # The Laplace marginal is close to the quadrature of p(x, z) over z.
    grid = jnp.linspace(-8.0, 8.0, 40001)
    dens = jax.jit(
        jax.vmap(
            jax.vmap(lambda xn, z: model.log_joint(params, xn, z[None]), (None, 0)),
            (0, None),
        )
    )(x, grid)
    exact = jax.nn.logsumexp(dens, axis=1) + jnp.log(grid[1] - grid[0])
    laplace = model.latent.solve(model, params, x)[1]
    np.testing.assert_allclose(laplace, exact, atol=0.02)


def test_unconverged_inner_solve_is_reported_not_hidden():
    # One Newton step cannot reach the mode of a non-quadratic log_joint.
    model = _poisson_lognormal(max_steps=1)
    params = {"a": jnp.asarray(1.0), "s": jnp.asarray(0.8)}
    x = jnp.array([0.0, 3.0, 12.0, 40.0])
    assert not np.isfinite(float(jaxem.log_likelihood(model, params, x)))
    result = jaxem.fit(model, params, x, max_iter=5)
    assert int(result.status) == jaxem.Status.NONFINITE
    assert not bool(result.converged)


def test_laplace_fit_by_gradient_m_step_increases_the_likelihood():
    model = _poisson_lognormal()
    rng = np.random.default_rng(0)
    x = rng.poisson(np.exp(1.5 + 0.5 * rng.normal(size=200))).astype(float)
    params0 = {"a": jnp.asarray(1.0), "s": jnp.asarray(1.0)}
    result = jaxem.fit(model, params0, x, max_iter=100, tol=1e-8)
    assert int(result.status) != jaxem.Status.NONFINITE
    history = np.asarray(result.history)[: int(result.n_iter)]
    # Laplace EM is not guaranteed monotone; on this model it is, closely.
    assert np.diff(history).min() > -1e-6 and history[-1] > history[0] + 30
    assert abs(float(result.params["a"]) - 1.5) < 0.2
    assert abs(float(result.params["s"]) - 0.5) < 0.15


def test_validation_errors():
    with pytest.raises(ValueError, match="dim"):
        jaxem.Gaussian(0)
    with pytest.raises(ValueError, match="max_steps"):
        jaxem.Gaussian(2, max_steps=True)
    with pytest.raises(ValueError, match="log_joint"):
        jaxem.LatentModel("not a function", jaxem.Gaussian(2))
    params = _random_params(0)
    with pytest.raises(ValueError, match="lengths"):
        jaxem.fit(MODEL, params, np.zeros((3, D)), lengths=np.array([3]))
    with pytest.raises(ValueError, match="data"):
        jaxem.fit(MODEL, params, np.full((3, D), np.nan))


def test_float32_input_gives_float32_posterior():
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), _random_params(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(N, D)), jnp.float32)
    post = jaxem.posterior(MODEL, params, x)
    assert post.mean.dtype == jnp.float32 and post.cov.dtype == jnp.float32
    mean, cov, _ = _closed_form(_random_params(0), np.asarray(x, np.float64))
    np.testing.assert_allclose(post.mean, mean, rtol=1e-3, atol=1e-4)


def test_continuous_latents_page_snippets_run():
    import pathlib
    import re

    page = pathlib.Path(__file__).resolve().parents[1] / "docs/continuous-latents.md"
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
        exec(compile(block, "continuous-latents.md snippet", "exec"), namespace)
    assert int(namespace["result"].status) == jaxem.Status.CONVERGED
    assert namespace["post"].cross_cov.shape == (3, 49, 2, 2)
