"""What marginalising missing entries costs: EM iterations with and without holes.

For each covariance type, times a fixed number of EM iterations of
``gaussian_mixture`` on complete data (the plain model) and on the same data
with 20% of the entries missing (``missing="marginalize"``), interleaved in
one process, after a warm-up compile; prints the median CPU time of the
process per iteration (all its threads: less sensitive than wall time to
other processes on a shared machine) and their ratio.

Usage::

    python benchmarks/missing_values.py              # N=20000, d=5, K=3
    python benchmarks/missing_values.py 5000 8 4     # N d K
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxem

ITERS = 20
REPEATS = 5


def _time(model, params, data):
    def run():
        out = jaxem.fit(model, params, data, max_iter=ITERS, tol=0.0)
        jax.block_until_ready(out.params)

    run()  # compile
    times = []
    for _ in range(REPEATS):
        start = time.process_time()
        run()
        times.append((time.process_time() - start) / ITERS)
    return times


def main(argv: list[str]) -> int:
    jax.config.update("jax_enable_x64", True)
    n, d, k = (int(a) for a in (argv + ["20000", "5", "3"][len(argv) :])[:3])
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(k, d))
    x = centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    holes = np.where(rng.random(x.shape) < 0.2, np.nan, x)
    data = jax.tree.map(jnp.asarray, jaxem.models.missing_data(holes))
    print(f"N={n} d={d} K={k}, {ITERS} EM iterations, median of {REPEATS}")
    print(
        f"{'covariance':>10} {'complete cpu ms/it':>19} "
        f"{'missing cpu ms/it':>18} {'ratio':>6}"
    )
    for ctype in ("full", "tied", "diag", "spherical"):
        plain = jaxem.models.gaussian_mixture(k, d, ctype)
        marg = jaxem.models.gaussian_mixture(k, d, ctype, missing="marginalize")
        params = plain.init(jax.random.key(0), jnp.asarray(x))
        a, b = [], []
        for _ in range(2):  # interleaved
            a += _time(plain, params, jnp.asarray(x))
            b += _time(marg, params, data)
        ta, tb = statistics.median(a), statistics.median(b)
        print(f"{ctype:>10} {1e3 * ta:19.2f} {1e3 * tb:18.2f} {tb / ta:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
