"""Scale-out benchmarks: chunked EM from disk, online EM, devices, processes.

Run from the repository root (not a test):

    python benchmarks/scale.py --rows 20000000      # a 640 MB float32 file

Each measurement runs in a fresh process so that peak resident memory
(``ru_maxrss``) and compile caches belong to it alone. Prints a markdown table;
the numbers in docs/scale.md come from it.

1. Exact chunked EM (``jaxem.fit_chunked``) over a ``.npy`` file of ROWS x 8
   float32 (a Gaussian mixture, K=4, full covariances): seconds per iteration,
   per row, and peak resident memory as a fraction of the file.
2. In-memory ``jaxem.fit`` at N=1e6 on the same model: seconds per iteration per
   row (the reference for 1.).
3. Online EM (``jaxem.fit_online``), one pass over the file, against exact EM
   after convergence on the first 1e6 rows, both scored on those rows.
4. ``jaxem.fit`` on data sharded over 8 simulated CPU devices against 1.
5. Two ``jax.distributed`` processes against one.
6. ``--streaming-processes`` (only this): exact chunked EM over the file by two
   ``jax.distributed`` processes, each streaming its half of the rows
   (``fit_chunked(..., across_processes=True)``), against one process
   streaming all of it: seconds per pass and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import textwrap

COMMON = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    import jax, jaxem

    K, D = 4, 8

    def model():
        return jaxem.models.gaussian_mixture(K, D, "full")

    def start(x):
        rng = np.random.default_rng(1)
        return {"weights": np.full(K, 1 / K, np.float32),
                "means": np.asarray(x[rng.choice(len(x), K, replace=False)],
                                    np.float32),
                "covariances": np.stack([np.eye(D, dtype=np.float32)] * K)}

    def peak_mb():
        # VmHWM: this process image's peak resident set. (ru_maxrss would also
        # count what the parent had resident when it forked this process.)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def timed(fn, repeat=1):
        fn()  # compile
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            out = fn()
            jax.block_until_ready(out)
            best = min(best, time.perf_counter() - t)
        return best, out
    """
)

CHUNKED = COMMON + textwrap.dedent(
    """
    import threading

    def status():
        out = {}
        with open("/proc/self/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(line.split()[1]) / 1024
        return out

    peaks = {}
    def sample(stop):
        # Peak of each kind of resident memory, every 10 ms: VmHWM is the
        # kernel's peak of the total only.
        while not stop.wait(0.01):
            for key, value in status().items():
                peaks[key] = max(peaks.get(key, 0), value)

    path, chunk_rows, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    head = np.array(np.load(path, mmap_mode="r")[: 2 * chunk_rows])
    p0 = start(head[:10000])
    base = peak_mb()
    t0 = time.perf_counter()
    # Compile on two chunks in memory (the same chunk shape as the file's).
    jaxem.fit_chunked(model(), p0, head, chunk_rows=chunk_rows, max_iter=1, tol=0.0)
    compiled = status()
    del head
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(stop,), daemon=True)
    sampler.start()
    r = jaxem.fit_chunked(model(), p0, path, chunk_rows=chunk_rows,
                          max_iter=1, tol=0.0)  # 2 passes
    t1 = time.perf_counter()
    r = jaxem.fit_chunked(model(), p0, path, chunk_rows=chunk_rows,
                          max_iter=iters, tol=0.0)
    t2 = time.perf_counter()
    stop.set()
    sampler.join()
    # fit_chunked makes max_iter + 1 passes (the last scores the result).
    per_pass = (t2 - t1) / (iters + 1)
    print(json.dumps({"per_iter_s": per_pass, "peak_mb": peak_mb(),
                      "import_mb": base, "ll": float(r.log_likelihood),
                      "first_call_s": t1 - t0,
                      "anon_compiled_mb": compiled["RssAnon"],
                      "file_compiled_mb": compiled["RssFile"],
                      "peak_anon_mb": peaks["RssAnon"],
                      "peak_file_mb": peaks["RssFile"]}))
    """
)

IN_MEMORY = COMMON + textwrap.dedent(
    """
    path, rows, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    x = np.array(np.load(path, mmap_mode="r")[:rows])
    p0 = start(x[:10000])
    m = model()
    def run(n):
        return jaxem.fit(m, p0, x, max_iter=n, tol=0.0).log_likelihood
    t_long, _ = timed(lambda: run(iters + 1))
    t_short, _ = timed(lambda: run(1))
    print(json.dumps({"per_iter_s": (t_long - t_short) / iters,
                      "peak_mb": peak_mb()}))
    """
)

