"""SQUAREM vs plain EM on slowly converging problems (not a test).

    python benchmarks/squarem.py

For each problem: the optimum's log-likelihood L* (a long SQUAREM run, checked
against a longer plain run), then for plain EM and for SQUAREM the number of
EM evaluations (M-steps) until the log-likelihood is within 1e-8 relative of
L*, and the wall time of a compiled fit that runs exactly that many
iterations (best of 3, compile excluded). float64.
"""

from __future__ import annotations

import time

import jax

jax.config.update("jax_enable_x64", True)  # a benchmark script, not the library

import jax.numpy as jnp  # noqa: E402
import jax.scipy.stats as st  # noqa: E402
import numpy as np  # noqa: E402

import jaxem  # noqa: E402
from jaxem._squarem import M_STEPS_PER_CYCLE  # noqa: E402

REL = 1e-8


def hasselblad():
    def log_joint(p, x, z):
        return jnp.log(p["weights"][z]) + st.poisson.logpmf(x, p["rates"][z])

    def stats(data, resp, weights):
        w = resp * weights[:, None]
        return {"n": w.sum(0), "sx": w.T @ data}

    def update(s, p):
        return {"weights": s["n"] / s["n"].sum(), "rates": s["sx"] / s["n"]}

    model = jaxem.LatentModel(
        log_joint,
        jaxem.Categorical(2),
        constraints={
            "weights": jaxem.constraints.simplex,
            "rates": jaxem.constraints.positive,
        },
        m_step=jaxem.ClosedForm(stats, update),
    )
    days = np.array([162, 267, 271, 185, 111, 61, 27, 8, 3, 1], float)
    p0 = {"weights": np.array([0.3, 0.7]), "rates": np.array([1.0, 2.5])}
    return "Hasselblad Poisson mixture", model, p0, np.arange(10.0), {"weights": days}


def overlapping_gmm():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.normal(0, 1, (2000, 3)), rng.normal(0.6, 1.2, (2000, 3))], axis=0
    )
    model = jaxem.models.gaussian_mixture(2, 3, "full")
    p0 = {
        "weights": np.array([0.5, 0.5]),
        "means": np.array([[-0.5] * 3, [1.0] * 3]),
        "covariances": np.stack([np.eye(3)] * 2),
    }
    return "overlapping GMM (N=4000, d=3)", model, p0, x, {}


def near_identical_hmm():
    rng = np.random.default_rng(1)
    states = (np.arange(2000) // 25) % 2
    x = rng.normal(0.3 * states, 1.0)[None, :, None]
    model = jaxem.models.gaussian_hmm(2, 1, "diag")
    p0 = {
        "startprob": np.array([0.5, 0.5]),
        "transmat": np.array([[0.9, 0.1], [0.1, 0.9]]),
        "means": np.array([[-0.2], [0.5]]),
        "covars": np.ones((2, 1)),
    }
    return "HMM, near-identical states (T=2000)", model, p0, x, {}


def first_within(history, target):
    h = np.asarray(history)
    hit = np.nonzero(h >= target)[0]
    return int(hit[0]) if hit.size else None


def timed(model, p0, data, kw, iters, accelerate):
    def run():
        r = jaxem.fit(
            model, p0, data, max_iter=iters, tol=0.0, accelerate=accelerate, **kw
        )
        return jax.block_until_ready(r)

    run()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - t)
    return best, float(result.log_likelihood)


def main():
    rows = []
    for make in (hasselblad, overlapping_gmm, near_identical_hmm):
        name, model, p0, data, kw = make()
        fast = jaxem.fit(
            model, p0, data, max_iter=2000, tol=0.0, accelerate="squarem", **kw
        )
        slow = jaxem.fit(model, p0, data, max_iter=100_000, tol=0.0, **kw)
        best = max(float(fast.log_likelihood), float(slow.log_likelihood))
        target = best - REL * abs(best)
        n_plain = first_within(slow.history, target)
        n_cycles = first_within(fast.history, target)
        if n_plain is None or n_cycles is None:
            rows.append(f"| {name} | not reached in the budget | | | |")
            continue
        t_plain, ll_plain = timed(model, p0, data, kw, max(n_plain, 1), None)
        t_fast, ll_fast = timed(model, p0, data, kw, max(n_cycles, 1), "squarem")
        evals_fast = n_cycles * M_STEPS_PER_CYCLE
        rows.append(
            f"| {name} | {n_plain} / {evals_fast} ({n_plain / evals_fast:.1f}x) | "
            f"{t_plain * 1e3:.1f} / {t_fast * 1e3:.1f} ms "
            f"({t_plain / t_fast:.1f}x) | "
            f"{abs(ll_plain - ll_fast) / abs(best):.1e} |"
        )
    print(
        "| problem | EM evaluations to 1e-8 of the optimum, plain / SQUAREM | "
        "wall time, plain / SQUAREM | final log-likelihoods differ by (rel.) |"
    )
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
