"""A declared model whose outputs have the wrong shape is refused before compiling.

Issue 13, section 2: a ``log_joint`` returning shape (1,) (what
``st.poisson.logpmf`` gives for (N, 1) data) used to broadcast silently into a
wrong fit reported as converged; a NaN parameter that never reaches the
log-likelihood passed as converged. Every check here raises (or reports) before
any iteration runs, so most tests compile nothing.
"""

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import pytest

import jaxem

# Hasselblad (1969): deaths per day of women over 80 in The Times, 1910-1912.
DEATHS = np.arange(10.0)
DAYS = np.array([162, 267, 271, 185, 111, 61, 27, 8, 3, 1.0])
X = np.repeat(DEATHS, DAYS.astype(int))  # (1096,)
CONSTRAINTS = {
    "weights": jaxem.constraints.simplex,
    "rates": jaxem.constraints.positive,
}
P0 = {"weights": np.array([0.3, 0.7]), "rates": np.array([1.0, 2.5])}


def poisson_log_joint(params, x, z):
    return jnp.log(params["weights"][z]) + st.poisson.logpmf(x, params["rates"][z])


def poisson_stats(data, resp, weights):
    if weights is not None:
        resp = resp * weights[:, None]
    return {"n": resp.sum(0), "sx": resp.T @ data}


def poisson_update(s, params):
    return {"weights": s["n"] / s["n"].sum(), "rates": s["sx"] / s["n"]}


GRADIENT = jaxem.LatentModel(
    poisson_log_joint, jaxem.Categorical(2), constraints=CONSTRAINTS
)


def closed(update, stats=poisson_stats):
    return jaxem.LatentModel(
        poisson_log_joint,
        jaxem.Categorical(2),
        constraints=CONSTRAINTS,
        m_step=jaxem.ClosedForm(stats, update),
    )


LOG_JOINT_SHAPE = (
    r"^log_joint: returned shape \(1,\) for one observation x of shape \(1,\) and "
    r"one latent value z; expected a scalar, shape \(\)"
)


@pytest.mark.parametrize(
    "model", [GRADIENT, closed(poisson_update)], ids=["grad", "cf"]
)
def test_poisson_given_n_by_1_data_names_log_joint_and_shape(model):
    # Before: converged=True, weights (8e-14, 1), log-likelihood -39170.
    with pytest.raises(ValueError, match=LOG_JOINT_SHAPE):
        jaxem.fit(model, P0, X[:, None], max_iter=50)
    with pytest.raises(ValueError, match=LOG_JOINT_SHAPE):
        jaxem.posterior(model, P0, X[:, None])  # was an (N, 2, 2) "posterior"
    with pytest.raises(ValueError, match=LOG_JOINT_SHAPE):
        jaxem.log_likelihood(model, P0, X[:, None])


def test_checks_run_under_jit_and_vmap_at_trace_time():
    fit = jax.jit(lambda p, x: jaxem.fit(GRADIENT, p, x, max_iter=5).log_likelihood)
    with pytest.raises(ValueError, match=LOG_JOINT_SHAPE):
        fit(P0, X[:, None])
    restarts = jax.tree.map(lambda a: np.stack([a, a]), P0)
    with pytest.raises(ValueError, match=LOG_JOINT_SHAPE):
        jax.vmap(lambda p: jaxem.fit(GRADIENT, p, X[:, None], max_iter=5))(restarts)


def _chain_model(emission, initial=None, transition=None):
    factors = jaxem.ChainFactors(
        initial or (lambda p, z: jnp.log(p["startprob"][z])),
        transition or (lambda p, i, j: jnp.log(p["transmat"][i, j])),
        emission,
    )
    return jaxem.LatentModel(
        factors,
        jaxem.MarkovChain(2),
        constraints={
            "startprob": jaxem.constraints.simplex,
            "transmat": jaxem.constraints.simplex,
        },
    )


CHAIN_PARAMS = {
    "startprob": np.array([0.5, 0.5]),
    "transmat": np.array([[0.9, 0.1], [0.2, 0.8]]),
    "means": np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]),
}
SEQUENCES = np.random.default_rng(0).normal(size=(2, 6, 3))


def _gauss(p, x, z):
    return st.norm.logpdf(x, p["means"][z])  # (3,): the sum is missing


