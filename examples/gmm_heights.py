"""Heights of students whose sex was not recorded: two Gaussians from one sample.

The classic mixture story: a class's heights were measured, but not who was a
man and who was a woman. If men's heights are about N(178, 7²) cm and women's
N(165, 6²) cm, the pooled sample is a two-component Gaussian mixture, and EM
recovers both Gaussians and the proportion of each sex, plus, height by height,
the probability that the student was a man.

Run ``python examples/gmm_heights.py`` (plots when matplotlib is installed).
"""

from __future__ import annotations

import numpy as np

import jaxem

TRUE = {"weights": (0.5, 0.5), "means": (178.0, 165.0), "sds": (7.0, 6.0)}


def simulate(n: int, seed: int = 0):
    """``n`` heights in cm (n, 1) and the hidden sex (0 man, 1 woman)."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(2, size=n, p=TRUE["weights"])
    heights = rng.normal(np.take(TRUE["means"], sex), np.take(TRUE["sds"], sex))
    return heights.reshape(-1, 1), sex


def main(n: int = 2000, seed: int = 0, plot: bool = True, verbose: bool = True):
    """Simulate, fit a two-component mixture, report and (optionally) plot.

    Returns:
        A dict with the fitted ``"gmm"``, the recovered ``"means"``, ``"sds"``
        and ``"weights"`` ordered (men, women), and the ``"accuracy"`` of
        guessing the sex from the posterior.
    """
    heights, sex = simulate(n, seed)
    gmm = jaxem.GaussianMixture(2, n_init=4, random_state=seed, max_iter=500)
    gmm.fit(heights)
    order = np.argsort(-gmm.means_[:, 0])  # the taller component is "men"
    means = gmm.means_[order, 0]
    sds = np.sqrt(gmm.covariances_[order, 0, 0])
    weights = gmm.weights_[order]
    p_man = gmm.predict_proba(heights)[:, order[0]]
    accuracy = float(np.mean((p_man > 0.5) == (sex == 0)))
    if verbose:
        print(f"{n} heights, EM ran {gmm.n_iter_} iterations")
        for name, i in (("men", 0), ("women", 1)):
            print(
                f"{name:6s} mean {means[i]:6.1f} cm (true {TRUE['means'][i]}), "
                f"sd {sds[i]:4.1f} (true {TRUE['sds'][i]}), "
                f"share {weights[i]:.2f} (true {TRUE['weights'][i]})"
            )
        print(f"sex guessed right from height alone for {accuracy:.0%} of students")
    if plot:
        _plot(heights[:, 0], gmm, order)
    return {
        "gmm": gmm,
        "means": means,
        "sds": sds,
        "weights": weights,
        "accuracy": accuracy,
    }


def _plot(heights, gmm, order, path="gmm_heights.png"):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    grid = np.linspace(heights.min() - 5, heights.max() + 5, 400)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(heights, bins=50, density=True, color="0.8", label="all students")
    for i, name in zip(order, ("men", "women"), strict=True):
        sd = np.sqrt(gmm.covariances_[i, 0, 0])
        density = (
            gmm.weights_[i]
            * np.exp(-0.5 * ((grid - gmm.means_[i, 0]) / sd) ** 2)
            / (sd * np.sqrt(2 * np.pi))
        )
        ax.plot(grid, density, label=f"{name} (recovered)")
    ax.plot(grid, np.exp(gmm.score_samples(grid[:, None])), "k--", label="mixture")
    ax.set_xlabel("height (cm)")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot written to {path}")
    return path


if __name__ == "__main__":
    main()
