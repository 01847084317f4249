"""Factor analysis and PPCA: scikit-learn, Tipping & Bishop and the gradient M-step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.decomposition

import jaxem

N, D, K = 400, 6, 2


def _data(seed=0):
    """Two well-separated factors, unequal noise: a well-identified optimum."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(K, D)) * 2.0
    psi = rng.uniform(0.2, 1.0, D)
    return rng.normal(size=(N, K)) @ w + rng.normal(size=(N, D)) * np.sqrt(psi) + 3.0


X = _data()
FA = jaxem.models.factor_analysis(K, D)
PPCA = jaxem.models.probabilistic_pca(K, D)


def _gradient_twin(model):
    """The same model declared by a user: log_joint only, no ClosedForm."""
    return jaxem.LatentModel(
        model.log_joint, jaxem.Gaussian(K), constraints=model.constraints
    )


def _assert_monotone(result):
    history = np.asarray(result.history)[: int(result.n_iter)]
    assert np.diff(history).min() > -1e-9 * np.abs(history).max()


@pytest.fixture(scope="module")
def sklearn_fa():
    return sklearn.decomposition.FactorAnalysis(
        K, tol=1e-12, max_iter=100_000, svd_method="lapack"
    ).fit(X)


@pytest.fixture(scope="module")
def fa_fit():
    return jaxem.fit(FA, FA.init(None, X), X, max_iter=2000, tol=1e-13)


def test_factor_analysis_reaches_sklearn_optimum(sklearn_fa, fa_fit):
    assert int(fa_fit.status) == jaxem.Status.CONVERGED
    _assert_monotone(fa_fit)
    p = fa_fit.params
    np.testing.assert_allclose(
        float(fa_fit.log_likelihood) / N, sklearn_fa.score(X), rtol=1e-6
    )
    cov = p["components"].T @ p["components"] + jnp.diag(p["noise_variance"])
    np.testing.assert_allclose(cov, sklearn_fa.get_covariance(), atol=1e-4)
    np.testing.assert_allclose(p["mean"], X.mean(axis=0), atol=1e-8)


def test_factor_analysis_gradient_m_step_reaches_same_optimum(fa_fit):
    result = jaxem.fit(_gradient_twin(FA), FA.init(None, X), X, max_iter=300, tol=1e-11)
    assert int(result.status) == jaxem.Status.CONVERGED
    _assert_monotone(result)
    np.testing.assert_allclose(result.log_likelihood, fa_fit.log_likelihood, rtol=1e-8)


def test_closed_form_update_equals_gradient_m_step():
    params = FA.init(None, X)
    post = jaxem.posterior(FA, params, X)
    closed = jaxem.m_step(FA, params, X, post)
    gradient = jaxem.m_step(_gradient_twin(FA), params, X, post, num_iters=500)
    for key in ("components", "mean", "noise_variance"):
        np.testing.assert_allclose(closed[key], gradient[key], rtol=1e-5, atol=1e-6)


def _tipping_bishop(x, k):
    """PPCA's maximum-likelihood solution: noise and W^T W from eigenvalues."""
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    noise = evals[k:].mean()
    u = evecs[:, :k]
    return noise, u @ np.diag(evals[:k] - noise) @ u.T


def test_ppca_reaches_tipping_bishop_closed_form():
    noise, wtw = _tipping_bishop(X, K)
    result = jaxem.fit(PPCA, PPCA.init(None, X), X, max_iter=500, tol=0.0)
    _assert_monotone(result)
    p = result.params
    assert p["noise_variance"].shape == ()
    np.testing.assert_allclose(p["noise_variance"], noise, rtol=1e-6)
    np.testing.assert_allclose(p["components"].T @ p["components"], wtw, atol=1e-6)
    twin = jaxem.fit(
        _gradient_twin(PPCA), PPCA.init(None, X), X, max_iter=300, tol=1e-12
    )
    np.testing.assert_allclose(twin.params["noise_variance"], noise, rtol=1e-6)


