"""Data sharded over devices: the E-step runs where the data live.

A fit's per-iteration work is per observation (per sequence for chains): the
E-step and the expected sufficient statistics. With the data sharded along
that axis of a one-axis device mesh, ``jax.jit`` (GSPMD) runs each device's
share of the E-step on its own rows and only the small summed statistics and
the log-likelihood cross devices (an all-reduce). ``shard`` lays the data out
that way, padding the observation axis to a multiple of the device count with
rows of weight 0 (sequences of length 0), which change nothing.

The same call covers several processes (``jax.distributed``): each process
passes its own rows, and the global array spans every process's devices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import _buckets, _validation

AXIS = "data"
"""The name of the mesh axis the observations are sharded along."""


class Sharded(NamedTuple):
    """Data laid out over devices by :func:`shard`; pass the fields to ``fit``.

    Attributes:
        data: the data pytree, each leaf a global ``jax.Array`` sharded along
            its leading (observation or sequence) axis.
        weights: (M,) weights sharded the same way (the given weights, or 1,
            then 0 for the padding), or None when no padding was needed and
            none were given.
        lengths: (M,) sequence lengths (chains), or None.
    """

    data: Any
    weights: Any
    lengths: Any


def mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"data"`` over ``devices`` (default: all devices,
    of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices: expected at least one device")
    return Mesh(np.array(devices), (AXIS,))


def _check_rows(data, weights, lengths) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("data: expected an array or a pytree of arrays")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            "data: every leaf needs the same leading (observation) axis, got "
            f"shapes {[np.shape(x) for x in leaves]}"
        )
    (n,) = sizes
    for name, value in (("weights", weights), ("lengths", lengths)):
        if value is not None and np.shape(value) != (n,):
            raise ValueError(f"{name}: expected shape ({n},), got {np.shape(value)}")
    return n


def shard(
    data: Any,
    *,
    weights: Any = None,
    lengths: Any = None,
    devices: Sequence[jax.Device] | None = None,
) -> Sharded:
    """Shard ``data`` along its observation (or sequence) axis over devices.

    Args:
        data: (N, ...) observations, or (B, T, ...) sequences (then give
            ``lengths``), as numpy or JAX arrays or a pytree of them; in a
            multi-process run (``jax.distributed``), this process's rows.
        weights: optional (N,) (or (B,)) non-negative weights.
        lengths: (B,) sequence lengths for ``MarkovChain`` data.
        devices: the devices to use (default ``jax.devices()``: every device
            of every process).

    Returns:
        A :class:`Sharded` ``(data, weights, lengths)``: the leading axis is
        padded to a multiple of the device count (of the local device count,
        per process) with weight-0 rows or length-0 sequences, and every leaf
        is a global array split along it. Fit with
        ``jaxem.fit(model, params0, s.data, weights=s.weights, lengths=s.lengths)``.

    Examples:
        >>> import numpy as np, jaxem
        >>> s = jaxem.shard(np.arange(10.0))
        >>> s.data.shape[0] % len(s.data.sharding.device_set)
        0
    """
    n = _check_rows(data, weights, lengths)
    for leaf in jax.tree.leaves(data):
        if _validation.is_concrete(leaf):
            _validation.check_finite("data", np.asarray(leaf))
    the_mesh = mesh(devices)
    local = [d for d in the_mesh.devices.flat if d.process_index == jax.process_index()]
    per_process = len(local)
    rows = n
    if jax.process_count() > 1:
        # Every process holds an equal share of the global array: pad each to
        # the largest share.
        rows = int(np.max(multihost_utils.process_allgather(np.array(n))))
    size = math.ceil(max(rows, 1) / per_process) * per_process
    if lengths is not None:
        lengths = np.concatenate(
            [np.asarray(lengths, np.int32), np.zeros(size - n, np.int32)]
        )
        if weights is not None:
            weights = _buckets.pad_weights(np.asarray(weights), n, size, None)
    elif size != n or weights is not None or jax.process_count() > 1:
        # Every process must build the same program: with several processes
        # there are always weights (some process may pad, another not).
        dtype = np.result_type(*[np.asarray(x).dtype for x in jax.tree.leaves(data)])
        dtype = dtype if np.issubdtype(dtype, np.floating) else np.float64
        w = None if weights is None else np.asarray(weights)
        weights = _buckets.pad_weights(w, n, size, dtype)
    data = _buckets.pad_rows(jax.tree.map(np.asarray, data), size)
    sharding = NamedSharding(the_mesh, PartitionSpec(AXIS))

    def put(x):
        return None if x is None else _put(np.asarray(x), sharding)

    return Sharded(jax.tree.map(put, data), put(weights), put(lengths))


def _put(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """This process's rows ``x`` as its part of a global array split along
    the leading axis (every process holds an equal share)."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)


def place(x: Any, devices: Sequence[jax.Device] | None = None) -> jax.Array:
    """Lay ``x`` (this process's rows, already padded to a multiple of its
    local device count) along the leading axis of ``devices``, as
    :func:`shard` lays out data, with no checks or padding: for arrays that
    go with sharded data but may hold infinities (``latent_evidence``)."""
    return _put(np.asarray(x), NamedSharding(mesh(devices), PartitionSpec(AXIS)))
