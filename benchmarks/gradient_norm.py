"""What the stationarity diagnostic costs: ``fit(..., gradient_norm=True)``.

``FitResult.gradient_norm`` is one backward pass through one E-step at the
fitted parameters, compiled as its own program (the fit's loop is unchanged),
so it is computed only when asked. This script measures, for a user-declared
Poisson mixture with a gradient M-step, the prebuilt full-covariance Gaussian
mixture and the prebuilt Gaussian HMM, float64, in one process:

- compile: first-call time of ``jaxem.gradient_norm`` vs of ``jaxem.fit``;
- run: time of a compiled ``jaxem.gradient_norm`` vs of a compiled fit of
  ``--iters`` iterations (tol=0), best of ``--repeats``.

    python benchmarks/gradient_norm.py
    python benchmarks/gradient_norm.py --iters 50 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax

jax.config.update("jax_enable_x64", True)
os.environ.setdefault("JAXEM_NO_CACHE", "1")  # time real compiles

import jax.numpy as jnp  # noqa: E402
import jax.scipy.stats as st  # noqa: E402
import numpy as np  # noqa: E402

import jaxem  # noqa: E402


def poisson_case():
    def log_joint(params, x, z):
        return jnp.log(params["weights"][z]) + st.poisson.logpmf(x, params["rates"][z])

    model = jaxem.LatentModel(
        log_joint,
        jaxem.Categorical(2),
        constraints={
            "weights": jaxem.constraints.simplex,
            "rates": jaxem.constraints.positive,
        },
    )
    x = np.random.default_rng(0).poisson(np.r_[np.full(3000, 1.2), np.full(5000, 2.7)])
    params = {"weights": np.array([0.3, 0.7]), "rates": np.array([1.0, 2.5])}
    return "poisson mixture (gradient M-step), N=8000", model, params, x, {}


def gmm_case():
    rng = np.random.default_rng(0)
    k, d, n = 4, 4, 20_000
    centres = rng.normal(scale=4.0, size=(k, d))
    x = centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    model = jaxem.models.gaussian_mixture(k, d, "full")
    params = {
        "weights": np.full(k, 1.0 / k),
        "means": x[:k].copy(),
        "covariances": np.tile(np.eye(d), (k, 1, 1)),
    }
    return f"GMM full, N={n}, d={d}, K={k}", model, params, x, {}


def hmm_case():
    rng = np.random.default_rng(0)
    b, t, k, d = 8, 500, 3, 2
    x = rng.normal(size=(b, t, d)) + rng.integers(0, k, (b, t, 1))
    model = jaxem.models.gaussian_hmm(k, d, "diag")
    params = {
        "startprob": np.full(k, 1.0 / k),
        "transmat": np.full((k, k), 0.1) + 0.7 * np.eye(k),
        "means": np.arange(k, dtype=float)[:, None] * np.ones(d),
        "covars": np.ones((k, d)),
    }
    return f"Gaussian HMM diag, B={b}, T={t}, d={d}, K={k}", model, params, x, {}


def timed(fn):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def measure(case, iters, repeats):
    name, model, params, x, kw = case

    def fit():
        return jaxem.fit(model, params, x, max_iter=iters, tol=0.0, **kw)

    def norm():
        return jaxem.gradient_norm(model, params, x, **kw)

    fit_compile, norm_compile = timed(fit), timed(norm)
    fit_run = min(timed(fit) for _ in range(repeats))
    norm_run = min(timed(norm) for _ in range(repeats))
    return {
        "case": name,
        "fit_first_call_s": round(fit_compile, 3),
        "gradient_norm_first_call_s": round(norm_compile, 3),
        "compile_ratio": round(norm_compile / fit_compile, 3),
        "fit_run_s": round(fit_run, 4),
        "gradient_norm_run_s": round(norm_run, 5),
        "run_ratio": round(norm_run / fit_run, 4),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for case in (poisson_case(), gmm_case(), hmm_case()):
        print(json.dumps(measure(case, args.iters, args.repeats)))


if __name__ == "__main__":
    main()
