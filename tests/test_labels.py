"""Partial labels and clamped latents (``latent_evidence``), and the estimators'
labels, ``accelerate`` and HMM standard errors.

Oracles: the supervised closed-form MLE in numpy (per-class weights, means,
covariances; counted start and transition frequencies), plain EM (no labels
must change nothing), brute-force log-sum-exp for soft evidence, and a
finite-difference Hessian in a hand-written numpy forward algorithm for the
HMM standard errors.
"""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

import jaxem

K = 2


def _clamp(labels, k):
    """(..., k) log-evidence: 0 at the label, -inf elsewhere; 0 where -1."""
    labels = np.asarray(labels)
    keep = (labels[..., None] == np.arange(k)) | (labels[..., None] < 0)
    return np.where(keep, 0.0, -np.inf)


def _gmm_data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    z = rng.integers(0, K, n)
    x = rng.normal(np.where(z[:, None] == 1, 2.0, 0.0), 1.0, (n, 2))
    return x, z


def _hmm_data(seed=0, b=6, t=40):
    rng = np.random.default_rng(seed)
    trans = np.array([[0.85, 0.15], [0.2, 0.8]])
    z = np.zeros((b, t), int)
    z[:, 0] = rng.integers(0, K, b)
    for s in range(1, t):
        z[:, s] = (rng.random(b) < trans[z[:, s - 1], 1]).astype(int)
    x = rng.normal(np.where(z == 1, 1.5, -0.5), 0.8)[..., None]
    return x, z


# ------------------------------------------------------------ supervised MLE
def test_fully_labelled_mixture_equals_the_supervised_mle():
    x, z = _gmm_data()
    model = jaxem.models.gaussian_mixture(K, 2, reg_covar=0.0)
    params0 = model.init(jax.random.key(0), jnp.asarray(x))
    result = jaxem.fit(model, params0, x, latent_evidence=_clamp(z, K), max_iter=5)
    p = result.params
    for k in range(K):
        rows = x[z == k]
        np.testing.assert_allclose(p["weights"][k], len(rows) / len(x), atol=1e-10)
        np.testing.assert_allclose(p["means"][k], rows.mean(0), atol=1e-10)
        cov = np.cov(rows.T, bias=True)
        np.testing.assert_allclose(p["covariances"][k], cov, atol=1e-10)
    # the log-likelihood reported is log p(x, z): the complete-data one
    complete = sum(
        np.sum(z == k) * np.log(np.mean(z == k))
        + multivariate_normal.logpdf(
            x[z == k], p["means"][k], p["covariances"][k]
        ).sum()
        for k in range(K)
    )
    np.testing.assert_allclose(result.log_likelihood, complete, rtol=1e-12)


def test_fully_labelled_estimators_equal_the_supervised_mle():
    x, z = _gmm_data()
    gm = jaxem.GaussianMixture(K, reg_covar=0.0, semi_supervised=True).fit(x, z)
    for k in range(K):
        np.testing.assert_allclose(gm.means_[k], x[z == k].mean(0), atol=1e-10)
        cov = np.cov(x[z == k].T, bias=True)
        np.testing.assert_allclose(gm.covariances_[k], cov, atol=1e-10)
    np.testing.assert_allclose(gm.weights_, np.bincount(z) / len(z), atol=1e-10)
    restarts = jaxem.GaussianMixture(
        K, reg_covar=0.0, n_init=3, semi_supervised=True, random_state=1
    ).fit(x, z)
    np.testing.assert_allclose(restarts.means_, gm.means_, atol=1e-10)

    heads = np.random.default_rng(0).binomial(10, np.where(z == 1, 0.8, 0.3))
    bm = jaxem.BinomialMixture(K, n_trials=10, semi_supervised=True)
    bm.fit(heads[:, None], z)
    rates = [heads[z == k].mean() / 10 for k in range(K)]
    np.testing.assert_allclose(bm.p_, rates, atol=1e-10)


