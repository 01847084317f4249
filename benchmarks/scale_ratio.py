"""Chunked vs in-memory EM per row, side by side in one process (not a test).

    python benchmarks/scale_ratio.py --rows 1000000 --chunk-rows 12288 65536

Writes a ROWS x 8 float32 ``.npy`` file (a Gaussian mixture, K=4, full
covariances, as ``benchmarks/scale.py``), then alternates, ``--repeat`` times,
one in-memory ``jaxem.fit`` of 2 iterations on the loaded array and one
``jaxem.fit_chunked`` of 2 iterations over the file per chunk size (all
compiled beforehand), and prints the median time per iteration of each and the
ratio to in-memory. Interleaving in one process keeps the comparison fair on
a machine shared with other work.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from scale import _write_file  # noqa: E402

import jaxem  # noqa: E402

K, D = 4, 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=[12288, 65536])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = jaxem.models.gaussian_mixture(K, D, "full")
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "x.npy"
        _write_file(path, args.rows)
        x = np.load(path)
        rng = np.random.default_rng(1)
        p0 = {
            "weights": np.full(K, 1 / K, np.float32),
            "means": x[rng.choice(len(x), K, replace=False)],
            "covariances": np.stack([np.eye(D, dtype=np.float32)] * K),
        }

        def in_memory(n):
            return jaxem.fit(model, p0, x, max_iter=n, tol=0.0).log_likelihood

        def chunked(n, rows):
            return jaxem.fit_chunked(
                model, p0, str(path), chunk_rows=rows, max_iter=n, tol=0.0
            ).log_likelihood

        runs = {"in memory": lambda: in_memory(3)}
        runs.update(
            {f"chunks of {r}": (lambda r=r: chunked(2, r)) for r in args.chunk_rows}
        )
        # Per iteration: in-memory fit(3) - fit(1) is 2 iterations; fit_chunked
        # with max_iter=2 makes 3 passes, each one iteration's work.
        base = {"in memory": lambda: in_memory(1)}
        for fn in [*runs.values(), *base.values()]:
            jax.block_until_ready(fn())  # compile
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, fn in runs.items():
                t = time.perf_counter()
                jax.block_until_ready(fn())
                elapsed = time.perf_counter() - t
                if name == "in memory":
                    t = time.perf_counter()
                    jax.block_until_ready(base["in memory"]())
                    elapsed = (elapsed - (time.perf_counter() - t)) / 2
                else:
                    elapsed /= 3
                times[name].append(elapsed)
    reference = statistics.median(times["in memory"])
    print(f"| N = {args.rows:,} | s per iteration (median of {args.repeat}) | ratio |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {med / reference:.2f} |")


if __name__ == "__main__":
    main()
