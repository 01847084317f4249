"""Bad input raises ValueError naming the argument, before any compiled work."""

import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import pytest

import jaxem

HEADS = np.array([5.0, 9.0, 8.0, 4.0, 7.0])
COINS = jaxem.models.binomial_mixture(2, 10)
GOOD = {"weights": np.array([0.5, 0.5]), "p": np.array([0.6, 0.5])}


def pd_log_joint(params, x, z):
    return st.multivariate_normal.logpdf(x, params["means"][z], params["cov"])


PD_MODEL = jaxem.LatentModel(
    pd_log_joint,
    jaxem.Categorical(2),
    constraints={"cov": jaxem.constraints.positive_definite},
)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"data": np.array([5.0, np.nan, 8.0])}, r"data: contains 1 NaN.*index \(1,\)"),
        ({"data": np.array([5.0, np.inf, 8.0])}, "data: contains"),
        ({"data": HEADS[:, None]}, r"data: expected an array of rank 1"),
        ({"data": np.array([5.0])}, "data: 1 observation.*fewer than the 2"),
        ({"weights": np.array([1.0, -1, 1, 1, 1])}, "weights: must be non-negative"),
        ({"weights": np.zeros(5)}, "weights: all weights are zero"),
        ({"weights": np.ones(4)}, r"weights: expected shape \(5,\)"),
        ({"weights": np.array([1.0, np.nan, 1, 1, 1])}, "weights: contains"),
        (
            {"params0": {**GOOD, "weights": np.array([0.7, 0.7])}},
            r"params0\['weights'\]: must sum to 1",
        ),
        (
            {"params0": {**GOOD, "p": np.array([1.2, 0.5])}},
            r"params0\['p'\]: must lie strictly inside",
        ),
        (
            {"params0": {**GOOD, "p": np.array([np.nan, 0.5])}},
            r"params0\['p'\]: contains 1 NaN",
        ),
        ({"max_iter": 0}, "max_iter: expected a positive int"),
        ({"tol": -1.0}, "tol: expected a finite non-negative"),
        ({"lengths": np.array([5])}, "lengths: only meaningful for MarkovChain"),
        ({"frozen": ("nope",)}, r"frozen: \['nope'\] are not keys"),
        ({"m_step_iters": 0}, "m_step_iters: expected a positive int"),
        # Issue 13: every option of the wrong type is named, before compiling.
        ({"tol": "abc"}, r"^tol: expected a finite non-negative number, got 'abc'$"),
        ({"tol": None}, "^tol: expected a finite non-negative number, got None"),
        ({"tol": [1e-3]}, "^tol: expected a finite non-negative number"),
        ({"tol": True}, "^tol: expected a finite non-negative number"),
        ({"tol": np.nan}, "^tol: expected a finite non-negative number"),
        ({"max_iter": 2**62}, "^max_iter: expected a positive int"),
        ({"max_iter": 10**30}, "^max_iter: expected a positive int"),
        ({"max_iter": True}, "^max_iter: expected a positive int"),
        ({"max_iter": 10.0}, "^max_iter: expected a positive int"),
        ({"m_step_iters": 2.5}, "^m_step_iters: expected a positive int"),
        ({"m_step_iters": 10**30}, "^m_step_iters: expected a positive int"),
        ({"m_step_iters": True}, "^m_step_iters: expected a positive int"),
        ({"m_step_optimizer": "adam"}, "^m_step_optimizer: expected an optax"),
        ({"callback": 3}, "^callback: expected a function or None, got 3"),
        ({"frozen": "weights"}, "^frozen: expected a tuple of parameter names"),
        ({"frozen": None}, "^frozen: expected a tuple of parameter names"),
        ({"data": list(HEADS)}, r"^data: got a Python list, .*np.asarray\(data\)"),
        ({"data": np.array(["a", "b"])}, "^data: expected numbers"),
        ({"weights": "a"}, "^weights: expected numbers, got 'a'"),
        ({"params0": {"p": GOOD["p"]}}, r"^params0: missing key\(s\) \['weights'\]"),
        (
            {"params0": {**GOOD, "p": np.array(["a", "b"])}},
            r"^params0\['p'\]: expected numbers",
        ),
        (
            {"params0": {**GOOD, "p": None}},
            r"^params0\['p'\]: expected an array, got None",
        ),
    ],
)
def test_fit_rejects_bad_input(kwargs, match):
    args = {"data": HEADS, "params0": GOOD, **kwargs}
    with pytest.raises(ValueError, match=match):
        jaxem.fit(COINS, args.pop("params0"), args.pop("data"), **args)


