"""Missing values marginalised exactly (issue 9, part 3).

The references are textbook numpy EMs with missing data: each row's observed
block selected by explicit indices, the observed marginal density in the
E-step and the conditional moments of the missing block in the M-step
(Ghahramani & Jordan 1994), from the same starts, in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import jaxem
from jaxem.models import missing_data

# ------------------------------------------------------------ numpy references


def _as_matrices(cov, ctype, k, d):
    if ctype == "full":
        return [np.asarray(c) for c in cov]
    if ctype == "tied":
        return [np.asarray(cov)] * k
    var = np.asarray(cov) if ctype == "diag" else np.asarray(cov)[:, None] * np.ones(d)
    return [np.diag(v) for v in var]


def _conditional(x, obs, mu, sigma):
    """E[x | x_o] and Cov[x | x_o] for one row: explicit index selection."""
    d = len(x)
    o = np.flatnonzero(obs)
    m = np.flatnonzero(~obs)
    xhat = x.copy()
    cond = np.zeros((d, d))
    if len(m) == 0:
        return xhat, cond
    if len(o) == 0:
        xhat[m] = mu[m]
        cond[np.ix_(m, m)] = sigma[np.ix_(m, m)]
        return xhat, cond
    soo = sigma[np.ix_(o, o)]
    smo = sigma[np.ix_(m, o)]
    gain = np.linalg.solve(soo, smo.T).T
    xhat[m] = mu[m] + gain @ (x[o] - mu[o])
    cond[np.ix_(m, m)] = sigma[np.ix_(m, m)] - gain @ smo.T
    return xhat, cond


def _observed_log_pdf(x, obs, mu, sigma):
    o = np.flatnonzero(obs)
    if len(o) == 0:
        return 0.0
    return multivariate_normal(mu[o], sigma[np.ix_(o, o)]).logpdf(x[o])


def numpy_gmm_em(x, params, ctype, n_iter, reg_covar):
    """Textbook EM for a Gaussian mixture with NaN entries; returns params, history."""
    obs = ~np.isnan(x)
    n, d = x.shape
    w = np.asarray(params["weights"], float)
    mu = np.asarray(params["means"], float)
    k = len(w)
    sig = _as_matrices(params["covariances"], ctype, k, d)
    history = []
    for _ in range(n_iter + 1):
        logp = np.array(
            [
                [
                    np.log(w[j]) + _observed_log_pdf(x[i], obs[i], mu[j], sig[j])
                    for j in range(k)
                ]
                for i in range(n)
            ]
        )
        ll = logsumexp(logp, axis=1)
        history.append(ll.sum())
        if len(history) == n_iter + 1:
            break
        r = np.exp(logp - ll[:, None])
        r[~obs.any(axis=1)] = 0.0  # rows with nothing observed: no information
        nk = r.sum(0)
        new_mu, second = np.zeros((k, d)), np.zeros((k, d, d))
        moments = [
            [_conditional(x[i], obs[i], mu[j], sig[j]) for j in range(k)]
            for i in range(n)
        ]
        for j in range(k):
            new_mu[j] = sum(r[i, j] * moments[i][j][0] for i in range(n)) / nk[j]
            second[j] = (
                sum(
                    r[i, j]
                    * (
                        np.outer(
                            moments[i][j][0] - new_mu[j], moments[i][j][0] - new_mu[j]
                        )
                        + moments[i][j][1]
                    )
                    for i in range(n)
                )
                / nk[j]
            )
        w, mu = nk / nk.sum(), new_mu
        if ctype == "full":
            sig = [s + reg_covar * np.eye(d) for s in second]
        elif ctype == "tied":
            tied = np.einsum("k,kij->ij", nk, second) / nk.sum() + reg_covar * np.eye(d)
            sig = [tied] * k
        elif ctype == "diag":
            sig = [np.diag(np.diag(s) + reg_covar) for s in second]
        else:
            sig = [np.eye(d) * (np.mean(np.diag(s)) + reg_covar) for s in second]
    cov = {
        "full": np.array(sig),
        "tied": sig[0],
        "diag": np.array([np.diag(s) for s in sig]),
        "spherical": np.array([s[0, 0] for s in sig]),
    }[ctype]
    return {"weights": w, "means": mu, "covariances": cov}, np.array(history)


# ------------------------------------------------------------------ fixtures


def _mixture_data(n=120, d=3, frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [3.0, -2.0, 1.0]])[:, :d]
    z = rng.integers(0, 2, n)
    a = rng.normal(size=(d, d)) * 0.5 + np.eye(d)
    x = centres[z] + rng.normal(size=(n, d)) @ a.T
    missing = rng.random((n, d)) < frac
    missing[missing.all(axis=1), 0] = False  # keep one entry in every row
    return np.where(missing, np.nan, x)


def _start(ctype, d=3, k=2):
    means = np.array([[0.5, 0.2, -0.1], [2.5, -1.5, 0.8]])[:k, :d]
    cov = {
        "full": np.array([np.eye(d) * 1.5 + 0.3, np.eye(d) * 0.8 + 0.1]),
        "tied": np.eye(d) * 1.2 + 0.2,
        "diag": np.array([np.linspace(1.0, 2.0, d), np.linspace(0.7, 1.1, d)]),
        "spherical": np.array([1.3, 0.9]),
    }[ctype]
    return {"weights": np.array([0.45, 0.55]), "means": means, "covariances": cov}


# ------------------------------------------------------------------ GMM tests


def _assert_matches_reference(result, ref, history, n_iter):
    """``result`` ran ``n_iter`` iterations to the numpy reference's
    parameters and history, and its history never decreased."""
    assert int(result.n_iter) == n_iter
    for name in ref:
        np.testing.assert_allclose(
            result.params[name], ref[name], rtol=1e-10, atol=1e-10
        )
    np.testing.assert_allclose(result.history[:n_iter], history[:n_iter], rtol=1e-11)
    assert np.all(np.diff(np.asarray(result.history[:n_iter])) >= 0)


@pytest.mark.parametrize("ctype", ["full", "diag", "spherical", "tied"])
def test_gmm_matches_numpy_reference(ctype):
    x = _mixture_data()
    params0 = _start(ctype)
    model = jaxem.models.gaussian_mixture(2, 3, ctype, 1e-6, missing="marginalize")
    result = jaxem.fit(model, params0, missing_data(x), max_iter=6, tol=0.0)
    _assert_matches_reference(result, *numpy_gmm_em(x, params0, ctype, 6, 1e-6), 6)


def _draw(n, seed):
    """Two well separated 3-d Gaussians (full covariances) and the truth."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0, 0.0], [5.0, -4.0, 3.0]])
    a = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.4, 0.7]])
    covs = np.array([a @ a.T, np.diag([0.5, 1.5, 1.0])])
    z = (rng.random(n) < 0.4).astype(int)
    eps = rng.normal(size=(n, 3))
    chol = np.linalg.cholesky(covs)
    x = means[z] + np.einsum("nij,nj->ni", chol[z], eps)
    return x, {"weights": np.array([0.6, 0.4]), "means": means, "covariances": covs}


