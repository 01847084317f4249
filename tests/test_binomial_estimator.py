"""The BinomialMixture estimator: scikit-learn-style surface over the coin model."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem.estimators import (
    CollapsedComponentWarning,
    ConvergenceWarning,
    NotFittedError,
)


def coin_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.3
    return rng.binomial(20, np.where(z, 0.8, 0.35)).reshape(-1, 1).astype(float)


def test_fit_recovers_coins_and_matches_functional_fit():
    X = coin_data()
    est = jaxem.BinomialMixture(
        2,
        n_trials=20,
        weights_init=[0.5, 0.5],
        p_init=[0.2, 0.6],
        tol=1e-8,
        max_iter=500,
    ).fit(X)
    order = np.argsort(est.p_)
    np.testing.assert_allclose(est.p_[order], [0.35, 0.8], atol=0.03)
    np.testing.assert_allclose(est.weights_[order], [0.7, 0.3], atol=0.05)
    model = jaxem.models.binomial_mixture(2, 20)
    params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.2, 0.6])}
    result = jaxem.fit(model, params0, X[:, 0], max_iter=500, tol=1e-8)
    np.testing.assert_allclose(est.p_, result.params["p"], rtol=1e-10)
    assert est.converged_ and est.n_iter_ == int(result.n_iter)
    np.testing.assert_allclose(
        est.lower_bound_, result.history[est.n_iter_ - 1] / len(X), rtol=1e-12
    )
    np.testing.assert_allclose(est.score(X) * len(X), result.log_likelihood, rtol=1e-10)


def test_methods_shapes_and_consistency():
    X = coin_data(200)
    est = jaxem.BinomialMixture(2, n_trials=20, n_init=3, random_state=0).fit(X)
    proba = est.predict_proba(X)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(est.predict(X), proba.argmax(1))
    assert est.score_samples(X).shape == (200,)
    k = 2 * 2 - 1  # one free weight, two probabilities
    assert np.isclose(est.bic(X), -2 * est.score(X) * 200 + k * np.log(200))
    assert np.isclose(est.aic(X), -2 * est.score(X) * 200 + 2 * k)
    Xs, labels = est.sample(50)
    assert Xs.shape == (50, 1) and labels.shape == (50,)
    assert np.all((Xs >= 0) & (Xs <= 20))
    np.testing.assert_array_equal(
        jaxem.BinomialMixture(2, 20, random_state=0).fit_predict(X),
        jaxem.BinomialMixture(2, 20, random_state=0).fit(X).predict(X),
    )


def test_restarts_keep_the_best():
    X = coin_data(300, seed=3)
    many = jaxem.BinomialMixture(2, 20, n_init=6, init_params="random", random_state=1)
    one = jaxem.BinomialMixture(2, 20, n_init=1, init_params="random", random_state=1)
    assert many.fit(X).score(X) >= one.fit(X).score(X) - 1e-12


def test_sample_weight_equals_repeated_rows():
    X = coin_data(60)
    counts = np.random.default_rng(1).integers(0, 4, size=60)
    kw = dict(weights_init=[0.5, 0.5], p_init=[0.3, 0.7], tol=0.0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = jaxem.BinomialMixture(2, 20, **kw).fit(X, sample_weight=counts)
        b = jaxem.BinomialMixture(2, 20, **kw).fit(np.repeat(X, counts, axis=0))
    np.testing.assert_allclose(a.p_, b.p_, rtol=1e-10)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-10)


def test_warm_start_continues_and_convergence_warning():
    X = coin_data(100)
    est = jaxem.BinomialMixture(
        2, 20, max_iter=2, tol=0.0, warm_start=True, random_state=0
    )
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est.fit(X)
    first = est.lower_bound_
    with pytest.warns(ConvergenceWarning):
        est.fit(X)
    assert est.lower_bound_ >= first


@pytest.mark.parametrize(
    "kwargs, X, match",
    [
        ({}, np.array([1.0, 2.0, 3.0]), "Expected 2D array, got 1D array"),
        ({}, np.array([[1.0], [np.nan], [3.0]]), "Input X contains NaN"),
        ({}, np.array([[1.0], [25.0], [3.0]]), r"X: head counts must be whole"),
        ({}, np.array([[1.5], [2.0], [3.0]]), r"X: head counts must be whole"),
        ({}, np.array([[1.0]]), "1 sample.* while a minimum of 2 is required"),
        ({"n_components": 3}, np.ones((2, 1)), "n_components = 3, n_samples = 2"),
        ({"n_components": 0}, np.ones((4, 1)), "'n_components' parameter"),
        ({"n_components": 2.0}, np.ones((4, 1)), "'n_components' parameter"),
        ({"n_trials": 10**30}, np.ones((4, 1)), "'n_trials' parameter"),
        ({"n_trials": "3"}, np.ones((4, 1)), "'n_trials' parameter"),
        ({"max_iter": -1}, np.ones((4, 1)), "'max_iter' parameter"),
        ({"max_iter": 2**62}, np.ones((4, 1)), r"'max_iter'.*\[0, 1000000\]"),
        ({"n_init": 2**40}, np.ones((4, 1)), r"'n_init'.*\[1, 10000\]"),
        ({"tol": -1}, np.ones((4, 1)), "'tol' parameter"),
        ({"tol": float("nan")}, np.ones((4, 1)), "'tol' parameter"),
        ({"warm_start": "abc"}, np.ones((4, 1)), "'warm_start' parameter"),
        ({"verbose": "abc"}, np.ones((4, 1)), "'verbose' parameter"),
        ({"init_params": "kmeans"}, np.ones((4, 1)), "'init_params' parameter"),
        ({"weights_init": [0.7, 0.7]}, np.ones((4, 1)), "weights_init: must sum"),
        ({"p_init": [0.2]}, np.ones((4, 1)), r"p_init: expected shape \(2,\)"),
        ({"random_state": "seed"}, np.ones((4, 1)), "random_state"),
    ],
)
def test_bad_input(kwargs, X, match):
    args = {"n_components": 2, "n_trials": 20, **kwargs}
    with pytest.raises(ValueError, match=match):
        jaxem.BinomialMixture(**args).fit(X)


def test_not_fitted_and_sample_weight_errors():
    with pytest.raises(NotFittedError, match="not fitted"):
        jaxem.BinomialMixture(2, 20).predict(np.ones((3, 1)))
    with pytest.raises(
        ValueError, match="Negative values in data passed to `sample_weight`"
    ):
        jaxem.BinomialMixture(2, 20).fit(coin_data(10), sample_weight=-np.ones(10))


def test_get_set_params():
    est = jaxem.BinomialMixture(3, 5)
    assert est.get_params()["n_components"] == 3
    est.set_params(n_init=4)
    assert est.n_init == 4
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        est.set_params(bogus=1)


def test_coin_without_data_is_reported():
    X = coin_data(50)
    est = jaxem.BinomialMixture(2, 20, weights_init=[1.0, 0.0], p_init=[0.4, 0.6])
    with pytest.warns(CollapsedComponentWarning, match=r"coin\(s\) \[1\] got no data"):
        est.fit(X)
    np.testing.assert_array_equal(est.collapsed_, [False, True])
    assert est.weights_[1] == 0.0 and np.isfinite(est.p_).all()


def test_several_columns_are_independent_coins():
    rng = np.random.default_rng(4)
    z = rng.random(300) < 0.4
    X = rng.binomial(10, np.where(z[:, None], [0.8, 0.2, 0.6], [0.3, 0.7, 0.5]))
    est = jaxem.BinomialMixture(2, 10, n_init=2, random_state=0, tol=1e-8).fit(X)
    order = np.argsort(est.p_[:, 0])
    np.testing.assert_allclose(
        est.p_[order], [[0.3, 0.7, 0.5], [0.8, 0.2, 0.6]], atol=0.06
    )
    # The log-likelihood factorises over columns given the component.
    from scipy import stats

    dens = stats.binom.pmf(X[:, None, :], 10, est.p_[None]).prod(-1) @ est.weights_
    np.testing.assert_allclose(est.score_samples(X), np.log(dens), rtol=1e-10)
    assert est.sample(7)[0].shape == (7, 3)