def test_fully_labelled_hmm_equals_counted_frequencies():
    x, z = _hmm_data()
    b, t = z.shape
    model = jaxem.models.gaussian_hmm(K, 1, "diag")
    params0 = model.init(jax.random.key(0), jnp.asarray(x), jnp.full(b, t))
    result = jaxem.fit(model, params0, x, latent_evidence=_clamp(z, K), max_iter=5)
    p = result.params
    np.testing.assert_allclose(p["startprob"], np.bincount(z[:, 0], minlength=K) / b)
    counts = np.zeros((K, K))
    np.add.at(counts, (z[:, :-1].ravel(), z[:, 1:].ravel()), 1)
    np.testing.assert_allclose(
        p["transmat"], counts / counts.sum(1, keepdims=True), atol=1e-10
    )
    for k in range(K):
        rows = x[z == k]
        np.testing.assert_allclose(p["means"][k], rows.mean(0), atol=1e-10)
        np.testing.assert_allclose(p["covars"][k], rows.var(0), atol=1e-10)

    hmm = jaxem.GaussianHMM(K, n_iter=5, random_state=0)
    hmm.fit(x.reshape(-1, 1), np.full(b, t), states=z.ravel())
    np.testing.assert_allclose(hmm.transmat_, p["transmat"], atol=1e-10)
    np.testing.assert_allclose(hmm.means_, p["means"], atol=1e-10)


# ---------------------------------------------------------------- no labels
def test_no_labels_is_plain_em_exactly():
    x, _ = _gmm_data()
    model = jaxem.models.gaussian_mixture(K, 2)
    params0 = model.init(jax.random.key(1), jnp.asarray(x))
    plain = jaxem.fit(model, params0, x, max_iter=30, tol=0.0)
    free = jaxem.fit(
        model, params0, x, latent_evidence=np.zeros((len(x), K)), max_iter=30, tol=0
    )
    np.testing.assert_array_equal(free.history, plain.history)
    np.testing.assert_array_equal(free.params["means"], plain.params["means"])

    hx, _ = _hmm_data()
    hmm = jaxem.models.gaussian_hmm(K, 1)
    hp = hmm.init(jax.random.key(0), jnp.asarray(hx), jnp.full(6, 40))
    plain = jaxem.fit(hmm, hp, hx, max_iter=10, tol=0.0)
    free = jaxem.fit(hmm, hp, hx, latent_evidence=np.zeros((6, 40, K)), max_iter=10)
    np.testing.assert_array_equal(free.history, plain.history)

    kw = dict(random_state=0, max_iter=50)
    a = jaxem.GaussianMixture(K, **kw).fit(x)
    b = jaxem.GaussianMixture(K, semi_supervised=True, **kw).fit(x, np.full(120, -1))
    np.testing.assert_array_equal(a.means_, b.means_)
    # without semi_supervised, y is scikit-learn's ignored target
    c = jaxem.GaussianMixture(K, **kw).fit(x, np.arange(120) % 5)
    np.testing.assert_array_equal(a.means_, c.means_)


# ----------------------------------------------------------- soft evidence
def test_soft_evidence_reweights_the_posterior_and_likelihood():
    x, _ = _gmm_data(n=30)
    model = jaxem.models.gaussian_mixture(K, 2)
    params = model.init(jax.random.key(2), jnp.asarray(x))
    evidence = np.log(np.random.default_rng(3).dirichlet([1.0, 1.0], 30))
    table = np.stack(
        [
            np.log(params["weights"][k])
            + multivariate_normal.logpdf(
                x, params["means"][k], params["covariances"][k]
            )
            for k in range(K)
        ],
        axis=1,
    )
    joint = table + evidence
    want = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    got = jaxem.posterior(model, params, x, latent_evidence=evidence)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    ll = jaxem.log_likelihood(model, params, x, latent_evidence=evidence)
    np.testing.assert_allclose(ll, logsumexp(joint, axis=1).sum(), rtol=1e-12)


def test_viterbi_respects_clamped_steps():
    x, z = _hmm_data(b=1, t=20)
    model = jaxem.models.gaussian_hmm(K, 1)
    params = {
        "startprob": np.array([0.5, 0.5]),
        "transmat": np.array([[0.9, 0.1], [0.1, 0.9]]),
        "means": np.array([[-0.5], [1.5]]),
        "covars": np.array([[0.64], [0.64]]),
    }
    free = np.asarray(jaxem.viterbi(model, params, x))
    labels = np.full((1, 20), -1)
    labels[0, 7] = 1 - free[0, 7]
    clamped = np.asarray(
        jaxem.viterbi(model, params, x, latent_evidence=_clamp(labels, K))
    )
    assert clamped[0, 7] == labels[0, 7]
    post = jaxem.posterior(model, params, x, latent_evidence=_clamp(labels, K))
    np.testing.assert_allclose(post.marginals[0, 7, labels[0, 7]], 1.0, rtol=1e-12)


