"""Regenerate the embedded data sets (run once; the outputs are committed).

``python -m jaxem.data._generate`` rewrites ``coins.csv``, ``heights.csv`` and
``casino.csv`` next to this file from fixed seeds, so the files are reproducible.
"""

from __future__ import annotations

import pathlib

import numpy as np

HERE = pathlib.Path(__file__).parent

# Do & Batzoglou (2008), Figure 1: five sets of ten tosses (1 = heads).
COIN_SETS = [
    "HTTTHHTHTH",
    "HHHHTHHHHH",
    "HTHHHHHTHH",
    "HTHTTTHHTT",
    "THHHTHHHTH",
]

# The occasionally dishonest casino (Durbin et al., Biological Sequence
# Analysis, 1998, section 3.2): a fair die and a loaded one that shows a six
# half of the time; the casino switches fair -> loaded with probability 0.05
# and loaded -> fair with probability 0.1 after each roll.
CASINO_TRANSITIONS = np.array([[0.95, 0.05], [0.10, 0.90]])
CASINO_EMISSIONS = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])


def coins() -> str:
    header = ",".join(f"toss_{i + 1}" for i in range(10))
    rows = [",".join("1" if c == "H" else "0" for c in s) for s in COIN_SETS]
    return "\n".join([header, *rows]) + "\n"


def heights(n: int = 1000, seed: int = 20081) -> str:
    # Adult heights in cm: two sub-populations of equal size.
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, size=n)
    means = np.array([162.0, 176.0])
    stds = np.array([6.5, 7.2])
    x = rng.normal(means[group], stds[group])
    return "height_cm\n" + "".join(f"{v:.1f}\n" for v in x)


def casino(n: int = 600, seed: int = 1998) -> str:
    rng = np.random.default_rng(seed)
    state = 0
    lines = ["roll,loaded"]
    for _ in range(n):
        roll = rng.choice(6, p=CASINO_EMISSIONS[state]) + 1
        lines.append(f"{roll},{state}")
        state = rng.choice(2, p=CASINO_TRANSITIONS[state])
    return "\n".join(lines) + "\n"


def main() -> None:
    (HERE / "coins.csv").write_text(coins())
    (HERE / "heights.csv").write_text(heights())
    (HERE / "casino.csv").write_text(casino())


if __name__ == "__main__":
    main()
