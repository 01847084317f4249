"""A Poisson mixture with a PARTIAL closed-form M-step.

Counts come from K Poisson rates. The rates have a textbook closed-form update
(the responsibility-weighted mean), so we register it with ``ClosedForm``; its
``update`` returns only ``{"rates": ...}``. jaxem fits the leaves it leaves out
(here the mixing weights) by the gradient M-step with the rates held fixed.
The same model with no ``ClosedForm`` at all (a pure gradient M-step) reaches
the same estimates: the closed form is an optimisation, never a different
answer.

Run: ``python examples/poisson_mixture.py`` (writes poisson_mixture.png).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.scipy.stats as st  # noqa: E402
import numpy as np  # noqa: E402

import jaxem  # noqa: E402

TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])
TRUE_RATES = np.array([1.0, 6.0, 15.0])


def log_joint(params, x, z):
    """log p(x, z): pick component z, then x ~ Poisson(rate_z)."""
    return jnp.log(params["weights"][z]) + st.poisson.logpmf(x, params["rates"][z])


def rate_stats(data, resp, weights):
    """Expected counts and expected sums per component (they add over data)."""
    if weights is not None:
        resp = resp * weights[:, None]
    return {"n": resp.sum(0), "sum_x": resp.T @ data}


def rate_update(stats, params):
    """Closed form for the rates only; the weights go to the gradient M-step."""
    return {"rates": stats["sum_x"] / stats["n"]}


CONSTRAINTS = {
    "weights": jaxem.constraints.simplex,
    "rates": jaxem.constraints.positive,
}
PARTIAL = jaxem.LatentModel(
    log_joint,
    jaxem.Categorical(3),
    constraints=CONSTRAINTS,
    m_step=jaxem.ClosedForm(rate_stats, rate_update),
    name="poisson_mixture_partial",
)
GRADIENT = jaxem.LatentModel(
    log_joint,
    jaxem.Categorical(3),
    constraints=CONSTRAINTS,
    name="poisson_mixture_gradient",
)


def simulate(n: int, seed: int = 0) -> np.ndarray:
    """``n`` counts (float array) from the true mixture."""
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n, p=TRUE_WEIGHTS)
    return rng.poisson(TRUE_RATES[z]).astype(np.float64)


def main(n: int = 600, max_iter: int = 300, seed: int = 0, plot: bool = True):
    """Fit both ways, print the estimates, return the partial-closed-form params."""
    x = simulate(n, seed)
    quantiles = np.quantile(x, [0.1, 0.5, 0.9]) + 0.5
    params0 = {"weights": jnp.full(3, 1 / 3), "rates": jnp.asarray(quantiles)}
    fits = {
        "partial closed form": jaxem.fit(
            PARTIAL, params0, x, max_iter=max_iter, tol=1e-9
        ),
        "gradient only": jaxem.fit(GRADIENT, params0, x, max_iter=max_iter, tol=1e-9),
    }
    print(f"true       weights {np.round(TRUE_WEIGHTS, 3)}  rates {TRUE_RATES}")
    for label, r in fits.items():
        w, lam = np.asarray(r.params["weights"]), np.asarray(r.params["rates"])
        print(
            f"{label:20s} weights {np.round(w, 3)}  rates {np.round(lam, 3)}  "
            f"log-lik {float(r.log_likelihood):.4f}  ({int(r.n_iter)} iterations)"
        )
    a, b = (fits[k].params["rates"] for k in fits)
    print(
        f"largest difference between the two fits' rates: "
        f"{float(jnp.max(jnp.abs(a - b))):.2e}"
    )
    if plot:
        _plot(x, fits["partial closed form"])
    return jax.tree.map(np.asarray, fits["partial closed form"].params)


def _plot(x, result):
    import matplotlib.pyplot as plt

    w = np.asarray(result.params["weights"])
    lam = np.asarray(result.params["rates"])
    k = np.arange(0, int(x.max()) + 2)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.hist(
        x,
        bins=np.arange(-0.5, k[-1] + 1),
        density=True,
        color="0.8",
        label=f"data (N={x.size})",
    )
    pmf = w[:, None] * np.exp(st.poisson.logpmf(k[None, :], lam[:, None]))
    for j in range(3):
        ax.plot(k, pmf[j], "--", marker=".", label=f"w={w[j]:.2f}, rate={lam[j]:.2f}")
    ax.plot(k, pmf.sum(0), color="black", lw=2, label="mixture")
    ax.set_xlabel("count")
    ax.set_ylabel("probability")
    ax.set_title("Poisson mixture: rates by closed form, weights by gradient")
    ax.legend(frameon=False)
    fig.savefig("poisson_mixture.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    print("wrote poisson_mixture.png")


if __name__ == "__main__":
    main()