# -------------------------------------------------- recovery from few labels
def _overlapping(seed=0, n=600):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [1.5, 0.5], [0.5, 1.5]])
    covs = [
        np.array([[1.0, 0.6], [0.6, 1.0]]),
        np.array([[1.0, -0.5], [-0.5, 1.0]]),
        np.eye(2) * 0.8,
    ]
    z = rng.integers(0, 3, n)
    x = np.stack([rng.multivariate_normal(means[k], covs[k]) for k in z])
    return x, z, means


def _mean_error(fitted, true):
    return min(
        np.abs(fitted[list(p)] - true).mean() for p in itertools.permutations(range(3))
    )


def test_partial_labels_recover_overlapping_components_better():
    x, z, means = _overlapping()
    scores = {}
    for fraction in (0.0, 0.05, 0.2):
        rng = np.random.default_rng(100)
        y = np.where(rng.random(len(z)) < fraction, z, -1)
        gm = jaxem.GaussianMixture(
            3, random_state=0, max_iter=500, tol=1e-6, semi_supervised=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a slow unlabelled fit may warn
            gm.fit(x, y)
        assert np.all(np.diff(gm.lower_bounds_) >= -1e-12)
        scores[fraction] = (
            adjusted_rand_score(z, gm.predict(x)),
            _mean_error(gm.means_, means),
        )
    # measured: ARI 0.21 / 0.26 / 0.31, mean error 0.235 / 0.152 / 0.095
    assert scores[0.05][1] < 0.8 * scores[0.0][1]
    assert scores[0.2][1] < 0.5 * scores[0.0][1]
    assert scores[0.2][0] > scores[0.0][0] + 0.05


# ------------------------------------------- monotone, jit, vmap, padding
def test_history_is_monotone_with_partial_labels():
    x, z = _gmm_data()
    labels = np.where(np.arange(len(z)) % 4 == 0, z, -1)
    model = jaxem.models.gaussian_mixture(K, 2)
    params0 = model.init(jax.random.key(4), jnp.asarray(x))
    for accelerate in (None, "squarem"):
        r = jaxem.fit(
            model,
            params0,
            x,
            latent_evidence=_clamp(labels, K),
            max_iter=60,
            tol=0.0,
            accelerate=accelerate,
        )
        h = np.asarray(r.history)[: int(r.n_iter)]
        assert np.all(np.diff(h) >= -1e-9 * np.abs(h[:-1]))
    hx, hz = _hmm_data()
    hl = np.where(np.arange(40) % 5 == 0, hz, -1)
    hmm = jaxem.models.gaussian_hmm(K, 1)
    hp = hmm.init(jax.random.key(0), jnp.asarray(hx), jnp.full(6, 40))
    r = jaxem.fit(hmm, hp, hx, latent_evidence=_clamp(hl, K), max_iter=40, tol=0.0)
    h = np.asarray(r.history)
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[:-1]))


def test_latent_evidence_under_jit_and_vmap_and_padding():
    x, z = _gmm_data(n=50)
    labels = np.where(np.arange(50) % 3 == 0, z, -1)
    evidence = _clamp(labels, K)
    model = jaxem.models.gaussian_mixture(K, 2)
    keys = jax.random.split(jax.random.key(5), 3)
    stacked = jax.vmap(lambda k: model.init(k, jnp.asarray(x)))(keys)
    eager = [
        jaxem.fit(
            model,
            jax.tree.map(lambda a, i=i: a[i], stacked),
            x,
            latent_evidence=evidence,
            max_iter=20,
            tol=0.0,
        )
        for i in range(3)
    ]

    @jax.jit
    def fits(params0, data, ev):  # traced data: no padding inside jit
        return jax.vmap(
            lambda p: jaxem.fit(
                model, p, data, latent_evidence=ev, max_iter=20, tol=0.0
            )
        )(params0)

    batched = fits(stacked, jnp.asarray(x), jnp.asarray(evidence))
    for i, one in enumerate(eager):  # eager data are padded to 1024 rows
        np.testing.assert_allclose(batched.history[i], one.history, rtol=1e-12)
        np.testing.assert_allclose(
            batched.params["means"][i], one.params["means"], rtol=1e-10
        )
    # vmap over evidence (several labellings of one data set)
    ev2 = jnp.stack([jnp.asarray(evidence), jnp.zeros_like(evidence)])
    p0 = jax.tree.map(lambda a: a[0], stacked)
    two = jax.vmap(
        lambda e: jaxem.fit(model, p0, jnp.asarray(x), latent_evidence=e, max_iter=20)
    )(ev2)
    np.testing.assert_allclose(two.history[0], eager[0].history, rtol=1e-12)


