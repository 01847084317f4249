"""The generic core: E-step, both M-step kinds, the fit loop, jit and vmap."""

import chex
import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import optax
import pytest
from registry import POISSON_GRADIENT, POISSON_PARTIAL, poisson_data
from scipy.special import logsumexp as np_logsumexp
from scipy.stats import binom, poisson

import jaxem

HEADS = np.array([5.0, 9.0, 8.0, 4.0, 7.0])


def coin_log_joint(params, x, z):
    return jnp.log(0.5) + st.binom.logpmf(x, 10, params["p"][z])


def coin_stats(data, resp, weights):
    return {"heads": resp.T @ data, "tosses": 10 * resp.sum(0)}


def coin_update(stats, params):
    return {"p": stats["heads"] / stats["tosses"]}


CONS = {"p": jaxem.constraints.unit_interval}
COINS_GRADIENT = jaxem.LatentModel(
    coin_log_joint, jaxem.Categorical(2), constraints=CONS
)
COINS_CLOSED = jaxem.LatentModel(
    coin_log_joint,
    jaxem.Categorical(2),
    constraints=CONS,
    m_step=jaxem.ClosedForm(coin_stats, coin_update),
)


def numpy_coin_em(theta, iterations):
    """Independent EM for two coins with weights fixed at 1/2 (numpy/scipy)."""
    thetas, lls = [np.array(theta, float)], []
    for _ in range(iterations):
        theta = thetas[-1]
        logp = np.log(0.5) + binom.logpmf(HEADS[:, None], 10, theta[None, :])
        norm = np_logsumexp(logp, axis=1)
        lls.append(norm.sum())
        resp = np.exp(logp - norm[:, None])
        thetas.append(resp.T @ HEADS / (10 * resp.sum(0)))
    return np.array(thetas), np.array(lls)


def trajectory(model, params, iterations, frozen=()):
    step = jax.jit(jaxem.m_step, static_argnames=("model", "frozen"))
    path = [params["p"]]
    for _ in range(iterations):
        resp = jaxem.posterior(model, params, HEADS)
        params = step(model, params, HEADS, resp, frozen=frozen)
        path.append(params["p"])
    return np.array(path)


@pytest.mark.parametrize(
    "model, atol",
    [(COINS_CLOSED, 1e-12), (COINS_GRADIENT, 1e-4)],
    ids=["closed", "grad"],
)
def test_coin_trajectory_matches_numpy(model, atol):
    thetas, lls = numpy_coin_em([0.6, 0.5], 10)
    result = jaxem.fit(model, {"p": jnp.array([0.6, 0.5])}, HEADS, max_iter=10, tol=0.0)
    np.testing.assert_allclose(
        trajectory(model, {"p": thetas[0]}, 10), thetas, atol=atol
    )
    np.testing.assert_allclose(result.history, lls, rtol=1e-8)
    np.testing.assert_allclose(result.params["p"], thetas[-1], atol=atol)
    # Do & Batzoglou (2008), figure 1: 0.80 and 0.52 after ten iterations.
    np.testing.assert_allclose(result.params["p"], [0.80, 0.52], atol=5e-3)
    assert int(result.n_iter) == 10 and not bool(result.converged)
    assert int(result.status) == jaxem.Status.MAX_ITER


def test_prebuilt_coins_with_frozen_weights_match_numpy():
    thetas, lls = numpy_coin_em([0.6, 0.5], 10)
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
    result = jaxem.fit(model, params0, HEADS, max_iter=10, tol=0.0, frozen=("weights",))
    np.testing.assert_allclose(result.params["p"], thetas[-1], rtol=1e-12)
    np.testing.assert_allclose(result.params["weights"], [0.5, 0.5])
    np.testing.assert_allclose(result.history, lls, rtol=1e-10)


def numpy_poisson_em(data, weights, rates, iterations):
    for _ in range(iterations):
        logp = np.log(weights) + poisson.logpmf(data[:, None], rates[None, :])
        resp = np.exp(logp - np_logsumexp(logp, axis=1, keepdims=True))
        weights = resp.mean(0)
        rates = resp.T @ data / resp.sum(0)
    return weights, rates


