"""Constructor arguments of the mixture estimators, audited.

Every argument is tried with values of the wrong type or range (strings, None,
negative or zero counts, floats for ints, NaN, inf, huge integers, lists for
scalars). Each must be refused by ``fit`` with one ``ValueError`` whose message
names the argument, before anything is compiled (the restarts' compiled fit is
replaced by a tripwire), never with a traceback from inside JAX, a hang or an
abort.
"""

import numpy as np
import pytest

import jaxem
from jaxem.estimators import _base

NAN, INF = float("nan"), float("inf")
COMMON = {
    "n_components": [0, -1, 2.5, "abc", None, NAN, INF, [2], 10**30],
    "max_iter": [-1, 2.5, "abc", None, NAN, INF, [1], 10**30, 2**62],
    "n_init": [0, -1, 2.5, "abc", None, NAN, [1], 2**40],
    "tol": [-1.0, "abc", None, NAN, INF, [1e-3]],
    "random_state": ["seed", -1, 2**40, 2.5, [1]],
    "warm_start": ["abc", 2, None, NAN],
    "verbose": ["abc", -1, None, 2.5],
    "devices": [0, -1, 2.5, "abc", True, 10**30, [99], [], [0, 0], ["cpu"]],
}
GAUSSIAN = {
    **COMMON,
    "covariance_type": ["banded", None, 1, ["full"]],
    "reg_covar": [-1.0, "abc", None, NAN, INF, [1e-6]],
    "init_params": ["magic", None, 1],
    "weights_init": ["abc", [0.5, "x"], [NAN, 1.0], [0.5, 0.5, 0.5], [0.2, 0.2]],
    "means_init": ["abc", [[NAN, 0.0], [1.0, 1.0]], np.zeros((3, 2)), [[1.0]]],
    "precisions_init": ["abc", -np.ones((2, 2, 2)), np.full((2, 2, 2), NAN)],
    "verbose_interval": [0, "abc", 2.5, None],
    "weights_prior": [0.5, "abc", None, NAN, INF, [1.0, 2.0, 3.0]],
    "means_prior": ["abc", None, NAN, np.zeros(3)],
    "means_weight": [-1.0, "abc", None, NAN, [1.0, 1.0, 1.0]],
    "covars_prior": [-1.0, "abc", None, NAN, INF, -np.eye(2)],
    "covars_weight": [-1.0, "abc", None, NAN, INF],
}
BINOMIAL = {
    **COMMON,
    "n_trials": [0, 2.5, "3", None, 10**30, INF],
    "init_params": ["kmeans", None, 1],
    "weights_init": ["abc", [0.7, 0.7], [0.5], [NAN, 0.5]],
    "p_init": ["abc", [1.5, 0.5], [0.2], [NAN, 0.5]],
    "weights_prior": [0.5, "abc", None, NAN, [1.0, 2.0, 3.0]],
    "p_prior": [0.5, "ab", None, (0.5, 1.0), (NAN, 1.0), (1.0, 1.0, 1.0)],
}
CASES = [
    (jaxem.GaussianMixture, {"n_components": 2}, name, value)
    for name, values in GAUSSIAN.items()
    for value in values
] + [
    (jaxem.BinomialMixture, {"n_components": 2, "n_trials": 10}, name, value)
    for name, values in BINOMIAL.items()
    for value in values
]


@pytest.fixture(autouse=True)
def _no_compiled_fit(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("a bad argument reached the compiled fit")

    monkeypatch.setattr(_base, "fit_restarts", tripwire)


@pytest.mark.parametrize(
    "cls, base, name, value",
    CASES,
    ids=[f"{c.__name__}-{n}-{v!r:.20}" for c, _, n, v in CASES],
)
def test_bad_constructor_argument_is_named_before_compiling(cls, base, name, value):
    X = np.arange(20.0).reshape(10, 2) if cls is jaxem.GaussianMixture else None
    X = np.arange(10.0).reshape(10, 1) if X is None else X
    est = cls(**{**base, name: value})
    with pytest.raises(ValueError) as info:
        est.fit(X)
    message = str(info.value)
    assert name in message, message
    assert "\n" not in message.strip(), message