def test_padded_chain_evidence_equals_unpadded():
    x, z = _hmm_data(b=3, t=21)
    lengths = np.array([21, 15, 9])
    labels = np.where(np.arange(21) % 4 == 0, z, -1)
    model = jaxem.models.gaussian_hmm(K, 1)
    p0 = model.init(jax.random.key(0), jnp.asarray(x), jnp.asarray(lengths))
    ev = _clamp(labels, K)
    eager = jaxem.fit(
        model, p0, x, lengths=lengths, latent_evidence=ev, max_iter=10, tol=0.0
    )
    traced = jax.jit(
        lambda d, e: jaxem.fit(
            model, p0, d, lengths=jnp.asarray(lengths), latent_evidence=e, max_iter=10
        )
    )(jnp.asarray(x), jnp.asarray(ev))
    np.testing.assert_allclose(traced.history, eager.history, rtol=1e-12)


def test_second_same_shaped_fit_does_not_recompile():
    from tests.test_compile import lowerings

    x, z = _gmm_data()
    model = jaxem.models.gaussian_mixture(K, 2)
    params0 = model.init(jax.random.key(1), jnp.asarray(x))
    jaxem.fit(model, params0, x, latent_evidence=_clamp(z, K), max_iter=5)
    labels = np.where(np.arange(120) % 2 == 0, z, -1)
    with lowerings() as names:
        jaxem.fit(model, params0, x[:100], latent_evidence=_clamp(labels[:100], K))
    assert [n for n in names if "fit" in n] == []


def test_frozen_and_weights_with_evidence():
    x, z = _gmm_data()
    model = jaxem.models.gaussian_mixture(K, 2, reg_covar=0.0)
    params0 = model.init(jax.random.key(0), jnp.asarray(x))
    w = np.random.default_rng(0).integers(1, 3, len(x)).astype(float)
    r = jaxem.fit(
        model,
        params0,
        x,
        weights=w,
        latent_evidence=_clamp(z, K),
        frozen=("weights",),
        max_iter=3,
    )
    np.testing.assert_array_equal(r.params["weights"], params0["weights"])
    for k in range(K):
        want = np.average(x[z == k], axis=0, weights=w[z == k])
        np.testing.assert_allclose(r.params["means"][k], want, atol=1e-10)


# -------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "evidence, match",
    [
        (np.zeros((3, K)), "latent_evidence: expected shape"),
        (np.zeros((120, K + 1)), "latent_evidence: expected shape"),
        (np.full((120, K), np.nan), "latent_evidence: contains NaN"),
        (np.full((120, K), np.inf), r"latent_evidence: contains \+inf"),
        (np.full((120, K), -np.inf), "latent_evidence: every latent value"),
        (np.full((120, K), "a"), "latent_evidence: expected numbers"),
    ],
)
def test_bad_latent_evidence_is_a_value_error(evidence, match):
    x, _ = _gmm_data()
    model = jaxem.models.gaussian_mixture(K, 2)
    params0 = model.init(jax.random.key(0), jnp.asarray(x))
    with pytest.raises(ValueError, match=match):
        jaxem.fit(model, params0, x, latent_evidence=evidence)
    with pytest.raises(ValueError, match=match):
        jaxem.posterior(model, params0, x, latent_evidence=evidence)


def test_continuous_latents_take_no_evidence():
    model = jaxem.models.factor_analysis(1, 3)
    x = np.random.default_rng(0).normal(size=(20, 3))
    params = model.init(jax.random.key(0), jnp.asarray(x))
    with pytest.raises(ValueError, match="latent_evidence: is for discrete latents"):
        jaxem.fit(model, params, x, latent_evidence=np.zeros((20, 1)))


@pytest.mark.parametrize(
    "y, match",
    [
        (np.zeros(3, int), "y: expected 120 labels"),
        (np.full(120, 2), r"y: labels must be in \[0, 2\)"),
        (np.full(120, -2), r"y: labels must be in \[0, 2\)"),
        (np.full(120, 0.5), "y: expected integer labels"),
        (np.array(["a"] * 120), "y: expected integer labels"),
    ],
)
def test_bad_labels_are_value_errors(y, match):
    x, _ = _gmm_data()
    with pytest.raises(ValueError, match=match):
        jaxem.GaussianMixture(K, semi_supervised=True).fit(x, y)


