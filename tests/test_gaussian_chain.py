"""``GaussianChain``: the autodiff smoother against a numpy Kalman + RTS smoother."""

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import pytest

import jaxem

N_STATE, N_OBS, T = 2, 3, 12
LENGTHS = np.array([12, 7, 1])


def _factors():
    mvn = st.multivariate_normal.logpdf
    return jaxem.ChainFactors(
        initial=lambda p, z: mvn(z, p["m0"], p["P0"]),
        transition=lambda p, zp, z: mvn(z, p["F"] @ zp, p["Q"]),
        emission=lambda p, x, z: mvn(x, p["H"] @ z + p["d"], p["R"]),
    )


MODEL = jaxem.LatentModel(_factors(), jaxem.GaussianChain(N_STATE))
E_STEP = jax.jit(
    lambda p, x, lengths: MODEL.latent.e_step(MODEL, p, x, lengths=lengths)
)
# Declared quadratic: the shared-curvature smoother (one factorisation for all).
QUADRATIC = jaxem.LatentModel(_factors(), jaxem.GaussianChain(N_STATE, quadratic=True))
E_STEPS = {
    "newton": E_STEP,
    "quadratic": jax.jit(
        lambda p, x, lengths: QUADRATIC.latent.e_step(QUADRATIC, p, x, lengths=lengths)
    ),
}


def _spd(rng, n, scale):
    a = rng.normal(size=(n, n))
    return scale * (a @ a.T / n + 0.5 * np.eye(n))


def _random_params(seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(N_STATE, N_STATE)))
    return {
        "m0": rng.normal(size=N_STATE),
        "P0": _spd(rng, N_STATE, 2.0),
        "F": 0.9 * q,
        "Q": _spd(rng, N_STATE, 0.3),
        "H": rng.normal(size=(N_OBS, N_STATE)),
        "d": rng.normal(size=N_OBS),
        "R": _spd(rng, N_OBS, 0.5),
    }


def _data(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(LENGTHS), T, N_OBS)) * 2.0
    for b, n in enumerate(LENGTHS):
        x[b, n:] = 1e6  # padding holds arbitrary values
    return x


def kalman_rts(p, x, filtered=False):
    """Independent numpy Kalman filter + RTS smoother for one sequence (n, obs).

    Returns smoothed means (n, s), covs (n, s, s), Cov(z_t, z_{t+1}) (n-1, s, s)
    and the log-likelihood from the innovations; with ``filtered=True`` the
    filtered means and covariances instead.
    """
    n = len(x)
    s = N_STATE
    mf, pf = np.zeros((n, s)), np.zeros((n, s, s))
    mp, pp = p["m0"], p["P0"]
    ll = 0.0
    for t in range(n):
        if t > 0:
            mp = p["F"] @ mf[t - 1]
            pp = p["F"] @ pf[t - 1] @ p["F"].T + p["Q"]
        innov = x[t] - p["H"] @ mp - p["d"]
        cov = p["H"] @ pp @ p["H"].T + p["R"]
        gain = pp @ p["H"].T @ np.linalg.inv(cov)
        mf[t] = mp + gain @ innov
        pf[t] = pp - gain @ cov @ gain.T
        _, logdet = np.linalg.slogdet(cov)
        ll += -0.5 * (
            N_OBS * np.log(2 * np.pi) + logdet + innov @ np.linalg.solve(cov, innov)
        )
    if filtered:
        return mf, pf
    ms, ps = mf.copy(), pf.copy()
    cross = np.zeros((max(n - 1, 0), s, s))
    for t in range(n - 2, -1, -1):
        pred = p["F"] @ pf[t] @ p["F"].T + p["Q"]
        j = pf[t] @ p["F"].T @ np.linalg.inv(pred)
        ms[t] = mf[t] + j @ (ms[t + 1] - p["F"] @ mf[t])
        ps[t] = pf[t] + j @ (ps[t + 1] - pred) @ j.T
        cross[t] = j @ ps[t + 1]
    return ms, ps, cross, ll


