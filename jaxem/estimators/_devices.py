"""The estimators' ``devices=`` option: one fit over several devices.

An estimator built with ``devices=`` (an int count, a list of devices or of
device ids, or ``"all"``) lays its (padded) data along the observation axis
(the sequence axis for the HMMs) over those devices with :func:`jaxem.shard`
before the compiled fit, so each device runs the E-step of its own rows and
only the summed statistics cross devices. Initialisation, restarts and every
fitted attribute are unchanged: the fit equals the single-device fit up to
the order of floating-point sums. ``None`` (the default) keeps the data on the
default device.

Under ``jax.distributed`` (several processes), every process fits with the
same arguments and the same (whole) X, so initialisation and validation agree
everywhere; each process then contributes only its own share of the padded
rows (sequences) to the global sharded array, so each process's devices run
the E-step on 1/P of the data. ``devices`` must then span every process
equally (``"all"``).

The data are padded to a size bucket (``jaxem._buckets``) rounded up to a
multiple of the device count, so, as on one device, fits on data of many
sizes share a few compiled programs.
"""

from __future__ import annotations

import copy
import math
from numbers import Integral
from typing import Any

import jax
import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .. import _buckets, _evidence, _shard

CONSTRAINT = [
    None,
    StrOptions({"all"}),
    Interval(Integral, 1, None, closed="left"),
    list,
    tuple,
]
"""``_parameter_constraints`` entry of ``devices``."""

DOC = """devices: None (default: the default device), ``"all"`` (every
            device of ``jax.devices()``), an int n (the first n of them), or a
            list of jax devices or of their ids: the fit shards the data along
            the observation (sequence) axis over them with ``jaxem.shard``;
            the fitted model is the same as on one device."""


class DevicesCloneMixin:
    """scikit-learn's ``clone`` for an estimator whose ``devices`` lists jax
    device objects.

    ``clone`` deep-copies every constructor argument, and a jax device cannot
    be copied (it names hardware, not state), so ``GridSearchCV`` or
    ``cross_val_score`` would fail on ``devices=[jax.devices()[0], ...]``. The
    clone gets a new list of the same device objects; every other argument is
    cloned by scikit-learn as usual.
    """

    def __sklearn_clone__(self):
        devices = getattr(self, "devices", None)
        if not isinstance(devices, list | tuple):
            return super().__sklearn_clone__()
        # A shallow copy with devices left out is cloned by scikit-learn; the
        # caller's estimator is not touched.
        stripped = copy.copy(self)
        stripped.devices = None
        new = super(DevicesCloneMixin, stripped).__sklearn_clone__()
        new.devices = type(devices)(devices)
        return new


def resolve(devices: Any) -> list[jax.Device] | None:
    """The devices ``devices`` names, or None for the default device."""
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, bool) or not isinstance(
        devices, str | Integral | list | tuple
    ):
        raise ValueError(
            'devices: expected None, "all", a count or a list of devices, got '
            f"{devices!r}"
        )
    if isinstance(devices, str):
        return available
    if isinstance(devices, Integral):
        if devices > len(available):
            raise ValueError(
                f"devices: asked for {devices} devices, but jax.devices() has "
                f"{len(available)}"
            )
        return available[: int(devices)]
    devices = list(devices)
    if not devices:
        raise ValueError("devices: expected at least one device, got an empty list")
    by_id = {d.id: d for d in available}
    out = []
    for d in devices:
        if isinstance(d, jax.Device):
            out.append(d)
        elif isinstance(d, Integral) and not isinstance(d, bool) and d in by_id:
            out.append(by_id[int(d)])
        else:
            raise ValueError(
                f"devices: {d!r} is neither a jax device nor the id of one of "
                f"jax.devices() (ids {sorted(by_id)})"
            )
    if len({d.id for d in out}) != len(out):
        raise ValueError("devices: a device is listed twice")
    return out


def _size(n: int, devices: list[jax.Device], minimum: int = 1) -> int:
    """A size bucket >= n, rounded up to a multiple of the device count."""
    count = len(devices)
    return math.ceil(_buckets.bucket(n, minimum) / count) * count


def check_spans_processes(devices: list[jax.Device]) -> None:
    """Refuse devices that do not span every process equally (several
    processes only: each process contributes an equal share)."""
    processes = jax.process_count()
    counts = np.bincount([d.process_index for d in devices], minlength=processes)
    if np.any(counts != counts[0]):
        raise ValueError(
            "devices: with several processes, give devices that span every "
            f'process equally ("all"); got {counts.tolist()} per process'
        )


def _own_share(size: int, devices: list[jax.Device]) -> slice:
    """This process's rows of ``size`` (all of them with one process)."""
    processes = jax.process_count()
    if processes == 1:
        return slice(None)
    check_spans_processes(devices)
    share = size // processes
    return slice(jax.process_index() * share, (jax.process_index() + 1) * share)


def shard_observations(
    data: Any, weights: Any, devices: list[jax.Device], evidence: Any = None
):
    """(N, ...) data and optional (N,) weights, padded and sharded over
    ``devices``: ``(data, weights, evidence)``, global arrays (weights always
    given; ``evidence``, the (N, K) ``latent_evidence`` of partial labels or
    None, padded with zeros and sharded like the data)."""
    n = jax.tree.leaves(data)[0].shape[0]
    size = _size(n, devices, minimum=1024)
    dtype = np.result_type(*[np.asarray(x).dtype for x in jax.tree.leaves(data)])
    dtype = dtype if np.issubdtype(dtype, np.floating) else np.float64
    w = None if weights is None else np.asarray(weights)
    padded = _buckets.pad_rows(jax.tree.map(np.asarray, data), size)
    weights = _buckets.pad_weights(w, n, size, dtype)
    mine = _own_share(size, devices)
    evidence = _evidence.pad(evidence, padded, 1)
    padded, weights = jax.tree.map(lambda a: a[mine], (padded, weights))
    s = _shard.shard(padded, weights=weights, devices=devices)
    return s.data, s.weights, _place(evidence, mine, devices)


def _place(evidence: Any, mine: slice, devices: list[jax.Device]) -> Any:
    """This process's share of padded ``latent_evidence``, sharded as the data."""
    return None if evidence is None else _shard.place(evidence[mine], devices)


def shard_sequences(
    data: Any, lengths: Any, devices: list[jax.Device], evidence: Any = None
):
    """(B, T, ...) sequences and (B,) lengths, padded to size buckets and
    sharded over ``devices`` along B: ``(data, lengths, evidence)``, global
    arrays (``evidence``, the (B, T, K) ``latent_evidence`` of partial state
    labels or None, padded with zeros and sharded like the data)."""
    data, lengths, _ = _buckets.pad_sequences(
        jax.tree.map(np.asarray, data), np.asarray(lengths)
    )
    b = jax.tree.leaves(data)[0].shape[0]
    size = _size(b, devices)
    lengths = np.concatenate([lengths, np.zeros(size - b, np.int32)])
    data = _buckets.pad_rows(data, size)
    mine = _own_share(size, devices)
    evidence = _evidence.pad(evidence, data, 2)
    data, lengths = jax.tree.map(lambda a: a[mine], (data, lengths))
    s = _shard.shard(data, lengths=lengths, devices=devices)
    return s.data, s.lengths, _place(evidence, mine, devices)
