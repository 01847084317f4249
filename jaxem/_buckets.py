"""Size buckets: pad data so one compiled program serves many data sizes.

XLA compiles a program per input shape. Rounding the number of rows (or of
sequences, or the sequence length) up to one of a small set of sizes, and
padding the data to it, lets a fit on 120 rows reuse the program compiled for
150. Padding is exact, never an approximation:

- observations (a ``Categorical`` latent): padded rows are copies of a real row
  (so every log-density stays finite) with weight 0, and the fit zeroes their
  posterior, so they add nothing to the log-likelihood nor to the statistics;
- sequences (a ``MarkovChain`` latent): extra sequences have length 0 and extra
  steps lie past every sequence's length; the forward-backward recursions pass
  through them unchanged and give them posterior 0.

The sizes: powers of two up to 4096 (small data: a compile costs seconds, an
iteration microseconds, so padding up to 2x costs nothing that shows), then 4
per octave up to 65536 (less than 25% padding), then 16 per octave (less than
6.25%, where run time matters more than a compile). A size range 1..10**6 has
about 90 buckets.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_POWERS_UP_TO = 4096
_COARSE_STEPS = 4
_FINE_STEPS = 16
_FINE_FROM = 65536
MIN_SEQUENCES = 4
"""Smallest padded number of short sequences (:func:`sequence_minimum`)."""
MIN_SEQUENCES_STEPS = 4 * 4096
"""Most steps (sequences times padded length) padded up to ``MIN_SEQUENCES``."""
MIN_ROWS = 1024
"""Smallest padded number of observations: every mixture data set up to 1024
rows shares one program (an iteration over 1024 rows takes microseconds)."""


def bucket(n: int, minimum: int = 1) -> int:
    """The smallest bucket size >= ``max(n, minimum)``.

    Args:
        n: a size (rows, sequences, steps, iterations), >= 0.
        minimum: sizes below it round up to it (a floor that saves compiles
            where padding costs nothing, e.g. 16 rows).

    Returns:
        An int ``b >= n``: ``b < 2 n`` up to 4096, ``b < 1.25 n`` above, and
        ``b < 1.0625 n`` above 65536 (for ``n > minimum``).

    Examples:
        >>> from jaxem._buckets import bucket
        >>> [bucket(n) for n in (1, 3, 100, 150, 1000, 5000, 100_000)]
        [1, 4, 128, 256, 1024, 5120, 102400]
        >>> bucket(3, minimum=16)
        16
    """
    n = max(int(n), int(minimum), 1)
    if n <= _POWERS_UP_TO:
        return 1 << (n - 1).bit_length()
    octave = n.bit_length() - 1  # 2**octave <= n < 2**(octave + 1)
    steps = _FINE_STEPS if n >= _FINE_FROM else _COARSE_STEPS
    step = max(1, (1 << octave) // steps)
    return -(-n // step) * step


def can_pad(*trees: Any) -> bool:
    """True when ``trees`` are concrete and no array is sharded over devices.

    Traced data keep their shapes (the caller's ``jit`` decides); sharded data
    keep their layout (padding would re-shard them).
    """
    leaves = jax.tree.leaves(trees)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return False
    return not any(
        isinstance(x, jax.Array) and len(x.sharding.device_set) > 1 for x in leaves
    )


def _pad_axis(leaf: Any, size: int, axis: int, source: Any) -> Any:
    """Pad ``leaf`` along ``axis`` to ``size`` with copies of ``source``.

    ``source`` is a slice of ``leaf`` of length 1 along ``axis``. numpy input
    stays numpy (no device work, nothing to compile); JAX arrays stay on their
    device.
    """
    extra = size - leaf.shape[axis]
    if extra == 0:
        return leaf
    if extra < 0:
        raise ValueError(f"cannot pad an axis of length {leaf.shape[axis]} to {size}")
    shape = leaf.shape[:axis] + (extra,) + leaf.shape[axis + 1 :]
    xp = jnp if isinstance(leaf, jax.Array) else np
    return xp.concatenate([leaf, xp.broadcast_to(source, shape)], axis=axis)


def _on_cpu(x: Any) -> bool:
    """A concrete JAX array on CPU devices only."""
    return (
        isinstance(x, jax.Array)
        and not isinstance(x, jax.core.Tracer)
        and all(d.platform == "cpu" for d in x.devices())
    )


def _as_array(leaf: Any) -> Any:
    """A numpy array, or a JAX array off the CPU (kept on its device).

    Padding a CPU array in numpy costs a copy and compiles nothing; each
    eager ``jnp`` operation would compile a small program per shape.
    """
    if isinstance(leaf, np.ndarray) or (
        isinstance(leaf, jax.Array) and not _on_cpu(leaf)
    ):
        return leaf
    return np.asarray(leaf)


def pad_rows(data: Any, size: int) -> Any:
    """Pad every leaf of ``data`` along axis 0 to ``size`` with copies of row 0.

    Examples:
        >>> import numpy as np
        >>> from jaxem._buckets import pad_rows
        >>> pad_rows(np.array([[1.0, 2.0], [3.0, 4.0]]), 3).tolist()
        [[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]]
    """

    def pad(leaf):
        leaf = _as_array(leaf)
        return _pad_axis(leaf, size, 0, leaf[:1])

    return jax.tree.map(pad, data)


def pad_weights(weights: Any, num_rows: int, size: int, dtype: Any) -> Any:
    """(size,) weights: the given ones (or 1 for each real row), then zeros.

    Examples:
        >>> import numpy as np
        >>> from jaxem._buckets import pad_weights
        >>> pad_weights(None, 2, 4, np.float64).tolist()
        [1.0, 1.0, 0.0, 0.0]
    """
    if weights is None:
        out = np.zeros((size,), dtype)
        out[:num_rows] = 1
        return out
    weights = _as_array(weights)
    xp = jnp if isinstance(weights, jax.Array) else np
    zeros = xp.zeros((size - num_rows,), weights.dtype)
    return xp.concatenate([weights, zeros])


def pad_observations(data: Any, weights: Any, dtype: Any, minimum: int = MIN_ROWS):
    """Pad N observations to ``bucket(N)`` rows of zero weight.

    Args:
        data: pytree of (N, ...) arrays.
        weights: None or (N,) non-negative weights.
        dtype: float dtype of the weights made when ``weights`` is None (that
            of the log-likelihood, so the dtype follows the input).
        minimum: smallest padded size: every data set up to 1024 rows shares
            one program (an iteration over 1024 rows takes microseconds).

    Returns:
        ``(data, weights, mask)``: (M, ...) data, (M,) weights and a (M,) bool
        mask of the real rows, with ``M = bucket(N, minimum)``.

    Examples:
        >>> import numpy as np
        >>> from jaxem._buckets import pad_observations
        >>> data, w, mask = pad_observations(np.ones((5, 2)), None, np.float64)
        >>> data.shape, float(w.sum()), int(mask.sum())
        ((1024, 2), 5.0, 5)
    """
    n = jax.tree.leaves(data)[0].shape[0]
    size = bucket(n, minimum)
    mask = np.arange(size) < n
    return pad_rows(data, size), pad_weights(weights, n, size, dtype), mask


def pad_sequences(
    data: Any,
    lengths: Any,
    weights: Any = None,
    minimum_steps: int = 16,
    minimum_sequences: int = 1,
):
    """Pad B sequences of T steps to ``bucket(B)`` sequences of ``bucket(T)`` steps.

    Extra sequences are copies of sequence 0 with length 0 (and weight 0, if
    weights are given); extra steps are copies of each sequence's first step.

    Args:
        data: pytree of (B, T, ...) arrays.
        lengths: None (every sequence has T steps) or (B,) ints in [1, T].
        weights: None or (B,) per-sequence weights.
        minimum_steps: smallest padded length.
        minimum_sequences: smallest padded number of sequences (see
            :func:`sequence_minimum`).

    Returns:
        ``(data, lengths, weights)`` with (B', T', ...) data, (B',) int32
        lengths (always given) and (B',) weights (None if given None).

    Examples:
        >>> import numpy as np
        >>> from jaxem._buckets import pad_sequences
        >>> data, lengths, _ = pad_sequences(np.ones((4, 32, 2)), [32, 9, 5, 7])
        >>> data.shape, lengths.tolist()
        ((4, 32, 2), [32, 9, 5, 7])
        >>> data, lengths, _ = pad_sequences(np.ones((3, 17)), None)
        >>> data.shape, lengths.tolist()
        ((4, 32), [17, 17, 17, 0])
    """
    b, t = jax.tree.leaves(data)[0].shape[:2]
    num_seq, num_steps = bucket(b, minimum_sequences), bucket(t, minimum_steps)

    def pad(leaf):
        leaf = _as_array(leaf)
        leaf = _pad_axis(leaf, num_steps, 1, leaf[:, :1])
        return _pad_axis(leaf, num_seq, 0, leaf[:1])

    if lengths is None:
        lengths = np.full((b,), t, np.int32)
    lengths = _as_array(lengths)
    xp = jnp if isinstance(lengths, jax.Array) else np
    lengths = xp.concatenate(
        [lengths.astype(np.int32), xp.zeros((num_seq - b,), np.int32)]
    )
    if weights is not None:
        weights = pad_weights(weights, b, num_seq, None)
    return jax.tree.map(pad, data), lengths, weights


def sequence_minimum(num_steps: int) -> int:
    """The smallest padded batch for sequences of ``num_steps`` (padded) steps.

    ``MIN_SEQUENCES`` while the padded batch has at most
    ``MIN_SEQUENCES_STEPS`` steps in all, else 1. On a CPU the recursions over
    a few short sequences cost about what one does (each step is a handful of
    (B, K) operations), so one, two, three or four sequences share a program;
    long sequences are not padded that way (the emissions would cost B times
    as much).

    Examples:
        >>> from jaxem._buckets import sequence_minimum
        >>> sequence_minimum(1000), sequence_minimum(100_000)
        (4, 1)
    """
    steps = bucket(num_steps, 16)
    return MIN_SEQUENCES if steps * MIN_SEQUENCES <= MIN_SEQUENCES_STEPS else 1


def unpad_rows(tree: Any, n: int) -> Any:
    """The first ``n`` entries along axis 0 of every leaf (undo ``pad_rows``)."""
    return jax.tree.map(lambda x: take(x, (slice(0, n),)), tree)


def take(x: Any, index: tuple[slice, ...]) -> Any:
    """``x[index]`` for basic slices, without compiling for a CPU array.

    An eager slice of a JAX array compiles a small program per shape; on the
    CPU, slicing a zero-copy numpy view and copying it back compiles nothing.
    """
    # A float64 array outside an x64 scope must not come back as float32.
    if not _on_cpu(x) or jax.dtypes.canonicalize_dtype(x.dtype) != x.dtype:
        return x[index]
    view = np.asarray(x)
    out = view[index]
    # device_put, not jnp.asarray: the latter compiles a program per shape.
    return x if out.shape == view.shape else jax.device_put(out, x.sharding)
