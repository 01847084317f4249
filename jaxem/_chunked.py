"""Exact EM over data larger than memory: stream chunks through one compiled pass.

Expected sufficient statistics add across observations, so one EM iteration
over data held in C chunks is: for each chunk, the compiled E-step and
statistics at the current parameters; the sum of the chunks' statistics and
log-likelihoods on the device; the closed-form update of the summed statistics.
That is the same iteration as in-memory :func:`jaxem.fit`, so the iterates,
history, stopping rule and status are the same (up to the order of floating-point
sums). Every chunk is padded to a size bucket (``jaxem._buckets``), so chunks of
different sizes share the compiled pass; a background thread reads the next
chunk while the device works on the current one.

Under ``jax.distributed`` (``across_processes=True``) each process streams its
own chunks and, after every pass, the totals (statistics, log-likelihood,
number of observations) of every process are gathered and summed in the same
order everywhere, so every process applies the same update and reaches the
same iterates, history and status: one EM over the union of the processes'
data. Only the small totals cross the network, once per pass.
"""

from __future__ import annotations

import concurrent.futures
import functools
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import (
    _buckets,
    _chunked_processes,
    _compile_cache,
    _evidence,
    _fit,
    _mstep,
    _validation,
)
from . import constraints as _constraints
from ._chunk_sources import Batch, iterate_chunks
from ._model import LatentModel


def _prefetched(batches: Iterator[Batch], prepare: Callable) -> Iterator[Any]:
    """Yield ``jax.device_put(prepare(batch))`` while the next batch is read
    and prepared (host work: reading, checks, padding) in a thread.

    JAX's precision setting (``jax.enable_x64`` as a context) is per thread:
    the worker runs under the caller's, so a float64 chunk is not cut to
    float32 there.
    """
    x64 = bool(jax.config.jax_enable_x64)  # the caller's, context included

    def work(batch):
        with jax.enable_x64(x64):
            return prepare(batch)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for batch in batches:
            future = pool.submit(work, batch)
            if pending is not None:
                yield jax.device_put(pending.result())
            pending = future
        if pending is not None:
            yield jax.device_put(pending.result())


class _Totals(NamedTuple):
    stats: Any
    log_likelihood: jax.Array
    num_observations: jax.Array


def _chunk_totals(
    model, params, data, weights, lengths, mask, evidence=None
) -> _Totals:
    """E-step and statistics of one (padded) chunk."""
    estep = _fit._e_step(model, params, data, weights, lengths, mask, evidence)
    stats = _mstep.call_stats(
        model.m_step.stats, data, estep.posterior, weights, params
    )
    n = model.latent.num_observations(data, weights, lengths)
    return _Totals(stats, estep.log_likelihood, n.astype(estep.log_likelihood.dtype))


@functools.partial(jax.jit, static_argnames="model")
def _chunk_pass(model, params, data, weights, lengths, mask, totals, evidence=None):
    """Add one chunk's statistics and log-likelihood to the running totals."""
    chunk = _chunk_totals(model, params, data, weights, lengths, mask, evidence)
    return jax.tree.map(jnp.add, totals, chunk)


@functools.partial(jax.jit, static_argnames=("model", "frozen"))
def _update(model, params, stats, frozen):
    """The closed-form update, and whether every new parameter is finite."""
    update = _mstep._closed_form_update(model.m_step.update, stats, params, frozen)
    if isinstance(params, dict) and isinstance(update, dict):
        update = {k: v for k, v in update.items() if k not in frozen}
        update = {**params, **update}
    finite = jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(update)])
    )
    return update, finite


def _check_closed_form(model, params0, example):
    if model.m_step is None:
        raise ValueError(
            "model: fit_chunked needs a ClosedForm M-step (statistics that add "
            "across chunks); this model has none — fit it in memory with "
            "jaxem.fit, or declare a ClosedForm"
        )
    padded = _fit._pad(model, params0, example.data, example.weights, example.lengths)
    shapes = jax.eval_shape(
        lambda p: _mstep.call_stats(
            model.m_step.stats,
            padded.data,
            _fit._e_step(
                model, p, padded.data, padded.weights, padded.lengths
            ).posterior,
            padded.weights,
            p,
        ),
        params0,
    )
    update = jax.eval_shape(lambda p, s: model.m_step.update(s, p), params0, shapes)
    if isinstance(params0, dict):
        missing = sorted(set(params0) - set(update))
        if missing:
            raise ValueError(
                f"model: fit_chunked needs a ClosedForm update that returns every "
                f"parameter; ClosedForm.update leaves out {missing}"
            )


