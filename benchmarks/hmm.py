"""Gaussian and categorical HMM EM: jaxem vs hmmlearn (and dynamax), same start.

Three workloads, float64, a fixed number of EM iterations from identical
starting parameters:

- Gaussian HMM, K=5 states, d=2 features, diagonal covariances: one sequence
  of T = 100,000 steps, and 1,000 sequences of T = 200 steps;
- the occasionally dishonest casino (CategoricalHMM, K=2, 6 symbols), one
  sequence of T = 100,000 rolls.

The peers are hmmlearn 0.3.3 in its default ``implementation="log"`` and its
fastest, ``"scaling"`` (the speed-ups are against ``"scaling"``), and
dynamax's ``fit_em`` when installed. Per-iteration times exclude
compilation: every callable is called once first, then all are timed in turn,
``--reps`` rounds interleaved so that a change in the machine's load hits
every library alike, and the median per call is reported (the first call's
extra time is the compile time). dynamax re-jits ``fit_em`` on every call,
so its per-iteration time is (t(n + 1 iterations) - t(1 iteration)) / n and
its compile time t(1) minus one iteration. All libraries run in this one
process.

Run: ``python benchmarks/hmm.py [--iters 10] [--reps 3] [--quick]`` (dynamax
needs its own environment on some setups: run the script with that
environment's python, with this repository on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxem  # noqa: E402

K, D = 5, 2


def make_data(num_sequences, num_steps, seed=0):
    """Sequences from a sticky 5-state Gaussian HMM: (B, T, d) and the truth."""
    rng = np.random.default_rng(seed)
    transmat = np.full((K, K), 0.05 / (K - 1)) + np.eye(K) * (0.95 - 0.05 / (K - 1))
    means = rng.normal(0, 3, (K, D))
    z = np.empty((num_sequences, num_steps), int)
    z[:, 0] = rng.integers(0, K, num_sequences)
    u = rng.random((num_sequences, num_steps))
    cdf = np.cumsum(transmat, axis=1)
    for t in range(1, num_steps):
        z[:, t] = (u[:, t, None] > cdf[z[:, t - 1]]).sum(axis=1)
    x = means[z] + rng.normal(size=(num_sequences, num_steps, D))
    return x, means


def start_params(means, seed=1):
    rng = np.random.default_rng(seed)
    transmat = rng.dirichlet(np.ones(K) * 2, K) * 0.5 + np.eye(K) * 0.5
    return {
        "startprob": np.full(K, 1.0 / K),
        "transmat": transmat / transmat.sum(1, keepdims=True),
        "means": means + rng.normal(0, 1.0, means.shape),
        "covars": np.ones((K, D)),
    }


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


# Each ``jaxem_*``/``hmmlearn_*`` function returns a callable that runs the
# whole fit of ``iters`` iterations from the same start and returns the last
# log-likelihood; ``_interleaved`` times them all.


def jaxem_fit(x, params, iters, parallel=False):
    model = jaxem.models.gaussian_hmm(
        K, D, "diag", covars_prior=1e-2, parallel=parallel
    )
    data = jnp.asarray(x)
    lengths = jnp.full((x.shape[0],), x.shape[1])
    p0 = jax.tree.map(jnp.asarray, params)

    def run():
        result = jaxem.fit(model, p0, data, lengths=lengths, max_iter=iters, tol=0.0)
        return float(result.history[iters - 1])

    return run


def _set(est, params):
    for key, value in params.items():
        setattr(est, key + "_", value)
    return est


def jaxem_estimator(x, params, iters):
    est = jaxem.GaussianHMM(K, "diag", n_iter=iters, tol=0.0, init_params="")
    X, lengths = x.reshape(-1, D), [x.shape[1]] * x.shape[0]

    def run():
        _set(est, params).fit(X, lengths)
        return est.monitor_.history[-1]

    return run


def hmmlearn_fit(x, params, iters, implementation):
    from hmmlearn import hmm

    X, lengths = x.reshape(-1, D), [x.shape[1]] * x.shape[0]

    def run():
        est = hmm.GaussianHMM(
            K,
            "diag",
            n_iter=iters,
            tol=-np.inf,
            init_params="",
            implementation=implementation,
        )
        _set(est, params).fit(X, lengths)
        return est.monitor_.history[-1]

    return run


def make_casino(num_steps, seed=0):
    """Rolls of the occasionally dishonest casino (Durbin et al. 1998), (T,)."""
    rng = np.random.default_rng(seed)
    switch = np.array([0.05, 0.1])  # fair -> loaded, loaded -> fair
    emit = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])
    z = np.zeros(num_steps, int)
    u = rng.random(num_steps)
    for t in range(1, num_steps):
        z[t] = 1 - z[t - 1] if u[t] < switch[z[t - 1]] else z[t - 1]
    cdf = np.cumsum(emit, axis=1)
    return (rng.random(num_steps)[:, None] > cdf[z]).sum(axis=1)


CASINO_START = {
    "startprob": np.array([0.5, 0.5]),
    "transmat": np.array([[0.8, 0.2], [0.3, 0.7]]),
    "emissionprob": np.array(
        [[0.2, 0.2, 0.2, 0.15, 0.15, 0.1], [0.1, 0.1, 0.1, 0.1, 0.1, 0.5]]
    ),
}


def jaxem_casino_fit(rolls, iters):
    model = jaxem.models.categorical_hmm(2, 6)
    data = jnp.asarray(rolls)[None]
    p0 = jax.tree.map(jnp.asarray, CASINO_START)

    def run():
        result = jaxem.fit(model, p0, data, max_iter=iters, tol=0.0)
        return float(result.history[iters - 1])

    return run


def jaxem_casino_estimator(rolls, iters):
    est = jaxem.CategoricalHMM(2, n_iter=iters, tol=0.0, init_params="")

    def run():
        _set(est, CASINO_START).fit(rolls[:, None])
        return est.monitor_.history[-1]

    return run


def hmmlearn_casino(rolls, iters, implementation):
    from hmmlearn import hmm

    def run():
        est = hmm.CategoricalHMM(
            2,
            n_iter=iters,
            tol=-np.inf,
            init_params="",
            implementation=implementation,
        )
        _set(est, CASINO_START).fit(rolls[:, None])
        return est.monitor_.history[-1]

    return run


def _interleaved(runners, iters, reps):
    """Per-iteration medians: a first call each, then ``reps`` rounds in turn."""
    first, times, loglik = {}, {name: [] for name in runners}, {}
    for name, run in runners.items():
        first[name], loglik[name] = _timed(run)
    for _ in range(reps):
        for name, run in runners.items():
            times[name].append(_timed(run)[0])
    rows = {}
    for name in runners:
        median = float(np.median(times[name]))
        rows[name] = {
            "per_iter": median / iters,
            "compile": max(first[name] - median, 0.0),
            "loglik": loglik[name],
        }
    return rows


def bench_dynamax(x, params, iters):
    try:
        from dynamax.hidden_markov_model import DiagonalGaussianHMM
    except ImportError:
        return None
    hmm = DiagonalGaussianHMM(K, D)
    dparams, props = hmm.initialize(
        jax.random.key(0),
        initial_probs=jnp.asarray(params["startprob"]),
        transition_matrix=jnp.asarray(params["transmat"]),
        emission_means=jnp.asarray(params["means"]),
        emission_scale_diags=jnp.sqrt(jnp.asarray(params["covars"])),
    )
    emissions = jnp.asarray(x)

    def run(n):
        return hmm.fit_em(dparams, props, emissions, num_iters=n, verbose=False)

    t1 = min(_timed(lambda: run(1))[0] for _ in range(2))
    tn, (_, lps) = min(
        (_timed(lambda: run(iters + 1)) for _ in range(2)), key=lambda r: r[0]
    )
    per_iter = max(tn - t1, 1e-9) / iters
    return {"per_iter": per_iter, "compile": t1 - per_iter, "loglik": float(lps[-1])}


def _print(label, rows, base):
    print(f"\n{label}", flush=True)
    print(
        f"{'':26s} {'per iter (ms)':>14s} {'compile (s)':>12s} "
        f"{'speed-up':>12s} {'log-lik':>18s}"
    )
    for name, r in rows.items():
        if r is None:
            print(f"{name:26s} {'not installed':>14s}")
            continue
        print(
            f"{name:26s} {1e3 * r['per_iter']:14.2f} {r['compile']:12.2f} "
            f"{base / r['per_iter']:11.1f}x {r['loglik']:18.6f}",
            flush=True,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3, help="timed rounds")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument(
        "--only-jaxem",
        action="store_true",
        help="jaxem alone, sequential and parallel (e.g. on a GPU)",
    )
    args = parser.parse_args(argv)
    iters = args.iters
    workloads = [("1 x T=100000", 1, 100_000), ("1000 x T=200", 1000, 200)]
    casino_steps = 100_000
    if args.quick:
        workloads = [("1 x T=2000", 1, 2000), ("50 x T=100", 50, 100)]
        casino_steps = 2000
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPU(s), float64, {iters} iterations, "
        f"median of {args.reps} interleaved rounds"
    )
    for label, b, t in workloads:
        x, means = make_data(b, t)
        params = start_params(means)
        runners = {"jaxem fit": jaxem_fit(x, params, iters)}
        if not args.only_jaxem:
            runners["jaxem GaussianHMM"] = jaxem_estimator(x, params, iters)
            runners["hmmlearn scaling"] = hmmlearn_fit(x, params, iters, "scaling")
            runners["hmmlearn log"] = hmmlearn_fit(x, params, iters, "log")
        if b == 1 or args.only_jaxem:
            runners["jaxem fit (parallel)"] = jaxem_fit(x, params, iters, True)
        rows = _interleaved(runners, iters, args.reps)
        if not args.only_jaxem:
            rows["dynamax fit_em"] = bench_dynamax(x, params, iters)
        base = rows.get("hmmlearn scaling", rows["jaxem fit"])["per_iter"]
        _print(f"Gaussian HMM, K={K}, d={D}, diag, {label}", rows, base)
    if not args.only_jaxem:
        rolls = make_casino(casino_steps)
        runners = {
            "jaxem fit": jaxem_casino_fit(rolls, iters),
            "jaxem CategoricalHMM": jaxem_casino_estimator(rolls, iters),
            "hmmlearn scaling": hmmlearn_casino(rolls, iters, "scaling"),
            "hmmlearn log": hmmlearn_casino(rolls, iters, "log"),
        }
        rows = _interleaved(runners, iters, args.reps)
        base = rows["hmmlearn scaling"]["per_iter"]
        _print(f"casino CategoricalHMM, K=2, 6 symbols, T={casino_steps}", rows, base)


if __name__ == "__main__":
    main()