def test_gmm_estimator_mcar_recovers_complete_data_fit():
    x, truth = _draw(4000, 1)
    rng = np.random.default_rng(2)
    holes = np.where(rng.random(x.shape) < 0.2, np.nan, x)
    kw = dict(n_components=2, means_init=truth["means"], tol=1e-8, max_iter=500)
    full = jaxem.GaussianMixture(**kw).fit(x)
    gm = jaxem.GaussianMixture(missing="marginalize", **kw).fit(holes)
    assert gm.converged_
    # Sampling error of the means ~ sigma / sqrt(n_k) ~ 0.03; the fits on the
    # complete and the 20%-missing data agree to that, and both to the truth.
    np.testing.assert_allclose(gm.means_, full.means_, atol=0.1)
    np.testing.assert_allclose(gm.means_, truth["means"], atol=0.12)
    np.testing.assert_allclose(gm.covariances_, truth["covariances"], atol=0.15)
    np.testing.assert_allclose(gm.weights_, truth["weights"], atol=0.03)
    assert np.all(np.diff(gm.lower_bounds_) >= -1e-12)
    for out in (gm.score_samples(holes), gm.predict_proba(holes), gm.predict(holes)):
        assert np.all(np.isfinite(out))
    # Mean imputation would shrink the variances by about 20%; the exact EM
    # does not.
    np.testing.assert_allclose(
        np.diag(gm.covariances_[0]), np.diag(full.covariances_[0]), rtol=0.08
    )


