"""hmmlearn's sequence layout and convergence monitor, shared by the HMM estimators.

hmmlearn takes X as the concatenation of the sequences and ``lengths`` as their
lengths; jaxem's chain models take a padded (B, T, ...) batch. This module
converts one into the other, reads the second positional argument of ``fit``
(hmmlearn's ``lengths``, or scikit-learn's ``y`` when a scikit-learn tool passes
one), and keeps hmmlearn's ``ConvergenceMonitor``.
"""

from __future__ import annotations

import collections
import logging

import numpy as np

from .. import _validation

_log = logging.getLogger(__name__)


class ConvergenceMonitor:
    """hmmlearn's ``monitor_``: log-likelihood history and convergence.

    Attributes:
        tol: threshold on the gain in total log-likelihood.
        n_iter: maximum number of iterations.
        verbose: whether progress was printed.
        history: ``collections.deque`` of the total log-likelihood at each
            iteration's E-step (of the parameters before its M-step).
        iter: number of iterations run.
        stopped: True when the fit stopped on a NaN or infinite
            log-likelihood (then ``converged`` is False whatever the history).

    Examples:
        >>> from jaxem.estimators import ConvergenceMonitor
        >>> monitor = ConvergenceMonitor(tol=1e-2, n_iter=10, verbose=False)
        >>> monitor.history.extend([-10.0, -9.0, -8.995]); monitor.iter = 3
        >>> monitor.converged
        True
    """

    def __init__(self, tol, n_iter, verbose):
        self.tol = tol
        self.n_iter = n_iter
        self.verbose = verbose
        self.history = collections.deque()
        self.iter = 0
        self.stopped = False

    def _reset(self):
        self.iter = 0
        self.history.clear()
        self.stopped = False

    @property
    def converged(self) -> bool:
        """hmmlearn's rule: the budget is spent or the last gain is below tol."""
        if self.stopped:
            return False
        return self.iter == self.n_iter or (
            len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol
        )

    def __repr__(self):
        return (
            f"ConvergenceMonitor(tol={self.tol}, n_iter={self.n_iter}, "
            f"iter={self.iter}, history={list(self.history)})"
        )


def check_lengths(lengths, n_samples: int) -> np.ndarray:
    """Validated (B,) int lengths summing to ``n_samples`` (None: one sequence).

    Examples:
        >>> from jaxem.estimators._hmm_sequences import check_lengths
        >>> check_lengths([3, 2], 5).tolist(), check_lengths(None, 4).tolist()
        ([3, 2], [4])
    """
    if lengths is None:
        return np.array([n_samples], dtype=np.int64)
    arr = np.asarray(lengths)
    if arr.ndim == 0:  # hmmlearn accepts one length as a number
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"lengths: expected a non-empty 1-D array of sequence lengths, got shape "
            f"{arr.shape}"
        )
    arr = _validation.check_integers("lengths", arr)
    if np.any(arr < 1):
        raise ValueError(f"lengths: every length must be >= 1, got min {arr.min()}")
    if arr.sum() != n_samples:
        raise ValueError(f"lengths: sum to {arr.sum()}, but X has {n_samples} samples")
    return arr


def lengths_or_y(lengths, n_samples: int) -> np.ndarray:
    """hmmlearn's ``lengths``, telling it apart from scikit-learn's ``y``.

    scikit-learn's tools (``check_estimator``, ``cross_val_score``,
    ``Pipeline``) pass a target ``y`` as the second positional argument, where
    hmmlearn has ``lengths``. An HMM is unsupervised, so a second argument with
    one entry per sample that is not a valid ``lengths`` (it would be n_samples
    sequences of length 1, all ones) is read as ``y`` and ignored: X is then
    one sequence. Anything else is validated as ``lengths``.

    Examples:
        >>> from jaxem.estimators._hmm_sequences import lengths_or_y
        >>> lengths_or_y([0, 1, 0, 1], 4).tolist()  # a y: one sequence
        [4]
        >>> lengths_or_y([1, 3], 4).tolist()
        [1, 3]
    """
    if lengths is not None:
        try:
            arr = np.asarray(lengths)
        except Exception:  # noqa: BLE001 - ragged input: validated below
            arr = None
        if (
            arr is not None
            and arr.ndim >= 1
            and arr.shape[0] == n_samples
            and not (arr.ndim == 1 and np.array_equal(arr, np.ones(n_samples)))
        ):
            return check_lengths(None, n_samples)
    return check_lengths(lengths, n_samples)


def to_padded(X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(B, T_max, ...) batch of the concatenated sequences, zero-padded.

    Examples:
        >>> import numpy as np
        >>> from jaxem.estimators._hmm_sequences import to_padded
        >>> to_padded(np.arange(5), np.array([3, 2])).tolist()
        [[0, 1, 2], [3, 4, 0]]
    """
    b, t = len(lengths), int(lengths.max())
    if np.all(lengths == t):
        return X.reshape((b, t) + X.shape[1:])
    out = np.zeros((b, t) + X.shape[1:], X.dtype)
    out[valid_steps(lengths)] = X
    return out


def valid_steps(lengths: np.ndarray) -> np.ndarray:
    """(B, T_max) mask of the real steps of a padded batch."""
    return np.arange(lengths.max())[None, :] < lengths[:, None]


def check_prior(name: str, value, shape: tuple[int, ...], *, minimum=None):
    """A prior as a float array broadcastable to ``shape``, finite (>= minimum).

    Raises a ``ValueError`` naming ``name`` for None, strings, NaN, inf, values
    below ``minimum`` and shapes that do not broadcast.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name}: expected a number or an array of numbers, got {value!r}"
        ) from err
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if minimum is not None and np.any(arr < minimum):
        raise ValueError(f"{name}: must be >= {minimum}, got min {arr.min()}")
    try:
        np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(
            f"{name}: expected a scalar or an array broadcastable to {shape}, got "
            f"shape {arr.shape}"
        ) from None
    return arr


def log_degenerate(n_fit_scalars: int, n_data: int) -> None:
    """hmmlearn's warning (logged, as hmmlearn) for more parameters than data."""
    if n_data < n_fit_scalars:
        _log.warning(
            "Fitting a model with %d free scalar parameters with only %d data "
            "points will result in a degenerate solution.",
            n_fit_scalars,
            n_data,
        )
