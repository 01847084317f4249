"""Partial labels for the estimators: scikit-learn's semi-supervised convention.

A label is a component (state) index in [0, K) or -1 for unlabelled, one per
sample. The fit turns labels into ``jaxem.fit``'s ``latent_evidence``: 0 for
the labelled value and -inf for the others on a labelled row, 0 everywhere on
an unlabelled one (see ``jaxem._evidence`` and ``docs/labels.md``).
"""

from __future__ import annotations

import numpy as np

from .._chunk_sources import read_rows


def check_labels(name: str, labels, n_samples: int, k: int) -> np.ndarray | None:
    """(N,) int labels in [-1, k), or None when absent or all -1.

    Raises:
        ValueError: naming ``name``: wrong length, not integers, out of range.
    """
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise ValueError(
            f"{name}: expected {n_samples} labels (one per sample, -1 for "
            f"unlabelled), got an array of shape {arr.shape}"
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: expected integer labels, got non-integers")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer labels, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < -1) | (arr >= k)
    if bad.any():
        raise ValueError(
            f"{name}: labels must be in [0, {k}) or -1 (unlabelled); got "
            f"{int(arr[np.argmax(bad)])}"
        )
    return arr if np.any(arr >= 0) else None


def log_evidence(labels: np.ndarray, k: int, dtype) -> np.ndarray:
    """(N, k) log-evidence: 0 at a row's label and -inf elsewhere; 0 if -1."""
    onehot = labels[:, None] == np.arange(k)[None, :]
    free = labels[:, None] < 0
    return np.where(onehot | free, 0.0, -np.inf).astype(dtype)


def labelled_means(X: np.ndarray, labels: np.ndarray, k: int, chunk_rows=None):
    """(k, ...) mean of the labelled rows of each value, and (k, ...) how many
    labelled entries each mean has (NaN entries, missing values, are left out;
    a mean without entries is 0).

    With ``chunk_rows``, X (a memory map of data larger than memory) is read
    that many rows at a time with plain reads, never whole.
    """
    counts = np.zeros((k,) + X.shape[1:], np.int64)
    sums = np.zeros((k,) + X.shape[1:], np.float64)
    step = X.shape[0] if chunk_rows is None else int(chunk_rows)
    for start in range(0, X.shape[0], max(step, 1)):
        stop = min(start + step, X.shape[0])
        mine = labels[start:stop]
        rows = mine >= 0
        if not rows.any():
            continue
        part = X[start:stop] if chunk_rows is None else read_rows(X, start, stop)
        x = np.asarray(part[rows], np.float64)
        seen = ~np.isnan(x)
        np.add.at(counts, mine[rows], seen)
        np.add.at(sums, mine[rows], np.where(seen, x, 0.0))
    means = sums / np.maximum(counts, 1)
    return means.astype(X.dtype if X.dtype.kind == "f" else np.float64), counts


def steer_means(
    params0: dict, key: str, X: np.ndarray, labels: np.ndarray, k: int, chunk_rows=None
):
    """``params0`` (restarts first) with ``params0[key]`` of each labelled value
    set to the mean of its labelled rows (the initial means of a labelled fit;
    ``chunk_rows``: X read in chunks, see :func:`labelled_means`).
    """
    means, counts = labelled_means(X, labels, k, chunk_rows)
    known = counts > 0
    return {**params0, key: np.where(known, means, params0[key])}
