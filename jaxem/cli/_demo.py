"""``jaxem demo``: three EM fits on data shipped inside jaxem, with plots.

1. a mixture of two Gaussians on 1000 heights (``jaxem.GaussianMixture``);
2. the two-coin experiment of Do & Batzoglou (2008) with the functional API
   (``jaxem.fit`` on ``jaxem.models.binomial_mixture``), replayed iteration by
   iteration to show θ converging to the paper's values;
3. the occasionally dishonest casino (``jaxem.CategoricalHMM``).

The printed output is the block shown on docs/getting-started.md; a test
keeps the two the same.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from . import _plots
from ._args import UsageError
from ._print import estimator_ll, fit_footer, print_table
from ._run import compiling, timed_fit, want_progress


def run(args) -> int:
    """Run ``jaxem demo`` with parsed ``args``; returns the exit status."""
    out = None if args.no_plots else pathlib.Path(args.out)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"--out {out}: cannot create ({err.strerror})") from None
        _plots.require_matplotlib()
    progress = want_progress(args.progress)
    start = time.perf_counter()
    print("jaxem demo: three EM fits on data shipped inside jaxem (jaxem/data)\n")
    written: list[pathlib.Path] = []
    for section in (_heights, _coins, _casino):
        written += section(out, args.seed, progress)
        print()
    total = time.perf_counter() - start
    if out is None:
        print(f"done in {total:.1f} s (no plots: --no-plots)")
    else:
        print(f"done in {total:.1f} s; plots in {out.resolve()}/:")
        for path in written:
            print(f"  {path.name}")
    return 0


def _plot(out, name, draw) -> list[pathlib.Path]:
    if out is None:
        return []
    path = out / name
    _plots.save_plot(draw(), path)
    return [path]


def _heights(out, seed, progress) -> list[pathlib.Path]:
    import jaxem

    from .. import plot

    print("1. Heights: a mixture of two Gaussians fitted to 1000 adult heights (cm)")
    X = jaxem.data.load_heights()
    est = jaxem.GaussianMixture(2, n_init=3, random_state=seed, verbose=int(progress))
    compiling(progress, "the Gaussian mixture fit")
    seconds = timed_fit(est, X)
    # Rows sorted by mean, labelled with the estimator's own component index
    # (as the plot's legend is).
    rows = [
        [
            str(k),
            f"{est.weights_[k]:.3f}",
            f"{est.means_[k, 0]:.2f}",
            f"{np.sqrt(est.covariances_[k].ravel()[0]):.2f}",
        ]
        for k in np.argsort(est.means_[:, 0])
    ]
    ll, n_iter, converged = estimator_ll(est, X.shape[0])
    print_table(
        "jaxem.GaussianMixture(2)",
        ["component", "weight", "mean (cm)", "std (cm)"],
        rows,
        [
            fit_footer(ll, X.shape[0], n_iter, converged, seconds),
            "the data were drawn from N(162, 6.5^2) and N(176, 7.2^2), half each",
        ],
    )
    return _plot(
        out,
        "heights.png",
        lambda: plot.plot_gmm(
            est, X, title="1000 heights: two Gaussian components", xlabel="height (cm)"
        ),
    ) + _plot(
        out,
        "heights-loglik.png",
        lambda: plot.plot_log_likelihood(est, title="heights: EM log-likelihood"),
    )


def _coins(out, seed, progress) -> list[pathlib.Path]:
    import jax.numpy as jnp

    import jaxem

    from .. import _progress, plot

    print("2. Two coins (Do & Batzoglou, 2008): 5 sets of 10 tosses, coin unknown")
    tosses = jaxem.data.load_coins()
    heads = jnp.asarray(tosses.sum(axis=1), dtype=jnp.float64)
    print(f"   heads per set: {', '.join(str(int(h)) for h in heads)}")
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
    compiling(progress, "the coin mixture fit")
    start = time.perf_counter()
    with _progress.progress("coins", 10, progress, min_interval=0.5) as callback:
        result = jaxem.fit(
            model,
            params0,
            heads,
            frozen=("weights",),
            tol=0.0,
            max_iter=10,
            callback=callback,
        )
        ll = float(result.log_likelihood)
    seconds = time.perf_counter() - start
    path = _plots.em_path(model, params0, heads, 10, frozen=("weights",))
    theta = np.stack([p["p"] for p in path])
    rows = [
        [name, f"{theta[0, k]:.2f}", f"{theta[-1, k]:.4f}", paper]
        for k, (name, paper) in enumerate([("A", "0.80"), ("B", "0.52")])
    ]
    footer = fit_footer(
        ll, heads.shape[0], int(result.n_iter), bool(result.converged), seconds, tol=0
    )
    print_table(
        "jaxem.models.binomial_mixture(2, 10), weights fixed at 1/2",
        ["coin", "start θ", "θ after 10 iterations", "paper"],
        rows,
        [footer],
    )
    return _plot(
        out,
        "coins.png",
        lambda: plot.plot_coins(theta, title="two coins: θ over 10 EM iterations"),
    ) + _plot(
        out,
        "coins-loglik.png",
        lambda: plot.plot_log_likelihood(result, title="coins: EM log-likelihood"),
    )


def _casino(out, seed, progress) -> list[pathlib.Path]:
    import jaxem

    print("3. The occasionally dishonest casino: a 2-state HMM fitted to 600 rolls")
    rolls, loaded = jaxem.data.load_casino()
    X = (rolls - 1).reshape(-1, 1)
    # HMM likelihoods have poor local optima: keep the best of a few starts,
    # run as one vmapped program.
    est = jaxem.CategoricalHMM(
        n_components=2,
        n_iter=200,
        tol=1e-4,
        n_init=3,
        random_state=seed,
        verbose=bool(progress),
    )
    compiling(progress, "the CategoricalHMM fit")
    seconds = timed_fit(est, X)
    L = int(np.argmax(np.asarray(est.emissionprob_)[:, 5]))
    names = ["fair", "loaded"] if L == 1 else ["loaded", "fair"]
    rows = [
        [
            names[k],
            f"{est.startprob_[k]:.2f}",
            f"{est.transmat_[k, 1 - L]:.3f}",
            f"{est.transmat_[k, L]:.3f}",
        ]
        + [f"{p:.3f}" for p in est.emissionprob_[k]]
        for k in (1 - L, L)
    ]
    states = np.asarray(est.predict(X))
    agree = float(np.mean((states == L) == (loaded == 1)))
    ll, n_iter, converged = estimator_ll(est, X.shape[0])
    print_table(
        "jaxem.CategoricalHMM(2), best of 3 starts",
        ["state", "start", "->fair", "->loaded"] + [f"P({f})" for f in range(1, 7)],
        rows,
        [
            fit_footer(ll, X.shape[0], n_iter, converged, seconds),
            "truth: loaded die P(6)=0.5, fair->loaded 0.05, loaded->fair 0.10; "
            f"decoded states match the hidden die on {100 * agree:.0f}% of rolls",
        ],
    )
    return _casino_plots(out, est, X, rolls, loaded, states, names)


def _casino_plots(out, est, X, rolls, loaded, states, names):
    from .. import plot

    posterior = np.asarray(est.predict_proba(X))
    return _plot(
        out,
        "casino.png",
        lambda: plot.plot_hmm(
            rolls,
            states,
            posterior,
            true_states=loaded,
            state_names=names,
            title="casino: rolls coloured by decoded die; posterior of each die",
        ),
    ) + _plot(
        out,
        "casino-loglik.png",
        lambda: plot.plot_log_likelihood(est, title="casino HMM: EM log-likelihood"),
    )