def test_gmm_estimator_scores_marginalise():
    x, truth = _draw(200, 3)
    x[::3, 1] = np.nan
    x[5] = [np.nan, 2.0, np.nan]
    gm = jaxem.GaussianMixture(2, missing="marginalize", random_state=0).fit(x)
    got = gm.score_samples(x)
    want = []
    for row in x:
        o = ~np.isnan(row)
        dens = [
            w * multivariate_normal(m[o], c[np.ix_(o, o)]).pdf(row[o])
            for w, m, c in zip(gm.weights_, gm.means_, gm.covariances_, strict=True)
        ]
        want.append(np.log(np.sum(dens)))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(gm.predict_proba(x).sum(1), 1.0, rtol=1e-12)
    assert gm.score(x) == pytest.approx(np.mean(want), rel=1e-10)


def test_gmm_all_missing_row_contributes_nothing():
    x = _mixture_data(seed=4)
    empty = np.full((3, 3), np.nan)
    both = np.concatenate([x[:50], empty, x[50:]])
    for ctype in ("full", "diag", "spherical", "tied"):
        model = jaxem.models.gaussian_mixture(2, 3, ctype, missing="marginalize")
        params0 = _start(ctype)
        a = jaxem.fit(model, params0, missing_data(x), max_iter=8, tol=0.0)
        b = jaxem.fit(model, params0, missing_data(both), max_iter=8, tol=0.0)
        for name in params0:
            np.testing.assert_allclose(
                b.params[name], a.params[name], rtol=1e-10, atol=1e-12
            )
        np.testing.assert_allclose(b.history, a.history, rtol=1e-12)
    gm = jaxem.GaussianMixture(2, missing="marginalize", random_state=0).fit(both)
    np.testing.assert_allclose(gm.score_samples(empty), 0.0, atol=1e-15)
    np.testing.assert_allclose(
        gm.predict_proba(empty), np.tile(gm.weights_, (3, 1)), rtol=1e-12
    )


def test_gmm_missing_argument_checks():
    x = _mixture_data()
    with pytest.raises(ValueError, match="NaN"):
        jaxem.GaussianMixture(2).fit(x)
    with pytest.raises(ValueError, match="missing"):
        jaxem.GaussianMixture(2, missing="marginalise").fit(x)
    with pytest.raises(ValueError, match="missing"):
        jaxem.models.gaussian_mixture(2, 3, missing="drop")
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        jaxem.GaussianMixture(2, missing="marginalize").fit(bad)
    gm = jaxem.GaussianMixture(2, random_state=0).fit(np.nan_to_num(x))
    with pytest.raises(ValueError, match="NaN"):
        gm.predict(x)


def test_gmm_complete_data_unchanged():
    # With nothing missing, missing="marginalize" is the plain EM.
    x, _ = _draw(300, 5)
    kw = dict(n_components=2, random_state=0, tol=1e-8)
    a = jaxem.GaussianMixture(**kw).fit(x)
    b = jaxem.GaussianMixture(missing="marginalize", **kw).fit(x)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-10)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-9)
    np.testing.assert_allclose(b.score_samples(x), a.score_samples(x), rtol=1e-12)


def test_gmm_functional_jit_vmap_and_padding():
    x = _mixture_data(n=100)
    data = missing_data(x)
    model = jaxem.models.gaussian_mixture(2, 3, "full", missing="marginalize")
    assert model is jaxem.models.gaussian_mixture(2, 3, "full", missing="marginalize")
    params0 = jax.tree.map(jnp.asarray, _start("full"))
    ref = jaxem.fit(model, params0, data, max_iter=5, tol=0.0)
    jitted = jax.jit(lambda p, d: jaxem.fit(model, p, d, max_iter=5, tol=0.0))(
        params0, jax.tree.map(jnp.asarray, data)
    )
    # padded (concrete data, bucket 128) and unpadded (traced) agree
    np.testing.assert_allclose(jitted.params["means"], ref.params["means"], rtol=1e-12)
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), params0)
    batch = jax.vmap(lambda p: jaxem.fit(model, p, data, max_iter=5, tol=0.0))(stacked)
    np.testing.assert_allclose(
        batch.params["covariances"][1], ref.params["covariances"], rtol=1e-12
    )
    # init copes with the holes; no NaN anywhere
    init = model.init(jax.random.key(0), data)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(init))
    out = jaxem.fit(model, init, data)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(out.params))
    sample, _ = model.sample(jax.random.key(1), ref.params, 4)
    assert sample["x"].shape == (4, 3) and bool(jnp.all(sample["mask"]))


