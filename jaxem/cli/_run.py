"""What every command shares while it runs: precision, warnings, progress.

A command runs inside :func:`session`, which

- scopes the precision to the command: ``jax.enable_x64(True)`` (float64, as
  scikit-learn computes) or ``False`` for ``--float32``. It is a context, so
  calling ``jaxem.cli.main([...])`` from Python leaves JAX's global
  configuration as it was;
- prints warnings as one ``jaxem: warning:`` line each (never a traceback,
  even under ``python -W error``), and replaces the advice "try a looser tol"
  after ``--tol 0``, which never stops early by design;
- turns on jaxem's persistent compilation cache before anything compiles
  (unless the user configured or disabled one: see ``jaxem._compile_cache``),
  so a second ``jaxem fit`` of the same shapes starts warm.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings

from ._args import PROG


@contextlib.contextmanager
def session(args):
    """Run one command with scoped precision, one-line warnings and the cache."""
    import jax

    from .. import _compile_cache

    _compile_cache.enable()
    with jax.enable_x64(not getattr(args, "float32", False)):
        with _one_line_warnings(getattr(args, "tol", None)):
            yield


@contextlib.contextmanager
def _one_line_warnings(tol):
    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if tol == 0 and "did not converge" in text:
            text = (
                "--tol 0 never stops early by design: every run used all of "
                "--max-iter (the result is still the best run's)"
            )
            print(f"{PROG}: note: {text}", file=sys.stderr)
            return
        print(f"{PROG}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def want_progress(flag: bool | None) -> bool:
    """``--progress``/``--no-progress``, else on when stdout is a terminal."""
    if flag is not None:
        return flag
    return sys.stdout.isatty()


def compiling(progress: bool, what: str) -> None:
    """Say, before a first compiled call, that a compile is under way."""
    if progress:
        print(f"{PROG}: compiling {what}...", file=sys.stderr, flush=True)


def timed_fit(est, X, **fit_kwargs) -> float:
    """Fit ``est`` on ``X``; returns the seconds taken."""
    start = time.perf_counter()
    est.fit(X, **fit_kwargs)
    return time.perf_counter() - start
