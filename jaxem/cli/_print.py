"""Printing fitted models as aligned text tables.

Reads only the estimators' public fitted attributes (``weights_``,
``means_``, ``transmat_``, ``monitor_`` ...), so it prints any estimator
that speaks scikit-learn's or hmmlearn's attribute names.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


def fmt(x: Any, digits: int = 4) -> str:
    """A number (or an array, in brackets) in ``digits`` significant digits.

    Examples:
        >>> fmt(3.14159), fmt(1e-7), fmt([1, 2.5])
        ('3.142', '1.000e-07', '[1 2.5]')
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 1:
        arr = arr.reshape(())
    if arr.ndim == 0:
        v = float(arr)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return "[" + " ".join(fmt(v, digits) for v in arr.ravel()) + "]"


def print_table(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    footer: Sequence[str] = (),
    file=None,
    indent: int = 3,
) -> None:
    """Print an aligned text table with a title and footer lines.

    Examples:
        >>> print_table("t", ["a", "b"], [["x", 1.5], ["yy", 10]], indent=0)
        t
        a    b
        --  ---
        x   1.5
        yy   10
    """
    file = file or sys.stdout
    pad = " " * indent
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]
    print(pad + title, file=file)
    for n, row in enumerate(cells):
        line = "  ".join(
            c.rjust(w) if n and j else c.ljust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print(pad + line.rstrip(), file=file)
        if n == 0:
            print(pad + "  ".join("-" * w for w in widths), file=file)
    for line in footer:
        print(pad + line, file=file)


def fit_footer(
    ll: float,
    n: int,
    n_iter: int,
    converged: bool,
    seconds: float | None = None,
    extra: str = "",
    tol: float | None = None,
) -> str:
    """One line: log-likelihood, iterations, convergence, time and ``extra``.

    With ``tol=0`` a fit runs its whole budget by design: it says so instead
    of "not converged".

    Examples:
        >>> fit_footer(-12.5, 5, 7, True)
        'log-likelihood -12.5 (-2.5 per obs., N=5) | 7 iterations, converged'
        >>> fit_footer(-12.5, 5, 10, False, tol=0.0).split(" | ")[1]
        '10 iterations, all of them (tol=0)'
    """
    if converged:
        status = "converged"
    else:
        status = "all of them (tol=0)" if tol == 0 else "not converged"
    parts = [
        f"log-likelihood {ll:.6g} ({ll / n:.4g} per obs., N={n})",
        f"{n_iter} iterations, {status}",
    ]
    if seconds is not None:
        parts.append(f"{seconds:.2f} s")
    if extra:
        parts.append(extra)
    return " | ".join(parts)


def estimator_ll(est, n: int) -> tuple[float, int, bool]:
    """(total log-likelihood, iterations, converged) of a fitted estimator."""
    if hasattr(est, "monitor_"):
        mon = est.monitor_
        hist = list(mon.history)
        ll = float(hist[-1]) if hist else float("nan")
        # hmmlearn's monitor also says "converged" when n_iter ran out; the
        # table says so only when the last gain was below tol.
        gained_little = len(hist) >= 2 and hist[-1] - hist[-2] < mon.tol
        converged = bool(mon.converged) and (mon.iter < mon.n_iter or gained_little)
        return ll, int(mon.iter), converged
    ll = getattr(est, "log_likelihood_", None)
    if ll is None:
        ll = float(est.lower_bound_) * n
    return float(ll), int(est.n_iter_), bool(est.converged_)


def describe(
    est,
    n: int | None = None,
    seconds: float | None = None,
    title: str | None = None,
    file=None,
    extra: str = "",
    symbols=None,
    tol: float | None = None,
) -> None:
    """Print a fitted estimator as a compact table (with a fit footer if ``n``)."""
    name = type(est).__name__
    title = title or name
    footer = []
    if n:
        ll, n_iter, converged = estimator_ll(est, n)
        footer.append(fit_footer(ll, n, n_iter, converged, seconds, extra, tol))
    if name == "GaussianMixture":
        header, rows = gmm_rows(est)
        title += f" ({est.covariance_type} covariances)"
    elif name == "BinomialMixture":
        header = ["coin", "weight", "P(heads)"]
        rows = [
            [str(j), f"{w:.4f}", f"{p:.4f}"]
            for j, (w, p) in enumerate(zip(est.weights_, est.p_, strict=True))
        ]
        title += f" ({est.n_trials} tosses per row)"
    elif hasattr(est, "transmat_"):
        header, rows = hmm_rows(est, symbols)
    else:
        header, rows = (
            ["attribute", "value"],
            [[k, fmt(v)] for k, v in vars(est).items() if k.endswith("_")],
        )
    print_table(title, header, rows, footer, file=file)


def gmm_rows(est) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a Gaussian mixture: weight, mean, std (and corr in 2-D)."""
    from ..plot import full_covariances

    means = np.asarray(est.means_)
    k, d = means.shape
    covs = full_covariances(est.covariances_, est.covariance_type, k, d)
    stds = np.sqrt(np.diagonal(covs, axis1=1, axis2=2))
    header = ["component", "weight", "mean", "std"]
    if d == 2:
        header.append("corr")
    rows = []
    for j in range(k):
        row = [
            str(j),
            f"{est.weights_[j]:.4f}",
            fmt(means[j] if d > 1 else means[j, 0]),
            fmt(stds[j] if d > 1 else stds[j, 0]),
        ]
        if d == 2:
            row.append(f"{covs[j, 0, 1] / (stds[j, 0] * stds[j, 1]):+.3f}")
        rows.append(row)
    return header, rows


def hmm_rows(est, symbols=None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an HMM: start, transitions, then its emissions."""
    K = np.asarray(est.transmat_).shape[0]
    header = ["state", "start"] + [f"->{j}" for j in range(K)]
    kind = type(est).__name__
    if kind == "CategoricalHMM":
        probs = np.asarray(est.emissionprob_)
        names = (
            range(probs.shape[1]) if symbols is None else [f"{v:g}" for v in symbols]
        )
        header += [f"P({m})" for m in names]
    elif kind == "PoissonHMM":
        header += ["rate"]
    else:
        header += ["mean", "std"]
    rows = []
    for k in range(K):
        row = [str(k), f"{est.startprob_[k]:.3f}"] + [
            f"{p:.3f}" for p in est.transmat_[k]
        ]
        if kind == "CategoricalHMM":
            row += [f"{p:.3f}" for p in est.emissionprob_[k]]
        elif kind == "PoissonHMM":
            row.append(fmt(np.asarray(est.lambdas_)[k]))
        else:
            covars = np.asarray(est.covars_)[k]
            row += [fmt(np.asarray(est.means_)[k]), fmt(np.sqrt(np.diag(covars)))]
        rows.append(row)
    return header, rows