def _check_chunk(batch: Batch, first: Batch, model=None) -> None:
    """Host-side checks of one chunk: finite values, the first chunk's shapes
    after the model's leading axes (rows; sequences and steps for chains,
    whose chunks may be padded to different lengths), and its evidence."""
    batch_axes = 1 if model is None else model.latent.num_batch_axes
    if (batch.evidence is None) != (first.evidence is None):
        raise ValueError(
            "chunks: every chunk or none must give evidence (Batch.evidence)"
        )
    if batch.evidence is not None:
        if model is None:
            raise ValueError("chunks: Batch.evidence is for fit_chunked")
        _evidence.check(model, batch.evidence, batch.data)
    for name, tree in (("chunks", batch.data), ("weights", batch.weights)):
        for leaf in jax.tree.leaves(tree):
            _validation.check_finite(name, leaf)
    if batch.weights is not None and np.any(np.asarray(batch.weights) < 0):
        raise ValueError("weights: a chunk has negative weights")
    shapes = [np.shape(x)[batch_axes:] for x in jax.tree.leaves(batch.data)]
    expected = [np.shape(x)[batch_axes:] for x in jax.tree.leaves(first.data)]
    if shapes != expected:
        raise ValueError(
            f"chunks: a chunk's trailing shapes {shapes} differ from the first "
            f"chunk's {expected}"
        )


