"""``GaussianMixture.fit`` over data larger than memory: exact EM in chunks.

When the estimator has ``chunk_rows`` set, or X is a ``numpy.memmap`` (as
``np.load(path, mmap_mode="r")`` returns) of more than :data:`STREAM_BYTES`,
``fit`` never holds X in memory: every EM iteration streams X through
:func:`jaxem.fit_chunked` ``chunk_rows`` rows at a time (rows of a memory map
are read from its file with plain reads, so the mapped pages do not pile up in
the process). The iterates are those of the in-memory fit from the same start
(the same stopping rule, ``lower_bounds_``, ``converged_``), and the fitted
attributes are the same.

What differs from the in-memory fit, on purpose:

- initialisation (``init_params``) runs on a sample of ``chunk_rows`` rows
  spread evenly over X, not on all of X (explicit ``weights_init``,
  ``means_init`` and ``precisions_init`` need no data and start exactly as in
  memory);
- restarts run one after the other, each streaming X;
- a warm start continues from the fitted parameters without scikit-learn's
  comparison of its first lower bound with the previous one;
- ``collapsed_`` is read from the fitted weights (a component whose weight
  is within round-off of 0), not from one more pass over X;
- ``accelerate`` cannot be combined with streaming;
- partial labels (``semi_supervised=True``, ``fit(X, y)``) stream with their
  rows as ``latent_evidence``; labelled components start at the means of
  their labelled rows, read in chunks, as in memory;
- ``devices`` spreads every chunk over this process's devices among them
  (each runs the E-step of its share of the chunk), and under
  ``jax.distributed`` with several processes (``devices`` spanning every
  process equally, ``"all"``) also splits X between the processes (below).

Under ``jax.distributed`` every process calls ``fit`` with the same whole X
(the same file, memory-mapped), so the validation and the sample-based
initialisation are the same everywhere; each process then streams only its
own contiguous share of the rows (process i of P: rows ``i * n // P`` to
``(i + 1) * n // P``), on its own devices, through
``fit_chunked(..., across_processes=True)``, which sums the statistics of
every process after each pass. Every process reaches the same fitted
attributes, equal to the one-process streamed fit's up to the order of
floating-point sums.
"""

from __future__ import annotations

import contextlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .. import _chunk_sources, _chunked
from . import _base, _devices, _labels

STREAM_BYTES = 256 * 2**20
"""A ``numpy.memmap`` X larger than this (256 MiB) streams even without
``chunk_rows``."""

DEFAULT_CHUNK_ROWS = 65536
"""Rows per chunk when a memory map streams without ``chunk_rows``."""


def chunk_rows(estimator) -> int:
    """Rows (samples) a chunk of a streamed X: the estimator's ``chunk_rows``,
    or :data:`DEFAULT_CHUNK_ROWS` for a memory map that streams by itself."""
    return int(getattr(estimator, "chunk_rows", None) or DEFAULT_CHUNK_ROWS)


def fit_restarts(estimator, model, params0, chunks, max_iter: int, **kwargs):
    """``fit_chunked`` from each start of ``params0`` (leading axis R), one
    after the other, under the estimator's progress printer: the (R, ...)
    stacked results, host arrays. ``kwargs`` go to ``fit_chunked``."""
    progress = (
        _base.progress_printer(estimator._name, max_iter)
        if estimator.verbose
        else contextlib.nullcontext()
    )
    results = []
    with progress as callback:
        for r in range(jax.tree.leaves(params0)[0].shape[0]):
            result = _chunked.fit_chunked(
                model,
                _base.take(params0, r),
                chunks,
                max_iter=max_iter,
                callback=callback,
                **kwargs,
            )
            results.append(jax.tree.map(np.asarray, result))
    return jax.tree.map(lambda *a: np.stack(a), *results)


def streams(estimator, X) -> bool:
    """True when ``fit`` should stream X in chunks."""
    if getattr(estimator, "chunk_rows", None) is not None:
        return True
    return isinstance(X, np.memmap) and X.nbytes > STREAM_BYTES