def test_partial_closed_form_and_gradient_agree_on_poisson_mixture():
    data = poisson_data()
    params0 = {"weights": jnp.full(3, 1 / 3), "rates": jnp.array([0.5, 5.0, 10.0])}
    partial = jaxem.fit(POISSON_PARTIAL, params0, data, max_iter=500, tol=1e-12)
    gradient = jaxem.fit(POISSON_GRADIENT, params0, data, max_iter=500, tol=1e-12)
    weights, rates = numpy_poisson_em(
        data, np.full(3, 1 / 3), np.array([0.5, 5, 10.0]), 500
    )
    for result in (partial, gradient):
        assert bool(result.converged)
        np.testing.assert_allclose(result.params["rates"], rates, rtol=1e-4)
        np.testing.assert_allclose(result.params["weights"], weights, rtol=1e-4)
    np.testing.assert_allclose(
        partial.log_likelihood, gradient.log_likelihood, rtol=1e-10
    )


def test_partial_closed_form_first_step_is_ecm():
    """The partial update sets the rates in closed form, the weights by L-BFGS."""
    data = jnp.asarray(poisson_data())
    params0 = {
        "weights": jnp.array([0.2, 0.3, 0.5]),
        "rates": jnp.array([0.5, 5.0, 10.0]),
    }
    resp = jaxem.posterior(POISSON_PARTIAL, params0, data)
    new = jaxem.m_step(POISSON_PARTIAL, params0, data, resp)
    np.testing.assert_allclose(new["rates"], resp.T @ data / resp.sum(0), rtol=1e-12)
    np.testing.assert_allclose(new["weights"], resp.mean(0), rtol=1e-6)


def test_log_likelihood_and_posterior_match_brute_force():
    params = {"p": jnp.array([0.3, 0.75])}
    logp = np.log(0.5) + binom.logpmf(HEADS[:, None], 10, np.array([0.3, 0.75]))
    expected = np_logsumexp(logp, axis=1)
    ll = jaxem.log_likelihood(COINS_GRADIENT, params, HEADS)
    np.testing.assert_allclose(ll, expected.sum(), rtol=1e-12)
    resp = jaxem.posterior(COINS_GRADIENT, params, HEADS)
    chex.assert_shape(resp, (5, 2))
    np.testing.assert_allclose(resp, np.exp(logp - expected[:, None]), rtol=1e-12)
    np.testing.assert_allclose(resp.sum(1), 1.0, rtol=1e-12)
    weights = jnp.array([1.0, 0.0, 2.0, 1.0, 3.0])
    weighted = jaxem.log_likelihood(COINS_GRADIENT, params, HEADS, weights=weights)
    np.testing.assert_allclose(weighted, (expected * np.asarray(weights)).sum())


def test_integer_weights_equal_repeated_rows():
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": jnp.array([0.4, 0.6]), "p": jnp.array([0.3, 0.6])}
    counts = np.array([1, 3, 0, 2, 1])
    weighted = jaxem.fit(model, params0, HEADS, weights=counts, max_iter=20, tol=0.0)
    repeated = jaxem.fit(model, params0, np.repeat(HEADS, counts), max_iter=20, tol=0.0)
    chex.assert_trees_all_close(weighted.params, repeated.params, rtol=1e-12)
    np.testing.assert_allclose(weighted.history, repeated.history, rtol=1e-12)


def test_convergence_stops_early_and_reports():
    result = jaxem.fit(COINS_CLOSED, {"p": jnp.array([0.6, 0.5])}, HEADS, tol=1e-6)
    n = int(result.n_iter)
    assert bool(result.converged) and int(result.status) == jaxem.Status.CONVERGED
    assert 2 <= n < 100
    history = np.asarray(result.history)
    assert np.all(np.isfinite(history[:n])) and np.all(np.isnan(history[n:]))
    assert abs(history[n - 1] - history[n - 2]) < 1e-6 * len(HEADS)
    assert float(result.log_likelihood) >= history[n - 1] - 1e-12


class TestJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_fit_same_under_jit(self):
        def run(params0, data):
            return jaxem.fit(COINS_GRADIENT, params0, data, max_iter=10, tol=0.0)

        params0 = {"p": jnp.array([0.6, 0.5])}
        expected = jaxem.fit(COINS_GRADIENT, params0, HEADS, max_iter=10, tol=0.0)
        got = self.variant(run)(params0, jnp.asarray(HEADS))
        chex.assert_trees_all_close(got, expected, rtol=1e-10)


def test_jit_with_static_model_argument():
    fitted = jax.jit(jaxem.fit, static_argnames=("model", "max_iter"))
    result = fitted(
        COINS_CLOSED, {"p": jnp.array([0.6, 0.5])}, HEADS, max_iter=10, tol=0.0
    )
    np.testing.assert_allclose(result.params["p"], numpy_coin_em([0.6, 0.5], 10)[0][-1])


