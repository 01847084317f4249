"""SQUAREM acceleration: same optimum as plain EM, monotone, far fewer M-steps."""

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import pytest

import jaxem
from jaxem import constraints as C

# Hasselblad (1969): deaths per day of women aged 80+ in The Times, 1910-1912.
DEATHS = np.arange(10.0)
DAYS = np.array([162, 267, 271, 185, 111, 61, 27, 8, 3, 1], float)


def _poisson_log_joint(params, x, z):
    return jnp.log(params["weights"][z]) + st.poisson.logpmf(x, params["rates"][z])


def _poisson_stats(data, resp, weights):
    w = resp if weights is None else resp * weights[:, None]
    return {"n": w.sum(0), "sx": w.T @ data}


def _poisson_update(s, params):
    return {"weights": s["n"] / s["n"].sum(), "rates": s["sx"] / s["n"]}


CONS = {"weights": C.simplex, "rates": C.positive}
POISSON = jaxem.LatentModel(
    _poisson_log_joint,
    jaxem.Categorical(2),
    constraints=CONS,
    m_step=jaxem.ClosedForm(_poisson_stats, _poisson_update),
)
POISSON_GRADIENT = jaxem.LatentModel(
    _poisson_log_joint, jaxem.Categorical(2), constraints=CONS
)
P0 = {"weights": np.array([0.3, 0.7]), "rates": np.array([1.0, 2.5])}


def _monotone(result):
    h = np.asarray(result.history)[: int(result.n_iter)]
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))


def test_hasselblad_same_optimum_in_far_fewer_m_steps():
    plain = jaxem.fit(POISSON, P0, DEATHS, weights=DAYS, max_iter=50000, tol=0.0)
    fast = jaxem.fit(
        POISSON, P0, DEATHS, weights=DAYS, max_iter=200, tol=1e-12, accelerate="squarem"
    )
    assert bool(fast.converged)
    _monotone(fast)
    np.testing.assert_allclose(fast.log_likelihood, plain.log_likelihood, rtol=1e-10)
    # The likelihood is flat along the optimum's ridge: 60 cycles reach the
    # parameters that 50,000 plain EM iterations reach.
    longer = jaxem.fit(
        POISSON, P0, DEATHS, weights=DAYS, max_iter=60, tol=0.0, accelerate="squarem"
    )
    for key in P0:
        np.testing.assert_allclose(longer.params[key], plain.params[key], rtol=1e-7)
    # Plain EM needs thousands of M-steps here; SQUAREM a few dozen.
    slow = jaxem.fit(POISSON, P0, DEATHS, weights=DAYS, max_iter=20000, tol=1e-12)
    assert 3 * int(fast.n_iter) * 5 < int(slow.n_iter)


def test_squarem_with_the_gradient_m_step():
    fast = jaxem.fit(
        POISSON_GRADIENT,
        P0,
        DEATHS,
        weights=DAYS,
        max_iter=100,
        tol=1e-10,
        accelerate="squarem",
    )
    _monotone(fast)
    closed = jaxem.fit(
        POISSON, P0, DEATHS, weights=DAYS, max_iter=100, tol=1e-12, accelerate="squarem"
    )
    np.testing.assert_allclose(fast.log_likelihood, closed.log_likelihood, rtol=1e-9)


def test_overlapping_gmm_and_near_identical_hmm_states():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (150, 2)), rng.normal(0.8, 1.1, (150, 2))])
    gmm = jaxem.models.gaussian_mixture(2, 2, "full")
    g0 = {
        "weights": np.array([0.5, 0.5]),
        "means": np.array([[-0.5, -0.5], [1.0, 1.0]]),
        "covariances": np.stack([np.eye(2)] * 2),
    }
    plain = jaxem.fit(gmm, g0, x, max_iter=3000, tol=1e-11)
    fast = jaxem.fit(gmm, g0, x, max_iter=500, tol=1e-11, accelerate="squarem")
    _monotone(fast)
    assert float(fast.log_likelihood) >= float(plain.log_likelihood) - 1e-8
    assert 3 * int(fast.n_iter) < int(plain.n_iter)

    seq = rng.normal(size=(1, 200, 1)) + (np.arange(200) // 20 % 2)[None, :, None] * 0.3
    hmm = jaxem.models.gaussian_hmm(2, 1, "diag")
    h0 = {
        "startprob": np.array([0.5, 0.5]),
        "transmat": np.array([[0.9, 0.1], [0.1, 0.9]]),
        "means": np.array([[-0.2], [0.5]]),
        "covars": np.ones((2, 1)),
    }
    fast = jaxem.fit(hmm, h0, seq, max_iter=300, tol=1e-10, accelerate="squarem")
    _monotone(fast)
    slow = jaxem.fit(hmm, h0, seq, max_iter=int(fast.n_iter) * 3, tol=0.0)
    assert float(fast.log_likelihood) >= float(slow.log_likelihood) - 1e-8


def test_squarem_under_vmap_over_restarts():
    starts = {
        "weights": np.array([[0.3, 0.7], [0.6, 0.4]]),
        "rates": np.array([[1.0, 2.5], [0.5, 3.0]]),
    }
    batched = jax.vmap(
        lambda p: jaxem.fit(
            POISSON, p, DEATHS, weights=DAYS, max_iter=50, tol=0.0, accelerate="squarem"
        )
    )(starts)
    for i in range(2):
        one = jaxem.fit(
            POISSON,
            {k: v[i] for k, v in starts.items()},
            DEATHS,
            weights=DAYS,
            max_iter=50,
            tol=0.0,
            accelerate="squarem",
        )
        np.testing.assert_allclose(batched.history[i], one.history, rtol=1e-10)


def test_accelerate_must_be_known():
    with pytest.raises(ValueError, match="accelerate"):
        jaxem.fit(POISSON, P0, DEATHS, weights=DAYS, accelerate="squareem")