def test_non_positive_definite_initial_covariance():
    x = np.random.default_rng(0).normal(size=(10, 2))
    params = {"means": np.zeros((2, 2)), "cov": np.array([[1.0, 2.0], [2.0, 1.0]])}
    with pytest.raises(
        ValueError, match=r"params0\['cov'\]: must be positive definite"
    ):
        jaxem.fit(PD_MODEL, params, x)
    params["cov"] = np.array([[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"params0\['cov'\]: must be symmetric"):
        jaxem.fit(PD_MODEL, params, x)


def test_pytree_data_with_mismatched_leading_axes():
    def log_joint(params, obs, z):
        return st.norm.logpdf(obs["a"] + obs["b"], params["m"][z])

    model = jaxem.LatentModel(log_joint, jaxem.Categorical(2))
    data = {"a": np.zeros(5), "b": np.zeros(4)}
    with pytest.raises(ValueError, match=r"data\['b'\]: leading axes \(4,\) differ"):
        jaxem.fit(model, {"m": np.zeros(2)}, data)


def test_model_declaration_errors():
    with pytest.raises(ValueError, match="latent: expected a latent structure"):
        jaxem.LatentModel(pd_log_joint, 3)
    with pytest.raises(ValueError, match="m_step: expected a jaxem.ClosedForm"):
        jaxem.LatentModel(pd_log_joint, jaxem.Categorical(2), m_step=lambda: None)
    with pytest.raises(ValueError, match="constraints: every leaf"):
        jaxem.LatentModel(pd_log_joint, jaxem.Categorical(2), constraints={"a": "pos"})
    with pytest.raises(ValueError, match="num_values"):
        jaxem.Categorical(0)
    with pytest.raises(ValueError, match="model: expected a jaxem.LatentModel"):
        jaxem.fit("gmm", GOOD, HEADS)


def test_constraints_naming_unknown_parameter():
    model = jaxem.LatentModel(
        pd_log_joint,
        jaxem.Categorical(2),
        constraints={"covariance": jaxem.constraints.positive_definite},
    )
    with pytest.raises(
        ValueError, match=r"params0: missing key\(s\) \['covariance'\] that the model"
    ):
        jaxem.fit(
            model, {"means": np.zeros((2, 2)), "cov": np.eye(2)}, np.zeros((4, 2))
        )


def test_model_is_hashable_and_prebuilt_models_are_cached():
    assert hash(COINS) == hash(jaxem.models.binomial_mixture(2, 10))
    assert COINS is jaxem.models.binomial_mixture(2, 10)
    assert COINS.constraints["p"] is jaxem.constraints.unit_interval
    with pytest.raises(ValueError, match="n_trials"):
        jaxem.models.binomial_mixture(2, 0)
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass
        COINS.m_step = None


# ------------------------------------------------------------------ issue 13
def poisson_log_joint(params, x, z):
    return jnp.log(params["weights"][z]) + st.poisson.logpmf(x, params["rates"][z])


def poisson_stats(data, resp, weights):
    if weights is not None:
        resp = resp * weights[:, None]
    return {"n": resp.sum(0), "sx": resp.T @ data}


def poisson_update(s, params):
    return {"weights": s["n"] / s["n"].sum(), "rates": s["sx"] / s["n"]}


POISSON = jaxem.LatentModel(
    poisson_log_joint,
    jaxem.Categorical(2),
    constraints={
        "weights": jaxem.constraints.simplex,
        "rates": jaxem.constraints.positive,
    },
    m_step=jaxem.ClosedForm(poisson_stats, poisson_update),
)
COUNTS = np.array([0, 1, 2, 1, 0, 7, 5, 6, 8, 4])


@pytest.mark.parametrize(
    "data, weights_dtype, expected",
    [
        (COUNTS.astype(np.float32), np.float32, np.float32),  # the data's dtype
        (COUNTS, np.float64, np.float64),  # integer data: params0's float leaves
    ],
)
def test_integer_params0_are_fitted_as_floats(data, weights_dtype, expected):
    # Before: a lax.while_loop carry-type error.
    params0 = {
        "weights": np.array([0.5, 0.5], weights_dtype),
        "rates": np.array([1, 6]),
    }
    result = jaxem.fit(POISSON, params0, data, max_iter=30)
    assert result.params["rates"].dtype == expected
    as_floats = {**params0, "rates": params0["rates"].astype(weights_dtype)}
    reference = jaxem.fit(POISSON, as_floats, data, max_iter=30)
    np.testing.assert_array_equal(result.params["rates"], reference.params["rates"])
    state = jaxem.online_init(POISSON, params0, data)
    assert state.params["rates"].dtype == expected


def test_inference_helpers_check_their_arguments():
    with pytest.raises(ValueError, match="^model: expected a jaxem.LatentModel"):
        jaxem.posterior("coins", GOOD, HEADS)
    with pytest.raises(ValueError, match="^model: expected a jaxem.LatentModel"):
        jaxem.log_likelihood(None, GOOD, HEADS)
    with pytest.raises(ValueError, match=r"^params\['p'\]: contains 1 NaN"):
        jaxem.posterior(COINS, {**GOOD, "p": np.array([np.nan, 0.5])}, HEADS)
    with pytest.raises(ValueError, match=r"^data: contains 1 NaN"):
        jaxem.log_likelihood(COINS, GOOD, np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"^data: got a Python list"):
        jaxem.posterior(COINS, GOOD, [5.0, 9.0])
    with pytest.raises(ValueError, match=r"^weights: expected shape \(5,\)"):
        jaxem.log_likelihood(COINS, GOOD, HEADS, weights=np.ones(3))
    with pytest.raises(ValueError, match="^lengths: only meaningful for MarkovChain"):
        jaxem.posterior(COINS, GOOD, HEADS, lengths=[5])
    # Inference on fewer observations than components is fine.
    assert jaxem.posterior(COINS, GOOD, HEADS[:1]).shape == (1, 2)


def test_viterbi_and_m_step_check_their_arguments():
    hmm = jaxem.models.categorical_hmm(2, 2)
    params = {
        "startprob": np.array([0.9, 0.1]),
        "transmat": np.array([[0.8, 0.2], [0.2, 0.8]]),
        "emissionprob": np.array([[0.9, np.inf], [0.1, 0.9]]),
    }
    with pytest.raises(ValueError, match=r"^params\['emissionprob'\]: contains 1"):
        jaxem.viterbi(hmm, params, np.array([[0, 1, 1]]))
    resp = jaxem.posterior(COINS, GOOD, HEADS)
    with pytest.raises(ValueError, match="^model: expected a jaxem.LatentModel"):
        jaxem.m_step("coins", GOOD, HEADS, resp)
    with pytest.raises(ValueError, match="^frozen: expected a tuple"):
        jaxem.m_step(COINS, GOOD, HEADS, resp, frozen="p")
    with pytest.raises(ValueError, match=r"^frozen: \['q'\] are not keys of params"):
        jaxem.m_step(COINS, GOOD, HEADS, resp, frozen=("q",))
    with pytest.raises(ValueError, match="^optimizer: expected an optax"):
        jaxem.m_step(COINS, GOOD, HEADS, resp, optimizer=0.1)
    with pytest.raises(ValueError, match="^num_iters: expected a positive int"):
        jaxem.m_step(COINS, GOOD, HEADS, resp, num_iters=0)
    with pytest.raises(
        ValueError, match=r"^posterior: got \(5, 3\); expected \(5, 2\)"
    ):
        jaxem.m_step(COINS, GOOD, HEADS, np.full((5, 3), 1 / 3))


def test_online_em_checks_its_arguments():
    state = jaxem.online_init(COINS, GOOD, HEADS)
    with pytest.raises(ValueError, match="^state: expected a jaxem.OnlineState"):
        jaxem.online_update(COINS, GOOD, HEADS)
    with pytest.raises(ValueError, match="^step_exponent: expected a finite"):
        jaxem.online_update(COINS, state, HEADS, step_exponent="abc")
    with pytest.raises(ValueError, match="^step_offset: expected a number >= 1"):
        jaxem.online_update(COINS, state, HEADS, step_offset=0.5)
    with pytest.raises(ValueError, match=r"^batch: got a Python list"):
        jaxem.online_update(COINS, state, list(HEADS))
    with pytest.raises(ValueError, match="^example_batch: contains 1 NaN"):
        jaxem.online_init(COINS, GOOD, np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="^key: expected a jax.random.key"):
        jaxem.fit_minibatch(COINS, GOOD, HEADS, batch_size=2, key=0)
    with pytest.raises(ValueError, match="^num_epochs: expected a positive int"):
        jaxem.fit_minibatch(COINS, GOOD, HEADS, batch_size=2, num_epochs=10**30)
    with pytest.raises(ValueError, match="^batch_size: expected a positive int"):
        jaxem.fit_minibatch(COINS, GOOD, HEADS, batch_size=True)
    with pytest.raises(ValueError, match="^step_exponent: expected a finite"):
        jaxem.fit_minibatch(COINS, GOOD, HEADS, batch_size=2, step_exponent=None)


def test_select_gaussian_mixture_names_bad_arguments():
    x = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match="^n_components: expected an int or a seq"):
        jaxem.select_gaussian_mixture(x, n_components="abc")
    with pytest.raises(ValueError, match="^n_components: expected an int or a seq"):
        jaxem.select_gaussian_mixture(x, n_components=[1, 2.5])
    with pytest.raises(ValueError, match="^sample_weight: expected numbers"):
        jaxem.select_gaussian_mixture(x, n_components=1, sample_weight="a")


# ABO blood groups (Lange, Applied Probability, 2010): 521 people in 4
# phenotypes, 6 genotypes from 3 alleles in Hardy-Weinberg equilibrium.
ABO_COUNTS = np.array([186.0, 38.0, 13.0, 284.0])  # A, B, AB, O
GENOTYPE_PHENOTYPE = jnp.array([0, 0, 1, 1, 2, 3])  # AA AO BB BO AB OO


def abo_log_joint(params, x, z):
    a, b, o = params["alleles"]
    genotype = jnp.stack([a * a, 2 * a * o, b * b, 2 * b * o, 2 * a * b, o * o])
    return jnp.where(GENOTYPE_PHENOTYPE[z] == x, jnp.log(genotype[z]), -jnp.inf)


def gene_counting(counts, iters=200):
    """Smith's gene-counting EM for the ABO alleles (the closed form)."""
    n_a, n_b, n_ab, n_o = counts
    a = b = o = 1 / 3
    for _ in range(iters):
        aa = n_a * a * a / (a * a + 2 * a * o)
        bb = n_b * b * b / (b * b + 2 * b * o)
        total = 2 * counts.sum()
        a, b, o = (
            (aa + n_a + n_ab) / total,
            (bb + n_b + n_ab) / total,
            (n_a - aa + n_b - bb + 2 * n_o) / total,
        )
    return np.array([a, b, o])


def test_grouped_data_with_fewer_rows_than_latent_values():
    # Before: "data: 4 observation(s) is fewer than the 6 latent values".
    model = jaxem.LatentModel(
        abo_log_joint,
        jaxem.Categorical(6),
        constraints={"alleles": jaxem.constraints.simplex},
    )
    params0 = {"alleles": np.full(3, 1 / 3)}
    result = jaxem.fit(
        model, params0, np.arange(4), weights=ABO_COUNTS, max_iter=200, tol=1e-12
    )
    assert bool(result.converged)
    expected = gene_counting(ABO_COUNTS)
    np.testing.assert_allclose(expected, [0.2136, 0.0501, 0.7363], atol=5e-5)
    np.testing.assert_allclose(result.params["alleles"], expected, rtol=1e-7)
    # The weight total, not the number of rows, must reach K.
    with pytest.raises(ValueError, match=r"weight total 5\) is fewer than the 6"):
        jaxem.fit(model, params0, np.arange(4), weights=np.array([1.0, 1, 1, 2]))
