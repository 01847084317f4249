"""The occasionally dishonest casino (Durbin et al., Biological Sequence Analysis).

A casino rolls a fair die, but now and then switches to a loaded one that shows
a six half of the time (each other face 1/10). It switches fair -> loaded with
probability 0.05 and loaded -> fair with probability 0.1 after each roll. From
the rolls alone, a two-state categorical HMM recovers the dice, the switching
probabilities and, roll by roll, the posterior probability that the die was
loaded.

Run ``python examples/casino.py`` (plots when matplotlib is installed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxem

TRUE_PARAMS = {
    "startprob": np.array([1.0, 0.0]),
    "transmat": np.array([[0.95, 0.05], [0.10, 0.90]]),
    "emissionprob": np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]]),
}
STATE_NAMES = ("fair", "loaded")


def simulate(n_rolls: int, seed: int = 0):
    """``n_rolls`` rolls (faces 0..5) and the hidden die (0 fair, 1 loaded)."""
    model = jaxem.models.categorical_hmm(2, 6)
    params = jax.tree.map(jnp.asarray, TRUE_PARAMS)
    rolls, dice = model.sample(jax.random.key(seed), params, n_rolls)
    return np.asarray(rolls), np.asarray(dice)


def main(
    n_rolls: int = 20_000,
    seed: int = 0,
    plot: bool = True,
    n_iter: int = 500,
    n_init: int = 4,
    verbose: bool = True,
) -> dict:
    """Simulate the casino, fit a 2-state HMM, report and plot the estimates.

    Returns:
        A dict with the fitted estimator (``"hmm"``), its ``"transmat"`` and
        ``"emissionprob"`` with the states ordered (fair, loaded), the posterior
        probability ``"p_loaded"`` (n_rolls,) and the true ``"dice"``.
    """
    rolls, dice = simulate(n_rolls, seed)
    hmm = jaxem.CategoricalHMM(
        2, n_features=6, n_iter=n_iter, tol=1e-6, random_state=seed, n_init=n_init
    )
    hmm.fit(rolls.reshape(-1, 1))
    loaded = int(np.argmax(hmm.emissionprob_[:, 5]))  # the die that likes sixes
    order = [1 - loaded, loaded]
    transmat = hmm.transmat_[np.ix_(order, order)]
    emissionprob = hmm.emissionprob_[order]
    p_loaded = hmm.predict_proba(rolls.reshape(-1, 1))[:, loaded]
    accuracy = np.mean((p_loaded > 0.5) == (dice == 1))
    if verbose:
        np.set_printoptions(precision=3, suppress=True)
        print(f"{n_rolls} rolls, EM ran {hmm.monitor_.iter} iterations")
        print("transition matrix (fair, loaded):\n", transmat)
        print("   truth:\n", TRUE_PARAMS["transmat"])
        print("emission probabilities of faces 1..6:\n", emissionprob)
        print("   truth:\n", TRUE_PARAMS["emissionprob"])
        print(f"rolls whose die the posterior gets right: {accuracy:.1%}")
    if plot:
        _plot(p_loaded, dice)
    return {
        "hmm": hmm,
        "transmat": transmat,
        "emissionprob": emissionprob,
        "p_loaded": p_loaded,
        "dice": dice,
        "accuracy": accuracy,
    }


def _plot(p_loaded, dice, window=600):
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    t = np.arange(min(window, len(dice)))
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.fill_between(
        t,
        0,
        dice[t],
        step="mid",
        color="tab:red",
        alpha=0.2,
        label="loaded die in use (truth)",
    )
    ax.plot(
        t, p_loaded[t], color="tab:blue", lw=1.2, label="posterior P(loaded | rolls)"
    )
    ax.set(
        xlabel="roll",
        ylabel="probability",
        ylim=(-0.02, 1.02),
        title="The occasionally dishonest casino",
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    plt.show()


if __name__ == "__main__":
    main()
