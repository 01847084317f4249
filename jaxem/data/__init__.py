"""Small data sets that ship inside the package (no network needed).

- ``coins``: the five sets of ten coin tosses of Do & Batzoglou (2008).
- ``heights``: 1000 adult heights in cm drawn from two Gaussian sub-populations.
- ``casino``: 600 rolls of the occasionally dishonest casino (Durbin et al.,
  1998) with the hidden die (0 fair, 1 loaded) that produced each roll.

The files are plain CSV; ``path(name)`` gives their location, e.g. to try the
command line: ``jaxem fit gmm "$(python -c 'import jaxem.data as d;
print(d.path("heights"))')"``.
"""

from __future__ import annotations

import importlib.resources
import pathlib

import numpy as np

_FILES = {"coins": "coins.csv", "heights": "heights.csv", "casino": "casino.csv"}


def path(name: str) -> pathlib.Path:
    """Location of the embedded CSV file ``name`` (``coins``, ``heights``, ``casino``).

    Examples:
        >>> import jaxem.data
        >>> jaxem.data.path("heights").name
        'heights.csv'
    """
    if name not in _FILES:
        raise ValueError(f"name: expected one of {sorted(_FILES)}, got {name!r}")
    return pathlib.Path(str(importlib.resources.files(__name__) / _FILES[name]))


def _read(name: str) -> np.ndarray:
    return np.loadtxt(path(name), delimiter=",", skiprows=1, ndmin=2)


def load_coins() -> np.ndarray:
    """The coin tosses of Do & Batzoglou (2008): (5, 10) array, 1 = heads.

    Examples:
        >>> import jaxem.data
        >>> jaxem.data.load_coins().sum(axis=1)
        array([5, 9, 8, 4, 7])
    """
    return _read("coins").astype(np.int64)


def load_heights() -> np.ndarray:
    """1000 adult heights in cm, shape (1000, 1) float64 (two sub-populations).

    Examples:
        >>> import jaxem.data
        >>> jaxem.data.load_heights().shape
        (1000, 1)
    """
    return _read("heights")


def load_casino() -> tuple[np.ndarray, np.ndarray]:
    """The dishonest casino: ``(rolls, loaded)``, each (600,) int.

    ``rolls`` are die faces 1..6; ``loaded`` is the hidden die (0 fair,
    1 loaded) that produced each roll.

    Examples:
        >>> import jaxem.data
        >>> rolls, loaded = jaxem.data.load_casino()
        >>> rolls.shape, int(rolls.min()), int(rolls.max())
        ((600,), 1, 6)
    """
    table = _read("casino").astype(np.int64)
    return table[:, 0], table[:, 1]


__all__ = ["load_casino", "load_coins", "load_heights", "path"]