def test_sample_and_random_init_and_weights():
    params = FA.init(None, X)
    x, z = FA.sample(jax.random.key(0), params, 50)
    assert x.shape == (50, D) and z.shape == (50, K)
    rand = FA.init(jax.random.key(1), X, method="random")
    assert rand["components"].shape == (K, D)
    with pytest.raises(ValueError, match="method"):
        FA.init(None, X, method="kmeans")
    # Integer weights equal repeated rows.
    w = np.r_[np.full(N // 2, 2.0), np.zeros(N - N // 2)]
    rep = np.repeat(X[: N // 2], 2, axis=0)
    weighted = jaxem.log_likelihood(FA, params, X, weights=w)
    np.testing.assert_allclose(weighted, jaxem.log_likelihood(FA, params, rep))
    with pytest.raises(ValueError, match="n_components"):
        jaxem.models.factor_analysis(0, 3)


# ------------------------------------------------------------ estimator
def test_estimator_is_a_drop_in_for_sklearn(sklearn_fa, tmp_path):
    fa = jaxem.FactorAnalysis(K, tol=1e-10, max_iter=5000).fit(X)
    assert fa.n_iter_ == len(fa.loglike_) and fa.components_.shape == (K, D)
    np.testing.assert_allclose(fa.score(X), sklearn_fa.score(X), rtol=1e-6)
    np.testing.assert_allclose(
        fa.score_samples(X), sklearn_fa.score_samples(X), rtol=1e-4
    )
    np.testing.assert_allclose(
        fa.get_covariance(), sklearn_fa.get_covariance(), atol=1e-4
    )
    np.testing.assert_allclose(
        fa.get_precision(), np.linalg.inv(fa.get_covariance()), atol=1e-8
    )
    # Factors are identified up to rotation: compare the projections' span.
    z, z_sk = fa.transform(X), sklearn_fa.transform(X)
    coef, *_ = np.linalg.lstsq(z, z_sk, rcond=None)
    np.testing.assert_allclose(z @ coef, z_sk, atol=1e-3)
    assert fa.fit_transform(X).shape == (N, K)
    assert list(fa.get_feature_names_out()) == ["factoranalysis0", "factoranalysis1"]
    path = fa.save(tmp_path / "fa.npz")
    again = jaxem.FactorAnalysis.load(path)
    np.testing.assert_allclose(again.score_samples(X), fa.score_samples(X))
    assert again.loglike_ == fa.loglike_


def test_estimator_rotation_and_float32():
    fa = jaxem.FactorAnalysis(K, rotation="varimax", tol=1e-6).fit(X)
    sk = sklearn.decomposition.FactorAnalysis(K, rotation="varimax", tol=1e-6).fit(X)
    np.testing.assert_allclose(
        np.abs(fa.components_), np.abs(sk.components_), atol=1e-2
    )
    fa32 = jaxem.FactorAnalysis(K, tol=1e-3).fit(X.astype(np.float32))
    assert fa32.components_.dtype == np.float32
    assert fa32.transform(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(fa32.score(X), sk.score(X), rtol=1e-4)


def test_estimator_validation():
    with pytest.raises(ValueError, match="n_components"):
        jaxem.FactorAnalysis(n_components=-1).fit(X)
    with pytest.raises(ValueError, match="noise_variance_init"):
        jaxem.FactorAnalysis(K, noise_variance_init=np.ones(3)).fit(X)
    with pytest.raises(ValueError):
        jaxem.FactorAnalysis(K).fit(np.full((5, D), np.nan))
    with pytest.raises(jaxem.estimators.NotFittedError):
        jaxem.FactorAnalysis(K).transform(X)
    fa = jaxem.FactorAnalysis(K, max_iter=2, tol=0.0)
    with pytest.warns(jaxem.estimators.ConvergenceWarning):
        fa.fit(X)
    with pytest.raises(ValueError, match="features"):
        fa.transform(X[:, :3])


def test_padded_fit_equals_unpadded():
    """Concrete rows are padded to a size bucket (weight-0 copies, posterior
    0): the fit is the unpadded one to 1e-12, weighted or not."""
    x = X[:150]
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(x))
    params0 = FA.init(None, x)
    for weights in (None, w):
        padded = jaxem.fit(FA, params0, x, weights=weights, max_iter=10, tol=0.0)
        plain = jax.jit(
            lambda x, w: jaxem.fit(FA, params0, x, weights=w, max_iter=10, tol=0.0)
        )(jnp.asarray(x), None if weights is None else jnp.asarray(weights))
        for a, b in zip(
            jax.tree.leaves(padded.params), jax.tree.leaves(plain.params), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(padded.history, plain.history[:10], rtol=1e-12)
        _assert_monotone(padded)
    post = jaxem.posterior(FA, params0, x)
    assert post.mean.shape == (150, K) and post.cov.shape == (150, K, K)
