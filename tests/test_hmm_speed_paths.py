"""The fast paths of the prebuilt HMMs equal their plain formulas.

The diagonal/spherical Gaussian emission table and statistics are written
feature by feature for up to 16 features (and as one reduction beyond); the
categorical counts are a product with one-hot symbols for up to 64 symbols
(and a scatter-add beyond). Each path is checked against a numpy
reimplementation, with NaN in the padding, and the factories and estimators
pick the forward-backward form by backend.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxem
from jaxem.estimators import _hmm_base


def _ragged(rng, b, t, d, nan_padding=True):
    x = rng.normal(size=(b, t, d)) * 2.0 + 1e3  # far from the origin
    lengths = rng.integers(0, t + 1, b)
    lengths[0] = t
    pad = np.arange(t)[None, :] >= lengths[:, None]
    if nan_padding:
        x[pad] = np.nan
    return x, lengths, ~pad


def _posterior(rng, b, t, k, valid):
    gamma = rng.dirichlet(np.ones(k), (b, t)) * valid[..., None]
    return jaxem.ChainPosterior(jnp.asarray(gamma), jnp.zeros((b, k, k)))


@pytest.mark.parametrize("d", [1, 3, 17], ids=["d1", "d3", "d17"])
@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_gaussian_table_and_stats_match_numpy(covariance_type, d):
    rng = np.random.default_rng(d)
    b, t, k = 4, 7, 3
    x, lengths, valid = _ragged(rng, b, t, d)
    means = 1e3 + rng.normal(size=(k, d))
    var = rng.uniform(0.5, 2.0, (k, d) if covariance_type == "diag" else (k,))
    model = jaxem.models.gaussian_hmm(k, d, covariance_type)
    params = {
        "startprob": np.full(k, 1 / k),
        "transmat": np.full((k, k), 1 / k),
        "means": means,
        "covars": var,
    }
    full_var = var if covariance_type == "diag" else np.repeat(var[:, None], d, 1)
    filled = np.where(valid[..., None], x, 0.0)
    table = np.asarray(model.log_joint_table(params, jnp.asarray(filled)))
    want = np.stack(
        [
            stats.multivariate_normal(means[j], np.diag(full_var[j])).logpdf(
                filled.reshape(-1, d)
            )
            for j in range(k)
        ],
        -1,
    ).reshape(b, t, k)
    np.testing.assert_allclose(table, want, rtol=1e-12)

    post = _posterior(rng, b, t, k, valid)
    weights = rng.uniform(0.5, 2.0, b)
    got = model.m_step.stats(jnp.asarray(x), post, jnp.asarray(weights), params)
    gamma = np.asarray(post.marginals) * weights[:, None, None]
    xc = filled[..., None, :] - means  # (B, T, K, d)
    np.testing.assert_allclose(got["post"], gamma.sum((0, 1)), rtol=1e-12)
    np.testing.assert_allclose(
        got["obs"], np.einsum("btk,btkd->kd", gamma, xc), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        got["obs2"], np.einsum("btk,btkd->kd", gamma, xc**2), rtol=1e-12
    )


@pytest.mark.parametrize("m", [6, 70], ids=["one-hot", "scatter"])
def test_categorical_counts_match_numpy(m):
    rng = np.random.default_rng(m)
    b, t, k = 5, 9, 3
    lengths = rng.integers(0, t + 1, b)
    lengths[0] = t
    valid = np.arange(t)[None, :] < lengths[:, None]
    symbols = np.where(valid, rng.integers(0, m, (b, t)), -7)  # odd padding
    post = _posterior(rng, b, t, k, valid)
    weights = rng.uniform(0.5, 2.0, b)
    model = jaxem.models.categorical_hmm(k, m)
    got = model.m_step.stats(jnp.asarray(symbols), post, jnp.asarray(weights))
    gamma = np.asarray(post.marginals) * weights[:, None, None]
    want = np.zeros((k, m))
    for i, j in zip(*np.nonzero(valid), strict=True):
        want[:, symbols[i, j]] += gamma[i, j]
    np.testing.assert_allclose(got["obs"], want, rtol=1e-12, atol=1e-15)


def test_fit_ignores_the_padding_values():
    rng = np.random.default_rng(0)
    x, lengths, valid = _ragged(rng, 6, 20, 2)
    x = np.where(valid[..., None], x, 1e150)  # fit wants finite data
    model = jaxem.models.gaussian_hmm(3, 2, "diag")
    params = model.init(jax.random.key(0), np.where(valid[..., None], x, 0), lengths)
    clean = np.where(valid[..., None], x, 0.0)
    runs = [
        jaxem.fit(model, params, jnp.asarray(data), lengths=lengths, max_iter=5)
        for data in (x, clean)
    ]
    np.testing.assert_allclose(runs[0].history, runs[1].history, rtol=1e-13)
    for key in params:
        np.testing.assert_allclose(runs[0].params[key], runs[1].params[key], rtol=1e-12)
    assert np.all(np.diff(np.asarray(runs[0].history)[:5]) >= -1e-9)


@pytest.mark.parametrize("backend, parallel", [("cpu", False), ("gpu", True)])
def test_factories_and_estimators_choose_the_scan_by_backend(
    monkeypatch, backend, parallel
):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    for model in (
        jaxem.models.gaussian_hmm(2, 1),
        jaxem.models.categorical_hmm(2, 3),
        jaxem.models.poisson_hmm(2, 1),
    ):
        assert model.latent.parallel is parallel
    assert jaxem.models.gaussian_hmm(2, 1, parallel=not parallel).latent.parallel is (
        not parallel
    )
    X = np.random.default_rng(0).normal(size=(30, 1))
    for implementation, want in [
        ("log", parallel),
        ("scaling", parallel),
        ("sequential", False),
        ("parallel", True),
    ]:
        assert _hmm_base._parallel_option(implementation) in (None, want)
        est = jaxem.GaussianHMM(2, implementation=implementation)
        assert est._model(X).latent.parallel is want
