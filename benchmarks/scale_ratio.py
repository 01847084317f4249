"""Chunked vs in-memory EM per row, side by side in one process (not a test).

    python benchmarks/scale_ratio.py --rows 1000000 --chunk-rows 12288 65536

Writes a ROWS x 8 float32 ``.npy`` file (a Gaussian mixture, K=4, full
covariances, as ``benchmarks/scale.py``), then alternates, ``--repeat`` times,
in-memory ``jaxem.fit`` on the loaded array and ``jaxem.fit_chunked`` over
the file per chunk size (all compiled beforehand), each timed as (a fit of 3
iterations - a fit of 1) / 2, and prints the median time per iteration of each
and the ratio to in-memory. Interleaving in one process keeps the comparison fair on
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

        # Per iteration, for both: (a fit of 3 iterations - a fit of 1) / 2, so
        # what a call does once (checks of the data on the first pass, the
        # first chunk's read and shapes) is not counted as iteration time.
        runs = {"in memory": (lambda: in_memory(3), lambda: in_memory(1))}
        runs.update(
            {
                f"chunks of {r}": (lambda r=r: chunked(3, r), lambda r=r: chunked(1, r))
                for r in args.chunk_rows
            }
        )
        for long, short in runs.values():
            jax.block_until_ready((long(), short()))  # compile
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, (long, short) in runs.items():
                t = time.perf_counter()
                jax.block_until_ready(long())
                t_long = time.perf_counter() - t
                t = time.perf_counter()
                jax.block_until_ready(short())
                times[name].append((t_long - (time.perf_counter() - t)) / 2)
    reference = statistics.median(times["in memory"])
    print(f"| N = {args.rows:,} | s per iteration (median of {args.repeat}) | ratio |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {med / reference:.2f} |")


if __name__ == "__main__":
    main()
