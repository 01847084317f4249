"""The linear-Gaussian state-space model: EM, closed form vs gradient, estimator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem

F_TRUE = np.array(
    [[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1.0]]
)  # constant velocity in 2-D, dt = 1
TRUTH = {
    "initial_mean": np.zeros(4),
    "initial_cov": np.eye(4),
    "transition_matrix": F_TRUE,
    "transition_bias": np.zeros(4),
    "transition_cov": np.diag([0.01, 0.01, 0.05, 0.05]),
    "emission_matrix": np.eye(2, 4),
    "emission_bias": np.zeros(2),
    "emission_cov": 0.5 * np.eye(2),
}
# As the estimator builds it, so both share one compiled program.
MODEL = jaxem.models.linear_gaussian_ssm(4, 2, reg_covar=1e-8)
FULL = np.full(20, 40)


def _tracks(seed, num=20, steps=40):
    keys = jax.random.split(jax.random.key(seed), num)
    return jnp.stack([MODEL.sample(k, TRUTH, steps)[0] for k in keys])


def test_em_on_a_tracking_problem_recovers_the_dynamics():
    x = _tracks(0)
    params0 = MODEL.init(jax.random.key(1), x)
    result = jaxem.fit(MODEL, params0, x, lengths=FULL, max_iter=300, tol=1e-5 / 800)
    history = np.asarray(result.history)[: int(result.n_iter)]
    assert np.diff(history).min() > -1e-9 * np.abs(history).max()
    # The state is identified up to a change of basis: compare invariants.
    eig = np.linalg.eigvals(result.params["transition_matrix"])
    np.testing.assert_allclose(np.abs(eig), 1.0, atol=0.05)
    truth_ll = float(jaxem.log_likelihood(MODEL, TRUTH, x))
    assert float(result.log_likelihood) > truth_ll  # the MLE beats the truth
    held_out = _tracks(1)
    fitted = float(jaxem.log_likelihood(MODEL, result.params, held_out))
    truth = float(jaxem.log_likelihood(MODEL, TRUTH, held_out))
    assert abs(fitted - truth) < 0.01 * abs(truth)


def test_closed_form_equals_gradient_m_step():
    model = jaxem.models.linear_gaussian_ssm(2, 3, reg_covar=0.0)
    gradient = jaxem.LatentModel(
        model.log_joint, model.latent, constraints=model.constraints
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 10, 3)).cumsum(axis=1)
    lengths = np.array([10, 6, 8])
    params = model.init(jax.random.key(0), x, lengths)
    post = jaxem.posterior(model, params, x, lengths=lengths)
    closed = jaxem.m_step(model, params, x, post, lengths=lengths)
    grad = jaxem.m_step(gradient, params, x, post, lengths=lengths, num_iters=2000)
    for key in closed:
        np.testing.assert_allclose(closed[key], grad[key], rtol=1e-4, atol=1e-5)
    q = jax.jit(model.latent.expected_log_joint, static_argnums=0)
    assert (
        float(q(model, closed, x, post, None, lengths))
        >= float(q(model, grad, x, post, None, lengths)) - 1e-9
    )


# ------------------------------------------------------------ estimator
def _concatenated():
    x = np.asarray(_tracks(2), np.float64)
    lengths = FULL.copy()
    lengths[[3, 7]] = [18, 10]
    return np.concatenate([x[b, :n] for b, n in enumerate(lengths)]), lengths


def test_estimator_fit_smooth_score_sample_save(tmp_path):
    X, lengths = _concatenated()
    ssm = jaxem.LinearGaussianSSM(4, n_iter=300, tol=1e-5, random_state=0)
    ssm.fit(X, lengths)
    assert ssm.n_iter_ == len(ssm.loglike_) and ssm.emission_matrix_.shape == (2, 4)
    assert np.diff(ssm.loglike_).min() > -1e-8 * abs(ssm.loglike_[-1])
    means, covs = ssm.smooth(X, lengths)
    assert means.shape == (len(X), 4) and covs.shape == (len(X), 4, 4)
    padded = np.zeros((20, 40, 2))
    mask = np.arange(40)[None, :] < lengths[:, None]
    padded[mask] = X
    post = jaxem.posterior(ssm._model(), ssm._params(), padded, lengths=lengths)
    np.testing.assert_allclose(means, np.asarray(post.mean)[mask], rtol=1e-12)
    score = ssm.score(X, lengths)
    assert np.isfinite(score) and score >= ssm.loglike_[-1] - 1e-8 * abs(score)
    x, z = ssm.sample(7, random_state=1)
    assert x.shape == (7, 2) and z.shape == (7, 4)
    again = jaxem.LinearGaussianSSM.load(ssm.save(tmp_path / "ssm.npz"))
    np.testing.assert_allclose(again.score(X, lengths), score)


def _numpy_kalman_filter(p, x):
    """Filtered means and covariances of one sequence (n, o), biases included."""
    a, q = p["transition_matrix_"], p["transition_cov_"]
    h, r = p["emission_matrix_"], p["emission_cov_"]
    m, cov = p["initial_mean_"], p["initial_cov_"]
    means, covs = [], []
    for t, xt in enumerate(x):
        if t > 0:
            m = a @ m + p["transition_bias_"]
            cov = a @ cov @ a.T + q
        gain = cov @ h.T @ np.linalg.inv(h @ cov @ h.T + r)
        m = m + gain @ (xt - h @ m - p["emission_bias_"])
        cov = cov - gain @ h @ cov
        means.append(m)
        covs.append(cov)
    return np.array(means), np.array(covs)


def test_estimator_filter_equals_numpy_kalman_filter():
    X, lengths = _concatenated()
    X, lengths = X[:150], np.array([40, 18, 40, 52])
    ssm = jaxem.LinearGaussianSSM(3, n_iter=4, random_state=0).fit(X, lengths)
    means, covs = ssm.filter(X, lengths)
    assert means.shape == (150, 3) and covs.shape == (150, 3, 3)
    fitted = {k: v for k, v in vars(ssm).items() if k.endswith("_")}
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        m, c = _numpy_kalman_filter(fitted, X[a:b])
        np.testing.assert_allclose(means[a:b], m, rtol=0, atol=1e-8)
        np.testing.assert_allclose(covs[a:b], c, rtol=0, atol=1e-8)
    # The last filtered step of a sequence is its last smoothed one.
    smoothed = ssm.smooth(X, lengths)[0]
    np.testing.assert_allclose(means[starts[1:] - 1], smoothed[starts[1:] - 1])
    assert ssm.filter(X.astype(np.float32), lengths)[0].dtype == np.float32


def test_estimator_validation_and_float32():
    X, lengths = _concatenated()
    X, lengths = X[:60], np.array([30, 30])
    with pytest.raises(ValueError, match="state_dim"):
        jaxem.LinearGaussianSSM(0).fit(X)
    with pytest.raises(ValueError, match="lengths"):
        jaxem.LinearGaussianSSM(2).fit(X, [5, 5])
    with pytest.raises(jaxem.estimators.NotFittedError):
        jaxem.LinearGaussianSSM(2).smooth(X)
    ssm = jaxem.LinearGaussianSSM(2, n_iter=5).fit(X.astype(np.float32), lengths)
    assert ssm.transition_matrix_.dtype == np.float32
    assert ssm.smooth(X.astype(np.float32), lengths)[0].dtype == np.float32
