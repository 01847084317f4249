"""A mixture of linear regressions, fitted with NO M-step written by hand.

Each observation is a pair (x, y) where y = x @ coef_k + intercept_k + noise for
a hidden regime k. The data are a pytree ``{"x": (N, p), "y": (N,)}``, so
``log_joint`` receives ONE observation as ``{"x": (p,), "y": ()}``. No
``ClosedForm`` is registered: jaxem maximises the expected complete-data
log-likelihood over all parameters with L-BFGS (the gradient M-step), keeping
the weights on the simplex and the noise scales positive through the declared
constraints.

Run: ``python examples/regression_mixture.py`` (writes regression_mixture.png).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.scipy.stats as st  # noqa: E402
import numpy as np  # noqa: E402

import jaxem  # noqa: E402

TRUE = {
    "weights": np.array([0.6, 0.4]),
    "coef": np.array([[2.0], [-1.0]]),
    "intercept": np.array([0.0, 3.0]),
    "sigma": np.array([0.5, 0.8]),
}


def log_joint(params, obs, z):
    """log p(y, z | x): choose regime z, then y ~ N(x . coef_z + b_z, sigma_z^2)."""
    mean = obs["x"] @ params["coef"][z] + params["intercept"][z]
    return jnp.log(params["weights"][z]) + st.norm.logpdf(
        obs["y"], mean, params["sigma"][z]
    )


MODEL = jaxem.LatentModel(
    log_joint,
    jaxem.Categorical(2),
    constraints={
        "weights": jaxem.constraints.simplex,
        "sigma": jaxem.constraints.positive,
    },  # coef and intercept are unconstrained reals
    name="regression_mixture",
)


def simulate(n: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    """``n`` observations ``{"x": (n, 1), "y": (n,)}`` and their regimes (n,)."""
    rng = np.random.default_rng(seed)
    z = rng.choice(2, size=n, p=TRUE["weights"])
    x = rng.uniform(-3, 3, size=(n, 1))
    y = (x * TRUE["coef"][z]).sum(1) + TRUE["intercept"][z]
    y = y + rng.normal(size=n) * TRUE["sigma"][z]
    return {"x": x, "y": y}, z


def initial_params(data) -> dict:
    """A neutral start: equal weights, one rising and one falling line."""
    spread = float(np.std(data["y"]))
    return {
        "weights": jnp.array([0.5, 0.5]),
        "coef": jnp.array([[1.0], [-0.5]]),
        "intercept": jnp.array([float(np.mean(data["y"]))] * 2),
        "sigma": jnp.array([spread, spread]),
    }


def main(n: int = 400, max_iter: int = 200, seed: int = 0, plot: bool = True):
    """Simulate, fit by EM with gradient M-steps, print the estimates."""
    data, z = simulate(n, seed)
    result = jaxem.fit(MODEL, initial_params(data), data, max_iter=max_iter, tol=1e-8)
    params = jax.tree.map(np.asarray, result.params)
    order = np.argsort(-params["coef"][:, 0])  # rising regime first, as TRUE
    print(
        f"{int(result.n_iter)} iterations, converged={bool(result.converged)}, "
        f"log-likelihood {float(result.log_likelihood):.3f}"
    )
    print("regime  weight        slope         intercept     sigma   (true)")
    for row, k in enumerate(order):
        print(
            f"{row:6d}  {params['weights'][k]:.3f} ({TRUE['weights'][row]:.2f})"
            f"  {params['coef'][k, 0]:+.3f} ({TRUE['coef'][row, 0]:+.1f})"
            f"  {params['intercept'][k]:+.3f} ({TRUE['intercept'][row]:+.1f})"
            f"  {params['sigma'][k]:.3f} ({TRUE['sigma'][row]:.1f})"
        )
    history = np.asarray(result.history)[: int(result.n_iter)]
    assert np.all(np.diff(history) >= -1e-6 * np.abs(history[1:])), "EM went down"
    if plot:
        _plot(data, params, result)
    return {k: v[order] for k, v in params.items()}


def _plot(data, params, result):
    import matplotlib.pyplot as plt

    resp = np.asarray(jaxem.posterior(MODEL, result.params, data))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    grid = np.linspace(-3, 3, 50)
    for k, color in enumerate(["tab:blue", "tab:red"]):
        sel = resp.argmax(1) == k
        ax.scatter(
            data["x"][sel, 0],
            data["y"][sel],
            s=10,
            alpha=0.6,
            color=color,
            label=f"regime {k}",
        )
        ax.plot(
            grid,
            params["coef"][k, 0] * grid + params["intercept"][k],
            color=color,
            lw=2,
        )
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("mixture of two linear regressions (gradient M-step)")
    ax.legend(frameon=False)
    fig.savefig("regression_mixture.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    print("wrote regression_mixture.png")


if __name__ == "__main__":
    main()