def _spread(arrays, devices):
    """Padded chunk ``arrays`` ``(data, weights, lengths, mask, evidence)`` laid along
    their leading (row or sequence) axis over ``devices``.

    The axis is padded to a multiple of the device count (rarely needed: size
    buckets are powers of two up to 4096) with rows of weight 0 outside the
    mask, or sequences of length 0, which change nothing.
    """
    data, weights, lengths, mask, evidence = arrays
    m = jax.tree.leaves(data)[0].shape[0]
    size = -(-m // len(devices)) * len(devices)
    if size != m:
        data = _buckets.pad_rows(data, size)
        extra = size - m
        if evidence is not None:  # free latents
            evidence = np.pad(evidence, [(0, extra)] + [(0, 0)] * (evidence.ndim - 1))
        if weights is not None:
            weights = np.concatenate([weights, np.zeros(extra, weights.dtype)])
        if lengths is not None:
            lengths = np.concatenate([lengths, np.zeros(extra, lengths.dtype)])
        if mask is not None:
            mask = np.concatenate([mask, np.zeros(extra, bool)])
    arrays = (data, weights, lengths, mask, evidence)
    return jax.device_put(arrays, _sharding(devices, True))


def _sharding(devices, split: bool) -> NamedSharding:
    """Split along the leading axis over ``devices`` or, not ``split``,
    replicated on each."""
    spec = PartitionSpec("data") if split else PartitionSpec()
    return NamedSharding(Mesh(np.array(devices), ("data",)), spec)


def _pass(model, params, source, chunk_rows, first, zeros, devices=None, fixed=None):
    """One pass over the chunks: the summed statistics and log-likelihood.

    ``first`` (the first chunk) turns on the host-side checks of every chunk;
    ``zeros`` are the totals before the first chunk (:func:`_zero_totals`,
    the same for every pass); ``devices`` (several of this process's
    devices) spreads every chunk over them; ``fixed`` (a dict kept across the
    passes of a fit) holds the padding weights and mask of unweighted rows on
    the device, by size.
    """

    axes = model.latent.num_batch_axes

    def prepare(batch: Batch):
        if first is not None:
            _check_chunk(batch, first, model)
        padded = _fit._pad(model, params, batch.data, batch.weights, batch.lengths)
        evidence = batch.evidence
        if evidence is not None:  # as the data: zeros (free) on padding
            evidence = _evidence.pad(np.asarray(evidence), padded.data, axes)
        arrays = (padded.data, padded.weights, padded.lengths, padded.mask, evidence)
        if devices is not None:
            return _spread(arrays, devices)
        if fixed is not None and batch.weights is None and padded.mask is not None:
            # Unweighted rows: the weights (1, then 0) and the mask depend on
            # the sizes only. Every full chunk shares one copy on the device
            # (converting them anew cost 5% of a pass at 32,768-row chunks).
            key = (padded.mask.shape[0], padded.num_rows, padded.weights.dtype)
            if key not in fixed:
                fixed[key] = jax.device_put((padded.weights, padded.mask))
            weights, mask = fixed[key]
            return padded.data, weights, padded.lengths, mask, evidence
        return arrays

    totals, count = zeros, 0
    for data, weights, lengths, mask, evidence in _prefetched(
        iterate_chunks(source, chunk_rows), prepare
    ):
        previous = totals
        totals = _chunk_pass(
            model, params, data, weights, lengths, mask, totals, evidence
        )
        # Back-pressure: dispatch is asynchronous, so without a wait the host
        # would read and queue every chunk on the device long before the
        # device got to it. Waiting for the previous chunk keeps two in flight.
        jax.block_until_ready(previous)
        count += 1
    if count == 0:
        raise ValueError("chunks: the source yielded no chunk")
    return totals


def fit_chunked(
    model: LatentModel,
    params0: Any,
    chunks: Any,
    *,
    chunk_rows: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    frozen: tuple[str, ...] = (),
    callback: Callable[[int, float], None] | None = None,
    validate: bool = True,
    across_processes: bool = False,
    devices: Sequence[jax.Device] | None = None,
) -> _fit.FitResult:
    """Exact EM over data streamed in chunks (larger than memory).

    Each iteration streams every chunk through the compiled E-step and
    statistics, sums them on the device, and applies the model's closed-form
    update: the same iterates as in-memory :func:`jaxem.fit` on the
    concatenated data, with the same ``FitResult`` (history, stopping rule,
    status). Only one or two chunks are in memory at a time; the next chunk is
    read while the current one is computed.

    Args:
        model: a ``LatentModel`` with a ``ClosedForm`` whose ``update`` returns
            every parameter.
        params0: initial parameters.
        chunks: a re-iterable chunk source: an array or ``numpy.memmap`` (or a
            ``.npy`` path, read with plain reads) cut into ``chunk_rows``
            rows; a list of chunks (arrays, ``.npy`` paths or :class:`Batch`
            with weights, lengths and evidence: partial labels as
            ``jaxem.fit``'s ``latent_evidence``, every chunk or none); or a
            function returning a fresh iterable of chunks on each call (e.g. a
            generator function reading files).
        chunk_rows: rows per chunk when ``chunks`` is one array or path.
        max_iter: maximum number of iterations, as for :func:`jaxem.fit`.
        tol: the stopping rule's tolerance, as for :func:`jaxem.fit`.
        frozen: top-level keys of a dict ``params0`` held fixed.
        callback: optional host function ``callback(iteration, log_likelihood)``
            called after each pass.
        validate: check each chunk on the host (finite values, shapes) before
            it is sent to the device; ``False`` skips that per-chunk pass over
            the data (a non-finite value then ends the fit as ``NONFINITE``).
        across_processes: under ``jax.distributed`` with several processes,
            ``True`` fits the union of every process's chunks: each process
            calls ``fit_chunked`` with the same model and ``params0`` and its
            own ``chunks``, and after every pass the totals (statistics,
            log-likelihood, number of observations) are summed over the
            processes, so every process gets the same iterates and the same
            ``FitResult`` (the log-prior is added once, to the sum). A bad
            chunk, or different ``params0``, in any process ends the fit with a
            ``ValueError`` in every process. With one process it changes
            nothing.
        devices: None (the default device), or several of this process's
            jax devices: every chunk is split along its rows (sequences) over
            them, so each device runs the E-step of its share of the chunk and
            only the chunk's statistics are summed across them (the same fit,
            up to the order of floating-point sums). With
            ``across_processes``, each process gives its own devices.

    Returns:
        A :class:`FitResult` (host-side values, ``history`` of shape
        (max_iter,)).

    Raises:
        ValueError: bad arguments, a model without a full closed form, a bad
            chunk, or an empty source (with ``across_processes``: in any
            process).

    Examples:
        >>> import numpy as np, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params0 = {"weights": np.array([0.5, 0.5]), "p": np.array([0.6, 0.5])}
        >>> heads = np.array([5.0, 9.0, 8.0, 4.0, 7.0])
        >>> streamed = jaxem.fit_chunked(model, params0, heads, chunk_rows=2,
        ...                              max_iter=10, tol=0.0)
        >>> in_memory = jaxem.fit(model, params0, heads, max_iter=10, tol=0.0)
        >>> np.allclose(streamed.params["p"], in_memory.params["p"], rtol=1e-6)
        True
    """
    if not isinstance(model, LatentModel):
        raise ValueError(f"model: expected a jaxem.LatentModel, got {model!r}")
    max_iter = _fit.check_max_iter(max_iter)
    _compile_cache.enable()  # as jaxem.fit: a second process starts warm
    if chunk_rows is not None and (
        isinstance(chunk_rows, bool)
        or not isinstance(chunk_rows, numbers.Integral)
        or chunk_rows < 1
    ):
        raise ValueError(f"chunk_rows: expected a positive int, got {chunk_rows!r}")
    if (
        isinstance(tol, bool)
        or not isinstance(tol, numbers.Real)
        or not (0 <= tol < float("inf"))
    ):
        raise ValueError(f"tol: expected a finite non-negative number, got {tol!r}")
    if not isinstance(across_processes, bool):
        raise ValueError(
            f"across_processes: expected True or False, got {across_processes!r}"
        )
    frozen = tuple(frozen)
    if frozen and not (isinstance(params0, dict) and set(frozen) <= set(params0)):
        raise ValueError(f"frozen: {list(frozen)} must be keys of a dict params0")
    _constraints.check_params(model.constraints, params0, "params0")
    devices = _check_devices(devices)
    # device_put: jnp.asarray would compile per leaf; with devices, the
    # parameters are replicated on each of them
    params = jax.device_put(
        params0, None if devices is None else _sharding(devices, False)
    )

    fixed: dict = {}

    def start():
        first = _first_chunk(model, params, chunks, chunk_rows)
        return first, _zero_totals(model, params, first)

    def run_pass(p, first):
        return _pass(model, p, chunks, chunk_rows, first, zeros, devices, fixed)

    if across_processes and jax.process_count() > 1:
        first, zeros, run_pass = _chunked_processes.across(params, start, run_pass)
    else:
        first, zeros = start()
    checks = first if validate else None
    return _loop(model, params, run_pass, max_iter, tol, frozen, callback, checks)


def _check_devices(devices) -> list[jax.Device] | None:
    """``devices`` as a list of distinct devices of this process, or None."""
    if devices is None:
        return None
    if isinstance(devices, jax.Device) or not isinstance(devices, list | tuple):
        raise ValueError(
            f"devices: expected None or a list of jax devices, got {devices!r}"
        )
    devices = list(devices)
    mine = jax.process_index()
    if not devices or not all(
        isinstance(d, jax.Device) and d.process_index == mine for d in devices
    ):
        raise ValueError(
            "devices: expected a non-empty list of this process's jax devices "
            f"(jax.local_devices()), got {devices!r}"
        )
    if len(set(devices)) != len(devices):
        raise ValueError("devices: a device is listed twice")
    return devices


def _first_chunk(model, params, chunks, chunk_rows) -> Batch:
    """The source's first chunk, after the checks that need one."""
    first = next(iterate_chunks(chunks, chunk_rows), None)
    if first is None:
        raise ValueError("chunks: the source yielded no chunk")
    _check_closed_form(model, params, first)
    model.latent.validate(model, first.data, first.weights, first.lengths)
    _evidence.check(model, first.evidence, first.data)
    return first


def _zero_totals(model, params, first: Batch) -> _Totals:
    """Zero totals of the shapes and dtypes a pass returns."""
    padded = _fit._pad(model, params, first.data, first.weights, first.lengths)
    # traced once per fit (a pass's totals do not depend on the chunk's size,
    # nor on its evidence): tracing the E-step costs ~7 ms
    shapes = jax.eval_shape(
        functools.partial(_chunk_totals, model),
        params,
        padded.data,
        padded.weights,
        padded.lengths,
        padded.mask,
    )
    # host zeros: jnp.zeros would compile a program per leaf
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@functools.partial(jax.jit, static_argnames="model")
def _log_prior(model, params):
    return jnp.asarray(model.log_prior(params))


def _objective(model, params, totals) -> float:
    """The pass's log-likelihood, plus the log-prior once (not per chunk, nor
    per process: ``totals`` are already summed over them)."""
    ll = float(totals.log_likelihood)
    return ll if model.log_prior is None else ll + float(_log_prior(model, params))


def _loop(model, params, run_pass, max_iter, tol, frozen, callback, checks):
    totals = run_pass(params, checks)
    ll = _objective(model, params, totals)
    n = float(totals.num_observations)
    dtype = np.asarray(totals.log_likelihood).dtype
    history = np.full((max_iter,), np.nan, dtype)
    status = _fit.Status.MAX_ITER if np.isfinite(ll) else _fit.Status.NONFINITE
    converged, iteration, previous = False, 0, np.nan
    while iteration < max_iter and status != _fit.Status.NONFINITE and not converged:
        if callback is not None:
            callback(iteration, ll)
        # fit's stopping rule (has_converged) in the fit's precision, on the
        # host: jnp on Python floats would compile small programs.
        converged = iteration > 0 and bool(
            np.abs(dtype.type(ll) - dtype.type(previous))
            < dtype.type(tol) * dtype.type(n)
        )
        new, finite = _update(model, params, totals.stats, frozen)
        new_totals = run_pass(new, None)
        new_ll = _objective(model, new, new_totals)
        history[iteration] = ll
        iteration += 1
        if not (np.isfinite(new_ll) and bool(finite)):
            status, converged = _fit.Status.NONFINITE, False
            break
        previous, params, totals, ll = ll, new, new_totals, new_ll
        if converged:
            status = _fit.Status.CONVERGED
    prior = None
    if model.log_prior is not None:
        prior = np.asarray(_log_prior(model, params), dtype)
    # device_put of host values: jnp.asarray would compile a program apiece
    result = _fit.FitResult(
        params=params,
        log_likelihood=np.asarray(totals.log_likelihood, dtype),
        history=history,
        n_iter=np.asarray(iteration, np.int32),
        converged=np.asarray(converged),
        status=np.asarray(int(status), np.int32),
        log_prior=prior,
    )
    return jax.device_put(result)