@pytest.mark.parametrize(
    "factors, match",
    [
        ({"emission": _gauss}, r"^ChainFactors.emission: returned shape \(3,\)"),
        (
            {
                "emission": lambda p, x, z: _gauss(p, x, z).sum(),
                "initial": lambda p, z: jnp.log(p["startprob"]),
            },
            r"^ChainFactors.initial: returned shape \(2,\) for one z",
        ),
        (
            {
                "emission": lambda p, x, z: _gauss(p, x, z).sum(),
                "transition": lambda p, i, j: jnp.log(p["transmat"][i]),
            },
            r"^ChainFactors.transition: returned shape \(2,\)",
        ),
    ],
)
def test_non_scalar_chain_factor_is_named(factors, match):
    # Before: a lax.scan carry error (emission) deep inside forward-backward.
    model = _chain_model(**factors)
    with pytest.raises(ValueError, match=match):
        jaxem.fit(model, CHAIN_PARAMS, SEQUENCES, max_iter=5)
    with pytest.raises(ValueError, match=match):
        jaxem.viterbi(model, CHAIN_PARAMS, SEQUENCES)


def test_log_joint_table_of_the_wrong_shape():
    model = jaxem.LatentModel(
        poisson_log_joint,
        jaxem.Categorical(2),
        constraints=CONSTRAINTS,
        log_joint_table=lambda p, x: st.poisson.logpmf(x, p["rates"][0]),
    )
    with pytest.raises(
        ValueError,
        match=r"^log_joint_table: returned shape \(1,\) for data with batch axes "
        r"\(1,\); expected shape \(1, 2\) \(the batch axes, then K\)",
    ):
        jaxem.fit(model, P0, X)


@pytest.mark.parametrize(
    "update, match",
    [
        (
            lambda s, p: {"weights": s["n"] / s["n"].sum(), "ratez": s["sx"] / s["n"]},
            r"^ClosedForm.update: returned key\(s\) \['ratez'\] that are not "
            r"parameters \(parameters: \['rates', 'weights'\]\)",
        ),
        (
            lambda s, p: {"rates": (s["sx"] / s["n"])[:1]},
            r"^ClosedForm.update: returned shape \(1,\) for params\['rates'\]; "
            r"expected \(2,\)",
        ),
        (
            lambda s, p: {"rates": (s["sx"] / s["n"]).astype(np.float32)[None]},
            r"returned shape \(1, 2\) for params\['rates'\]",
        ),
        (
            lambda s, p: [s["n"], s["sx"]],
            r"^ClosedForm.update: returned a list; expected a dict",
        ),
        (
            lambda s, p: {"rates": {"a": s["sx"] / s["n"]}},
            r"^ClosedForm.update: returned \['rates'\] with structure",
        ),
    ],
)
def test_closed_form_update_keys_and_shapes(update, match):
    # Before: a pytree-structure error, or an IndexError inside log_joint, or
    # (a (1,) rate) a silently broadcast fit reported as converged.
    with pytest.raises(ValueError, match=match):
        jaxem.fit(closed(update), P0, X)


def test_closed_form_update_that_would_promote_the_dtype():
    params = jax.tree.map(lambda a: a.astype(np.float32), P0)

    def update(s, p):
        return {"rates": (s["sx"] / s["n"]).astype(np.float64)}

    with pytest.raises(
        ValueError,
        match=r"^ClosedForm.update: returned dtype float64 for params\['rates'\]; "
        r"expected float32",
    ):
        jaxem.fit(closed(update), params, X.astype(np.float32))


def test_closed_form_stats_must_be_arrays():
    def stats(data, resp, weights):
        return {"n": resp.sum(0), "label": "counts"}

    with pytest.raises(ValueError, match=r"^ClosedForm.stats: failed .*TypeError"):
        jaxem.fit(closed(poisson_update, stats), P0, X)


def test_a_failing_log_joint_is_named_in_one_line():
    def log_joint(params, x, z):
        return params["rate"][z] * x  # the key is "rates"

    model = jaxem.LatentModel(log_joint, jaxem.Categorical(2))
    with pytest.raises(ValueError, match=r"^log_joint: failed .*KeyError: 'rate'"):
        jaxem.fit(model, {"rates": np.ones(2)}, X)


def test_non_finite_parameter_outside_the_likelihood_is_not_converged():
    # An update returning a NaN leaf the likelihood never reads: the fit used to
    # report converged=True with params['spare'] NaN.
    def update(s, params):
        return {**poisson_update(s, params), "spare": jnp.nan * s["n"][0]}

    params0 = {**P0, "spare": np.array(0.0)}
    result = jaxem.fit(closed(update), params0, X, max_iter=20)
    assert int(result.status) == jaxem.Status.NONFINITE
    assert not bool(result.converged)
    assert int(result.n_iter) == 1
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(result.params))
    np.testing.assert_array_equal(result.params["rates"], P0["rates"])
    # Under jit the values of params0 are not inspected: a NaN start is
    # reported by the loop itself, before any M-step.
    bad0 = {**P0, "spare": jnp.asarray(jnp.nan)}
    jitted = jax.jit(lambda p: jaxem.fit(closed(update), p, X, max_iter=20))(bad0)
    assert int(jitted.status) == jaxem.Status.NONFINITE
    assert int(jitted.n_iter) == 0
