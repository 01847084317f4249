"""A linear mixed model (random intercepts and slopes) declared in a few lines.

Each group i (a school, a patient, a plant) has its own intercept and slope,
drawn around the population's:

    b_i ~ N(0, D),   y_ij ~ N((beta_0 + b_i0) + (beta_1 + b_i1) x_ij, sigma^2)

The random effects b_i are a ``jaxem.Gaussian(2)`` latent per group. Groups
have different sizes, so they are padded to a common size with a mask in the
data pytree; the masked terms simply drop out of ``log_joint``. There is no
closed form here: jaxem derives the E-step (exact: ``log_joint`` is quadratic
in b) and fits (beta, D, sigma) by the gradient M-step. The fitted model's
log-likelihood is checked against the exact Gaussian marginal of each group,
y_i ~ N(X_i beta, Z_i D Z_i^T + sigma^2 I).

Run: ``python examples/random_effects.py``
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np

import jaxem

TRUTH = {
    "beta": np.array([1.0, -0.5]),
    "effects_cov": np.array([[0.8, 0.2], [0.2, 0.3]]),
    "sigma": np.array(0.4),
}


def log_joint(params, group, b):
    """log p(y_i, b_i) for ONE group (padded entries masked out)."""
    prior = st.multivariate_normal.logpdf(b, jnp.zeros(2), params["effects_cov"])
    coef = params["beta"] + b
    mean = coef[0] + coef[1] * group["x"]
    lik = st.norm.logpdf(group["y"], mean, params["sigma"])
    return prior + jnp.sum(jnp.where(group["mask"], lik, 0.0))


MODEL = jaxem.LatentModel(
    log_joint,
    jaxem.Gaussian(2),
    constraints={
        "effects_cov": jaxem.constraints.positive_definite,
        "sigma": jaxem.constraints.positive,
    },
)


def simulate(n_groups, max_size, seed=0):
    """Grouped data padded to ``max_size``: dict of (G, M) arrays and sizes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, max_size + 1, n_groups)
    b = rng.multivariate_normal(np.zeros(2), TRUTH["effects_cov"], n_groups)
    x = rng.uniform(-2, 2, (n_groups, max_size))
    coef = TRUTH["beta"][None, :] + b
    y = coef[:, :1] + coef[:, 1:] * x + TRUTH["sigma"] * rng.normal(size=x.shape)
    mask = np.arange(max_size)[None, :] < sizes[:, None]
    return {"x": x, "y": np.where(mask, y, 0.0), "mask": mask}, sizes


def exact_log_likelihood(params, data):
    """sum_i log N(y_i | X_i beta, Z_i D Z_i^T + sigma^2 I) with numpy."""
    total = 0.0
    for x, y, m in zip(data["x"], data["y"], data["mask"], strict=True):
        design = np.stack([np.ones(m.sum()), x[m]], axis=1)
        cov = design @ params["effects_cov"] @ design.T
        cov += params["sigma"] ** 2 * np.eye(m.sum())
        resid = y[m] - design @ params["beta"]
        _, logdet = np.linalg.slogdet(cov)
        quad = resid @ np.linalg.solve(cov, resid)
        total += -0.5 * (m.sum() * np.log(2 * np.pi) + logdet + quad)
    return total


def main(n_groups=200, max_size=12, max_iter=100, plot=False):
    """Fit the mixed model to simulated groups; returns the fitted params."""
    data, _ = simulate(n_groups, max_size)
    with jax.enable_x64(True):  # float64, scoped (jaxem never sets it globally)
        params0 = {"beta": jnp.zeros(2), "effects_cov": jnp.eye(2), "sigma": 1.0}
        params0 = jax.tree.map(jnp.asarray, params0)
        data = jax.tree.map(jnp.asarray, data)
        result = jaxem.fit(MODEL, params0, data, max_iter=max_iter, tol=1e-8)
        params = jax.tree.map(np.asarray, result.params)
        fitted_ll = float(result.log_likelihood)
    exact = exact_log_likelihood(params, jax.tree.map(np.asarray, data))
    print(f"status {jaxem.Status(int(result.status)).name} after {int(result.n_iter)}")
    print(f"beta {params['beta'].round(3)}  sigma {float(params['sigma']):.3f}")
    print(f"random-effects covariance\n{params['effects_cov'].round(3)}")
    print(f"log-likelihood {fitted_ll:.6f} (exact marginal {exact:.6f})")
    assert abs(fitted_ll - exact) < 1e-8 * abs(exact)
    if plot:
        _plot(data, params)
    return params


def _plot(data, params):
    import matplotlib.pyplot as plt

    post = jaxem.posterior(MODEL, params, data)
    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.linspace(-2, 2, 2)
    for coef in np.asarray(post.mean[:20]) + params["beta"]:
        ax.plot(grid, coef[0] + coef[1] * grid, color="grey", alpha=0.5)
    beta = params["beta"]
    ax.plot(grid, beta[0] + beta[1] * grid, color="black", lw=2, label="population")
    ax.set(xlabel="x", ylabel="y", title="Group lines (posterior means)")
    ax.legend()
    fig.savefig("random_effects.png", dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    main(plot=True)
