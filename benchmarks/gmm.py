"""Gaussian mixture EM: jaxem vs scikit-learn (and gmmx when installed).

All libraries start from the same parameters and run a fixed number of EM
iterations (no convergence test), float64, full covariances (``--covariance-type``
for the others), in one process.
Per-iteration time is the best of a few timed fits (one for scikit-learn at the
large size) divided by the number of iterations; the JAX libraries are timed
after a first, compiling run, and their compile time is reported separately.
Each fit also runs one extra E-step (jaxem's initial one, scikit-learn's final
one), the same for both.
Peak memory of one jaxem fit is measured in a fresh subprocess: the process's
peak resident set during the fit above its resident set just before it (data
already resident, program already compiled).

    python benchmarks/gmm.py                 # N=100k,d=8,K=8 and N=1M,d=16,K=16
    python benchmarks/gmm.py --small         # quick: N=20k,d=4,K=4
    python benchmarks/gmm.py --sizes 100000,8,8
    python benchmarks/gmm.py --sizes 100000,8,8 --covariance-type diag --profile
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import warnings

import jax

# gmmx fails with x64 on, so it runs in a float32 child process (--gmmx-child).
if "--gmmx-child" not in sys.argv:
    jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxem  # noqa: E402


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    z = rng.integers(0, k, n)
    return centres[z] + scales[z] * rng.normal(size=(n, d))


def initial_params(x, k, seed=0, covariance_type="full"):
    """Means at random data rows, identity covariances, equal weights."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    covariances = {
        "full": np.tile(np.eye(d), (k, 1, 1)),
        "tied": np.eye(d),
        "diag": np.ones((k, d)),
        "spherical": np.ones(k),
    }[covariance_type]
    return {
        "weights": np.full(k, 1.0 / k),
        "means": x[rng.choice(x.shape[0], k, replace=False)].copy(),
        "covariances": covariances,
    }


def covariance_type_of(p0):
    """The covariance type of ``initial_params``'s output, from its shapes."""
    k, d = p0["means"].shape
    shape = np.shape(p0["covariances"])
    return {(k, d, d): "full", (d, d): "tied", (k, d): "diag", (k,): "spherical"}[shape]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def per_iteration(run, iters, repeats=3):
    """(seconds per iteration, compile seconds) of ``run(iters)``.

    The best of ``repeats`` timed runs (after a first, compiling run) divided by
    ``iters``, against noise from other processes on the machine.
    """
    first, _ = _timed(lambda: run(iters))
    best = min(_timed(lambda: run(iters))[0] for _ in range(repeats))
    return best / iters, max(first - best, 0.0)


def bench_jaxem(x, p0, iters, dtype=np.float64):
    k, d = p0["means"].shape
    model = jaxem.models.gaussian_mixture(k, d, covariance_type_of(p0))
    data = jnp.asarray(x, dtype)
    p0 = jax.tree.map(lambda a: jnp.asarray(a, dtype), p0)

    def run(iters):
        result = jaxem.fit(model, p0, data, max_iter=iters, tol=0.0)
        return jax.block_until_ready(result)

    return per_iteration(run, iters)


def bench_restarts(x, p0, iters, restarts=8):
    """Times of fits of 1 and of ``restarts`` vmapped restarts, ``iters`` each.

    The estimators' path: ``n_init`` restarts run as one vmapped program
    (a single restart runs as a plain fit).
    """
    k, d = p0["means"].shape
    model = jaxem.models.gaussian_mixture(k, d, covariance_type_of(p0))
    data = jnp.asarray(x)
    rng = np.random.default_rng(1)
    stacks = []
    for _ in range(restarts):
        p = dict(p0)
        p["means"] = x[rng.choice(x.shape[0], k, replace=False)]
        stacks.append(p)
    batched = jax.tree.map(lambda *a: jnp.stack(a), *stacks)
    fit = jaxem.estimators._base.fit_restarts

    def run(params):
        out = fit(model, params, data, None, None, jnp.asarray(0.0), max_iter=iters)
        return jax.block_until_ready(out)

    one = jax.tree.map(lambda a: a[:1], batched)
    run(one), run(batched)  # compile both
    t_one = min(_timed(lambda: run(one))[0] for _ in range(2))
    t_all = min(_timed(lambda: run(batched))[0] for _ in range(2))
    return t_one, t_all


