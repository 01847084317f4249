"""Bad input raises ValueError naming the argument, before any compiled work."""

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
            r"params0\['p'\]: contains NaN",
        ),
        ({"max_iter": 0}, "max_iter: expected a positive int"),
        ({"tol": -1.0}, "tol: expected a finite non-negative"),
        ({"lengths": np.array([5])}, "lengths: only meaningful for MarkovChain"),
        ({"frozen": ("nope",)}, r"frozen: \['nope'\] are not keys"),
        ({"m_step_iters": 0}, "m_step_iters: expected a positive int"),
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
    with pytest.raises(ValueError, match=r"constraints: keys \['covariance'\]"):
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