@pytest.mark.parametrize("path", sorted(E_STEPS))
@pytest.mark.parametrize("seed", [0, 1])
def test_smoother_equals_kalman_rts_on_padded_ragged_batches(seed, path):
    params = _random_params(seed)
    x = _data(seed + 5)
    estep = E_STEPS[path](params, jnp.asarray(x), jnp.asarray(LENGTHS))
    post = estep.posterior
    for b, n in enumerate(LENGTHS):
        ms, ps, cross, ll = kalman_rts(params, x[b, :n])
        np.testing.assert_allclose(post.mean[b, :n], ms, rtol=0, atol=1e-8)
        np.testing.assert_allclose(post.cov[b, :n], ps, rtol=0, atol=1e-8)
        np.testing.assert_allclose(post.cross_cov[b, : n - 1], cross, atol=1e-8)
        np.testing.assert_allclose(estep.per_item[b], ll, rtol=1e-10)
        # Padded steps are reported as exactly zero.
        assert np.all(np.asarray(post.mean[b, n:]) == 0)
        assert np.all(np.asarray(post.cov[b, n:]) == 0)
        assert np.all(np.asarray(post.cross_cov[b, n - 1 :]) == 0)
    np.testing.assert_array_equal(post.valid, np.arange(T)[None, :] < LENGTHS[:, None])
    total = jaxem.log_likelihood(MODEL, params, x, lengths=LENGTHS)
    np.testing.assert_allclose(total, estep.per_item.sum(), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_filter_equals_numpy_kalman_filter(seed):
    params = _random_params(seed)
    x = _data(seed + 5)
    filt = jax.jit(QUADRATIC.latent.filter, static_argnums=0)
    mean, cov = filt(QUADRATIC, params, jnp.asarray(x), jnp.asarray(LENGTHS))
    for b, n in enumerate(LENGTHS):
        mf, pf = kalman_rts(params, x[b, :n], filtered=True)
        np.testing.assert_allclose(mean[b, :n], mf, rtol=0, atol=1e-8)
        np.testing.assert_allclose(cov[b, :n], pf, rtol=0, atol=1e-8)
        assert np.all(np.asarray(mean[b, n:]) == 0)
        assert np.all(np.asarray(cov[b, n:]) == 0)
    # The last filtered step of each sequence is its last smoothed step.
    post = E_STEPS["quadratic"](params, jnp.asarray(x), jnp.asarray(LENGTHS))
    last = LENGTHS - 1
    rows = np.arange(len(LENGTHS))
    np.testing.assert_allclose(
        mean[rows, last], post.posterior.mean[rows, last], atol=1e-12
    )


def test_quadratic_with_data_dependent_curvature_takes_the_per_step_path():
    """An emission variance read from a covariate: quadratic in z, but its
    curvature varies by step, so each step is factorised (still exact) and
    ``filter`` refuses."""

    def emission(p, x, z):
        return st.norm.logpdf(x[0], p["h"] @ z, jnp.exp(x[1]))

    factors = _factors()._replace(emission=emission)
    params = _random_params(0) | {"h": jnp.array([1.0, -0.5])}
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 6, 2)))
    lengths = jnp.array([6, 4])
    got = {}
    for quadratic in (False, True):
        model = jaxem.LatentModel(
            factors, jaxem.GaussianChain(N_STATE, quadratic=quadratic)
        )
        got[quadratic] = jaxem.posterior(model, params, x, lengths=lengths)
    for a, b in zip(got[False], got[True], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)
    with pytest.raises(ValueError, match="filter needs"):
        model.latent.filter(model, params, x, lengths)
    with pytest.raises(ValueError, match="quadratic"):
        jaxem.GaussianChain(2, quadratic=1)


def test_expected_log_joint_is_exact_for_linear_gaussian():
    """Q equals E_q[log p(x, z)] computed from the Kalman moments by hand."""
    params = _random_params(2)
    x = _data(3)
    post = E_STEP(params, jnp.asarray(x), jnp.asarray(LENGTHS)).posterior
    q = jax.jit(MODEL.latent.expected_log_joint, static_argnums=0)(
        MODEL, params, x, post, None, LENGTHS
    )
    p = params
    inv = np.linalg.inv
    want = 0.0
    for b, n in enumerate(LENGTHS):
        m, s, c = (np.asarray(a[b]) for a in (post.mean, post.cov, post.cross_cov))

        def gauss(resid, cov, second):
            # E[log N(r; 0, cov)] with E[r r^T] = resid resid^T + second
            _, logdet = np.linalg.slogdet(cov)
            quad = resid @ inv(cov) @ resid + np.trace(inv(cov) @ second)
            return -0.5 * (len(resid) * np.log(2 * np.pi) + logdet + quad)

        want += gauss(m[0] - p["m0"], p["P0"], s[0])
        for t in range(1, n):
            second = s[t] - p["F"] @ c[t - 1] - c[t - 1].T @ p["F"].T
            second = second + p["F"] @ s[t - 1] @ p["F"].T
            want += gauss(m[t] - p["F"] @ m[t - 1], p["Q"], second)
        for t in range(n):
            resid = x[b, t] - p["H"] @ m[t] - p["d"]
            want += gauss(resid, p["R"], p["H"] @ s[t] @ p["H"].T)
    np.testing.assert_allclose(q, want, rtol=1e-10)