ONLINE = COMMON + textwrap.dedent(
    """
    path, chunk_rows, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    head = np.array(np.load(path, mmap_mode="r")[:rows])
    p0 = start(head[:10000])
    t = time.perf_counter()
    online = jaxem.fit_online(model(), p0, path, chunk_rows=chunk_rows)
    t_online = time.perf_counter() - t
    exact = jaxem.fit(model(), p0, head, max_iter=500, tol=1e-7)
    ll_online = float(jaxem.log_likelihood(model(), online.state.params, head))
    print(json.dumps({"online_pass_s": t_online,
                      "gap_per_row": (float(exact.log_likelihood) - ll_online) / rows,
                      "exact_iters": int(exact.n_iter)}))
    """
)

DEVICES = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import json, time
    import jax, numpy as np, jaxem
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200_003, 8)) + (rng.random((200_003, 1)) < .5) * 3
    m = jaxem.models.gaussian_mixture(4, 8, "full")
    p0 = {"weights": np.full(4, .25), "means": x[:4].copy(),
          "covariances": np.stack([np.eye(8)] * 4)}
    s = jaxem.shard(x)
    def run(d, w):
        r = jaxem.fit(m, p0, d, weights=w, max_iter=20, tol=0.0)
        jax.block_until_ready(r)
        return r
    one = run(x, None)
    t = time.perf_counter(); one = run(x, None); t1 = time.perf_counter() - t
    many = run(s.data, s.weights)
    t = time.perf_counter(); many = run(s.data, s.weights); t8 = time.perf_counter() - t
    def rel(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return float(np.max(np.abs(a - b) / (np.abs(a) + 1e-300)))
    diff = max(rel(one.params[k], many.params[k]) for k in p0)
    print(json.dumps({"one_s": t1, "eight_s": t8, "max_rel_diff": diff}))
    """
)

WORKER = textwrap.dedent(
    """
    import json, sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    pid, nproc, port = (int(a) for a in sys.argv[1:4])
    if nproc > 1:
        jax.distributed.initialize(f"127.0.0.1:{port}", nproc, pid)
    import numpy as np, jaxem
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200_000, 8)) + (rng.random((200_000, 1)) < .5) * 3
    m = jaxem.models.gaussian_mixture(4, 8, "full")
    p0 = {"weights": np.full(4, .25), "means": x[:4].copy(),
          "covariances": np.stack([np.eye(8)] * 4)}
    s = jaxem.shard(x[pid::nproc])
    def run():
        r = jaxem.fit(m, p0, s.data, weights=s.weights, max_iter=20, tol=0.0)
        return float(r.log_likelihood)
    run()
    t = time.perf_counter(); ll = run(); dt = time.perf_counter() - t
    if pid == 0:
        print(json.dumps({"seconds": dt, "ll": ll}))
    if nproc > 1:
        jax.distributed.shutdown()
    """
)


STREAMING_WORKER = COMMON + textwrap.dedent(
    """
    pid, nproc, port = (int(a) for a in sys.argv[1:4])
    path, chunk_rows, iters = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    if nproc > 1:
        jax.distributed.initialize(f"127.0.0.1:{port}", nproc, pid)
    x = np.load(path, mmap_mode="r")
    n = len(x)
    mine = x[pid * n // nproc : (pid + 1) * n // nproc]  # this process's rows
    p0 = start(np.array(x[:10000]))

    def run(k):
        return jaxem.fit_chunked(model(), p0, mine, chunk_rows=chunk_rows,
                                 max_iter=k, tol=0.0, across_processes=True)

    run(1)  # compiles; reads the file once into the page cache
    t = time.perf_counter()
    r = run(iters)
    # fit_chunked makes max_iter + 1 passes (the last scores the result).
    per_pass = (time.perf_counter() - t) / (iters + 1)
    if pid == 0:
        print(json.dumps({"per_pass_s": per_pass, "ll": float(r.log_likelihood)}))
    if nproc > 1:
        jax.distributed.shutdown()
    """
)


def _python(script: str, *args: str, env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _processes(nproc: int, script: str = WORKER, *args: str) -> dict:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i), str(nproc), str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for i in range(nproc)
    ]
    outs = [p.communicate()[0] for p in procs]
    return json.loads(outs[0].strip().splitlines()[-1])


def _write_file(path: pathlib.Path, rows: int, block: int = 1_000_000) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4, size=(4, 8)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 8))
    for start in range(0, rows, block):
        n = min(block, rows - start)
        z = rng.integers(0, 4, n)
        out[start : start + n] = centres[z] + rng.normal(size=(n, 8)).astype(np.float32)
    out.flush()
    del out


def _streaming_processes(args) -> None:
    """6.: two processes streaming halves of the file against one, all of it."""
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = pathlib.Path(tmp) / "x.npy"
        _write_file(path, args.rows)
        run = (str(path), str(args.chunk_rows), str(args.iters))
        one = _processes(1, STREAMING_WORKER, *run)
        two = _processes(2, STREAMING_WORKER, *run)
    print("| measurement | value |\n| --- | --- |")
    print(
        f"| chunked EM over {args.rows:,} x 8 float32, {args.chunk_rows:,} rows "
        f"a chunk: s per pass, 1 process | {one['per_pass_s']:.3f} |"
    )
    print(
        f"| the same, 2 processes (each its half, across_processes=True) | "
        f"{two['per_pass_s']:.3f} ({two['per_pass_s'] / one['per_pass_s']:.2f}x "
        f"1 process) |"
    )
    print(f"| log-likelihoods, 2 vs 1 process | {two['ll']:.6f} vs {one['ll']:.6f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the file")
    parser.add_argument(
        "--only-chunked", action="store_true", help="measure 1. and 2. only"
    )
    parser.add_argument(
        "--streaming-processes",
        action="store_true",
        help="measure 6. only: 2 processes streaming the file against 1",
    )
    args = parser.parse_args()
    if args.streaming_processes:
        _streaming_processes(args)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = pathlib.Path(tmp) / "x.npy"
        _write_file(path, args.rows)
        file_mb = path.stat().st_size / 2**20
        # jaxem's compile cache in a fresh folder: the first run compiles (cold),
        # the second reads the programs back (warm, as every later run).
        cache = {"XDG_CACHE_HOME": tmp, "JAXEM_NO_CACHE": ""}
        chunk = (str(path), str(args.chunk_rows), str(args.iters))
        cold = _python(CHUNKED, *chunk, env=cache)
        chunked = _python(CHUNKED, *chunk, env=cache)
        memory = _python(IN_MEMORY, str(path), str(1_000_000), str(args.iters))
        if not args.only_chunked:
            online = _python(ONLINE, str(path), str(args.chunk_rows), str(1_000_000))
    if not args.only_chunked:
        devices = _python(DEVICES)
        one, two = _processes(1), _processes(2)
    per_row_chunked = chunked["per_iter_s"] / args.rows
    per_row_memory = memory["per_iter_s"] / 1_000_000
    print("| measurement | value |\n| --- | --- |")
    print(f"| file | {args.rows:,} x 8 float32, {file_mb:,.0f} MB |")
    print(f"| chunked EM, s per iteration | {chunked['per_iter_s']:.2f} |")
    print(
        f"| chunked EM peak resident memory (warm cache) | "
        f"{chunked['peak_mb']:,.0f} MB "
        f"({100 * chunked['peak_mb'] / file_mb:.1f}% of the file; "
        f"{chunked['import_mb']:,.0f} MB before the first pass) |"
    )
    print(
        f"| peak resident memory, first run (compiling: cold cache) | "
        f"{cold['peak_mb']:,.0f} MB ({100 * cold['peak_mb'] / file_mb:.1f}%; "
        f"RssAnon {cold['peak_anon_mb']:,.0f} MB) |"
    )
    print(
        f"| anonymous memory (RssAnon): after loading the programs | "
        f"{chunked['anon_compiled_mb']:,.0f} MB |"
    )
    added = chunked["peak_anon_mb"] - chunked["anon_compiled_mb"]
    print(
        f"| anonymous memory (RssAnon): peak while streaming | "
        f"{chunked['peak_anon_mb']:,.0f} MB "
        f"({100 * chunked['peak_anon_mb'] / file_mb:.1f}% of the file; the "
        f"streaming adds {added:,.0f} MB, {100 * added / file_mb:.2f}%) |"
    )
    print(
        f"| file-backed memory (RssFile, shared libraries): peak | "
        f"{chunked['peak_file_mb']:,.0f} MB |"
    )
    print(f"| in-memory EM at N=1e6, s per iteration | {memory['per_iter_s']:.3f} |")
    print(
        f"| chunked / in-memory time per row | {per_row_chunked / per_row_memory:.2f} |"
    )
    if args.only_chunked:
        return
    print(
        f"| online EM, one pass | {online['online_pass_s']:.1f} s, "
        f"{online['gap_per_row']:.2e} nats/row below exact EM "
        f"({online['exact_iters']} iterations) on the first 1e6 rows |"
    )
    print(
        f"| 8 simulated devices vs 1 (N=200,003, 20 iterations) | "
        f"{devices['eight_s']:.2f} s vs {devices['one_s']:.2f} s, "
        f"max relative difference {devices['max_rel_diff']:.1e} |"
    )
    print(
        f"| 2 processes vs 1 (N=200,000, 20 iterations) | "
        f"{two['seconds']:.2f} s vs {one['seconds']:.2f} s, "
        f"log-likelihoods {two['ll']:.6f} vs {one['ll']:.6f} |"
    )


if __name__ == "__main__":
    main()
