"""The two-coin experiment of Do & Batzoglou (Nature Biotechnology, 2008).

Five sets of ten tosses, each set made with one of two coins whose identity was
not recorded: 5, 9, 8, 4 and 7 heads. Starting from theta_A = 0.6 and
theta_B = 0.5, with the mixing weights fixed at 1/2, ten EM iterations reach
theta_A ~ 0.80 and theta_B ~ 0.52. jaxem reproduces it three ways:

1. a user-declared model with NO M-step: jaxem maximises the expected
   log-joint by L-BFGS (gradient M-step);
2. the same model with a registered closed-form M-step (``ClosedForm``);
3. the prebuilt ``jaxem.models.binomial_mixture`` with the weights frozen.

Run: ``python examples/coins.py``.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.scipy.stats as st  # noqa: E402

import jaxem  # noqa: E402

HEADS = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
N_TOSSES = 10
THETA0 = jnp.array([0.6, 0.5])


def log_joint(params, x, z):
    """log p(x, z): a fair choice of coin z, then x heads out of ten tosses."""
    return jnp.log(0.5) + st.binom.logpmf(x, N_TOSSES, params["p"][z])


def coin_stats(data, resp, weights):
    """Expected heads and tosses of each coin (they add across sets)."""
    return {"heads": resp.T @ data, "tosses": N_TOSSES * resp.sum(0)}


def coin_update(stats, params):
    return {"p": stats["heads"] / stats["tosses"]}


GRADIENT = jaxem.LatentModel(
    log_joint,
    jaxem.Categorical(2),
    constraints={"p": jaxem.constraints.unit_interval},
)
CLOSED_FORM = jaxem.LatentModel(
    log_joint,
    jaxem.Categorical(2),
    constraints={"p": jaxem.constraints.unit_interval},
    m_step=jaxem.ClosedForm(coin_stats, coin_update),
)


_m_step = jax.jit(jaxem.m_step, static_argnames=("model", "frozen"))


def trajectory(model, params, iterations, frozen=()):
    """theta after each EM iteration, by E-steps and M-steps from the public API."""
    path = [params["p"]]
    for _ in range(iterations):
        resp = jaxem.posterior(model, params, HEADS)
        params = _m_step(model, params, HEADS, resp, frozen=frozen)
        path.append(params["p"])
    return jnp.stack(path)


def main(iterations: int = 10, plot: bool = False) -> dict[str, jax.Array]:
    """Fit the three ways, print the trajectories, return the final thetas."""
    prebuilt = jaxem.models.binomial_mixture(2, N_TOSSES)
    starts = {
        "gradient M-step": (GRADIENT, {"p": THETA0}, ()),
        "closed form": (CLOSED_FORM, {"p": THETA0}, ()),
        "prebuilt": (
            prebuilt,
            {"weights": jnp.array([0.5, 0.5]), "p": THETA0},
            ("weights",),
        ),
    }
    finals = {}
    for label, (model, params0, frozen) in starts.items():
        result = jaxem.fit(
            model, params0, HEADS, max_iter=iterations, tol=0.0, frozen=frozen
        )
        path = trajectory(model, params0, iterations, frozen)
        print(f"\n{label}: log-likelihood {float(result.log_likelihood):.6f}")
        print(" iter  theta_A  theta_B")
        for i, (a, b) in enumerate(path):
            print(f" {i:4d}  {float(a):.5f}  {float(b):.5f}")
        finals[label] = result.params["p"]
    if plot:
        _plot(path)
    return finals


def _plot(path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(path[:, 0], marker="o", label=r"$\theta_A$")
    ax.plot(path[:, 1], marker="s", label=r"$\theta_B$")
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("probability of heads")
    ax.legend()
    fig.tight_layout()
    fig.savefig("coins.png", dpi=120)
    print("wrote coins.png")


if __name__ == "__main__":
    main(plot=False)
