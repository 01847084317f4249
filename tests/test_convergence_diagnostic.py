"""EM converges to round-off with either M-step, and says how close it is.

Hasselblad's Poisson mixture (deaths per day of women over 80 in The Times,
1910-1912) converges slowly: EM keeps gaining about 0.4% of the remaining
distance per iteration. Issue 13, section 4: the gradient M-step used to stop
moving about 5e-6 short of the optimum (a round-off-level change of Q was
rejected), and ``converged`` at the default ``tol`` is declared 0.08 nats below
the maximum, which ``FitResult.gradient_norm`` now exposes.
"""

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import pytest

import jaxem

DEATHS = np.arange(10.0)
DAYS = np.array([162, 267, 271, 185, 111, 61, 27, 8, 3, 1.0])
P0 = {"weights": np.array([0.3, 0.7]), "rates": np.array([1.0, 2.5])}
CONSTRAINTS = {
    "weights": jaxem.constraints.simplex,
    "rates": jaxem.constraints.positive,
}


def log_joint(params, x, z):
    return jnp.log(params["weights"][z]) + st.poisson.logpmf(x, params["rates"][z])


def stats(data, resp, weights):
    resp = resp * weights[:, None]
    return {"n": resp.sum(0), "sx": resp.T @ data}


def update(s, params):
    return {"weights": s["n"] / s["n"].sum(), "rates": s["sx"] / s["n"]}


GRADIENT = jaxem.LatentModel(log_joint, jaxem.Categorical(2), constraints=CONSTRAINTS)
CLOSED = jaxem.LatentModel(
    log_joint,
    jaxem.Categorical(2),
    constraints=CONSTRAINTS,
    m_step=jaxem.ClosedForm(stats, update),
)


def fit(model, params0, **options):
    return jaxem.fit(model, params0, DEATHS, weights=DAYS, **options)


@pytest.fixture(scope="module")
def optimum():
    """A long closed-form run: EM reaches round-off by iteration ~6600."""
    return fit(CLOSED, P0, max_iter=8000, tol=0.0, gradient_norm=True)


def test_closed_form_reaches_the_published_optimum(optimum):
    # McLachlan & Krishnan (2008), Section 3.?: pi = 0.3599, mu = 1.2561, 2.6634.
    np.testing.assert_allclose(optimum.params["weights"][0], 0.3599, atol=5e-5)
    np.testing.assert_allclose(optimum.params["rates"], [1.2561, 2.6634], atol=5e-5)
    np.testing.assert_allclose(optimum.log_likelihood, -1989.9459, atol=5e-5)
    assert float(optimum.gradient_norm) < 1e-12


def test_gradient_m_step_keeps_converging_to_the_same_optimum(optimum):
    # Start where the gradient M-step used to stall (it stopped moving about
    # 5e-6 short of the optimum): 3e-7 short.
    near = fit(CLOSED, P0, max_iter=3000, tol=0.0)
    gap = np.abs(near.params["rates"] / optimum.params["rates"] - 1).max()
    assert 1e-7 < gap < 1e-6
    result = fit(GRADIENT, near.params, max_iter=1000, tol=0.0, gradient_norm=True)
    for key in ("weights", "rates"):
        np.testing.assert_allclose(
            result.params[key], optimum.params[key], rtol=1e-8, err_msg=key
        )
    history = np.asarray(result.history)
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))
    assert float(result.gradient_norm) < 1e-10


def test_converged_far_from_the_maximum_shows_in_gradient_norm(optimum):
    early = fit(CLOSED, P0, gradient_norm=True)  # default tol=1e-6
    assert bool(early.converged) and int(early.n_iter) == 12
    gap = float(optimum.log_likelihood - early.log_likelihood)
    assert 0.05 < gap < 0.1  # 0.082 nats below the maximum, "converged"
    assert float(early.gradient_norm) > 1e-4 > 1e6 * float(optimum.gradient_norm)
    # The function and the field agree; without the option the field is None.
    np.testing.assert_allclose(
        jaxem.gradient_norm(GRADIENT, early.params, DEATHS, weights=DAYS),
        early.gradient_norm,
        rtol=1e-10,
    )
    assert fit(CLOSED, P0).gradient_norm is None


def test_gradient_norm_is_the_exact_gradient_in_unconstrained_coordinates():
    params = {"weights": jnp.array([0.4, 0.6]), "rates": jnp.array([1.1, 2.9])}
    total = DAYS.sum()

    def average(u):
        w = jax.nn.softmax(jnp.array([u[0], 0.0]))
        p = {"weights": w, "rates": jnp.exp(u[1:])}
        per_x = jax.nn.logsumexp(
            jnp.log(p["weights"])[None]
            + st.poisson.logpmf(DEATHS[:, None], p["rates"][None]),
            axis=1,
        )
        return jnp.sum(DAYS * per_x) / total

    u = jnp.concatenate(
        [
            jnp.log(params["weights"][:1] / params["weights"][1:]),
            jnp.log(params["rates"]),
        ]
    )
    expected = jnp.linalg.norm(jax.grad(average)(u))
    got = jaxem.gradient_norm(GRADIENT, params, DEATHS, weights=DAYS)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    frozen = jaxem.gradient_norm(
        GRADIENT, params, DEATHS, weights=DAYS, frozen=("weights",)
    )
    np.testing.assert_allclose(frozen, jnp.linalg.norm(jax.grad(average)(u)[1:]))
    # Traceable: it vmaps over restarts.
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), params)
    batched = jax.vmap(
        lambda p: jaxem.gradient_norm(GRADIENT, p, DEATHS, weights=DAYS)
    )(stacked)
    np.testing.assert_allclose(batched, [expected, expected], rtol=1e-12)


def test_gradient_norm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="model: expected a jaxem.LatentModel"):
        jaxem.gradient_norm("model", P0, DEATHS)
    with pytest.raises(ValueError, match=r"frozen: \['nope'\] are not keys of params"):
        jaxem.gradient_norm(GRADIENT, P0, DEATHS, frozen=("nope",))
    with pytest.raises(ValueError, match=r"params\['rates'\]: contains 1 NaN"):
        jaxem.gradient_norm(GRADIENT, {**P0, "rates": np.array([1.0, np.nan])}, DEATHS)
    with pytest.raises(ValueError, match="gradient_norm: expected a bool"):
        fit(CLOSED, P0, gradient_norm="yes")