def test_vmap_over_restarts_equals_loop():
    starts = jnp.array([[0.6, 0.5], [0.2, 0.9], [0.45, 0.55]])

    def run(p):
        return jaxem.fit(COINS_GRADIENT, {"p": p}, HEADS, max_iter=15, tol=1e-8)

    batched = jax.vmap(run)(starts)
    for i, p in enumerate(starts):
        single = run(p)
        chex.assert_trees_all_close(
            jax.tree.map(lambda x, i=i: x[i], batched), single, rtol=1e-8
        )


def test_vmap_over_datasets_equals_loop():
    datasets = jnp.stack([jnp.asarray(HEADS), jnp.array([1.0, 2.0, 9.0, 10.0, 3.0])])

    def run(data):
        return jaxem.fit(COINS_CLOSED, {"p": jnp.array([0.6, 0.5])}, data, max_iter=10)

    batched = jax.vmap(run)(datasets)
    for i in range(2):
        single = run(datasets[i])
        np.testing.assert_allclose(
            batched.params["p"][i], single.params["p"], rtol=1e-12
        )
        np.testing.assert_allclose(batched.history[i], single.history, rtol=1e-12)


def test_second_same_shaped_fit_does_not_retrace():
    traces = []

    def log_joint(params, x, z):
        traces.append(1)
        return jnp.log(0.5) + st.binom.logpmf(x, 10, params["p"][z])

    model = jaxem.LatentModel(log_joint, jaxem.Categorical(2), constraints=CONS)
    jaxem.fit(model, {"p": jnp.array([0.6, 0.5])}, HEADS, max_iter=5)
    first = len(traces)
    assert first > 0
    jaxem.fit(model, {"p": jnp.array([0.3, 0.7])}, HEADS + 1.0, max_iter=5)
    assert len(traces) == first


def test_other_optax_optimizer_is_monotone():
    data = poisson_data()
    params0 = {"weights": jnp.full(3, 1 / 3), "rates": jnp.array([0.5, 5.0, 10.0])}
    result = jaxem.fit(
        POISSON_GRADIENT,
        params0,
        data,
        max_iter=20,
        tol=0.0,
        m_step_optimizer=optax.adam(0.05),
        m_step_iters=20,
    )
    history = np.asarray(result.history)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[:-1]))
    assert history[-1] > history[0]


def test_nan_log_density_stops_with_status_not_nan_params():
    def log_joint(params, x, z):
        lp = jnp.log(0.5) + st.binom.logpmf(x, 10, params["p"][z])
        # A density that breaks once theta_A passes 0.75: NaN must be reported.
        return jnp.where(params["p"][0] > 0.75, jnp.nan, lp)

    model = jaxem.LatentModel(
        log_joint,
        jaxem.Categorical(2),
        constraints=CONS,
        m_step=jaxem.ClosedForm(coin_stats, coin_update),
    )
    result = jaxem.fit(model, {"p": jnp.array([0.6, 0.5])}, HEADS, max_iter=10)
    assert int(result.status) == jaxem.Status.NONFINITE
    assert not bool(result.converged)
    assert np.all(np.isfinite(result.params["p"]))
    assert float(result.params["p"][0]) <= 0.75
    assert np.isfinite(float(result.log_likelihood))


def test_nan_at_start_reports_nonfinite():
    def log_joint(params, x, z):
        return jnp.nan * x

    model = jaxem.LatentModel(log_joint, jaxem.Categorical(2))
    result = jaxem.fit(model, {"a": jnp.zeros(2)}, HEADS, max_iter=5)
    assert int(result.status) == jaxem.Status.NONFINITE
    assert int(result.n_iter) == 0 and not bool(result.converged)


def test_callback_reports_progress():
    seen = []
    jaxem.fit(
        COINS_CLOSED,
        {"p": jnp.array([0.6, 0.5])},
        HEADS,
        max_iter=4,
        tol=0.0,
        callback=lambda i, ll: seen.append((int(i), float(ll))),
    )
    jax.effects_barrier()
    assert sorted(i for i, _ in seen) == [0, 1, 2, 3]


def test_pytree_data():
    """Data may be a pytree of arrays sharing the leading axis N."""

    def log_joint(params, obs, z):
        return jnp.log(0.5) + st.binom.logpmf(obs["heads"], obs["n"], params["p"][z])

    model = jaxem.LatentModel(log_joint, jaxem.Categorical(2), constraints=CONS)
    data = {"heads": HEADS, "n": jnp.full(5, 10.0)}
    result = jaxem.fit(model, {"p": jnp.array([0.6, 0.5])}, data, max_iter=10, tol=0.0)
    np.testing.assert_allclose(
        result.params["p"], numpy_coin_em([0.6, 0.5], 10)[0][-1], atol=1e-4
    )
