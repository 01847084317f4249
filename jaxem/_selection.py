"""Model selection: fit a grid of Gaussian mixtures, rank them by BIC or AIC."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from . import _validation
from .estimators._gmm import GaussianMixture
from .models._gmm import COVARIANCE_TYPES


class SelectionResult(NamedTuple):
    """The outcome of :func:`select_gaussian_mixture`.

    Attributes:
        n_components: the component counts tried (rows of the tables).
        covariance_types: the covariance types tried (columns).
        bic: (rows, columns) BIC of each fit on the data (lower is better).
        aic: (rows, columns) AIC of each fit.
        n_parameters: (rows, columns) free-parameter counts.
        criterion: ``"bic"`` or ``"aic"``, the one ``best`` minimises.
        best: the fitted ``GaussianMixture`` with the lowest criterion.
        best_n_components, best_covariance_type: its settings.
    """

    n_components: tuple[int, ...]
    covariance_types: tuple[str, ...]
    bic: np.ndarray
    aic: np.ndarray
    n_parameters: np.ndarray
    criterion: str
    best: GaussianMixture
    best_n_components: int
    best_covariance_type: str

    def format(self) -> str:
        """The criterion table as text, one row per component count."""
        table = self.bic if self.criterion == "bic" else self.aic
        head = f"{self.criterion.upper():>6}" + "".join(
            f"{t:>14}" for t in self.covariance_types
        )
        rows = [
            f"{k:>6}" + "".join(f"{v:>14.2f}" for v in row)
            for k, row in zip(self.n_components, table, strict=True)
        ]
        best = (
            f"best: n_components={self.best_n_components}, "
            f"covariance_type={self.best_covariance_type!r}"
        )
        return "\n".join([head, *rows, best])


def select_gaussian_mixture(
    X: Any,
    n_components=(1, 2, 3, 4, 5, 6),
    covariance_types=COVARIANCE_TYPES,
    *,
    criterion: str = "bic",
    sample_weight: Any = None,
    **estimator_args: Any,
) -> SelectionResult:
    """Fit every (component count, covariance type) pair and keep the best.

    Like R's mclust: each cell of the grid is a ``jaxem.GaussianMixture`` fit
    (its ``n_init`` restarts vmapped), scored by BIC and AIC, whose
    free-parameter counts come from the model's constraints.

    Args:
        X: (N, d) samples.
        n_components: component counts to try.
        covariance_types: covariance types to try.
        criterion: ``"bic"`` or ``"aic"``, the one the best model minimises.
        sample_weight: optional (N,) weights passed to every fit.
        **estimator_args: other ``GaussianMixture`` arguments (``n_init``,
            ``random_state``, ``max_iter``, ...).

    Returns:
        A :class:`SelectionResult` with the BIC and AIC tables and the best fit.

    Raises:
        ValueError: for an empty grid, an unknown criterion or covariance type.

    Examples:
        >>> import numpy as np, jaxem
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-4, 1, (100, 1)),
        ...                     rng.normal(4, 1, (100, 1))])
        >>> sel = jaxem.select_gaussian_mixture(X, [1, 2, 3], ["spherical"],
        ...                                     random_state=0)
        >>> sel.best_n_components
        2
    """
    if criterion not in ("bic", "aic"):
        raise ValueError(f"criterion: expected 'bic' or 'aic', got {criterion!r}")
    counts = _component_counts(n_components)
    types = (
        (covariance_types,)
        if isinstance(covariance_types, str)
        else tuple(covariance_types)
    )
    if not counts:
        raise ValueError("n_components: expected at least one component count")
    if not types:
        raise ValueError("covariance_types: expected at least one covariance type")
    for t in types:
        if t not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_types: expected a subset of {COVARIANCE_TYPES}, got {t!r}"
            )
    X = np.asarray(X)
    if sample_weight is not None:
        _validation.check_weights("sample_weight", sample_weight, len(X))
    shape = (len(counts), len(types))
    bic, aic, n_par = np.empty(shape), np.empty(shape), np.zeros(shape, int)
    best, best_value, best_cell = None, np.inf, (0, 0)
    for i, k in enumerate(counts):
        for j, t in enumerate(types):
            gm = GaussianMixture(k, covariance_type=t, **estimator_args)
            gm.fit(X, sample_weight=sample_weight)
            bic[i, j], aic[i, j] = gm.bic(X), gm.aic(X)
            n_par[i, j] = gm._n_parameters()
            value = bic[i, j] if criterion == "bic" else aic[i, j]
            if value < best_value:
                best, best_value, best_cell = gm, value, (i, j)
    return SelectionResult(
        counts,
        types,
        bic,
        aic,
        n_par,
        criterion,
        best,
        counts[best_cell[0]],
        types[best_cell[1]],
    )


def _component_counts(n_components) -> tuple[int, ...]:
    """``n_components`` (an int or a sequence of ints) as a tuple of ints."""
    values = np.atleast_1d(np.asarray(n_components, dtype=object))
    if values.ndim != 1 or not all(
        isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in values
    ):
        raise ValueError(
            f"n_components: expected an int or a sequence of ints, got "
            f"{n_components!r:.60}"
        )
    return tuple(int(k) for k in values)
