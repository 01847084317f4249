"""Host-side validation at the API boundary: ``ValueError`` before any tracing."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*trees: Any) -> bool:
    """True when every leaf of ``trees`` can be read on this host: no tracer, and
    no global array with shards on other processes (``jax.distributed``)."""
    return not any(
        isinstance(leaf, jax.core.Tracer)
        or (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable)
        for leaf in jax.tree.leaves(trees)
    )


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
    if isinstance(data, list) and np.ndim(leaves[0][1]) < num_batch_axes:
        raise ValueError(
            f"{name}: got a Python list, which JAX reads as a pytree of "
            f"{len(leaves)} separate values; pass an array (np.asarray({name}))"
        )
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
    if w.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numbers, got {weights!r:.60}")
    if w.ndim != 1 or w.shape[0] != expected_len:
        raise ValueError(f"{name}: expected shape ({expected_len},), got {w.shape}")
    check_finite(name, w)
    if np.any(w < 0):
        raise ValueError(f"{name}: must be non-negative, got min {w.min()}")
    if not np.any(w > 0):
        raise ValueError(f"{name}: all weights are zero")


def check_int(name: str, value: Any, low: int = 1, high: int = 2**31 - 1) -> int:
    """``value`` as an int in [low, high] (bools refused), else a ``ValueError``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not low <= value <= high
    ):
        wanted = (
            f"a positive int (at most {high})"
            if low == 1
            else f"an int in [{low}, {high}]"
        )
        raise ValueError(f"{name}: expected {wanted}, got {value!r:.60}")
    return int(value)


def check_tolerance(name: str, value: Any) -> float:
    """A finite non-negative real number (a Python or numpy scalar, or 0-d array)."""
    arr = np.asarray(value) if not isinstance(value, (str, bytes, bool)) else None
    if arr is None or arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{name}: expected a finite non-negative number, got {value!r:.60}"
        )
    number = float(arr)
    if not (number >= 0 and number != float("inf")):
        raise ValueError(
            f"{name}: expected a finite non-negative number, got {value!r:.60}"
        )
    return number


def check_callable(name: str, value: Any) -> None:
    """``value`` must be None or callable."""
    if value is not None and not callable(value):
        raise ValueError(f"{name}: expected a function or None, got {value!r:.60}")


def check_optimizer(name: str, value: Any) -> None:
    """``value`` must be None or an optax ``GradientTransformation``."""
    if value is None:
        return
    if not (
        callable(getattr(value, "init", None))
        and callable(getattr(value, "update", None))
    ):
        raise ValueError(
            f"{name}: expected an optax GradientTransformation (e.g. optax.lbfgs()) "
            f"or None, got {value!r:.60}"
        )


def check_frozen(frozen: Any, params: Any, name: str = "params0") -> tuple[str, ...]:
    """``frozen`` as a tuple of top-level keys of the dict ``params`` (``name``)."""
    if isinstance(frozen, (str, bytes)) or not isinstance(frozen, (tuple, list, set)):
        raise ValueError(
            f'frozen: expected a tuple of parameter names, e.g. ("weights",), got '
            f"{frozen!r:.60}"
        )
    frozen = tuple(frozen)
    if not frozen:
        return frozen
    if not isinstance(params, dict):
        raise ValueError(f"frozen: needs {name} to be a dict of parameters")
    unknown = [k for k in frozen if k not in params]
    if unknown:
        raise ValueError(f"frozen: {unknown} are not keys of {name}")
    return frozen


def check_params_finite(name: str, params: Any) -> None:
    """Every leaf of ``params`` is a finite numeric array (names the first bad one)."""
    leaves = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_none)[0]
    if not leaves:
        raise ValueError(f"{name}: expected a pytree of arrays, got {params!r:.60}")
    for path, leaf in leaves:
        where = name + jax.tree_util.keystr(path)
        if leaf is None:
            raise ValueError(f"{where}: expected an array, got None")
        try:
            arr = np.asarray(leaf)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: expected an array, got {leaf!r:.60}") from err
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{where}: expected numbers, got {leaf!r:.60}")
        check_finite(where, arr)


def _is_none(x) -> bool:
    return x is None


def float_dtype(*trees: Any) -> Any:
    """The floating dtype of the float leaves of ``trees`` (JAX's default if none)."""
    floats = [
        jnp.result_type(leaf)
        for leaf in jax.tree.leaves(trees)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
    ]
    dtype = jnp.result_type(*floats) if floats else float
    return jax.dtypes.canonicalize_dtype(dtype)


def as_float_params(params: Any, data: Any, frozen: tuple[str, ...] = ()) -> Any:
    """``params`` as arrays, integer and bool leaves cast to a floating dtype.

    EM moves every parameter continuously, so an integer leaf
    (``{"rate": jnp.array([1, 3])}``) is read as the float it stands for: the
    floating dtype of ``data``, else that of ``params``' float leaves, else JAX's
    default float dtype. Leaves under a ``frozen`` key keep their dtype.
    """
    has_float = any(
        jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        for leaf in jax.tree.leaves(data)
    )
    dtype = float_dtype(data) if has_float else float_dtype(params)

    def cast(leaf):
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.integer) or leaf.dtype == jnp.bool_:
            return leaf.astype(dtype)
        return leaf

    if isinstance(params, dict) and frozen:
        return {
            k: jax.tree.map(jnp.asarray if k in frozen else cast, v)
            for k, v in params.items()
        }
    return jax.tree.map(cast, params)