def bench_sklearn(x, p0, iters, repeats=1):
    from sklearn.mixture import GaussianMixture

    ctype = covariance_type_of(p0)
    cov = p0["covariances"]
    precisions = np.linalg.inv(cov) if ctype in ("full", "tied") else 1.0 / cov

    def run(iters):
        gm = GaussianMixture(
            p0["means"].shape[0],
            covariance_type=ctype,
            init_params="random_from_data",  # cheap; overridden by the inits
            weights_init=p0["weights"],
            means_init=p0["means"],
            precisions_init=precisions,
            max_iter=iters,
            tol=0.0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gm.fit(x)

    # Its fit also runs one final E-step: a bias of about half an iteration
    # in jaxem's favour over ``iters`` iterations, stated with the results.
    return min(_timed(lambda: run(iters))[0] for _ in range(repeats)) / iters


def bench_gmmx(x, p0, iters):
    """gmmx accepts float32 only, so it is timed in float32."""
    try:
        from gmmx import EMFitter, GaussianMixtureModelJax
    except ImportError:
        return None
    f32 = jnp.float32
    gmm = GaussianMixtureModelJax.from_squeezed(
        means=jnp.asarray(p0["means"], f32),
        covariances=jnp.asarray(p0["covariances"], f32),
        weights=jnp.asarray(p0["weights"], f32),
    )
    data = jnp.asarray(x, f32)

    def run(iters):
        fitter = EMFitter(max_iter=iters, tol=0.0)
        return jax.block_until_ready(fitter.fit(data, gmm))

    return per_iteration(run, iters)


def gmmx_child(n, d, k, iters):
    x = make_data(n, d, k)
    p0 = initial_params(x, k)
    out = bench_gmmx(x, p0, iters)
    if out is None:
        print(json.dumps(None))
        return
    jaxem32, _ = bench_jaxem(x, p0, iters, np.float32)
    print(json.dumps({"gmmx": out[0], "gmmx_compile": out[1], "jaxem32": jaxem32}))


def bench_gmmx_subprocess(n, d, k, iters):
    cmd = [sys.executable, os.path.abspath(__file__), "--gmmx-child"]
    cmd += [f"{n},{d},{k}", "--iters", str(iters)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"gmmx: failed ({out.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(n, d, k, iters):
    """Run in a fresh process: peak RSS of one jaxem fit above its start."""
    x = make_data(n, d, k)
    p0 = initial_params(x, k)
    data = jnp.asarray(x)
    del x
    model = jaxem.models.gaussian_mixture(k, d, "full")

    def run():
        result = jaxem.fit(model, p0, data, max_iter=iters, tol=0.0)
        return jax.block_until_ready(result)

    run()  # compile; the compiled program is cached
    gc.collect()
    time.sleep(1.0)  # let the runtime release the first run's buffers
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (VmHWM) to the current one
    before = _rss_bytes("VmRSS")
    run()
    peak = _rss_bytes("VmHWM")
    print(json.dumps({"before": before, "peak": peak, "data": n * d * 8}))


def bench_memory(n, d, k, iters=3):
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child"]
    cmd += [f"{n},{d},{k}", "--iters", str(iters)]
    # Buffers of 1 MiB and more are mmapped and returned on free, so the warm-up
    # run's freed buffers do not stay resident and hide the measured run's.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile_iteration(x, p0, repeats=5):
    """Where one iteration's time goes: its pieces, each jitted and timed alone.

    The pieces of an iteration: the (N, K) log-joint table (the E-step's
    Mahalanobis terms, in row blocks), its normalisation (logsumexp and the
    responsibilities), the statistics about each component's mean, and the
    closed-form update; the median wall and CPU seconds of ``repeats`` calls
    each. A piece timed alone also allocates its output, which the fit's loop
    reuses, so the pieces may add up to more than an iteration.
    """
    from jaxem.models import _gmm, _gmm_estep, _gmm_stats

    ctype = covariance_type_of(p0)
    entries = _gmm._BLOCK_ENTRIES
    data = jnp.asarray(x)
    params = jax.tree.map(jnp.asarray, p0)
    table = jax.jit(lambda p, x: _gmm_estep.log_table(p, x, ctype, entries))
    t = table(params, data)

    @jax.jit
    def normalise(t):
        per_obs = jax.nn.logsumexp(t, axis=1)
        return jnp.exp(t - per_obs[:, None]), jnp.sum(per_obs)

    resp, _ = normalise(t)
    stats = jax.jit(lambda x, r, m: _gmm_stats.stats(x, r, None, ctype, m, entries))
    s = stats(data, resp, params["means"])
    update = jax.jit(lambda s, p: _gmm_stats.update(s, p, ctype, 1e-6))
    pieces = {
        "log-joint table": lambda: table(params, data),
        "normalisation": lambda: normalise(t),
        "statistics": lambda: stats(data, resp, params["means"]),
        "update": lambda: update(s, params),
    }
    out = {}
    for name, fn in pieces.items():
        jax.block_until_ready(fn())
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn())
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        out[name] = (float(np.median(wall)), float(np.median(cpu)))
        wall_ms, cpu_ms = 1e3 * out[name][0], 1e3 * out[name][1]
        print(f"  {name:16s} {wall_ms:9.2f} ms  (CPU {cpu_ms:.2f})", flush=True)
    return out


def run_size(
    n, d, k, iters, memory=True, sklearn=True, covariance_type="full", profile=False
):
    x = make_data(n, d, k)
    p0 = initial_params(x, k, covariance_type=covariance_type)
    full = covariance_type == "full"
    print(f"\n## N={n:,} d={d} K={k}  (float64, {covariance_type})", flush=True)
    row = {"N": n, "d": d, "K": k, "covariance_type": covariance_type}
    if profile:
        print("one iteration's pieces, each jitted alone:", flush=True)
        row["profile"] = profile_iteration(x, p0)
    row["jaxem"], row["jaxem_compile"] = bench_jaxem(x, p0, iters)
    print(
        f"jaxem   {1e3 * row['jaxem']:9.1f} ms/iteration  "
        f"(compile + first run overhead {row['jaxem_compile']:.1f} s)",
        flush=True,
    )
    gmmx = bench_gmmx_subprocess(n, d, k, iters) if full else None
    if gmmx is not None:
        row.update(gmmx)
        print(
            f"float32 (gmmx supports only float32, run in a child process): gmmx "
            f"{1e3 * row['gmmx']:.1f} ms/iteration (compile "
            f"{row['gmmx_compile']:.1f} s), jaxem {1e3 * row['jaxem32']:.1f} "
            f"ms/iteration",
            flush=True,
        )
    if sklearn:
        row["sklearn"] = bench_sklearn(
            x, p0, iters, repeats=1 if n * d * k > 10**8 else 3
        )
        print(f"sklearn {1e3 * row['sklearn']:9.1f} ms/iteration", flush=True)
        ratio = (
            f"speed-up over scikit-learn: jaxem {row['sklearn'] / row['jaxem']:.1f}x"
        )
        if gmmx:
            ratio += f" (float32: jaxem {row['sklearn'] / row['jaxem32']:.1f}x, "
            ratio += f"gmmx {row['sklearn'] / row['gmmx']:.1f}x)"
        print(ratio, flush=True)
    t_one, t_eight = bench_restarts(x, p0, iters)
    row["restart_ratio"] = t_eight / t_one
    print(
        f"restarts: 1 = {t_one:.2f} s, 8 vmapped = {t_eight:.2f} s "
        f"({row['restart_ratio']:.2f}x one restart, {iters} iterations)",
        flush=True,
    )
    if memory and full:
        mem = bench_memory(n, d, k)
        extra = mem["peak"] - mem["before"]
        row["memory_ratio"] = extra / mem["data"]
        print(
            f"memory: data {mem['data'] / 2**20:.0f} MiB; fit peak above the "
            f"resident data {extra / 2**20:.0f} MiB = {row['memory_ratio']:.2f}x "
            f"the data (process peak {mem['peak'] / 2**20:.0f} MiB)",
            flush=True,
        )
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="N=20k, d=4, K=4")
    parser.add_argument("--sizes", nargs="*", help="N,d,K triples")
    parser.add_argument("--iters", type=int, default=10, help="EM iterations")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument(
        "--covariance-type",
        default="full",
        choices=("full", "diag", "spherical", "tied"),
        help="memory and gmmx are measured for full covariances only",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also time an iteration's pieces (table, normalisation, statistics)",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--gmmx-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*map(int, args.memory_child.split(",")), args.iters)
        return None
    if args.gmmx_child:
        n, d, k = map(int, args.gmmx_child.split(","))
        gmmx_child(n, d, k, args.iters)
        return None
    if args.sizes:
        sizes = [tuple(map(int, s.split(","))) for s in args.sizes]
    elif args.small:
        sizes = [(20_000, 4, 4)]
    else:
        sizes = [(100_000, 8, 8), (1_000_000, 16, 16)]
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"{len(os.sched_getaffinity(0))} CPU cores"
    )
    return [
        run_size(
            n,
            d,
            k,
            args.iters,
            memory=not args.no_memory,
            sklearn=not args.no_sklearn,
            covariance_type=args.covariance_type,
            profile=args.profile,
        )
        for n, d, k in sizes
    ]


if __name__ == "__main__":
    main()
