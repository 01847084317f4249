"""``fit`` of the HMM estimators over data larger than memory: exact EM in chunks.

When the estimator has ``chunk_rows`` set, or X is a ``numpy.memmap`` (as
``np.load(path, mmap_mode="r")`` returns) of more than
``_streaming.STREAM_BYTES`` (then ``_streaming.DEFAULT_CHUNK_ROWS`` samples a
chunk), ``fit(X, lengths)`` never holds X in memory: whole sequences are
grouped, in order, into chunks of at most ``chunk_rows`` samples (a sequence
is never split: a longer one is a chunk of its own), and every EM iteration
streams the chunks through :func:`jaxem.fit_chunked` (rows of a memory map are
read from its file with plain reads, ``_chunk_sources.read_rows``, so the
mapped pages do not pile up in the process). Each chunk is validated as in
memory the first time it is read. The iterates are those of the in-memory fit
from the same start (the same stopping rule, ``monitor_``, ``fit_status_``),
and so are the fitted attributes and ``unvisited_states_``.

What differs from the in-memory fit, on purpose:

- initialisation (the letters of ``init_params``, and attributes not set)
  draws from a sample of whole sequences spread evenly over X, about
  ``chunk_rows`` samples in all (a sequence longer than that gives its first
  ``chunk_rows`` samples), not from all of X; attributes that are set and
  whose letters are left out of ``init_params`` need no data and start
  exactly as in memory;
- restarts (``n_init``) run one after the other, each streaming X;
- the starting values become the attributes before the iterations (as
  hmmlearn's ``_init``), so a fit that fails leaves them set;
- ``CategoricalHMM`` without ``n_features`` reads the largest symbol of X in
  one more pass before initialising (the same ``n_features_`` as in memory),
  and ``unvisited_states_`` comes from one more pass at the fitted parameters;
- ``states`` (partial state labels) stream with the chunks as their
  ``latent_evidence``, and the labelled states' means start at the means of
  their labelled samples, read in chunks, as in memory;
- ``accelerate`` cannot be combined with streaming;
- ``score``, ``score_samples``, ``predict_proba``, ``decode`` and ``predict``
  read such an X in the same chunks of whole sequences (:func:`by_chunks`),
  with the same results as for X in memory;
- ``devices`` spreads every chunk over this process's devices among them,
  and under ``jax.distributed`` with several processes (``devices`` spanning
  every process equally, ``"all"``) splits X between the processes: every
  process passes the same whole X (so the initialisation is the same
  everywhere) and streams its own share of whole sequences through
  ``fit_chunked(..., across_processes=True)``.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from .. import (
    _chunk_sources,
    _chunked_processes,
    _evidence,
    _model,
    _progress,
)
from .. import _fit as _fitmod
from . import _base, _labels, _streaming
from ._hmm_inference import pad
from ._hmm_sequences import lengths_or_y, to_padded


def streams(estimator, X) -> bool:
    """True when ``fit`` should stream X in chunks of whole sequences."""
    if getattr(estimator, "chunk_rows", None) is not None:
        return True
    return isinstance(X, np.memmap) and X.nbytes > _streaming.STREAM_BYTES


def chunk_bounds(lengths: np.ndarray, rows: int) -> np.ndarray:
    """(C + 1,) sequence indices where the chunks start, then B.

    Whole sequences, in order, at most ``rows`` samples a chunk; a sequence
    longer than ``rows`` is a chunk of its own.

    Examples:
        >>> import numpy as np
        >>> chunk_bounds(np.array([3, 4, 9, 2, 2]), 6).tolist()
        [0, 1, 2, 3, 5]
    """
    ends = np.cumsum(lengths)
    bounds = [0]
    while bounds[-1] < len(lengths):
        start = bounds[-1]
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + rows, side="right"))
        bounds.append(max(stop, start + 1))
    return np.asarray(bounds, dtype=np.int64)


class SequenceChunks:
    """A re-iterable chunk source of the whole sequences in a range of X's rows.

    Calling it yields one pass of ``Batch(data, None, lengths)``: each chunk
    read with ``read_rows``, validated by the estimator's ``_validate_X``
    (the first time only), cut into the model's padded (B, T, ...) data and
    padded to the estimators' size buckets.

    Args:
        estimator: the HMM estimator (its ``_validate_X`` and ``_to_data``).
        X: the (n_samples, n_features) array or memory map.
        lengths: (B,) lengths of all of X's sequences.
        rows: samples per chunk (at most, but for a longer sequence).
        span: ``(first_row, stop_row)``, the rows to stream (whole sequences:
            a process's share); None for all of X.
    """

    def __init__(self, estimator, X, lengths, rows: int, span=None):
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        first, stop = (0, int(offsets[-1])) if span is None else span
        a, b = np.searchsorted(offsets, [first, stop])
        if not 0 <= first <= stop <= offsets[-1] or (
            offsets[a] != first or offsets[b] != stop
        ):
            raise ValueError(
                f"span: rows [{first}, {stop}) must start and end between sequences"
            )
        self._estimator, self._X = estimator, X
        self._lengths, self._offsets = lengths, offsets
        self.bounds = a + chunk_bounds(lengths[a:b], rows)
        self._checked = np.zeros(len(self.bounds) - 1, dtype=bool)
        self._dtype = None
        self.labels = None  # (labels, K, dtype): partial state labels

    def evidence(self, i: int, lengths, data):
        """Chunk ``i``'s ``latent_evidence`` from the state labels, padded as
        its ``data``; None without labels."""
        if self.labels is None:
            return None
        labels, k, dtype = self.labels
        a, b = self._offsets[self.bounds[i]], self._offsets[self.bounds[i + 1]]
        table = to_padded(_labels.log_evidence(labels[a:b], k, dtype), lengths)
        return _evidence.pad(table, data, 2)

    def read(self, i: int, reset: bool = False):
        """Chunk ``i``'s validated (rows, d) samples and (B_i,) lengths."""
        a, b = self.bounds[i], self.bounds[i + 1]
        x = _chunk_sources.read_rows(self._X, self._offsets[a], self._offsets[b])
        if reset or not self._checked[i]:
            x = self._estimator._validate_X(x, reset=reset)
            self._checked[i], self._dtype = True, x.dtype
        else:
            x = x.astype(self._dtype, copy=False)
        return x, self._lengths[a:b]

    def __call__(self):
        for i in range(len(self.bounds) - 1):
            x, lengths = self.read(i)
            data, padded_lengths = pad(
                self._estimator._to_data(to_padded(x, lengths)), lengths
            )
            evidence = self.evidence(i, lengths, data)
            yield _chunk_sources.Batch(data, None, padded_lengths, evidence)

    def largest_symbols(self) -> int:
        """One pass validating every chunk as ``fit`` validates X: the largest
        number of symbols any chunk sets (``CategoricalHMM``'s X.max() + 1)."""
        m = 1
        for i in range(len(self.bounds) - 1):
            self.read(i, reset=True)
            m = max(m, int(self._estimator._n_features))
        return m


def by_chunks(estimator, X, lengths, method):
    """``method(x, lengths)`` (a ``(float, (n, ...) array)`` of whole
    sequences in memory: scoring, posteriors, decoding) over X in chunks of
    whole sequences of at most ``chunk_rows`` samples, read with plain reads:
    the floats summed, the arrays concatenated, as for all of X at once."""
    lengths = lengths_or_y(lengths, X.shape[0])
    rows = _streaming.chunk_rows(estimator)
    bounds = chunk_bounds(lengths, rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total, parts = 0.0, []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        x = _chunk_sources.read_rows(X, int(offsets[a]), int(offsets[b]))
        value, part = method(x, lengths[a:b])
        total += value
        parts.append(part)
    return total, np.concatenate(parts)


def _refuse(estimator) -> None:
    where = (
        "a streamed fit (chunk_rows, or a memory-mapped X over "
        f"{_streaming.STREAM_BYTES >> 20} MiB)"
    )
    if getattr(estimator, "accelerate", None) is not None:
        raise ValueError(f"accelerate: {where} runs plain EM; give accelerate=None")


def _sample_pieces(lengths, offsets, rows: int) -> list[tuple[int, int]]:
    """Row ranges of whole sequences spread evenly over X, about ``rows``
    samples in all; a sequence longer than ``rows`` gives its first ``rows``."""
    n, b = int(offsets[-1]), len(lengths)
    if n <= rows:
        return [(0, n)]

    def picks(s):
        return np.unique(np.round(np.linspace(0, b - 1, s)).astype(np.int64))

    def total(s):
        return int(np.minimum(lengths[picks(s)], rows).sum())

    low, high = 1, b  # the most sequences whose pieces fit in ``rows``
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if total(mid) <= rows else (low, mid - 1)
    return [
        (int(offsets[i]), int(offsets[i]) + int(min(lengths[i], rows)))
        for i in picks(low)
    ]


def _initial_sample(estimator, X, lengths, offsets, rows: int):
    """The validated (reset=True) sample the initialisation draws from, and
    its lengths; two rows when every attribute is set and kept."""
    drawn = any(
        code in estimator.init_params or not estimator._has_attribute(name)
        for code, name in estimator._letters.items()
    )
    if drawn:
        pieces = _sample_pieces(lengths, offsets, rows)
    else:  # explicit starts: the data only give shapes and checks
        pieces = [(0, min(int(offsets[-1]), 2))]
    x = np.concatenate(
        [_chunk_sources.read_rows(X, start, stop) for start, stop in pieces]
    )
    x = estimator._validate_X(x, reset=True)
    return x, np.array([stop - start for start, stop in pieces], dtype=np.int64)


@functools.partial(jax.jit, static_argnames="model")
def _occupancy(model, params, data, lengths):
    """(K,) posterior occupancy of one padded chunk (padding has posterior 0)."""
    estep = _fitmod._e_step(model, params, data, None, lengths)
    return estep.posterior.marginals.sum(axis=(0, 1))


def fit(estimator, X, lengths, states):
    """Fit ``estimator`` (a ``BaseHMM``) by exact EM streamed in chunks."""
    estimator._check_options()
    _refuse(estimator)
    if not isinstance(X, np.ndarray):  # lists, DataFrames: already in memory
        X = estimator._validate_X(X, reset=True)
    if X.ndim != 2:
        raise ValueError(
            f"X: expected a 2-D array (n_samples, n_features), got shape {X.shape}"
        )
    lengths = lengths_or_y(lengths, X.shape[0])
    k = estimator.n_components
    labels = _labels.check_labels("states", states, X.shape[0], k)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = _streaming.chunk_rows(estimator)
    across, devices = _streaming._placement(getattr(estimator, "devices", None))
    span = _share(offsets) if across else None
    source = SequenceChunks(estimator, X, lengths, rows, span)
    sample, sample_lengths = _initial_sample(estimator, X, lengths, offsets, rows)
    infers = getattr(estimator, "_infers_symbols", None)
    if infers is not None and infers():  # CategoricalHMM: M = X.max() + 1
        estimator._n_features = source.largest_symbols()
    dtype = estimator._param_dtype(X)
    notice = _progress.compile_notice(estimator._name, estimator.verbose)
    with _base.precision_for(dtype), notice:
        model = estimator._model(X)
        data = estimator._to_data(to_padded(sample, sample_lengths))
        params0 = estimator._draw(model, X, data, sample_lengths, estimator.n_init)
        if labels is not None:  # as in memory: labelled means, evidence
            params0 = estimator._label_init(params0, X, labels, rows)
            source.labels = (labels, k, dtype)
        estimator._fit_dtype = dtype
        if estimator.n_iter == 0:
            return estimator._initialised_only(params0)
        # As hmmlearn's _init; it also lets later chunks be checked against
        # the starting attributes rather than those of an earlier fit.
        estimator._params_to_attributes(_base.take(params0, 0))
        plain = _model.with_log_prior(model, None)  # as in memory: see BaseHMM
        result = _fit_restarts(
            estimator, plain, params0, source, int(offsets[-1]), across, devices
        )
        estimator._params_to_attributes(result.params)
        estimator._set_monitor(result)
        params = estimator._attributes_to_params(dtype)
        occupancy = sum(
            np.asarray(_occupancy(plain, params, batch.data, batch.lengths))
            for batch in source()
        )
        if across:  # every process's sequences
            occupancy = _chunked_processes._gather(occupancy, None).sum(axis=0)
        estimator._set_unvisited(occupancy, int(offsets[-1]))
        estimator._after_fit()
    return estimator


def _share(offsets: np.ndarray) -> tuple[int, int]:
    """This process's rows under jax.distributed: the whole sequences between
    the sequence starts nearest to ``i * n / P`` and ``(i + 1) * n / P``."""
    i, p, n = jax.process_index(), jax.process_count(), int(offsets[-1])

    def cut(k):
        target = k * n / p
        j = int(np.argmin(np.abs(offsets - target)))
        return int(offsets[j])

    cuts = [cut(k) for k in range(p + 1)]
    if any(a >= b for a, b in zip(cuts[:-1], cuts[1:], strict=True)):
        # every process decides alike: the same X and lengths everywhere
        raise ValueError(
            f"lengths: {len(offsets) - 1} sequence(s) of these lengths cannot "
            f"be split between {p} processes (a process would stream none); "
            "fit in one process (devices=None)"
        )
    return cuts[i], cuts[i + 1]


def _fit_restarts(
    estimator, model, params0, source, n_steps: int, across=False, devices=None
):
    """The best of ``n_init`` streamed fits, run one after the other."""
    stacked = _streaming.fit_restarts(
        estimator,
        model,
        params0,
        source,
        int(estimator.n_iter),
        tol=estimator._fit_tol(n_steps),
        frozen=estimator._frozen(),
        validate=False,  # the source validates each chunk, as in memory
        across_processes=across,
        devices=devices,
    )
    return _base.take(stacked, _base.best_restart(stacked))