def test_gmm_float32_stays_float32_and_finite():
    x = _mixture_data(n=200).astype(np.float32)
    gm = jaxem.GaussianMixture(2, missing="marginalize", random_state=0).fit(x)
    assert gm.means_.dtype == np.float32
    assert np.all(np.isfinite(gm.score_samples(x)))


# ------------------------------------------------------------------ HMM tests


def _forward_backward(log_pi, log_a, emis):
    """gamma (T, K), summed xi (K, K) and log-likelihood, in log space."""
    t_len, k = emis.shape
    alpha = np.zeros((t_len, k))
    beta = np.zeros((t_len, k))
    alpha[0] = log_pi + emis[0]
    for t in range(1, t_len):
        alpha[t] = logsumexp(alpha[t - 1][:, None] + log_a, axis=0) + emis[t]
    for t in range(t_len - 2, -1, -1):
        beta[t] = logsumexp(log_a + emis[t + 1] + beta[t + 1], axis=1)
    ll = logsumexp(alpha[-1])
    gamma = np.exp(alpha + beta - ll)
    xi = sum(
        np.exp(alpha[t][:, None] + log_a + emis[t + 1] + beta[t + 1] - ll)
        for t in range(t_len - 1)
    )
    return gamma, xi, ll


def numpy_hmm_em(x, params, emission, n_iter):
    """Textbook EM for an HMM on (B, T, d) data with NaN; ``emission`` is
    ``"poisson"`` or a Gaussian covariance type."""
    obs = ~np.isnan(x)
    b, t_len, d = x.shape
    p = {name: np.asarray(v, float) for name, v in params.items()}
    k = len(p["startprob"])
    history = []
    for it in range(n_iter + 1):
        if emission == "poisson":
            from scipy.stats import poisson

            lam = p["lambdas"]
            emis = np.zeros((b, t_len, k))
            for i in range(b):
                for t in range(t_len):
                    o = np.flatnonzero(obs[i, t])
                    for j in range(k):
                        emis[i, t, j] = poisson.logpmf(x[i, t, o], lam[j, o]).sum()
        else:
            sig = _as_matrices(p["covars"], emission, k, d)
            emis = np.array(
                [
                    [
                        [
                            _observed_log_pdf(x[i, t], obs[i, t], p["means"][j], sig[j])
                            for j in range(k)
                        ]
                        for t in range(t_len)
                    ]
                    for i in range(b)
                ]
            )
        fb = [
            _forward_backward(np.log(p["startprob"]), np.log(p["transmat"]), e)
            for e in emis
        ]
        history.append(sum(f[2] for f in fb))
        if it == n_iter:
            break
        gamma = np.array([f[0] for f in fb])
        gamma[~obs.any(axis=-1)] = 0.0  # steps with nothing observed: no emission
        start = sum(f[0][0] for f in fb)
        xi = sum(f[1] for f in fb)
        new = {
            "startprob": start / start.sum(),
            "transmat": xi / xi.sum(1, keepdims=True),
        }
        if emission == "poisson":
            num = np.einsum("btk,btd->kd", gamma, np.where(obs, x, 0.0))
            den = np.einsum("btk,btd->kd", gamma, obs.astype(float))
            new["lambdas"] = num / den
        else:
            post = gamma.sum(axis=(0, 1))
            moments = [
                [
                    [
                        _conditional(x[i, t], obs[i, t], p["means"][j], sig[j])
                        for j in range(k)
                    ]
                    for t in range(t_len)
                ]
                for i in range(b)
            ]
            mu = np.array(
                [
                    sum(
                        gamma[i, t, j] * moments[i][t][j][0]
                        for i in range(b)
                        for t in range(t_len)
                    )
                    / post[j]
                    for j in range(k)
                ]
            )
            second = np.array(
                [
                    sum(
                        gamma[i, t, j]
                        * (
                            np.outer(
                                moments[i][t][j][0] - mu[j], moments[i][t][j][0] - mu[j]
                            )
                            + moments[i][t][j][1]
                        )
                        for i in range(b)
                        for t in range(t_len)
                    )
                    for j in range(k)
                ]
            )
            new["means"] = mu
            new["covars"] = {
                "full": second / post[:, None, None],
                "tied": second.sum(0) / post.sum(),
                "diag": np.array([np.diag(s) for s in second]) / post[:, None],
                "spherical": np.array([np.trace(s) / d for s in second]) / post,
            }[emission]
        p = new
    return p, np.array(history)


