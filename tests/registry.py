"""One registry of models that drives the shared property tests.

Each ``ModelCase`` builds a model, a dataset and initial parameters. The
property tests (tests/test_registry.py) check for every case: the history is
non-decreasing, the fit runs under jit and under vmap over restarts, and
posteriors are normalised. Add a case here when a model lands.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np

import jaxem


@dataclasses.dataclass(frozen=True)
class ModelCase:
    name: str
    model: Callable[[], jaxem.LatentModel]
    data: Callable[[], dict[str, Any]]  # kwargs of fit: data (and lengths, ...)
    params0: Callable[[jax.Array], Any]  # one restart's params from a key


def _coin_data():
    return {"data": jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])}


def _coin_user_model():
    def log_joint(params, x, z):
        return jnp.log(params["weights"][z]) + st.binom.logpmf(x, 10, params["p"][z])

    return jaxem.LatentModel(
        log_joint,
        jaxem.Categorical(2),
        constraints={
            "weights": jaxem.constraints.simplex,
            "p": jaxem.constraints.unit_interval,
        },
    )


_COIN_USER = _coin_user_model()


def _coin_params(key):
    p = jax.random.uniform(key, (2,), minval=0.3, maxval=0.7)
    return {"weights": jnp.array([0.5, 0.5]), "p": p}


def poisson_mixture_model(closed_form: bool) -> jaxem.LatentModel:
    """A user-declared Poisson mixture; optionally a partial ClosedForm (rates)."""

    def log_joint(params, x, z):
        return jnp.log(params["weights"][z]) + st.poisson.logpmf(x, params["rates"][z])

    def stats(data, resp, weights):
        if weights is not None:
            resp = resp * weights[:, None]
        return {"n": resp.sum(0), "sx": resp.T @ data}

    def update(s, params):
        return {"rates": s["sx"] / s["n"]}

    return jaxem.LatentModel(
        log_joint,
        jaxem.Categorical(3),
        constraints={
            "weights": jaxem.constraints.simplex,
            "rates": jaxem.constraints.positive,
        },
        m_step=jaxem.ClosedForm(stats, update) if closed_form else None,
    )


POISSON_PARTIAL = poisson_mixture_model(True)
POISSON_GRADIENT = poisson_mixture_model(False)


def poisson_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    return rng.poisson(np.array([1.0, 6.0, 15.0])[z]).astype(np.float64)


def _poisson_params(key):
    rates = jnp.sort(jax.random.uniform(key, (3,), minval=0.5, maxval=20.0))
    return {"weights": jnp.full(3, 1 / 3), "rates": rates}


CASES = [
    ModelCase(
        "binomial_mixture",
        lambda: jaxem.models.binomial_mixture(2, 10),
        _coin_data,
        _coin_params,
    ),
    ModelCase("coins_gradient", lambda: _COIN_USER, _coin_data, _coin_params),
    ModelCase(
        "poisson_partial",
        lambda: POISSON_PARTIAL,
        lambda: {"data": jnp.asarray(poisson_data())},
        _poisson_params,
    ),
    ModelCase(
        "poisson_gradient",
        lambda: POISSON_GRADIENT,
        lambda: {"data": jnp.asarray(poisson_data())},
        _poisson_params,
    ),
]


def gmm_data(n=60, seed=0):
    """Two small 2-D blobs for the Gaussian mixture cases."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-2.0, 0.0], [2.0, 1.0]])
    return centres[rng.integers(0, 2, n)] + rng.normal(size=(n, 2))


def _gmm_params(covariance_type):
    def params0(key):
        means = jax.random.normal(key, (2, 2)) * 2.0
        shape = {"full": (2, 2, 2), "tied": (2, 2), "diag": (2, 2), "spherical": (2,)}
        cov = jnp.ones(shape[covariance_type])
        if covariance_type in ("full", "tied"):
            cov = jnp.broadcast_to(jnp.eye(2), shape[covariance_type])
        return {"weights": jnp.array([0.5, 0.5]), "means": means, "covariances": cov}

    return params0


CASES += [
    ModelCase(
        f"gaussian_mixture_{ctype}",
        functools.partial(jaxem.models.gaussian_mixture, 2, 2, ctype),
        lambda: {"data": jnp.asarray(gmm_data())},
        _gmm_params(ctype),
    )
    for ctype in ("full", "diag", "spherical", "tied")
]