def fit(estimator, X, sample_weight, warning_category, y=None):
    """Fit ``estimator`` (a ``GaussianMixture``) by exact EM streamed in chunks
    (``y``: partial labels, read when ``semi_supervised``)."""
    estimator._validate_params()
    if getattr(estimator, "accelerate", None) is not None:
        raise ValueError(
            "accelerate: a streamed fit (chunk_rows, or a memory-mapped X over "
            f"{STREAM_BYTES >> 20} MiB) runs plain EM; give accelerate=None"
        )
    across, devices = _placement(estimator.devices)
    if not isinstance(X, np.ndarray):  # lists, DataFrames: already in memory
        X = _base.validate_X(estimator, X, reset=True, ensure_min_samples=2)
    if X.ndim != 2:
        raise ValueError(
            f"X: expected a 2-D array (n_samples, n_features), got {X.shape}"
        )
    # scikit-learn's checks of shape and dtype on two rows; every chunk is
    # checked for finite values as it streams.
    head = _base.validate_X(estimator, X[:2], reset=True, ensure_min_samples=2)
    dtype, n = head.dtype, X.shape[0]
    _base.check_n_components(estimator.n_components, n)
    estimator._check_parameters(head)
    w = _base.sample_weights(sample_weight, X)
    rows = chunk_rows(estimator)
    k = estimator.n_components
    labels = None
    if getattr(estimator, "semi_supervised", False):
        labels = _labels.check_labels("y", y, n, k)

    mine = range(0, n)
    if across:  # this process's contiguous share of the rows
        i, p = jax.process_index(), jax.process_count()
        if n < p:  # every process decides alike: the same X everywhere
            raise ValueError(
                f"X: {n} rows cannot be split between {p} processes; fit "
                "fewer rows in one process (devices=None)"
            )
        mine = range(i * n // p, (i + 1) * n // p)

    def chunks():
        for start in range(mine.start, mine.stop, rows):
            stop = min(start + rows, mine.stop)
            x = _chunk_sources.read_rows(X, start, stop).astype(dtype, copy=False)
            evidence = None
            if labels is not None:  # partial labels stream with their rows
                evidence = _labels.log_evidence(labels[start:stop], k, dtype)
            weights = None if w is None else w[start:stop]
            yield _chunk_sources.Batch(x, weights, None, evidence)

    with _base.precision_for(dtype):
        params0 = _initial_params(estimator, X, w, dtype, rows, labels)
        if estimator.max_iter == 0:
            estimator._set_initialisation(
                jax.tree.map(lambda a: np.asarray(a[0]), params0)
            )
            return estimator
        stacked = fit_restarts(
            estimator,
            estimator._model(X.shape[1]),
            params0,
            chunks,
            estimator.max_iter,
            tol=float(estimator.tol),
            across_processes=across,
            devices=devices,
        )
        n_obs = float(n if w is None else w.sum())
        estimator._keep_best(stacked, n_obs, head, False)
    estimator._fit_dtype = dtype
    weights = np.asarray(estimator.weights_)
    estimator.collapsed_ = weights <= 10 * np.finfo(weights.dtype).eps
    if estimator.collapsed_.any():
        which = np.flatnonzero(estimator.collapsed_).tolist()
        warnings.warn(
            f"GaussianMixture: component(s) {which} ended with no data "
            "(a weight within round-off of 0).",
            warning_category,
            stacklevel=3,
        )
    return estimator


def _placement(devices) -> tuple[bool, list[jax.Device] | None]:
    """Where a streamed fit runs: ``(across_processes, devices)``.

    ``devices`` None: this process's default device. Otherwise every chunk is
    spread over this process's devices among them, and with several
    processes (``devices`` spanning each equally) the fit is split between
    the processes of jax.distributed.
    """
    if devices is None:
        return False, None
    resolved = _devices.resolve(devices)
    across = jax.process_count() > 1
    if across:
        _devices.check_spans_processes(resolved)
    return across, [d for d in resolved if d.process_index == jax.process_index()]


def _initial_params(estimator, X, w, dtype, rows, labels=None):
    """(R, ...) initial parameters: the fitted ones (warm start), or drawn from
    an evenly spread sample of ``rows`` rows of X, labelled components at the
    means of their labelled rows (read ``rows`` at a time)."""
    if estimator.warm_start and hasattr(estimator, "converged_"):
        params = estimator._attributes_to_params(dtype)
        return jax.tree.map(lambda a: jnp.asarray(a)[None], params)
    n = X.shape[0]
    if len(estimator._inits) == 3:  # explicit starts: no data needed
        index = np.arange(min(n, estimator.n_components))
    else:
        index = np.unique(np.linspace(0, n - 1, min(n, rows)).astype(np.int64))
    sample = jnp.asarray(_chunk_sources.read_indexed_rows(X, index).astype(dtype))
    weights = None if w is None else jnp.asarray(w[index])
    key = _base.check_random_state(estimator.random_state)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(estimator.n_init))
    params0 = jax.vmap(lambda k: estimator._init_params(k, sample, weights))(keys)
    if labels is None:
        return params0
    return estimator._label_init(params0, X, labels, rows)
