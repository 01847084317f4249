"""Observed information and standard errors against published numbers and finite
differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxem
from jaxem import constraints as C

CELL = jnp.array([0, 0, 1, 2, 3])


def _linkage_log_joint(params, x, z):
    t = params["t"]
    prob = jnp.stack([0.5, t / 4, (1 - t) / 4, (1 - t) / 4, t / 4])[z]
    return jnp.where(CELL[z] == x, jnp.log(prob), -jnp.inf)


LINKAGE = jaxem.LatentModel(
    _linkage_log_joint, jaxem.Categorical(5), constraints={"t": C.unit_interval}
)
COUNTS = jnp.array([125.0, 18.0, 20.0, 34.0])
# Root of the score equation 197 t^2 - 15 t - 68 = 0 (DLR 1977, section 4.1).
T_HAT = (15 + np.sqrt(15**2 + 4 * 197 * 68)) / (2 * 197)


def test_linkage_matches_louis_1982():
    params = {"t": jnp.asarray(T_HAT)}
    info_u = jaxem.observed_information(LINKAGE, params, jnp.arange(4), weights=COUNTS)
    # In t itself: I_t = I_u / (dt/du)^2 with t = sigmoid(u).
    info_t = float(info_u[0, 0]) / (T_HAT * (1 - T_HAT)) ** 2
    assert info_t == pytest.approx(377.5169, rel=1e-5)
    se = jaxem.standard_errors(LINKAGE, params, jnp.arange(4), weights=COUNTS)
    assert float(se["t"]) == pytest.approx(1 / np.sqrt(info_t), rel=1e-10)
    assert round(float(se["t"]), 4) == 0.0515
    assert round(T_HAT, 4) == 0.6268


def _finite_difference_hessian(model, params, data, lengths=None, h=1e-4):
    u = C.to_unconstrained(model.constraints, params)
    flat, unravel = ravel_pytree(u)

    def ll(f):
        p = C.from_unconstrained(model.constraints, unravel(f), params)
        return float(jaxem.log_likelihood(model, p, data, lengths=lengths))

    flat = np.asarray(flat)
    n = flat.size
    hess = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            e_i = np.eye(n)[i] * h
            e_j = np.eye(n)[j] * h
            hess[i, j] = hess[j, i] = (
                ll(flat + e_i + e_j)
                - ll(flat + e_i - e_j)
                - ll(flat - e_i + e_j)
                + ll(flat - e_i - e_j)
            ) / (4 * h * h)
    return hess


def test_gmm_information_equals_finite_differences():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, (15, 2)), rng.normal(2, 0.5, (15, 2))])
    model = jaxem.models.gaussian_mixture(2, 2, "full")
    params = {
        "weights": jnp.array([0.45, 0.55]),
        "means": jnp.array([[-1.8, 0.1], [2.1, -0.2]]),
        "covariances": jnp.array(
            [[[1.2, 0.2], [0.2, 0.9]], [[0.3, 0.05], [0.05, 0.4]]]
        ),
    }
    info = np.asarray(jaxem.observed_information(model, params, jnp.asarray(x)))
    numeric = -_finite_difference_hessian(model, params, jnp.asarray(x))
    np.testing.assert_allclose(info, numeric, rtol=1e-4, atol=1e-4)
    # The unused upper triangle of each Cholesky factor carries no information.
    assert np.count_nonzero(np.all(info == 0, axis=0)) == 2


def test_hmm_information_equals_finite_differences():
    rng = np.random.default_rng(1)
    states = (np.arange(30) // 6) % 2
    x = rng.normal(np.where(states == 1, 2.0, -1.0), 0.7)[None, :, None]
    model = jaxem.models.gaussian_hmm(2, 1, "diag")
    params = {
        "startprob": jnp.array([0.6, 0.4]),
        "transmat": jnp.array([[0.8, 0.2], [0.25, 0.75]]),
        "means": jnp.array([[-0.9], [1.9]]),
        "covars": jnp.array([[0.5], [0.6]]),
    }
    lengths = jnp.array([30])
    info = np.asarray(
        jaxem.observed_information(model, params, jnp.asarray(x), lengths=lengths)
    )
    numeric = -_finite_difference_hessian(model, params, jnp.asarray(x), lengths)
    np.testing.assert_allclose(info, numeric, rtol=1e-4, atol=1e-4)


def test_standard_errors_of_a_fitted_mixture_match_the_delta_method():
    rng = np.random.default_rng(2)
    heads = jnp.asarray(
        np.concatenate([rng.binomial(10, 0.8, 60), rng.binomial(10, 0.35, 40)]), float
    )
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.7, 0.4])}
    fitted = jaxem.fit(model, params0, heads, max_iter=500, tol=0.0).params
    se = jaxem.standard_errors(model, fitted, heads)
    assert jax.tree.structure(se) == jax.tree.structure(fitted)
    # Delta method by hand in the unconstrained coordinates.
    info = np.asarray(jaxem.observed_information(model, fitted, heads))
    u, unravel = ravel_pytree(C.to_unconstrained(model.constraints, fitted))
    jac = np.asarray(
        jax.jacobian(
            lambda f: ravel_pytree(
                C.from_unconstrained(model.constraints, unravel(f), fitted)
            )[0]
        )(u)
    )
    expected = np.sqrt(np.diag(jac @ np.linalg.inv(info) @ jac.T))
    got = np.concatenate([np.asarray(se["p"]), np.asarray(se["weights"])])
    np.testing.assert_allclose(got, expected, rtol=1e-8)
    # Both weights share one free coordinate: equal standard errors.
    assert float(se["weights"][0]) == pytest.approx(float(se["weights"][1]))


def test_a_parameter_the_data_ignore_is_reported_not_identified():
    def log_joint(params, x, z):
        return jnp.log(0.5) + jax.scipy.stats.norm.logpdf(x, params["mu"][z], 1.0)

    model = jaxem.LatentModel(log_joint, jaxem.Categorical(2))
    params = {"mu": jnp.array([-1.0, 1.0]), "unused": jnp.array(3.0)}
    data = jnp.array([-1.2, -0.8, 0.9, 1.3, 1.1, -1.0])
    se = jaxem.standard_errors(model, params, data)
    assert np.isnan(float(se["unused"]))


def test_standard_errors_under_jit_and_vmap():
    model = jaxem.models.binomial_mixture(2, 10)
    heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0, 2.0, 9.0, 3.0])
    params = {
        "weights": jnp.array([[0.5, 0.5], [0.4, 0.6]]),
        "p": jnp.array([[0.3, 0.8], [0.35, 0.75]]),
    }
    batched = jax.vmap(lambda p: jaxem.standard_errors(model, p, heads))(params)
    for i in range(2):
        one = jaxem.standard_errors(model, {k: v[i] for k, v in params.items()}, heads)
        np.testing.assert_allclose(batched["p"][i], one["p"], rtol=1e-12)


def test_bad_model_is_a_value_error():
    with pytest.raises(ValueError, match="model"):
        jaxem.standard_errors("gmm", {"p": jnp.ones(2)}, jnp.ones(3))
    with pytest.raises(ValueError, match="params"):
        jaxem.observed_information(
            jaxem.models.binomial_mixture(2, 10),
            {"weights": jnp.array([0.7, 0.7]), "p": jnp.array([0.3, 0.8])},
            jnp.array([1.0, 2.0, 3.0]),
        )


def test_gaussian_mixture_standard_errors_by_attribute_name():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(-3, 1, (120, 2)), rng.normal(3, 0.5, (80, 2))])
    est = jaxem.GaussianMixture(2, covariance_type="diag", random_state=0, tol=1e-10)
    est.fit(x)
    se = est.standard_errors(x)
    assert set(se) == {"weights_", "means_", "covariances_"}
    for name, value in se.items():
        assert value.shape == getattr(est, name).shape
    # Well-separated components: the means' standard errors are about
    # sigma / sqrt(n_k) per coordinate.
    k = int(np.argmin(est.means_[:, 0]))
    expected = np.sqrt(est.covariances_[k] / (est.weights_[k] * len(x)))
    np.testing.assert_allclose(se["means_"][k], expected, rtol=0.02)
    # The functional API gives the same numbers.
    model = jaxem.models.gaussian_mixture(2, 2, "diag")
    params = {
        "weights": est.weights_,
        "means": est.means_,
        "covariances": est.covariances_,
    }
    direct = jaxem.standard_errors(model, params, x)
    np.testing.assert_allclose(se["means_"], direct["means"], rtol=1e-10)