# ------------------------------------------------------------------ HMMs
HMM_LENGTHS = np.array([30, 18, 25])


def hmm_states(seed=0):
    """A 2-state chain per sequence, padded to (3, 30) (padding is garbage)."""
    rng = np.random.default_rng(seed)
    z = np.zeros((3, 30), int)
    for b in range(3):
        for t in range(1, 30):
            z[b, t] = z[b, t - 1] if rng.random() < 0.85 else 1 - z[b, t - 1]
    return z, rng


def _hmm_gaussian_data():
    z, rng = hmm_states(0)
    x = np.array([-1.5, 1.5])[z] + rng.normal(size=z.shape)
    x[1, 18:] = 1e6  # padding holds arbitrary values
    return {"data": jnp.asarray(x[..., None]), "lengths": jnp.asarray(HMM_LENGTHS)}


def _hmm_counts_data():
    z, rng = hmm_states(1)
    x = rng.poisson(np.array([1.0, 6.0])[z]).astype(np.float64)
    return {"data": jnp.asarray(x[..., None]), "lengths": jnp.asarray(HMM_LENGTHS)}


def _hmm_symbol_data():
    z, rng = hmm_states(2)
    x = np.where(z == 1, rng.integers(0, 3, z.shape), rng.integers(2, 4, z.shape))
    return {"data": jnp.asarray(x), "lengths": jnp.asarray(HMM_LENGTHS)}


def _chain_params(key):
    k1, k2 = jax.random.split(key)
    stay = jax.random.uniform(k1, (2,), minval=0.6, maxval=0.9)
    transmat = jnp.stack(
        [jnp.stack([stay[0], 1 - stay[0]]), jnp.stack([1 - stay[1], stay[1]])]
    )
    return {"startprob": jnp.array([0.5, 0.5]), "transmat": transmat}, k2


def _hmm_gaussian_params(key):
    chain, key = _chain_params(key)
    means = jnp.sort(jax.random.normal(key, (2,)))[:, None] * 2.0
    return {**chain, "means": means, "covars": jnp.ones((2, 1))}


def _hmm_poisson_params(key):
    chain, key = _chain_params(key)
    return {**chain, "lambdas": jax.random.uniform(key, (2, 1), minval=0.5, maxval=8.0)}


def _hmm_categorical_params(key):
    chain, key = _chain_params(key)
    return {**chain, "emissionprob": jax.random.dirichlet(key, jnp.ones(4), (2,))}


def student_t_hmm() -> jaxem.LatentModel:
    """A user-declared HMM with a Student-t emission: no closed form for it."""

    def emission(params, x, z):
        return jnp.sum(st.t.logpdf(x, 4.0, params["loc"][z], params["scale"][z]))

    return jaxem.LatentModel(
        jaxem.models.hmm_factors(emission),
        jaxem.MarkovChain(2),
        constraints={
            "startprob": jaxem.constraints.simplex,
            "transmat": jaxem.constraints.simplex,
            "scale": jaxem.constraints.positive,
        },
        m_step=jaxem.models.hmm_closed_form(),
    )


STUDENT_T_HMM = student_t_hmm()


def _student_t_params(key):
    chain, key = _chain_params(key)
    loc = jnp.sort(jax.random.normal(key, (2,)))[:, None] * 2.0
    return {**chain, "loc": loc, "scale": jnp.ones((2, 1))}


CASES += [
    ModelCase(
        "gaussian_hmm",
        lambda: jaxem.models.gaussian_hmm(2, 1),
        _hmm_gaussian_data,
        _hmm_gaussian_params,
    ),
    ModelCase(
        "poisson_hmm",
        lambda: jaxem.models.poisson_hmm(2, 1),
        _hmm_counts_data,
        _hmm_poisson_params,
    ),
    ModelCase(
        "categorical_hmm",
        lambda: jaxem.models.categorical_hmm(2, 4),
        _hmm_symbol_data,
        _hmm_categorical_params,
    ),
    ModelCase(
        "student_t_hmm_partial",
        lambda: STUDENT_T_HMM,
        _hmm_gaussian_data,
        _student_t_params,
    ),
]


