"""Properties every registered model must have (see tests/registry.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import CASES

import jaxem

IDS = [case.name for case in CASES]


def _fit(case, params0, max_iter=15, tol=0.0):
    return jaxem.fit(case.model(), params0, max_iter=max_iter, tol=tol, **case.data())


def _assert_non_decreasing(history):
    history = np.asarray(history)
    history = history[np.isfinite(history)]
    steps = np.diff(history)
    slack = 1e-9 * np.maximum(1.0, np.abs(history[:-1]))
    assert np.all(steps >= -slack), steps.min()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_history_is_non_decreasing(case):
    result = _fit(case, case.params0(jax.random.key(0)))
    assert int(result.status) != jaxem.Status.NONFINITE
    _assert_non_decreasing(result.history)
    last = np.asarray(result.history)[int(result.n_iter) - 1]
    # The history is the objective: with a prior, log-likelihood + log-prior.
    prior = 0.0 if result.log_prior is None else float(result.log_prior)
    assert float(result.log_likelihood) + prior >= last - 1e-9 * abs(last)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_over_restarts_and_jit(case):
    keys = jax.random.split(jax.random.key(1), 3)
    params0 = jax.vmap(case.params0)(keys)
    kwargs = case.data()
    model = case.model()

    @jax.jit
    def run(p):
        return jaxem.fit(model, p, max_iter=8, tol=0.0, **kwargs)

    batched = jax.vmap(run)(params0)
    single = run(jax.tree.map(lambda x: x[2], params0))
    for got, want in zip(
        jax.tree.leaves(jax.tree.map(lambda x: x[2], batched)),
        jax.tree.leaves(single),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    for i in range(3):
        _assert_non_decreasing(batched.history[i])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_posterior_is_normalised(case):
    model = case.model()
    kwargs = case.data()
    data = kwargs.pop("data")
    post = jaxem.posterior(
        model, case.params0(jax.random.key(2)), data, lengths=kwargs.get("lengths")
    )
    if hasattr(post, "cov"):  # a Gaussian posterior: covariances are PD
        valid = np.asarray(jnp.trace(post.cov, axis1=-2, axis2=-1) > 0)
        assert np.linalg.eigvalsh(np.asarray(post.cov)[valid]).min() > 0
        return
    probs = post if isinstance(post, jax.Array) else post.marginals
    assert np.all(np.asarray(probs) >= 0)
    total = np.asarray(jnp.sum(probs, axis=-1))
    if "lengths" in kwargs and kwargs["lengths"] is not None:
        mask = (
            np.arange(total.shape[1])[None, :] < np.asarray(kwargs["lengths"])[:, None]
        )
        total = total[mask]
    np.testing.assert_allclose(total, 1.0, rtol=1e-10)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.model().sample is not None], ids=lambda c: c.name
)
def test_sampler_draws_data_the_model_can_fit(case):
    model = case.model()
    params = case.params0(jax.random.key(3))
    x, z = model.sample(jax.random.key(4), params, 50)
    assert z.shape[0] == 50
    if jnp.issubdtype(z.dtype, jnp.integer):  # discrete latent values
        assert np.all((z >= 0) & (z < model.num_values))
    assert np.all(np.isfinite(jaxem.log_likelihood(model, params, x)))
