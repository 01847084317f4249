"""Plots of fitted models (matplotlib, the optional extra ``jaxem[plot]``).

Every function draws into a new figure (or into ``ax`` when given) and returns
the ``matplotlib.figure.Figure``; save it with :func:`save_figure` or
``fig.savefig``. matplotlib is imported only when a plot is drawn, with the
non-interactive Agg backend when no display is available.

- :func:`plot_gmm`: data with the fitted Gaussians (1-D: histogram and density
  curve; 2-D: points coloured by component with 1σ and 2σ ellipses).
- :func:`plot_log_likelihood`: the log-likelihood history of any fit.
- :func:`plot_hmm`: observations coloured by decoded state, and the posterior
  probability of each state over time.
- :func:`plot_coins`: the trajectory of the coins' head probabilities.
"""

from __future__ import annotations

import os
import sys

import numpy as np

_COLORS = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "jaxem.plot needs matplotlib: python -m pip install 'jaxem[plot]'"
        ) from err
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if (
        headless
        and "matplotlib.pyplot" not in sys.modules
        and "MPLBACKEND" not in os.environ
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, nrows=1, ncols=1, figsize=(6.4, 4.2), **kwargs):
    if ax is not None:
        return ax.figure, ax
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, **kwargs)
    return fig, axes


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _color(k: int) -> str:
    return _COLORS[k % len(_COLORS)]


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` (format from the suffix) and release it.

    Examples:
        >>> import os, tempfile
        >>> from jaxem.plot import plot_log_likelihood, save_figure
        >>> path = os.path.join(tempfile.mkdtemp(), "loglik.png")
        >>> save_figure(plot_log_likelihood([-3.0, -2.5, -2.4]), path)
        >>> os.path.getsize(path) > 0
        True
    """
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)


# --------------------------------------------------------------------- GMM
def full_covariances(
    covariances, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Covariances in scikit-learn's per-type shapes as (K, d, d) matrices.

    Examples:
        >>> from jaxem.plot import full_covariances
        >>> full_covariances([1.0, 4.0], "spherical", 2, 2)[1]
        array([[4., 0.],
               [0., 4.]])
    """
    c = np.asarray(covariances, dtype=np.float64)
    k, d = n_components, n_features
    if covariance_type == "full":
        return c.reshape(k, d, d)
    if covariance_type == "tied":
        return np.broadcast_to(c.reshape(d, d), (k, d, d)).copy()
    if covariance_type == "diag":
        return np.stack([np.diag(row) for row in c.reshape(k, d)])
    if covariance_type == "spherical":
        return c.reshape(k, 1, 1) * np.eye(d)
    raise ValueError(
        "covariance_type: expected 'full', 'tied', 'diag' or 'spherical', got "
        f"{covariance_type!r}"
    )


def _gmm_params(gmm, covariance_type):
    if isinstance(gmm, dict):
        weights, means, covs = gmm["weights"], gmm["means"], gmm["covariances"]
        ctype = covariance_type or "full"
    else:
        weights, means, covs = gmm.weights_, gmm.means_, gmm.covariances_
        ctype = covariance_type or getattr(gmm, "covariance_type", "full")
    weights = np.asarray(weights, np.float64)
    means = np.asarray(means, np.float64)
    if means.ndim == 1:
        means = means[:, None]
    k, d = means.shape
    return weights, means, full_covariances(covs, ctype, k, d)


def _log_gauss(X, mean, cov):
    diff = X - mean
    chol = np.linalg.cholesky(cov)
    sol = np.linalg.solve(chol, diff.T)
    logdet = 2 * np.log(np.diag(chol)).sum()
    return -0.5 * ((sol**2).sum(0) + logdet + X.shape[1] * np.log(2 * np.pi))


def plot_gmm(
    gmm,
    X,
    *,
    ax=None,
    covariance_type: str | None = None,
    features: tuple[int, int] = (0, 1),
    title: str | None = None,
    xlabel: str | None = None,
):
    """Data with a fitted Gaussian mixture.

    1-D data: a density histogram, the mixture density and each weighted
    component. 2-D (or more, projected on ``features``): the points coloured by
    their most likely component, each component's mean, and its 1σ (solid) and
    2σ (dashed) ellipses.

    Args:
        gmm: a fitted ``jaxem.GaussianMixture`` (or scikit-learn's), or a dict
            of params ``{"weights": (K,), "means": (K, d), "covariances": ...}``.
        X: (N, d) data (or (N,) for 1-D).
        ax: optional matplotlib Axes to draw into.
        covariance_type: the covariance layout of a params dict (default full).
        features: the two feature indices shown when d > 2.
        title: optional title.
        xlabel: optional x-axis label for 1-D data.

    Returns:
        The matplotlib Figure.

    Examples:
        >>> import numpy as np
        >>> from jaxem.plot import plot_gmm, save_figure
        >>> params = {"weights": np.array([0.5, 0.5]), "means": np.array([[0.], [3.]]),
        ...           "covariances": np.array([[[1.]], [[0.5]]])}
        >>> X = np.random.default_rng(0).normal(size=(50, 1))
        >>> fig = plot_gmm(params, X)
        >>> save_figure(fig, "gmm.png")
    """
    X = np.asarray(X, np.float64)
    if X.ndim == 1:
        X = X[:, None]
    weights, means, covs = _gmm_params(gmm, covariance_type)
    if X.shape[1] != means.shape[1]:
        raise ValueError(
            f"X: has {X.shape[1]} features, the mixture has {means.shape[1]}"
        )
    fig, ax = _axes(ax)
    if X.shape[1] == 1:
        _gmm_1d(ax, X[:, 0], weights, means[:, 0], covs[:, 0, 0])
        ax.set_xlabel(xlabel or "x")
    else:
        i, j = features
        sub = np.ix_(range(len(weights)), [i, j], [i, j])
        _gmm_2d(
            ax,
            X[:, [i, j]],
            weights,
            means[:, [i, j]],
            covs[sub],
            (i, j),
            X,
            means,
            covs,
        )
    ax.set_title(title or f"Gaussian mixture, {len(weights)} components")
    return fig


def _gmm_1d(ax, x, weights, means, variances):
    ax.hist(
        x,
        bins="auto",
        density=True,
        color="0.82",
        edgecolor="white",
        label=f"data (N={x.size})",
    )
    pad = 0.1 * (x.max() - x.min() + 1e-12)
    grid = np.linspace(x.min() - pad, x.max() + pad, 400)
    comps = np.array(
        [
            w * np.exp(-0.5 * (grid - m) ** 2 / v) / np.sqrt(2 * np.pi * v)
            for w, m, v in zip(weights, means, variances, strict=True)
        ]
    )
    for k, c in enumerate(comps):
        ax.plot(
            grid,
            c,
            color=_color(k),
            lw=1.5,
            ls="--",
            label=f"component {k}: w={weights[k]:.2f}, μ={means[k]:.4g}, "
            f"σ={np.sqrt(variances[k]):.3g}",
        )
    total = comps.sum(0)
    ax.plot(grid, total, color="black", lw=2, label="mixture density")
    ax.set_ylabel("density")
    top = max(total.max(), max(p.get_height() for p in ax.patches))
    ax.set_ylim(0, 1.45 * top)  # headroom for the legend
    ax.legend(fontsize="small", frameon=False, loc="upper left")


def _ellipse(ax, mean, cov, n_sigma, color, **kwargs):
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 0, None)
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    ax.add_patch(
        Ellipse(
            mean,
            2 * n_sigma * np.sqrt(vals[-1]),
            2 * n_sigma * np.sqrt(vals[0]),
            angle=angle,
            fill=False,
            edgecolor=color,
            **kwargs,
        )
    )


def _gmm_2d(ax, X2, weights, means2, covs2, features, X, means, covs):
    log_resp = np.stack(
        [
            np.log(w) + _log_gauss(X, m, c)
            for w, m, c in zip(weights, means, covs, strict=True)
        ],
        axis=1,
    )
    labels = log_resp.argmax(1)
    for k in range(len(weights)):
        pts = X2[labels == k]
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=10,
            alpha=0.5,
            color=_color(k),
            label=f"component {k} (w={weights[k]:.2f})",
        )
        _ellipse(ax, means2[k], covs2[k], 1, _color(k), lw=2)
        _ellipse(ax, means2[k], covs2[k], 2, _color(k), lw=1.3, ls="--")
        ax.plot(*means2[k], marker="X", ms=10, color="black", mec="white")
    ax.plot([], [], color="0.3", lw=2, label="1σ")
    ax.plot([], [], color="0.3", lw=1.3, ls="--", label="2σ")
    ax.set_xlabel(f"feature {features[0]}")
    ax.set_ylabel(f"feature {features[1]}")
    ax.legend(fontsize="small", frameon=False, loc="best")
    ax.set_aspect("equal", adjustable="datalim")


# ---------------------------------------------------------- log-likelihood
def _history(fit) -> tuple[np.ndarray, str]:
    if (
        hasattr(fit, "history")
        and hasattr(fit, "n_iter")
        and not hasattr(fit, "monitor_")
    ):  # a FitResult (a monitor has history but no n_iter)
        h = np.asarray(fit.history, np.float64)
        if h.ndim != 1:
            raise ValueError("fit: a batched FitResult; plot one restart at a time")
        # history[i] follows i M-steps; the final value follows all n_iter.
        final = float(np.asarray(fit.log_likelihood))
        return np.append(h[: int(np.asarray(fit.n_iter))], final), (
            "total log-likelihood"
        )
    if hasattr(fit, "monitor_"):
        return np.asarray(list(fit.monitor_.history), np.float64), "log-likelihood"
    if hasattr(fit, "lower_bounds_"):
        return np.asarray(fit.lower_bounds_, np.float64), "log-likelihood per sample"
    h = np.asarray(fit, np.float64).ravel()
    return h[np.isfinite(h)], "log-likelihood"


def plot_log_likelihood(
    fit, *, ax=None, label: str | None = None, title: str | None = None
):
    """The log-likelihood after each EM iteration.

    EM never decreases the likelihood; a decrease beyond round-off (which
    points to a bug in a custom M-step) is marked in red.

    Args:
        fit: a ``FitResult``, a fitted estimator (mixtures' ``lower_bounds_``,
            HMMs' ``monitor_.history``) or a 1-D sequence of values.
        ax: optional Axes to draw into (e.g. to overlay several fits).
        label: legend label.
        title: optional title.

    Returns:
        The matplotlib Figure.

    Examples:
        >>> from jaxem.plot import plot_log_likelihood
        >>> fig = plot_log_likelihood([-12.0, -10.1, -9.9, -9.85])
        >>> fig.axes[0].get_xlabel()
        'EM iterations done'
    """
    h, ylabel = _history(fit)
    fig, ax = _axes(ax)
    it = np.arange(h.size)
    ax.plot(it, h, marker="o" if h.size <= 40 else None, ms=4, lw=1.5, label=label)
    drops = np.flatnonzero(np.diff(h) < -1e-8 * np.maximum(1.0, np.abs(h[1:])))
    if drops.size:
        ax.plot(
            it[drops + 1],
            h[drops + 1],
            "o",
            color="red",
            ms=7,
            label="decrease (should not happen)",
        )
    ax.set_xlabel("EM iterations done")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(_integer_locator())
    if h.size:
        ax.set_title(title or f"log-likelihood: {h[-1]:.6g} after {h.size} iterations")
    if label or drops.size:
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------- HMM
def plot_hmm(
    X,
    states,
    posterior,
    *,
    lengths=None,
    true_states=None,
    state_names=None,
    title: str | None = None,
):
    """Observations coloured by decoded state, and each state's posterior.

    Args:
        X: (T,) or (T, d) observations (concatenated sequences; the first
            feature is shown when d > 1).
        states: (T,) decoded (e.g. Viterbi) state of each time step.
        posterior: (T, K) posterior probability of each state.
        lengths: optional lengths of the concatenated sequences (boundaries
            are drawn as vertical lines).
        true_states: optional (T,) true states, drawn as a band for comparison.
        state_names: optional K names for the legend.
        title: optional title.

    Returns:
        The matplotlib Figure (two panels sharing the time axis).

    Examples:
        >>> import numpy as np
        >>> from jaxem.plot import plot_hmm
        >>> post = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])
        >>> fig = plot_hmm([1.0, 5.0, 6.0], post.argmax(1), post)
        >>> len(fig.axes)
        2
    """
    X = np.asarray(X)
    x = X[:, 0] if X.ndim == 2 else X
    states = np.asarray(states).ravel()
    posterior = np.asarray(posterior, np.float64)
    T, K = posterior.shape
    if x.shape[0] != T or states.shape[0] != T:
        raise ValueError(
            f"X, states and posterior must have the same length; got {x.shape[0]}, "
            f"{states.shape[0]} and {T}"
        )
    names = (
        list(state_names)
        if state_names is not None
        else [f"state {k}" for k in range(K)]
    )
    fig, (top, bottom) = _axes(
        None, 2, 1, figsize=(9, 5.2), sharex=True, height_ratios=[1.4, 1]
    )
    t = np.arange(T)
    discrete = np.issubdtype(x.dtype, np.integer)
    if not discrete:
        edges = np.cumsum([0, *(lengths if lengths is not None else [T])])
        for a, b in zip(edges[:-1], edges[1:], strict=True):  # no line across
            top.plot(t[a:b], x[a:b], color="0.75", lw=0.8, zorder=1)
    for k in range(K):
        sel = states == k
        top.scatter(
            t[sel],
            x[sel],
            s=14 if T < 400 else 8,
            color=_color(k),
            label=names[k],
            zorder=2,
        )
    if true_states is not None:
        true_states = np.asarray(true_states).ravel()
        lo, hi = float(np.min(x)), float(np.max(x))
        band = lo - 0.15 * (hi - lo + 1)
        top.scatter(
            t,
            np.full(T, band),
            c=true_states,
            cmap="Greys",
            marker="|",
            s=80,
            vmin=-0.6,
            vmax=max(int(true_states.max()), 1),
        )
        top.annotate(
            "true state (darker = higher)",
            (0, band),
            textcoords="offset points",
            xytext=(0, 7),
            fontsize="x-small",
        )
    top.set_ylabel(
        "observation" if X.ndim == 1 or X.shape[1] == 1 else "observation (feature 0)"
    )
    top.legend(
        fontsize="small",
        frameon=False,
        ncol=K,
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        title="decoded state",
        alignment="left",
    )
    fig.suptitle(title or "observations coloured by decoded state; state posterior")
    bottom.stackplot(
        t,
        posterior.T,
        colors=[_color(k) for k in range(K)],
        alpha=0.65,
        labels=names,
        step="mid",
    )
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_ylabel("posterior probability")
    bottom.set_xlabel("time step")
    if lengths is not None:
        for edge in np.cumsum(np.asarray(lengths))[:-1]:
            for ax in (top, bottom):
                ax.axvline(edge - 0.5, color="black", lw=0.8, ls=":")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------- coins
def plot_coins(trajectory, *, names=None, title: str | None = None):
    """The head probability of each coin after each EM iteration.

    Args:
        trajectory: (n_iter + 1, K) head probabilities, row 0 the start.
        names: optional K coin names (default A, B, ...).
        title: optional title.

    Returns:
        The matplotlib Figure: θ per iteration; with two coins, also the path
        in the (θ_A, θ_B) plane.

    Examples:
        >>> from jaxem.plot import plot_coins
        >>> fig = plot_coins([[0.6, 0.5], [0.71, 0.58], [0.75, 0.57]])
        >>> fig.axes[0].get_ylabel()
        'probability of heads'
    """
    path = np.asarray(trajectory, np.float64)
    if path.ndim != 2:
        raise ValueError(f"trajectory: expected (iterations, K), got {path.shape}")
    K = path.shape[1]
    names = list(names) if names is not None else [chr(ord("A") + k) for k in range(K)]
    ncols = 2 if K == 2 else 1
    fig, axes = _axes(None, 1, ncols, figsize=(9.5 if ncols == 2 else 6, 3.8))
    axes = np.atleast_1d(axes)
    it = np.arange(path.shape[0])
    for k in range(K):
        axes[0].plot(
            it,
            path[:, k],
            marker="o",
            color=_color(k),
            label=f"θ_{names[k]} → {path[-1, k]:.2f}",
        )
    axes[0].set_xlabel("EM iteration")
    axes[0].xaxis.set_major_locator(_integer_locator())
    axes[0].set_ylabel("probability of heads")
    axes[0].set_ylim(0, 1)
    axes[0].legend(frameon=False)
    axes[0].grid(alpha=0.3)
    if K == 2:
        ax = axes[1]
        ax.plot(path[:, 0], path[:, 1], color="0.4", lw=1, zorder=1)
        points = ax.scatter(
            path[:, 0], path[:, 1], c=it, cmap="viridis", zorder=2, s=28
        )
        fig.colorbar(
            points, ax=ax, label="iteration", shrink=0.85, ticks=_integer_locator()
        )
        ax.annotate("start", path[0], textcoords="offset points", xytext=(6, -12))
        ax.annotate("end", path[-1], textcoords="offset points", xytext=(6, 4))
        lo = max(0.0, path.min() - 0.08)
        hi = min(1.0, path.max() + 0.08)
        ax.plot([lo, hi], [lo, hi], color="0.7", lw=0.8, ls=":", label="θ_A = θ_B")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.legend(frameon=False, fontsize="small", loc="upper left")
        ax.set_xlabel(f"θ_{names[0]}")
        ax.set_ylabel(f"θ_{names[1]}")
        ax.set_title("path of (θ_A, θ_B)")
        ax.grid(alpha=0.3)
    fig.suptitle(title or "coin mixture: EM trajectory")
    fig.tight_layout()
    return fig


__all__ = [
    "full_covariances",
    "plot_coins",
    "plot_gmm",
    "plot_hmm",
    "plot_log_likelihood",
    "save_figure",
]
