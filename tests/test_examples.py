"""Every script in examples/ runs (small sizes, no plots) and gets the answer."""

from __future__ import annotations

import importlib.util
import inspect
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

# Small sizes per example (keyword arguments of its main); others run with
# their defaults. Every example's main takes plot=False.
SMALL = {
    "regression_mixture": {"n": 200, "max_iter": 60},
    "poisson_mixture": {"n": 600, "max_iter": 150},
    "coins": {"iterations": 10},
    "gmm_heights": {"n": 300},
    "casino": {"n_rolls": 300, "n_iter": 30, "n_init": 1},
    "random_effects": {"n_groups": 40, "max_iter": 60},
}


def _check_regression(params):
    np.testing.assert_allclose(params["coef"][:, 0], [2.0, -1.0], atol=0.2)
    np.testing.assert_allclose(params["intercept"], [0.0, 3.0], atol=0.4)


def _check_poisson(params):
    np.testing.assert_allclose(params["rates"], [1.0, 6.0, 15.0], rtol=0.2)
    np.testing.assert_allclose(params["weights"].sum(), 1.0)


CHECKS = {"regression_mixture": _check_regression, "poisson_mixture": _check_poisson}


def _check_random_effects(params):
    np.testing.assert_allclose(params["sigma"], 0.4, atol=0.1)
    assert np.linalg.eigvalsh(params["effects_cov"]).min() > 0


CHECKS["random_effects"] = _check_random_effects


def _load(path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scripts():
    return sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", _scripts(), ids=lambda p: p.stem)
def test_example_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = _load(path)
    assert module.__doc__, f"{path.name}: needs a docstring saying what it shows"
    main = module.main
    accepted = inspect.signature(main).parameters
    kwargs = {k: v for k, v in SMALL.get(path.stem, {}).items() if k in accepted}
    if "plot" in accepted:
        kwargs["plot"] = False
    result = main(**kwargs)
    assert not list(tmp_path.glob("*.png")), "plot=False must not write files"
    if path.stem in CHECKS:
        CHECKS[path.stem](result)
