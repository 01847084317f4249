"""Prebuilt HMMs: closed form == gradient M-step, custom emissions, the casino."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import pytest
from registry import _hmm_gaussian_data

import jaxem

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _gradient_twin(model):
    """The same model without its closed form: every M-step by gradient."""
    return jaxem.LatentModel(
        model.log_joint,
        model.latent,
        constraints=model.constraints,
        log_joint_table=model.log_joint_table,
    )


def _compare_m_steps(model, params, data, lengths, rtol):
    twin = _gradient_twin(model)

    @jax.jit
    def both(p):
        post = model.latent.e_step(model, p, data, None, lengths).posterior
        closed = jaxem.m_step(model, p, data, post, None, lengths)
        grad = jaxem.m_step(twin, p, data, post, None, lengths, num_iters=200)
        return closed, grad

    closed, grad = both(params)
    for key in params:
        np.testing.assert_allclose(
            grad[key], closed[key], rtol=rtol, atol=1e-7, err_msg=key
        )


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_gaussian_closed_form_equals_gradient_m_step(covariance_type):
    kw = _hmm_gaussian_data()
    rng = np.random.default_rng(0)
    x = jnp.concatenate([kw["data"], jnp.asarray(rng.normal(size=(3, 30, 1)))], -1)
    cov = (
        jnp.ones((2, 2))
        if covariance_type == "diag"
        else jnp.tile(jnp.eye(2)[None], (2, 1, 1))
    )
    params = {
        "startprob": jnp.array([0.6, 0.4]),
        "transmat": jnp.array([[0.8, 0.2], [0.3, 0.7]]),
        "means": jnp.array([[-1.0, 0.0], [1.0, 0.5]]),
        "covars": cov,
    }
    model = jaxem.models.gaussian_hmm(2, 2, covariance_type)
    _compare_m_steps(model, params, x, kw["lengths"], rtol=1e-5)


def test_categorical_and_poisson_closed_forms_equal_gradient_m_steps():
    lengths = jnp.array([30, 18, 25])
    rng = np.random.default_rng(1)
    symbols = jnp.asarray(rng.integers(0, 3, (3, 30)))
    chain = {
        "startprob": jnp.array([0.6, 0.4]),
        "transmat": jnp.array([[0.8, 0.2], [0.3, 0.7]]),
    }
    _compare_m_steps(
        jaxem.models.categorical_hmm(2, 3),
        {**chain, "emissionprob": jnp.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])},
        symbols,
        lengths,
        rtol=1e-5,
    )
    counts = jnp.asarray(rng.poisson(3.0, (3, 30, 1)).astype(float))
    _compare_m_steps(
        jaxem.models.poisson_hmm(2, 1),
        {**chain, "lambdas": jnp.array([[1.0], [5.0]])},
        counts,
        lengths,
        rtol=1e-5,
    )


def test_custom_emission_without_closed_form_matches_the_prebuilt_hmm():
    """A Gaussian emission declared by hand: startprob/transmat by their closed
    form, the emission by gradient; it converges to the prebuilt answer."""

    def emission(params, x, z):
        return jnp.sum(st.norm.logpdf(x, params["mu"][z], jnp.sqrt(params["var"][z])))

    custom = jaxem.LatentModel(
        jaxem.models.hmm_factors(emission),
        jaxem.MarkovChain(2),
        constraints={
            "startprob": jaxem.constraints.simplex,
            "transmat": jaxem.constraints.simplex,
            "var": jaxem.constraints.positive,
        },
        m_step=jaxem.models.hmm_closed_form(),
    )
    kw = _hmm_gaussian_data()
    chain = {
        "startprob": jnp.array([0.5, 0.5]),
        "transmat": jnp.array([[0.7, 0.3], [0.3, 0.7]]),
    }
    mine = jaxem.fit(
        custom,
        {**chain, "mu": jnp.array([[-1.0], [1.0]]), "var": jnp.ones((2, 1))},
        max_iter=300,
        tol=1e-10,
        **kw,
    )
    ref = jaxem.fit(
        jaxem.models.gaussian_hmm(2, 1),
        {**chain, "means": jnp.array([[-1.0], [1.0]]), "covars": jnp.ones((2, 1))},
        max_iter=300,
        tol=1e-10,
        **kw,
    )
    assert bool(mine.converged) and bool(ref.converged)
    np.testing.assert_allclose(mine.log_likelihood, ref.log_likelihood, rtol=1e-8)
    np.testing.assert_allclose(mine.params["mu"], ref.params["means"], rtol=1e-4)
    np.testing.assert_allclose(mine.params["var"], ref.params["covars"], rtol=1e-4)
    np.testing.assert_allclose(
        mine.params["transmat"], ref.params["transmat"], rtol=1e-4
    )
    history = np.asarray(mine.history)[: int(mine.n_iter)]
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))


def test_von_mises_emission_fits_by_gradient():
    """Angles from two von Mises states: no closed form for the emission."""

    def emission(params, angle, z):
        return st.vonmises.logpdf(angle - params["loc"][z], params["kappa"][z])

    model = jaxem.LatentModel(
        jaxem.models.hmm_factors(emission),
        jaxem.MarkovChain(2),
        constraints={
            "startprob": jaxem.constraints.simplex,
            "transmat": jaxem.constraints.simplex,
            "kappa": jaxem.constraints.positive,
        },
        m_step=jaxem.models.hmm_closed_form(),
    )
    truth = jaxem.models.categorical_hmm(2, 2)
    _, z = truth.sample(
        jax.random.key(0),
        {
            "startprob": jnp.array([0.5, 0.5]),
            "transmat": jnp.array([[0.9, 0.1], [0.1, 0.9]]),
            "emissionprob": jnp.full((2, 2), 0.5),
        },
        600,
    )
    rng = np.random.default_rng(0)
    angles = rng.vonmises(np.array([-1.0, 2.0])[np.asarray(z)], 4.0)
    result = jaxem.fit(
        model,
        {
            "startprob": jnp.array([0.5, 0.5]),
            "transmat": jnp.array([[0.8, 0.2], [0.2, 0.8]]),
            "loc": jnp.array([-0.5, 1.5]),
            "kappa": jnp.ones(2),
        },
        jnp.asarray(angles)[None],
        max_iter=60,
        tol=1e-8,
    )
    np.testing.assert_allclose(result.params["loc"], [-1.0, 2.0], atol=0.1)
    np.testing.assert_allclose(result.params["kappa"], [4.0, 4.0], rtol=0.25)
    np.testing.assert_allclose(np.diag(result.params["transmat"]), 0.9, atol=0.04)


def test_casino_example_recovers_the_dice():
    spec = importlib.util.spec_from_file_location(
        "casino", ROOT / "examples" / "casino.py"
    )
    casino = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(casino)
    out = casino.main(n_rolls=20_000, plot=False, verbose=False, n_init=2)
    np.testing.assert_allclose(out["transmat"][0, 1], 0.05, atol=0.015)
    np.testing.assert_allclose(out["transmat"][1, 0], 0.10, atol=0.03)
    np.testing.assert_allclose(out["emissionprob"][1, 5], 0.5, atol=0.03)
    np.testing.assert_allclose(out["emissionprob"][1, :5], 0.1, atol=0.03)
    np.testing.assert_allclose(out["emissionprob"][0], 1 / 6, atol=0.02)
    assert out["accuracy"] > 0.8
    assert out["p_loaded"].shape == (20_000,)
