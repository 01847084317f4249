"""The command line's plots: checks before a fit, drawing and saving after.

Everything here draws with :mod:`jaxem.plot`; matplotlib is an optional
extra, so it is imported only when a plot is asked for.
"""

from __future__ import annotations

import pathlib

import numpy as np

from ._args import UsageError

PAIRS_LIMIT = 6  # more columns than this make a pairs plot unreadable


def require_matplotlib() -> None:
    """Refuse, in one line with the install command, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "plots need matplotlib: python -m pip install matplotlib (or leave "
            "out the plots: jaxem demo --no-plots, jaxem fit without --plot)"
        ) from None


def check_plot_format(path: str) -> None:
    """Refuse an image suffix matplotlib cannot write, before a long fit."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = pathlib.Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise UsageError(
            f"--plot {path}: unknown image type {suffix!r} (use one of "
            f"{', '.join(sorted(formats))})"
        )


def save_plot(fig, path) -> None:
    """Write ``fig`` to ``path``; an unwritable path is a one-line error."""
    from .. import plot

    try:
        plot.save_figure(fig, path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: cannot write the plot ({err})") from None


def gmm_figure(est, X, names: list[str], title: str, note=print):
    """The data with a fitted Gaussian mixture, every column labelled by name.

    One column: histogram and densities. Two: a scatter with 1σ/2σ ellipses.
    More: a pairs plot (scatter matrix) of the first :data:`PAIRS_LIMIT`
    columns, the marginal densities on its diagonal.

    Args:
        est: a fitted ``jaxem.GaussianMixture``.
        X: (N, d) data.
        names: d column names.
        title: the figure's title.
        note: called with one line when not every column is shown.

    Returns:
        The matplotlib Figure.
    """
    from .. import plot

    d = X.shape[1]
    if d == 1:
        return plot.plot_gmm(est, X, title=title, xlabel=names[0])
    if d == 2:
        fig = plot.plot_gmm(est, X, title=title)
        fig.axes[0].set_xlabel(names[0])
        fig.axes[0].set_ylabel(names[1])
        return fig
    if d > PAIRS_LIMIT:
        note(
            f"--plot: {d} columns; the pairs plot shows the first {PAIRS_LIMIT} "
            f"({', '.join(names[:PAIRS_LIMIT])}); choose others with --columns"
        )
    return _pairs(est, X, names, title)


def _pairs(est, X, names, title):
    from .. import plot

    shown = min(X.shape[1], PAIRS_LIMIT)
    weights, means = np.asarray(est.weights_), np.asarray(est.means_)
    covs = plot.full_covariances(est.covariances_, est.covariance_type, *means.shape)
    plt = plot._pyplot()
    fig, axes = plt.subplots(shown, shown, figsize=(2.4 * shown, 2.4 * shown))
    for i in range(shown):
        for j in range(shown):
            ax = axes[i, j]
            if i == j:
                marginal = {
                    "weights": weights,
                    "means": means[:, [i]],
                    "covariances": covs[:, i : i + 1, i : i + 1],
                }
                plot.plot_gmm(marginal, X[:, [i]], ax=ax)
            else:
                plot.plot_gmm(est, X, ax=ax, features=(j, i))
            _tidy(ax, names[j] if i == shown - 1 else "", names[i] if j == 0 else "")
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize="small", frameon=False)
    fig.suptitle(title)
    return fig


def _tidy(ax, xlabel: str, ylabel: str) -> None:
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()
    ax.set_title("")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.tick_params(labelsize="x-small")


def em_path(model, params, data, n_steps: int, frozen=()):
    """Parameters before and after each of ``n_steps`` EM iterations.

    One ``jaxem.fit(max_iter=1)`` per step, compiled once.

    Returns:
        A list of ``n_steps + 1`` parameter pytrees (numpy leaves).
    """
    import jax

    import jaxem

    path = [jax.tree.map(np.asarray, params)]
    for _ in range(n_steps):
        result = jaxem.fit(model, params, data, max_iter=1, tol=0.0, frozen=frozen)
        params = result.params
        path.append(jax.tree.map(np.asarray, params))
    return path


def coin_trajectory(est, heads, note=print):
    """Head probabilities before and after each iteration of a fitted coin mixture.

    Replays the fit with the public API only: the estimator refitted with
    ``max_iter=0`` gives its first restart's initialisation, from which
    ``jaxem.fit`` takes the ``n_iter_`` EM steps one at a time. With
    ``n_init > 1`` the kept restart may be another one: ``note`` then says
    that the path shown is the first restart's.

    Args:
        est: a fitted ``jaxem.BinomialMixture``.
        heads: (N,) or (N, 1) head counts it was fitted on.
        note: called with one line when the path is not the kept restart's.

    Returns:
        (n_iter_ + 1, K) probabilities of heads.
    """
    import jax.numpy as jnp

    import jaxem

    X = np.asarray(heads).reshape(-1, 1)
    options = {**est.get_params(), "max_iter": 0, "verbose": 0}
    start = type(est)(**options).fit(X)
    model = jaxem.models.binomial_mixture(est.n_components, est.n_trials)
    params = {"weights": jnp.asarray(start.weights_), "p": jnp.asarray(start.p_)}
    path = em_path(model, params, jnp.asarray(X[:, 0]), int(est.n_iter_))
    theta = np.stack([p["p"] for p in path])
    if not np.allclose(theta[-1], est.p_, rtol=1e-6, atol=1e-9):
        note(
            f"--plot: the θ path shown is the first of {est.n_init} restarts; "
            "the kept fit came from another"
        )
    return theta
