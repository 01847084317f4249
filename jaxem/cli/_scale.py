"""``jaxem fit`` beyond one process and one memory: ``--chunk-rows``, ``--coordinator``.

- ``--chunk-rows N`` (gmm, a .npy file): the file is memory-mapped and
  streamed N rows at a time through exact EM (``GaussianMixture(chunk_rows=N)``,
  ``jaxem.fit_chunked``); it is never loaded whole.
- ``--coordinator HOST:PORT --num-processes P --process-id I`` (or
  ``--coordinator auto`` on SLURM, Cloud TPU, Kubernetes): the command runs as
  one of P processes under ``jax.distributed``. Every process reads the same
  file and fits with ``devices="all"``: each contributes its share of the rows
  to one array sharded over every process's devices, so the E-step is split
  between the hosts and only the summed statistics cross the network. Process
  0 prints and writes the outputs.
- both: every process memory-maps the same file and streams only its own
  share of the rows (``GaussianMixture(chunk_rows=N, devices="all")``); the
  statistics of every process are summed after each pass over the file.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import sys

import numpy as np

from . import _print
from ._args import UsageError
from ._run import compiling, timed_fit, want_progress


def check(args) -> None:
    """Refuse combinations of the scale-out options that cannot work."""
    given = [args.num_processes is not None, args.process_id is not None]
    if args.coordinator not in (None, "auto") and not all(given):
        raise UsageError(
            "--coordinator HOST:PORT: give --num-processes and --process-id"
        )
    if args.coordinator in (None, "auto") and any(given):
        raise UsageError(
            "--num-processes, --process-id: only with --coordinator HOST:PORT"
        )
    if all(given) and args.process_id >= args.num_processes:
        raise UsageError(
            f"--process-id {args.process_id}: must be below --num-processes "
            f"{args.num_processes}"
        )
    if args.chunk_rows is None:
        return
    for option, value in (
        ("--predict", args.predict),
        ("--plot", args.plot),
        ("--columns", args.columns),
    ):
        if value is not None:
            raise UsageError(f"--chunk-rows: cannot be combined with {option}")
    if args.model != "gmm":
        raise UsageError("--chunk-rows: only for 'jaxem fit gmm'")
    if pathlib.Path(args.file).suffix.lower() != ".npy":
        raise UsageError(f"--chunk-rows: needs a .npy FILE, got {args.file}")


@contextlib.contextmanager
def distributed(args):
    """Join ``jax.distributed`` when ``--coordinator`` is given; yields whether
    this process writes the outputs (process 0, or the only process)."""
    if args.coordinator is None:
        yield True
        return
    import jax

    if args.coordinator == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(
            args.coordinator, args.num_processes, args.process_id
        )
    try:
        if jax.process_index() == 0:
            yield True
        else:
            args.out = args.predict = args.plot = None
            with contextlib.redirect_stdout(io.StringIO()):
                yield False
    finally:
        jax.distributed.shutdown()


def estimator_options(args) -> dict:
    """The estimators' ``devices`` under ``--coordinator``."""
    return {} if args.coordinator is None else {"devices": "all"}


def _mapped(path) -> np.ndarray:
    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"{path}: cannot read as .npy ({err})") from None
    if X.dtype.kind not in "biuf":
        raise UsageError(f"{path}: expected a numeric array, got dtype {X.dtype}")
    if X.ndim not in (1, 2) or X.shape[0] == 0:
        raise UsageError(
            f"{path}: expected a non-empty 1-D or 2-D array, got {X.shape}"
        )
    return X[:, None] if X.ndim == 1 else X


def run_streamed(args) -> int:
    """``jaxem fit gmm FILE.npy --chunk-rows N``: exact EM streamed from disk
    (by each process, its share of the rows, under ``--coordinator``)."""
    import jaxem

    for path, option in ((args.out, "--out"),):
        if path is not None and not pathlib.Path(path).resolve().parent.is_dir():
            raise UsageError(f"{option} {path}: the folder does not exist")
    X = _mapped(args.file)
    if args.float32 and X.dtype != np.float32:
        raise UsageError(
            f"--float32: with --chunk-rows the file's dtype ({X.dtype}) sets the "
            "precision; save the file as float32"
        )
    if X.shape[0] < args.components:
        raise UsageError(
            f"{args.file}: {X.shape[0]} row(s) is fewer than --components "
            f"{args.components}"
        )
    progress = want_progress(args.progress)
    kw = {"random_state": args.seed, "max_iter": args.max_iter}
    if args.tol is not None:
        kw["tol"] = args.tol
    est = jaxem.GaussianMixture(
        n_components=args.components,
        covariance_type=args.covariance_type or "full",
        n_init=args.n_init,
        verbose=int(progress),
        chunk_rows=args.chunk_rows,
        **kw,
        **estimator_options(args),
    )
    compiling(progress, "the streamed Gaussian mixture fit")
    seconds = timed_fit(est, X)
    title = f"Gaussian mixture of {pathlib.Path(args.file).name} (streamed, "
    title += f"{args.chunk_rows} rows a chunk"
    if args.coordinator is not None:
        import jax

        title += f", split between {jax.process_count()} processes"
    _print.describe(
        est,
        X.shape[0],
        seconds,
        title=title + ")",
        tol=args.tol,
    )
    if args.out:
        print(f"saved the model to {est.save(args.out)}")
    sys.stdout.flush()
    return 0