def test_weights_and_single_sequence_and_validation():
    params = _random_params(0)
    x = _data(1)
    w = np.array([2.0, 0.0, 1.0])
    per = E_STEP(params, jnp.asarray(x), jnp.asarray(LENGTHS)).per_item
    weighted = jaxem.log_likelihood(MODEL, params, x, weights=w, lengths=LENGTHS)
    np.testing.assert_allclose(weighted, 2 * per[0] + per[2], rtol=1e-12)
    with pytest.raises(ValueError, match="lengths"):
        jaxem.fit(MODEL, params, x, lengths=np.array([13, 1, 1]))
    with pytest.raises(ValueError, match="data"):
        jaxem.fit(MODEL, params, x[0, :, 0])
    with pytest.raises(ValueError, match="ChainFactors"):
        jaxem.LatentModel(lambda p, x, z: 0.0, jaxem.GaussianChain(2))
    with pytest.raises(ValueError, match="dim"):
        jaxem.GaussianChain(0)


def test_nonlinear_emission_is_the_laplace_smoother():
    """Poisson counts with a log-linear rate: the mode and curvature match."""
    factors = jaxem.ChainFactors(
        initial=lambda p, z: st.norm.logpdf(z[0], 0.0, 1.0),
        transition=lambda p, zp, z: st.norm.logpdf(z[0], 0.9 * zp[0], 0.3),
        emission=lambda p, x, z: st.poisson.logpmf(x, jnp.exp(p["a"] + z[0])),
    )
    model = jaxem.LatentModel(factors, jaxem.GaussianChain(1))
    counts = jnp.asarray(
        np.random.default_rng(0).poisson(3.0, size=(1, 8)).astype(float)
    )
    params = {"a": jnp.asarray(1.0)}
    post = jaxem.posterior(model, params, counts)

    def joint(z):
        f = factors.initial(params, z[0]) + jnp.sum(
            jax.vmap(lambda a, b: factors.transition(params, a, b))(z[:-1], z[1:])
        )
        return f + jnp.sum(
            jax.vmap(lambda x, s: factors.emission(params, x, s))(counts[0], z)
        )

    mode = post.mean[0]
    # Converged to round-off of the sequence's log-density (|f| ~ 20).
    np.testing.assert_allclose(jax.grad(joint)(mode), 0.0, atol=1e-6)
    hess = jax.hessian(joint)(mode)[:, 0, :, 0]
    cov = np.linalg.inv(-np.asarray(hess))
    np.testing.assert_allclose(post.cov[0, :, 0, 0], np.diag(cov), rtol=1e-7)
    np.testing.assert_allclose(post.cross_cov[0, :, 0, 0], np.diag(cov, k=1), rtol=1e-7)


def test_padded_fit_equals_unpadded_and_new_sizes_reuse_the_program():
    """Concrete sequences are padded to a size bucket (length-0 sequences,
    steps past every length): the fit is the unpadded one to 1e-12, and a new
    number of sequences or steps in the same bucket compiles nothing."""
    traces = []
    lgssm = jaxem.models.linear_gaussian_ssm(N_STATE, N_OBS)
    base = lgssm.log_joint

    def emission(p, x, z):
        traces.append(1)
        return base.emission(p, x, z)

    model = jaxem.LatentModel(  # the closed-form LGSSM, its traces counted
        base._replace(emission=emission),
        lgssm.latent,
        constraints=lgssm.constraints,
        m_step=lgssm.m_step,
        event_shape=lgssm.event_shape,
    )
    x = _data(4)
    params = lgssm.init(None, x, LENGTHS)
    padded = jaxem.fit(model, params, x, lengths=LENGTHS, max_iter=6, tol=0.0)
    plain = jax.jit(
        lambda x, n: jaxem.fit(model, params, x, lengths=n, max_iter=6, tol=0.0)
    )(jnp.asarray(x), jnp.asarray(LENGTHS))
    for a, b in zip(
        jax.tree.leaves(padded.params), jax.tree.leaves(plain.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(padded.history, plain.history[:6], rtol=1e-12)
    history = np.asarray(padded.history)
    assert np.diff(history).min() > -1e-9 * np.abs(history).max()
    post = jaxem.posterior(model, params, x, lengths=LENGTHS)
    assert post.mean.shape == (3, T, N_STATE) and post.cross_cov.shape[1] == T - 1
    direct = model.latent.e_step(model, params, x, lengths=LENGTHS).posterior
    np.testing.assert_allclose(post.cov, direct.cov, rtol=1e-12, atol=1e-14)
    count = len(traces)
    more = np.concatenate([x, x[:1]])[:, :-1]  # 4 sequences of 11 steps
    jaxem.fit(model, params, more, lengths=np.array([11, 7, 1, 9]), max_iter=6)
    assert len(traces) == count