# ------------------------------------------------------- continuous latents
def _fa_data():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 4)) * 2.0
    x = rng.normal(size=(60, 2)) @ w + rng.normal(size=(60, 4))
    return {"data": jnp.asarray(x)}


def _fa_params(key):
    return {
        "components": jax.random.normal(key, (2, 4)),
        "mean": jnp.zeros(4),
        "noise_variance": jnp.ones(4),
    }


FA_GRADIENT = jaxem.LatentModel(  # the same model declared by a user
    jaxem.models.factor_analysis(2, 4).log_joint,
    jaxem.Gaussian(2),
    constraints={"noise_variance": jaxem.constraints.positive},
)


def _lgssm_data():
    rng = np.random.default_rng(1)
    z = np.cumsum(rng.normal(size=(3, 30, 2)) * 0.3, axis=1)
    x = z @ np.array([[1.0, 0.5], [0.0, 1.0]]) + 0.3 * rng.normal(size=z.shape)
    x[1, 18:] = 1e6  # padding holds arbitrary values
    return {"data": jnp.asarray(x), "lengths": jnp.asarray(HMM_LENGTHS)}


def _lgssm_params(key):
    eye = jnp.eye(2)
    return {
        "initial_mean": jnp.zeros(2),
        "initial_cov": eye,
        "transition_matrix": 0.9 * eye,
        "transition_bias": jnp.zeros(2),
        "transition_cov": 0.2 * eye,
        "emission_matrix": eye + 0.3 * jax.random.normal(key, (2, 2)),
        "emission_bias": jnp.zeros(2),
        "emission_cov": 0.5 * eye,
    }


CASES += [
    ModelCase(
        "factor_analysis",
        lambda: jaxem.models.factor_analysis(2, 4),
        _fa_data,
        _fa_params,
    ),
    ModelCase("factor_analysis_gradient", lambda: FA_GRADIENT, _fa_data, _fa_params),
    ModelCase(
        "linear_gaussian_ssm",
        lambda: jaxem.models.linear_gaussian_ssm(2, 2),
        _lgssm_data,
        _lgssm_params,
    ),
]


# ------------------------------------------------------- MAP-EM (priors)
def _coin_beta_prior(params):
    return jnp.sum(st.beta.logpdf(params["p"], 2.0, 3.0))


_COIN_MAP_GRADIENT = jaxem.LatentModel(
    _COIN_USER.log_joint,
    jaxem.Categorical(2),
    constraints=_COIN_USER.constraints,
    log_prior=_coin_beta_prior,
)

CASES += [
    ModelCase(
        "binomial_mixture_map",
        lambda: jaxem.models.binomial_mixture(
            2, 10, weights_prior=2.0, p_prior=(2.0, 3.0)
        ),
        _coin_data,
        _coin_params,
    ),
    ModelCase(
        "coins_gradient_map", lambda: _COIN_MAP_GRADIENT, _coin_data, _coin_params
    ),
    *(
        ModelCase(
            f"gaussian_mixture_map_{ctype}",
            functools.partial(
                jaxem.models.gaussian_mixture,
                2,
                2,
                ctype,
                0.0,
                weights_prior=2.0,
                means_prior=0.5,
                means_weight=0.1,
                covars_prior=0.2,
                covars_weight=5.0,
            ),
            lambda: {"data": jnp.asarray(gmm_data())},
            _gmm_params(ctype),
        )
        for ctype in ("full", "spherical")
    ),
    ModelCase(
        "gaussian_hmm_map",
        lambda: jaxem.models.gaussian_hmm(
            2,
            1,
            startprob_prior=2.0,
            transmat_prior=3.0,
            means_prior=0.0,
            means_weight=0.5,
            covars_prior=0.3,
            covars_weight=4.0,
        ),
        _hmm_gaussian_data,
        _hmm_gaussian_params,
    ),
    ModelCase(
        "categorical_hmm_map",
        lambda: jaxem.models.categorical_hmm(
            2, 4, startprob_prior=2.0, transmat_prior=2.0, emissionprob_prior=1.5
        ),
        _hmm_symbol_data,
        _hmm_categorical_params,
    ),
]