def test_bad_states_are_value_errors():
    x, _ = _hmm_data(b=1)
    hmm = jaxem.GaussianHMM(K, n_iter=2)
    with pytest.raises(ValueError, match="states: expected 40 labels"):
        hmm.fit(x[0], states=np.zeros(5, int))
    with pytest.raises(ValueError, match=r"states: labels must be in \[0, 2\)"):
        hmm.fit(x[0], states=np.full(40, 3))
    with pytest.raises(ValueError, match="accelerate"):
        jaxem.GaussianHMM(K, accelerate="fast").fit(x[0])
    with pytest.raises(ValueError, match="accelerate"):
        jaxem.GaussianMixture(K, accelerate="fast").fit(_gmm_data()[0])


# ----------------------------------------------------- estimators' accelerate
def test_estimators_accelerate_reach_the_same_optimum_in_fewer_steps():
    x, _, _ = _overlapping(n=400)
    kw = dict(random_state=0, max_iter=5000, tol=1e-10)
    plain = jaxem.GaussianMixture(3, **kw).fit(x)
    fast = jaxem.GaussianMixture(3, accelerate="squarem", **kw).fit(x)
    assert plain.converged_ and fast.converged_
    np.testing.assert_allclose(fast.log_likelihood_, plain.log_likelihood_, rtol=1e-8)
    # a SQUAREM cycle is three EM steps
    assert 3 * fast.n_iter_ < plain.n_iter_

    hx, _ = _hmm_data(b=4, t=60)
    hkw = dict(random_state=0, n_iter=3000, tol=1e-9)
    h0 = jaxem.GaussianHMM(K, **hkw).fit(hx.reshape(-1, 1), [60] * 4)
    h1 = jaxem.GaussianHMM(K, accelerate="squarem", **hkw).fit(
        hx.reshape(-1, 1), [60] * 4
    )
    np.testing.assert_allclose(
        h1.score(hx.reshape(-1, 1), [60] * 4),
        h0.score(hx.reshape(-1, 1), [60] * 4),
        rtol=1e-8,
    )
    assert h1.monitor_.iter < h0.monitor_.iter  # well separated: plain EM is fast

    heads = np.random.default_rng(0).binomial(10, [0.4, 0.55] * 100)[:, None]
    b0 = jaxem.BinomialMixture(2, n_trials=10, **kw).fit(heads)
    b1 = jaxem.BinomialMixture(2, n_trials=10, accelerate="squarem", **kw).fit(heads)
    np.testing.assert_allclose(b1.log_likelihood_, b0.log_likelihood_, rtol=1e-8)


# ------------------------------------------------------ HMM standard errors
def _poisson_loglik(theta, x, lengths):
    """Forward algorithm in numpy for a 2-state Poisson HMM with free
    coordinates theta = (logit s0, logit t00, logit t11, log l0, log l1)."""
    from scipy.stats import poisson

    s0, t00, t11 = 1 / (1 + np.exp(-np.asarray(theta[:3])))
    start = np.array([s0, 1 - s0])
    trans = np.array([[t00, 1 - t00], [1 - t11, t11]])
    lam = np.exp(theta[3:])
    total, offset = 0.0, 0
    for n in lengths:
        seq = x[offset : offset + n]
        offset += n
        log_alpha = np.log(start) + poisson.logpmf(seq[0], lam)
        for obs in seq[1:]:
            log_alpha = logsumexp(
                log_alpha[:, None] + np.log(trans), axis=0
            ) + poisson.logpmf(obs, lam)
        total += logsumexp(log_alpha)
    return total