def _hmm_data(emission, b=3, t_len=30, d=3, frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    z = np.zeros((b, t_len), int)
    for i in range(b):
        for t in range(1, t_len):
            z[i, t] = z[i, t - 1] if rng.random() < 0.8 else 1 - z[i, t - 1]
    if emission == "poisson":
        x = rng.poisson(np.array([[2.0, 5.0, 1.0], [8.0, 1.0, 4.0]])[z]).astype(float)
    else:
        x = np.array([[0.0, 0.0, 0.0], [3.0, -2.0, 1.0]])[z] + rng.normal(
            size=(b, t_len, d)
        )
    holes = rng.random(x.shape) < frac
    holes[0, 4] = True  # a step with nothing observed, mid-sequence
    holes[-1, -1] = True  # and one at the end
    return np.where(holes, np.nan, x)


def _hmm_start(emission, d=3):
    p = {
        "startprob": np.array([0.6, 0.4]),
        "transmat": np.array([[0.7, 0.3], [0.2, 0.8]]),
    }
    if emission == "poisson":
        p["lambdas"] = np.array([[1.5, 4.0, 2.0], [6.0, 2.0, 3.0]])
    else:
        p["means"] = np.array([[0.5, 0.2, -0.1], [2.5, -1.5, 0.8]])
        p["covars"] = {
            "full": np.array([np.eye(d) * 1.5 + 0.3, np.eye(d) * 0.8 + 0.1]),
            "diag": np.array([np.linspace(1.0, 2.0, d), np.linspace(0.7, 1.1, d)]),
            "spherical": np.array([1.3, 0.9]),
            "tied": np.eye(d) * 1.2 + 0.2,
        }[emission]
    return p


@pytest.mark.parametrize("emission", ["diag", "full", "spherical", "tied", "poisson"])
def test_hmm_matches_numpy_reference(emission):
    x = _hmm_data(emission)
    params0 = _hmm_start(emission)
    if emission == "poisson":
        model = jaxem.models.poisson_hmm(2, 3, missing="marginalize")
    else:
        model = jaxem.models.gaussian_hmm(2, 3, emission, missing="marginalize")
    result = jaxem.fit(model, params0, missing_data(x), max_iter=5, tol=0.0)
    _assert_matches_reference(result, *numpy_hmm_em(x, params0, emission, 5), 5)


def _set(est, params):
    for name, value in params.items():
        setattr(est, name + "_", value)
    return est


@pytest.mark.parametrize("emission", ["full", "poisson"])
def test_hmm_estimators_match_numpy_reference(emission):
    x = _hmm_data(emission)
    params0 = _hmm_start(emission)
    kw = dict(n_components=2, init_params="", n_iter=4, tol=0.0)
    if emission == "poisson":
        est = jaxem.PoissonHMM(missing="marginalize", **kw)
    else:
        est = jaxem.GaussianHMM(
            covariance_type="full", covars_prior=0.0, missing="marginalize", **kw
        )
        params0 = {**params0, "covars": params0["covars"]}
    _set(est, params0)
    flat = x.reshape(-1, 3)
    lengths = [x.shape[1]] * x.shape[0]
    est.fit(flat, lengths)
    ref, history = numpy_hmm_em(x, params0, emission, 4)
    names = ["startprob", "transmat"] + (
        ["lambdas"] if emission == "poisson" else ["means", "covars"]
    )
    for name in names:
        np.testing.assert_allclose(
            getattr(est, name + "_"), ref[name], rtol=1e-10, atol=1e-10
        )
    np.testing.assert_allclose(est.score(flat, lengths), history[-1], rtol=1e-11)
    states = est.predict(flat, lengths)
    assert states.shape == (flat.shape[0],) and np.all(np.isin(states, [0, 1]))
    logprob, viterbi = est.decode(flat, lengths)
    assert np.isfinite(logprob) and viterbi.shape == states.shape
    assert np.all(np.isfinite(est.predict_proba(flat, lengths)))


def test_hmm_all_missing_steps_add_nothing_to_the_likelihood():
    x = _hmm_data("diag", b=1, t_len=40)[0]
    est = jaxem.GaussianHMM(2, missing="marginalize", random_state=0, n_iter=20)
    est.fit(x)
    tail = np.concatenate([x, np.full((5, 3), np.nan)])
    assert est.score(tail) == pytest.approx(est.score(x), rel=1e-12)
    # a missing step mid-sequence: only the transitions act, A^2 between its
    # neighbours
    pair = np.stack([x[0], x[1]])
    gap = np.stack([x[0], np.full(3, np.nan), x[1]])
    two_step = jaxem.GaussianHMM(2, missing="marginalize")
    _set(
        two_step,
        {
            "startprob": est.startprob_,
            "transmat": est.transmat_ @ est.transmat_,
            "means": est.means_,
            "covars": est._covars_,
        },
    )
    two_step.covariance_type = est.covariance_type
    assert est.score(gap) == pytest.approx(two_step.score(pair), rel=1e-12)


def test_hmm_mcar_recovers_complete_data_fit():
    rng = np.random.default_rng(7)
    n = 3000
    z = np.zeros(n, int)
    for t in range(1, n):
        z[t] = z[t - 1] if rng.random() < 0.9 else 1 - z[t - 1]
    means = np.array([[0.0, 0.0], [3.0, -2.0]])
    x = means[z] + rng.normal(size=(n, 2)) * np.array([1.0, 0.7])
    holes = np.where(rng.random(x.shape) < 0.2, np.nan, x)
    kw = dict(n_components=2, covars_prior=0.0, n_iter=200, tol=1e-6, random_state=0)
    full = jaxem.GaussianHMM(**kw).fit(x)
    gm = jaxem.GaussianHMM(missing="marginalize", **kw).fit(holes)
    order = np.argsort(gm.means_[:, 0])
    forder = np.argsort(full.means_[:, 0])
    np.testing.assert_allclose(gm.means_[order], full.means_[forder], atol=0.08)
    np.testing.assert_allclose(gm.means_[order], means, atol=0.1)
    np.testing.assert_allclose(
        gm._covars_[order], np.array([[1.0, 0.49]] * 2), rtol=0.12
    )
    np.testing.assert_allclose(
        gm.transmat_[np.ix_(order, order)], [[0.9, 0.1], [0.1, 0.9]], atol=0.03
    )
    assert np.all(np.diff(gm.monitor_.history) >= -1e-9)


def test_hmm_missing_argument_checks():
    x = _hmm_data("poisson", b=1)[0]
    with pytest.raises(ValueError, match="NaN"):
        jaxem.PoissonHMM(2).fit(x)
    with pytest.raises(ValueError, match="missing"):
        jaxem.PoissonHMM(2, missing="yes").fit(x)
    with pytest.raises(ValueError, match="missing"):
        jaxem.GaussianHMM(2, missing=None).fit(x)
    with pytest.raises(ValueError, match="missing"):
        jaxem.models.poisson_hmm(2, 3, missing="drop")
    with pytest.raises(ValueError, match="whole"):
        jaxem.PoissonHMM(2, missing="marginalize").fit(x + 0.5)
    est = jaxem.PoissonHMM(2, missing="marginalize", random_state=0).fit(x)
    assert np.all(np.isfinite(est.lambdas_)) and np.isfinite(est.score(x))
    sample, _ = est.sample(5)
    assert sample.shape == (5, 3) and np.all(np.isfinite(sample))


def test_hmm_functional_vmap_and_jit():
    x = _hmm_data("diag")
    data = missing_data(x)
    model = jaxem.models.gaussian_hmm(2, 3, "diag", missing="marginalize")
    params0 = jax.tree.map(jnp.asarray, _hmm_start("diag"))
    ref = jaxem.fit(model, params0, data, max_iter=4, tol=0.0)
    jitted = jax.jit(lambda p, d: jaxem.fit(model, p, d, max_iter=4, tol=0.0))(
        params0, jax.tree.map(jnp.asarray, data)
    )
    np.testing.assert_allclose(
        jitted.params["covars"], ref.params["covars"], rtol=1e-12
    )
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), params0)
    batch = jax.vmap(lambda p: jaxem.fit(model, p, data, max_iter=4, tol=0.0))(stacked)
    np.testing.assert_allclose(
        batch.params["means"][0], ref.params["means"], rtol=1e-12
    )
    init = model.init(jax.random.key(0), data)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(init))


