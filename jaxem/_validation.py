"""Host-side validation at the API boundary: ``ValueError`` before any tracing."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def is_concrete(*trees: Any) -> bool:
    """True when no leaf of ``trees`` is a tracer (so values can be inspected)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def check_finite(name: str, value: Any) -> None:
    """Raise if ``value`` has NaN or infinite entries, naming the first one."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}: contains {int(bad.sum())} NaN or infinite value(s), the "
            f"first at index {index}"
        )


def check_data_leaves(name: str, data: Any, num_batch_axes: int) -> tuple[int, ...]:
    """Check every leaf of ``data`` is finite and shares the leading batch axes."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(data)
    if not leaves:
        raise ValueError(f"{name}: is empty (no arrays)")
    lead = None
    for path, leaf in leaves:
        where = name + jax.tree_util.keystr(path)
        arr = np.asarray(leaf)
        if arr.ndim < num_batch_axes:
            raise ValueError(
                f"{where}: expected at least {num_batch_axes} leading axes, got an "
                f"array of shape {arr.shape}"
            )
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{where}: expected numbers, got dtype {arr.dtype}")
        check_finite(where, arr)
        shape = arr.shape[:num_batch_axes]
        if lead is None:
            lead = shape
        elif shape != lead:
            raise ValueError(
                f"{where}: leading axes {shape} differ from {lead} of other leaves"
            )
    return lead


def check_event_shape(name: str, data: Any, num_batch_axes: int, event_shape) -> None:
    """Raise when ``data``'s trailing shape differs from the model's event shape."""
    if event_shape is None or not isinstance(data, (np.ndarray, jax.Array)):
        return
    arr_shape = np.shape(data)
    expected_rank = num_batch_axes + len(event_shape)
    if len(arr_shape) != expected_rank:
        raise ValueError(
            f"{name}: expected an array of rank {expected_rank} with trailing shape "
            f"{tuple(event_shape)}, got shape {arr_shape}"
        )
    if tuple(arr_shape[num_batch_axes:]) != tuple(event_shape):
        raise ValueError(
            f"{name}: expected trailing shape {tuple(event_shape)} (features), got "
            f"{tuple(arr_shape[num_batch_axes:])}"
        )


def check_integers(name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` as int64, if its values are whole numbers (ints or integral floats)."""
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind != "f" or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name}: expected integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def check_weights(name: str, weights: Any, expected_len: int) -> None:
    """Non-negative, finite, not all zero, one per observation/sequence."""
    if weights is None:
        return
    w = np.asarray(weights)
    if w.ndim != 1 or w.shape[0] != expected_len:
        raise ValueError(f"{name}: expected shape ({expected_len},), got {w.shape}")
    check_finite(name, w)
    if np.any(w < 0):
        raise ValueError(f"{name}: must be non-negative, got min {w.min()}")
    if not np.any(w > 0):
        raise ValueError(f"{name}: all weights are zero")