def test_hmm_standard_errors_match_a_finite_difference_hessian():
    rng = np.random.default_rng(7)
    lengths = [25] * 16
    z, xs = [], []
    for n in lengths:
        state = rng.integers(0, 2)
        for _ in range(n):
            z.append(state)
            xs.append(rng.poisson([2.0, 7.0][state]))
            state = state if rng.random() < 0.85 else 1 - state
    x = np.array(xs)[:, None]
    hmm = jaxem.PoissonHMM(2, n_iter=5000, tol=1e-12, random_state=0)
    hmm.fit(x, lengths)
    se = hmm.standard_errors(x, lengths)
    assert set(se) == {"startprob_", "transmat_", "lambdas_"}

    s, t, lam = hmm.startprob_, hmm.transmat_, hmm.lambdas_[:, 0]
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    theta = np.array(
        [logit(s[0]), logit(t[0, 0]), logit(t[1, 1]), np.log(lam[0]), np.log(lam[1])]
    )
    h, n = 1e-4, len(theta)
    hess = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
        ei, ej = np.eye(n)[i] * h, np.eye(n)[j] * h
        hess[i, j] = (
            _poisson_loglik(theta + ei + ej, x[:, 0], lengths)
            - _poisson_loglik(theta + ei - ej, x[:, 0], lengths)
            - _poisson_loglik(theta - ei + ej, x[:, 0], lengths)
            + _poisson_loglik(theta - ei - ej, x[:, 0], lengths)
        ) / (4 * h * h)
    cov = np.linalg.inv(-hess)
    # delta method: d s0/d logit = s0 (1 - s0), d lam/d log lam = lam
    jac = np.array([s[0] * s[1], t[0, 0] * t[0, 1], t[1, 1] * t[1, 0], lam[0], lam[1]])
    want = np.sqrt(np.diag(cov)) * jac
    np.testing.assert_allclose(se["startprob_"], [want[0], want[0]], rtol=1e-3)
    np.testing.assert_allclose(se["transmat_"][0], [want[1], want[1]], rtol=1e-3)
    np.testing.assert_allclose(se["transmat_"][1], [want[2], want[2]], rtol=1e-3)
    np.testing.assert_allclose(se["lambdas_"][:, 0], want[3:], rtol=1e-3)


def test_gaussian_hmm_standard_errors_have_the_attributes_shapes():
    x, _ = _hmm_data(b=4, t=50)
    hmm = jaxem.GaussianHMM(K, covariance_type="diag", n_iter=200, random_state=0)
    hmm.fit(x.reshape(-1, 1), [50] * 4)
    se = hmm.standard_errors(x.reshape(-1, 1), [50] * 4)
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        assert se[name].shape == np.shape(getattr(hmm, name))
    assert np.all(np.isfinite(se["means_"])) and np.all(se["means_"] > 0)


def test_labels_with_missing_values_start_from_the_observed_entries():
    """Labelled means skip NaN entries, so a semi-supervised fit with missing
    values starts (and ends) finite, and its labels hold."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(5, 1, (80, 2))])
    x[rng.random(x.shape) < 0.1] = np.nan
    x[0] = [np.nan, 0.5]  # a labelled row with a missing entry
    y = -np.ones(180, int)
    y[:5], y[100:105] = 0, 1
    gmm = jaxem.GaussianMixture(
        2, missing="marginalize", semi_supervised=True, random_state=0
    ).fit(x, y)
    assert np.all(np.isfinite(gmm.means_))
    assert gmm.means_[0, 0] < 1 < 4 < gmm.means_[1, 0]
    assert np.all(gmm.predict(x)[y >= 0] == y[y >= 0])
    states = -np.ones(180, int)
    states[:3] = 0
    hmm = jaxem.GaussianHMM(2, missing="marginalize", random_state=0, n_iter=20)
    hmm.fit(x, [100, 80], states=states)
    assert np.all(np.isfinite(hmm.means_)) and hmm.predict(x, [100, 80])[0] == 0


def test_streamed_gaussian_mixture_reads_partial_labels_with_their_rows(
    tmp_path, reads
):
    rng = np.random.default_rng(4)
    n = 3001
    z = (rng.random(n) < 0.4).astype(int)
    x = rng.normal(np.where(z[:, None] == 1, 1.5, -1.0), 1.0, (n, 2))
    y = np.where(rng.random(n) < 0.1, z, -1)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    kw = dict(
        n_components=2,
        weights_init=[0.5, 0.5],
        precisions_init=np.stack([np.eye(2)] * 2),
        semi_supervised=True,
        max_iter=30,
        tol=0,
    )
    # Every component is labelled: both start at their labelled means, in
    # memory and streamed alike; then the labels clamp their rows each pass.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        in_memory = jaxem.GaussianMixture(**kw).fit(x, y)
        reads.clear()
        streamed = jaxem.GaussianMixture(**kw, chunk_rows=700).fit(mapped, y)
    assert reads and max(r for r, _ in reads) <= 700
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        np.testing.assert_allclose(
            getattr(streamed, name), getattr(in_memory, name), rtol=1e-10
        )
    free = jaxem.GaussianMixture(**{**kw, "semi_supervised": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        free.fit(mapped, y)
    assert not np.allclose(free.lower_bounds_, streamed.lower_bounds_)