@pytest.mark.parametrize("value", ["marginalise", None, 1, ["raise"], "Raise"])
@pytest.mark.parametrize(
    "cls", [jaxem.GaussianMixture, jaxem.GaussianHMM, jaxem.PoissonHMM]
)
def test_bad_missing_is_named_in_one_line(cls, value):
    X = np.arange(20.0).reshape(10, 2)
    X[3, 1] = np.nan
    with pytest.raises(ValueError) as info:
        cls(2, missing=value).fit(X)
    message = str(info.value)
    assert "missing" in message and "\n" not in message.strip(), message


def test_saved_estimator_keeps_missing(tmp_path):
    x = _mixture_data(n=80)
    gm = jaxem.GaussianMixture(2, missing="marginalize", random_state=0).fit(x)
    path = gm.save(tmp_path / "gm.npz")
    back = jaxem.load(path)
    assert back.missing == "marginalize"
    np.testing.assert_allclose(back.score_samples(x), gm.score_samples(x), rtol=1e-12)
    hmm = jaxem.PoissonHMM(2, missing="marginalize", random_state=0)
    hmm.fit(_hmm_data("poisson", b=1)[0])
    back = jaxem.load(hmm.save(tmp_path / "hmm.npz"))
    x = _hmm_data("poisson", b=1)[0]
    assert back.score(x) == pytest.approx(hmm.score(x), rel=1e-12)


