"""Progress bars for long fits, driven by the opt-in callback of ``jaxem.fit``.

The compiled fit calls ``callback(iteration, log_likelihood)`` through
``jax.debug.callback`` once per iteration (a batch of restarts under ``vmap``
passes arrays). A :class:`ProgressBar` turns those calls into a tqdm bar showing
the iteration, the log-likelihood and its change, or into plain printed lines
when tqdm is not installed.

Used as a context manager it hands ``fit`` the module-level :func:`dispatch`
function, whose identity never changes: ``callback`` is a static argument of the
jitted fit, so every progress-reporting fit shares one compiled program instead
of recompiling for each new bar.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, TextIO

import numpy as np

_LOCK = threading.Lock()
_ACTIVE: list[ProgressBar] = []


def dispatch(iteration: Any, log_likelihood: Any) -> None:
    """Forward one iteration report to the innermost active :class:`ProgressBar`.

    Pass this as ``callback=`` to ``jaxem.fit`` inside ``with ProgressBar(...)``.
    Without an active bar the call does nothing.
    """
    with _LOCK:
        bar = _ACTIVE[-1] if _ACTIVE else None
    if bar is not None:
        bar(iteration, log_likelihood)


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional extra
        return None
    return tqdm


class ProgressBar:
    """A progress display for one fit: iteration, log-likelihood and its change.

    Args:
        desc: label in front of the bar (e.g. the estimator's name).
        total: the iteration budget (``max_iter``), the bar's length.
        file: stream to draw on (default ``sys.stderr``).
        use_tqdm: draw with tqdm when it is installed (default); False prints
            lines instead.
        min_interval: when printing lines, the least number of seconds between
            two lines (the first and the last report are always printed).

    Under ``vmap`` over restarts, JAX calls the callback once per restart and
    iteration (or with (R,) arrays): the bar shows the furthest iteration, the
    best log-likelihood of any restart so far, and the change of the best
    still-running restart from one iteration to the next (what ``tol`` waits
    for).

    Examples:
        >>> import io, jax.numpy as jnp, jaxem
        >>> from jaxem._progress import ProgressBar
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
        >>> heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
        >>> out = io.StringIO()
        >>> with ProgressBar("coins", total=3, file=out, use_tqdm=False) as cb:
        ...     result = jaxem.fit(model, params0, heads, max_iter=3, tol=0.0,
        ...                        callback=cb)
        >>> print(out.getvalue().splitlines()[0])
        coins iteration    1/3  log-likelihood -11.32...
    """

    def __init__(
        self,
        desc: str = "EM",
        total: int | None = None,
        *,
        file: TextIO | None = None,
        use_tqdm: bool = True,
        min_interval: float = 0.0,
    ):
        self.desc = desc
        self.total = total
        self.file = file
        self.use_tqdm = use_tqdm
        self.min_interval = min_interval
        self._last_print = -math.inf
        self._pending: str | None = None
        self.iteration = 0
        self.log_likelihood = math.nan
        self._bar = None
        self._closed = False
        self._best: dict[int, float] = {}  # best log-likelihood per iteration
        self._top = -1
        self._key = ""

    # ------------------------------------------------------------ reporting
    def __call__(self, iteration: Any, log_likelihood: Any) -> None:
        it = np.asarray(iteration).ravel().astype(np.int64)
        ll = np.asarray(log_likelihood, dtype=np.float64).ravel()
        for i, value in zip(it.tolist(), ll.tolist(), strict=True):
            if math.isfinite(value):
                self._best[i] = max(self._best.get(i, -math.inf), value)
        if it.size:
            self._top = max(self._top, int(it.max()))
        # The callback reports the log-likelihood *before* iteration `top`'s
        # M-step, i.e. after `top` completed iterations; show 1-based progress.
        change = self._best.get(self._top, math.nan) - self._best.get(
            self._top - 1, math.nan
        )
        best = max(self._best.values(), default=math.nan)
        key = repr((self._top, best, change))  # repr: NaN equals NaN
        if key == self._key:
            return  # the same report, from another restart
        self._key = key
        self.iteration, self.log_likelihood = self._top + 1, best
        self._show(self._top + 1, best, change)

    def _stream(self) -> TextIO:
        return self.file if self.file is not None else sys.stderr

    def _show(self, step: int, ll: float, change: float) -> None:
        tqdm = _tqdm() if self.use_tqdm else None
        if tqdm is None:
            total = f"/{self.total}" if self.total else ""
            delta = f"  change {change:+.3e}" if math.isfinite(change) else ""
            self._pending = (
                f"{self.desc} iteration {step:4d}{total}  log-likelihood "
                f"{ll:.6f}{delta}"
            )
            now = time.monotonic()
            if now - self._last_print >= self.min_interval:
                self._flush_line()
                self._last_print = now
            return
        if self._bar is None:
            self._bar = tqdm(
                total=self.total,
                desc=self.desc,
                file=self._stream(),
                unit="it",
                leave=True,
                dynamic_ncols=True,
            )
        self._bar.update(max(step - self._bar.n, 0))
        postfix = {"loglik": f"{ll:.6g}"}
        if math.isfinite(change):
            postfix["change"] = f"{change:+.2e}"
        self._bar.set_postfix(postfix, refresh=False)

    def _flush_line(self) -> None:
        if self._pending is not None:
            print(self._pending, file=self._stream(), flush=True)
            self._pending = None

    def close(self, result: Any = None) -> None:
        """Finish the display; with a ``FitResult``, show its final state."""
        if self._closed:
            return
        self._closed = True
        self._flush_line()
        if self._bar is not None:
            if result is not None:
                n_iter = int(np.asarray(result.n_iter).max())
                self._bar.update(max(n_iter - self._bar.n, 0))
            # A fit that stopped early (converged) shows as complete.
            self._bar.total = self._bar.n
            self._bar.close()

    # ---------------------------------------------------- context manager
    def __enter__(self):
        with _LOCK:
            _ACTIVE.append(self)
        return dispatch

    def __exit__(self, *exc_info) -> None:
        import jax

        # Reports from jax.debug.callback may still be in flight.
        jax.effects_barrier()
        with _LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
        self.close()


def progress(desc: str, total: int | None, enabled: bool = True, **kwargs):
    """A :class:`ProgressBar` when ``enabled``, else a context giving None.

    ``with progress("GMM", max_iter, verbose) as callback:`` then pass
    ``callback`` to ``jaxem.fit``; it is None (a pure compiled fit) when
    ``enabled`` is false.
    """
    if enabled:
        return ProgressBar(desc, total, **kwargs)
    import contextlib

    return contextlib.nullcontext(None)


class CompileNotice:
    """Say once, on ``file``, that a compile is under way (``verbose`` fits).

    A context manager: while it is open, the first program JAX traces for
    compilation (a jit cache miss: a first fit for this model and data size
    bucket) prints one line, ``"<desc>: compiling (the first fit of this model
    and data size; later fits reuse it)..."``, before XLA compiles it. A fit
    that compiles nothing prints nothing.

    Examples:
        >>> import io, jax, jax.numpy as jnp
        >>> from jaxem._progress import CompileNotice
        >>> out = io.StringIO()
        >>> with CompileNotice("demo", file=out):
        ...     _ = jax.jit(lambda x: x * 3 + 1)(jnp.arange(3))
        >>> out.getvalue().startswith("demo: compiling")
        True
    """

    _EVENT = "/jax/core/compile/jaxpr_trace_duration"

    def __init__(self, desc: str, file: TextIO | None = None):
        self.desc = desc
        self.file = file
        self.said = False

    def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
        if event != self._EVENT or self.said:
            return
        self.said = True
        print(
            f"{self.desc}: compiling (the first fit of this model and data size; "
            "later fits reuse it)...",
            file=self.file if self.file is not None else sys.stderr,
            flush=True,
        )

    def __enter__(self) -> CompileNotice:
        import jax

        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc_info) -> None:
        import jax

        jax.monitoring.unregister_event_duration_listener(self._listen)


def compile_notice(desc: str, verbose: Any):
    """A :class:`CompileNotice` when ``verbose``, else a context that does
    nothing (the estimators wrap their ``fit`` in it)."""
    import contextlib

    return CompileNotice(desc) if verbose else contextlib.nullcontext()
