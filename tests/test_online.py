"""Online (stepwise) EM over minibatches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import POISSON_GRADIENT

import jaxem

MODEL = jaxem.models.binomial_mixture(2, 10)
TRUE = {"weights": jnp.array([0.3, 0.7]), "p": jnp.array([0.2, 0.8])}
P0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.4, 0.6])}


@pytest.fixture(scope="module")
def heads():
    x, _ = MODEL.sample(jax.random.key(0), TRUE, 20000)
    return x.astype(jnp.float64)


def test_minibatch_em_reaches_the_full_em_optimum(heads):
    online = jaxem.fit_minibatch(MODEL, P0, heads, batch_size=512, num_epochs=3)
    full = jaxem.fit(MODEL, P0, heads, tol=1e-10, max_iter=500)
    np.testing.assert_allclose(online.params["p"], full.params["p"], atol=5e-3)
    np.testing.assert_allclose(
        online.params["weights"], full.params["weights"], atol=1e-2
    )
    per_obs_gap = (full.log_likelihood - online.log_likelihood) / heads.shape[0]
    assert 0 <= per_obs_gap < 1e-3
    assert online.history.shape == (3,) and int(online.status) == jaxem.Status.MAX_ITER


def test_first_full_batch_step_is_an_em_step(heads):
    state = jaxem.online_init(MODEL, P0, heads)
    state, ll = jaxem.online_update(MODEL, state, heads)
    resp = jaxem.posterior(MODEL, P0, heads)
    expected = jaxem.m_step(MODEL, P0, heads, resp)
    np.testing.assert_allclose(state.params["p"], expected["p"], rtol=1e-12)
    np.testing.assert_allclose(ll, jaxem.log_likelihood(MODEL, P0, heads), rtol=1e-12)


def test_out_of_core_loop_over_batches(heads):
    batches = np.asarray(heads).reshape(40, 500)
    state = jaxem.online_init(MODEL, P0, batches[0])
    for _ in range(2):
        for batch in batches:
            state, _ = jaxem.online_update(MODEL, state, batch)
    assert int(state.step) == 80
    np.testing.assert_allclose(jnp.sort(state.params["p"]), [0.2, 0.8], atol=0.02)


def test_online_em_rejects_models_without_statistics_and_bad_options(heads):
    params = {"weights": jnp.full(3, 1 / 3), "rates": jnp.array([1.0, 5.0, 9.0])}
    with pytest.raises(ValueError, match="model: online EM needs a ClosedForm"):
        jaxem.fit_minibatch(POISSON_GRADIENT, params, heads, batch_size=10)
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        jaxem.fit_minibatch(MODEL, P0, heads, batch_size=0)
    with pytest.raises(ValueError, match="step_exponent"):
        jaxem.fit_minibatch(MODEL, P0, heads, batch_size=10, step_exponent=0.3)
    with pytest.raises(ValueError, match="data: contains"):
        jaxem.fit_minibatch(MODEL, P0, jnp.array([1.0, jnp.nan]), batch_size=1)


def test_minibatch_em_on_a_gaussian_mixture():
    rng = np.random.default_rng(0)
    x = (
        np.concatenate(
            [
                rng.normal([0.0, 0.0], 1.0, (3000, 2)),
                rng.normal([6.0, 3.0], 0.5, (2000, 2)),
            ]
        )
        + 1e3
    )
    model = jaxem.models.gaussian_mixture(2, 2, "full")
    params0 = model.init(jax.random.key(0), jnp.asarray(x), "kmeans")
    full = jaxem.fit(model, params0, x, tol=1e-9, max_iter=300)
    online = jaxem.fit_minibatch(model, params0, x, batch_size=1000, num_epochs=10)
    np.testing.assert_allclose(online.params["means"], full.params["means"], atol=0.05)
    gap = (full.log_likelihood - online.log_likelihood) / x.shape[0]
    assert abs(gap) < 1e-4
    # One batch holding all the data: the running statistics converge to the
    # full-data ones, so online EM reaches the EM fixed point itself.
    whole = jaxem.fit_minibatch(model, params0, x, batch_size=5000, num_epochs=5)
    gap = (full.log_likelihood - whole.log_likelihood) / x.shape[0]
    assert abs(gap) < 1e-8