def test_restarts_and_uneven_sequences():
    x = _mixture_data(n=150)
    gm = jaxem.GaussianMixture(2, missing="marginalize", n_init=3, random_state=0)
    gm.fit(x)
    # restart 0 of n_init=3 starts as n_init=1 does: the best is no worse
    single = jaxem.GaussianMixture(2, missing="marginalize", random_state=0).fit(x)
    assert gm.lower_bound_ >= single.lower_bound_ - 1e-12
    counts = np.round(np.abs(np.nan_to_num(x, nan=1.0)) * 3)
    counts[np.isnan(x)] = np.nan
    hmm = jaxem.PoissonHMM(2, missing="marginalize", n_init=2, random_state=0)
    hmm.fit(counts, [90, 60])
    assert np.all(np.isfinite(hmm.lambdas_))
    # two sequences score as the sum of their scores
    total = hmm.score(counts, [90, 60])
    parts = hmm.score(counts[:90]) + hmm.score(counts[90:])
    assert total == pytest.approx(parts, rel=1e-12)


@pytest.mark.parametrize("d", [4, 18])  # unrolled factorisations, and LAPACK's
@pytest.mark.parametrize("ctype", ["full", "tied"])
def test_observed_block_density_and_moments(d, ctype):
    from jaxem.models import _gmm_missing

    rng = np.random.default_rng(d)
    x = rng.normal(size=(12, d))
    mask = rng.random((12, d)) > 0.4
    mask[0] = False  # nothing observed
    mask[1] = True  # everything observed
    means = rng.normal(size=(2, d))
    a = rng.normal(size=(2, d, d))
    cov = a @ np.swapaxes(a, 1, 2) + np.eye(d)
    if ctype == "tied":
        cov = cov[0]
    mats = _as_matrices(cov, ctype, 2, d)
    args = (
        jnp.asarray(np.where(mask, x, 0.0)),
        mask,
        jnp.asarray(means),
        jnp.asarray(cov),
    )
    table = _gmm_missing.log_pdf(*args, ctype)
    xc, cond = _gmm_missing.conditional_moments(*args, ctype)
    for i in range(12):
        xi = np.where(mask[i], x[i], np.nan)
        for k in range(2):
            want = _observed_log_pdf(xi, mask[i], means[k], mats[k])
            assert float(table[i, k]) == pytest.approx(want, rel=1e-12, abs=1e-12)
            xhat, c = _conditional(
                np.where(mask[i], x[i], 0.0), mask[i], means[k], mats[k]
            )
            np.testing.assert_allclose(
                xc[i, k] + means[k], xhat, rtol=1e-10, atol=1e-12
            )
            np.testing.assert_allclose(cond[i, k], c, rtol=1e-10, atol=1e-12)
