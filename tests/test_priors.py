"""MAP-EM: ``LatentModel(log_prior=...)`` and the prebuilt conjugate priors.

The closed-form MAP steps are checked against numpy reimplementations of the
textbook formulas (Fraley & Raftery 2007's normal / inverse-Wishart MAP, the
Dirichlet and Beta modes) from identical starts, and against the gradient
M-step on the same ``log_prior`` (no closed form), which must reach the same
optimum; histories are the MAP objective and never decrease.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hmmlearn import hmm
from scipy.special import logsumexp
from scipy.stats import binom, multivariate_normal

import jaxem
from jaxem.models import _gmm_prior

RTOL = 1e-10
CTYPES = ("full", "tied", "diag", "spherical")


def _blobs(n=80, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    return np.array([[0.0, 0.0], [3.0, 2.0]])[z] + rng.normal(size=(n, 2)) * [
        1.0,
        0.6,
    ]


X = _blobs()
HEADS = np.array([5.0, 9, 8, 4, 7, 10, 9, 1, 2, 3, 10, 10, 0, 6])
GMM_PRIOR = dict(
    weights_prior=np.array([2.0, 3.0]),
    means_prior=np.array([1.0, 0.5]),
    means_weight=np.array([0.5, 2.0]),
    covars_prior=0.4,
    covars_weight=6.0,
)


def _gmm_start(ctype, d=2):
    cov = {
        "full": np.stack([np.eye(d), 2 * np.eye(d)]),
        "tied": np.eye(d),
        "diag": np.array([[1.0, 2.0], [0.5, 1.0]]),
        "spherical": np.array([1.0, 2.0]),
    }[ctype]
    return {
        "weights": np.array([0.4, 0.6]),
        "means": np.array([[-0.5, 0.2], [2.0, 1.0]]),
        "covariances": cov,
    }


def _gmm_prior_kwargs(ctype):
    kw = dict(GMM_PRIOR)
    if ctype == "tied":
        kw["covars_weight"] = 6.0
    return kw


# ------------------------------------------------------------ numpy oracle
def _full_cov(cov, ctype, k, d):
    if ctype == "full":
        return cov
    if ctype == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if ctype == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def _np_log_prior(p, ctype, kw):
    """The normal / inverse-Wishart + Dirichlet log-density, written out."""
    k, d = p["means"].shape
    alpha = np.broadcast_to(kw["weights_prior"], (k,))
    out = np.sum((alpha - 1) * np.log(p["weights"]))
    mu = np.broadcast_to(kw["means_prior"], (k, d))
    kappa = np.broadcast_to(kw["means_weight"], (k,))
    nu = kw["covars_weight"]
    if ctype in ("full", "tied"):
        c = max(nu - d, 0)
        covs = _full_cov(p["covariances"], ctype, k, d)
        psi = kw["covars_prior"] * np.eye(d)
        for j in range(k):
            diff = p["means"][j] - mu[j]
            out -= 0.5 * kappa[j] * diff @ np.linalg.solve(covs[j], diff)
        tied = [p["covariances"]] if ctype == "tied" else list(covs)
        for cov in tied:
            out -= 0.5 * (c * np.linalg.slogdet(cov)[1])
            out -= 0.5 * np.trace(np.linalg.solve(cov, psi))
        return out
    c = max(nu - 1, 0)
    var = p["covariances"] if ctype == "diag" else p["covariances"][:, None]
    var = np.broadcast_to(var, (k, d))
    diff2 = (p["means"] - mu) ** 2
    terms = kappa[:, None] * diff2 / var + c * np.log(var) + kw["covars_prior"] / var
    return out - 0.5 * np.sum(terms)


def _np_gmm_map_em(p, x, ctype, kw, n_iter):
    """Fraley & Raftery's MAP-EM (their formulas, not jaxem's)."""
    k, d = p["means"].shape
    alpha = np.broadcast_to(kw["weights_prior"], (k,))
    mu = np.broadcast_to(kw["means_prior"], (k, d))
    kappa = np.broadcast_to(kw["means_weight"], (k,))
    nu = kw["covars_weight"]
    c = max(nu - d, 0) if ctype in ("full", "tied") else max(nu - 1, 0)
    psi = kw["covars_prior"]
    p = {key: np.array(v, dtype=float) for key, v in p.items()}
    for _ in range(n_iter):
        covs = _full_cov(p["covariances"], ctype, k, d)
        logp = np.stack(
            [
                np.log(p["weights"][j])
                + multivariate_normal(p["means"][j], covs[j]).logpdf(x)
                for j in range(k)
            ],
            axis=1,
        )
        r = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
        n = r.sum(0)
        xbar = (r.T @ x) / n[:, None]
        means = (n[:, None] * xbar + kappa[:, None] * mu) / (n + kappa)[:, None]
        shrink = kappa * n / (kappa + n)
        scat = []
        for j in range(k):
            w = (x - xbar[j]).T @ (r[:, j : j + 1] * (x - xbar[j]))
            dm = xbar[j] - mu[j]
            scat.append(w + shrink[j] * np.outer(dm, dm))
        scat = np.stack(scat)
        if ctype == "full":
            cov = (psi * np.eye(d) + scat) / (c + n)[:, None, None]
        elif ctype == "tied":
            cov = (psi * np.eye(d) + scat.sum(0)) / (c + n.sum())
        elif ctype == "diag":
            diag = np.diagonal(scat, axis1=1, axis2=2)
            cov = (psi + diag) / (c + n)[:, None]
        else:
            diag = np.diagonal(scat, axis1=1, axis2=2)
            cov = (d * psi + diag.sum(1)) / (d * (c + n))
        weights = (n + alpha - 1) / np.sum(n + alpha - 1)
        p = {"weights": weights, "means": means, "covariances": cov}
    return p


@pytest.mark.parametrize("ctype", CTYPES)
def test_gmm_map_step_matches_fraley_raftery_numpy(ctype):
    kw = _gmm_prior_kwargs(ctype)
    model = jaxem.models.gaussian_mixture(2, 2, ctype, 0.0, **kw)
    start = _gmm_start(ctype)
    result = jaxem.fit(model, start, X, max_iter=6, tol=0.0)
    want = _np_gmm_map_em(start, X, ctype, kw, 6)
    for key in want:
        np.testing.assert_allclose(
            result.params[key], want[key], rtol=RTOL, err_msg=key
        )
    # log_prior: jaxem's against the density written out
    np.testing.assert_allclose(
        float(model.log_prior(jax.tree.map(jnp.asarray, want))),
        _np_log_prior(want, ctype, kw),
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        float(result.log_prior), _np_log_prior(want, ctype, kw), rtol=1e-9
    )


def test_binomial_map_step_matches_numpy():
    alpha, a, b = np.array([2.0, 4.0]), 3.0, 2.0
    model = jaxem.models.binomial_mixture(2, 10, weights_prior=alpha, p_prior=(a, b))
    p = {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.8])}
    result = jaxem.fit(model, p, HEADS, max_iter=7, tol=0.0)
    history = []
    for _ in range(7):
        logp = np.log(p["weights"]) + binom.logpmf(HEADS[:, None], 10, p["p"])
        ll = logsumexp(logp, axis=1)
        prior = np.sum((alpha - 1) * np.log(p["weights"])) + np.sum(
            (a - 1) * np.log(p["p"]) + (b - 1) * np.log1p(-p["p"])
        )
        history.append(ll.sum() + prior)
        r = np.exp(logp - ll[:, None])
        n, h = r.sum(0), r.T @ HEADS
        p = {
            "weights": (n + alpha - 1) / np.sum(n + alpha - 1),
            "p": (h + a - 1) / (10 * n + a + b - 2),
        }
    for key in p:
        np.testing.assert_allclose(result.params[key], p[key], rtol=RTOL)
    np.testing.assert_allclose(result.history, history, rtol=RTOL)
    assert np.all(np.diff(history) >= -1e-12)


def _gradient_twin(model):
    """The same log-joint and log-prior without the closed form."""
    return jaxem.LatentModel(
        model.log_joint,
        model.latent,
        constraints=model.constraints,
        log_prior=model.log_prior,
    )


@pytest.mark.parametrize(
    "model, start, data",
    [
        (
            jaxem.models.binomial_mixture(2, 10, weights_prior=3.0, p_prior=(2.0, 5.0)),
            {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.8])},
            HEADS,
        ),
        (
            jaxem.models.gaussian_mixture(2, 2, "diag", 0.0, **GMM_PRIOR),
            _gmm_start("diag"),
            X,
        ),
    ],
    ids=["binomial", "gmm-diag"],
)
def test_gradient_m_step_reaches_the_closed_form_map(model, start, data):
    closed = jaxem.fit(model, start, data, max_iter=2000, tol=1e-14)
    grad = jaxem.fit(_gradient_twin(model), start, data, max_iter=2000, tol=1e-14)
    assert int(closed.status) == int(grad.status) == jaxem.Status.CONVERGED
    obj = float(closed.log_likelihood + closed.log_prior)
    np.testing.assert_allclose(
        float(grad.log_likelihood + grad.log_prior), obj, rtol=1e-11
    )
    for key in closed.params:
        np.testing.assert_allclose(
            grad.params[key], closed.params[key], rtol=1e-5, atol=1e-7
        )


def _assert_monotone(history):
    h = np.asarray(history)
    h = h[np.isfinite(h)]
    assert np.all(np.diff(h) >= -1e-10 * np.maximum(1.0, np.abs(h[:-1]))), np.diff(
        h
    ).min()


@pytest.mark.parametrize("ctype", CTYPES)
def test_gmm_map_history_is_the_log_posterior_and_monotone_over_restarts(ctype):
    model = jaxem.models.gaussian_mixture(2, 2, ctype, 0.0, **_gmm_prior_kwargs(ctype))
    keys = jax.random.split(jax.random.key(0), 4)
    starts = jax.vmap(lambda key: model.init(key, jnp.asarray(X), "random"))(keys)
    results = jax.vmap(
        lambda p: jaxem.fit(model, p, jnp.asarray(X), max_iter=40, tol=0.0)
    )(starts)
    for i in range(4):
        _assert_monotone(results.history[i])
    one = jax.tree.map(lambda a: a[1], results)
    last = float(jaxem.log_likelihood(model, one.params, X)) + float(
        model.log_prior(one.params)
    )
    np.testing.assert_allclose(
        float(one.log_likelihood + one.log_prior), last, rtol=1e-12
    )
    np.testing.assert_allclose(
        float(one.log_likelihood), last - float(one.log_prior), rtol=1e-12
    )


def test_default_priors_are_the_mle_exactly():
    for ctype in CTYPES:
        plain = jaxem.models.gaussian_mixture(2, 2, ctype)
        flat = jaxem.models.gaussian_mixture(
            2, 2, ctype, weights_prior=1, means_prior=5.0, covars_weight=1.0
        )
        assert flat is plain and plain.log_prior is None
    coins = jaxem.models.binomial_mixture(2, 10, weights_prior=1.0, p_prior=[1, 1])
    assert coins is jaxem.models.binomial_mixture(2, 10) and coins.log_prior is None
    result = jaxem.fit(
        coins, {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.8])}, HEADS
    )
    assert result.log_prior is None
    hmm_model = jaxem.models.gaussian_hmm(2, 1)
    assert hmm_model.log_prior is None
    # a zero prior weight with a prior mean set changes nothing either
    start = _gmm_start("full")
    a = jaxem.fit(jaxem.models.gaussian_mixture(2, 2, "full"), start, X, max_iter=5)
    b = jaxem.fit(
        jaxem.models.gaussian_mixture(2, 2, "full", means_prior=[3.0, 1.0]),
        start,
        X,
        max_iter=5,
    )
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_prior_keeps_a_component_from_collapsing():
    # Three identical points: the MLE's second covariance goes singular.
    x = np.concatenate([_blobs(40, 3), np.tile([[8.0, 8.0]], (3, 1))])
    start = {
        "weights": np.array([0.9, 0.1]),
        "means": np.array([[1.0, 1.0], [8.0, 8.0]]),
        "covariances": np.stack([np.eye(2), np.eye(2)]),
    }
    mle = jaxem.fit(jaxem.models.gaussian_mixture(2, 2, "full", 0.0), start, x)
    assert int(mle.status) == jaxem.Status.NONFINITE
    model = jaxem.models.gaussian_mixture(
        2, 2, "full", 0.0, covars_prior=0.05, covars_weight=4.0
    )
    map_fit = jaxem.fit(model, start, x, max_iter=500)
    assert int(map_fit.status) == jaxem.Status.CONVERGED
    cov = np.asarray(map_fit.params["covariances"][1])
    # Psi / (n + c) with n = 3, c = nu - d = 2: the prior's floor
    np.testing.assert_allclose(cov, 0.05 * np.eye(2) / 5.0, rtol=1e-8)
    _assert_monotone(map_fit.history[: int(map_fit.n_iter)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights_prior=0.5), "weights_prior: must be >= 1"),
        (dict(weights_prior=[1.0, 2.0, 3.0]), "weights_prior: expected a number"),
        (dict(means_prior=np.nan), "means_prior: must be finite"),
        (dict(means_weight=-1.0), "means_weight: must be >= 0"),
        (dict(covars_prior=-0.1), "covars_prior: must be >= 0"),
        (
            dict(covars_prior=np.array([[1.0, 2.0], [2.0, 1.0]])),
            "covars_prior: expected a symm",
        ),
        (dict(covars_weight="x"), "covars_weight: expected a number"),
    ],
)
def test_gmm_hyperparameters_out_of_domain_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxem.models.gaussian_mixture(2, 2, "full", **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights_prior=0.0), "weights_prior"),
        (dict(p_prior=(0.5, 1.0)), "p_prior: every value"),
        (dict(p_prior=2.0), "p_prior: expected a pair"),
        (dict(p_prior=(1.0, [1.0, 2.0, 3.0])), "p_prior: expected a number"),
    ],
)
def test_binomial_hyperparameters_out_of_domain_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxem.models.binomial_mixture(2, 10, **kwargs)


def _coin_log_joint(params, x, z):
    return jnp.log(params["weights"][z]) + jax.scipy.stats.binom.logpmf(
        x, 10, params["p"][z]
    )


def test_log_prior_is_checked_before_compiling():
    cons = {"weights": jaxem.constraints.simplex, "p": jaxem.constraints.unit_interval}
    with pytest.raises(ValueError, match="log_prior: expected a function"):
        jaxem.LatentModel(_coin_log_joint, jaxem.Categorical(2), log_prior=1.0)
    start = {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.8])}
    vector = jaxem.LatentModel(
        _coin_log_joint,
        jaxem.Categorical(2),
        constraints=cons,
        log_prior=lambda p: p["p"],
    )
    with pytest.raises(
        ValueError, match=r"log_prior: returned \(2,\); expected a scalar"
    ):
        jaxem.fit(vector, start, HEADS)
    integer = jaxem.LatentModel(
        _coin_log_joint, jaxem.Categorical(2), constraints=cons, log_prior=lambda p: 1
    )
    with pytest.raises(ValueError, match="log_prior: returned dtype int"):
        jaxem.fit(integer, start, HEADS)


def test_second_same_shaped_fit_does_not_retrace():
    traces = []

    def log_prior(params):
        traces.append(1)
        return jnp.sum(2.0 * jnp.log(params["p"]))

    cons = {"weights": jaxem.constraints.simplex, "p": jaxem.constraints.unit_interval}
    model = jaxem.LatentModel(
        _coin_log_joint, jaxem.Categorical(2), constraints=cons, log_prior=log_prior
    )
    start = {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.8])}
    jaxem.fit(model, start, HEADS, max_iter=20)
    count = len(traces)
    again = jaxem.fit(model, start, HEADS[:-2], max_iter=30, tol=1e-9)
    assert len(traces) == count
    _assert_monotone(again.history[: int(again.n_iter)])


def test_squarem_and_chunked_fits_use_the_same_objective():
    model = jaxem.models.gaussian_mixture(2, 2, "full", 0.0, **GMM_PRIOR)
    start = _gmm_start("full")
    plain = jaxem.fit(model, start, X, max_iter=3000, tol=1e-13)
    fast = jaxem.fit(model, start, X, max_iter=1000, tol=1e-13, accelerate="squarem")
    _assert_monotone(fast.history[: int(fast.n_iter)])
    np.testing.assert_allclose(
        float(fast.log_likelihood + fast.log_prior),
        float(plain.log_likelihood + plain.log_prior),
        rtol=1e-10,
    )
    # chunks: the prior enters once per iteration, not once per chunk
    chunked = jaxem.fit_chunked(model, start, X, chunk_rows=16, max_iter=8, tol=0.0)
    whole = jaxem.fit(model, start, X, max_iter=8, tol=0.0)
    np.testing.assert_allclose(chunked.history, whole.history, rtol=1e-10)
    np.testing.assert_allclose(
        float(chunked.log_prior), float(whole.log_prior), rtol=1e-10
    )
    np.testing.assert_allclose(
        float(chunked.log_likelihood), float(whole.log_likelihood), rtol=1e-10
    )


def test_gradient_norm_is_that_of_the_log_posterior():
    model = jaxem.models.binomial_mixture(2, 10, weights_prior=3.0, p_prior=(2.0, 5.0))
    start = {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.8])}
    result = jaxem.fit(
        model, start, HEADS, max_iter=2000, tol=1e-15, gradient_norm=True
    )
    assert float(result.gradient_norm) < 1e-7


# ----------------------------------------------------------------- HMMs
def _hmm_data(seed=0):
    rng = np.random.default_rng(seed)
    z = np.repeat(rng.integers(0, 2, 12), 10)
    return np.array([[0.0, 0.0], [3.0, 2.0]])[z] + rng.normal(size=(120, 2))


@pytest.mark.parametrize("ctype", ["diag", "full", "tied"])
def test_gaussian_hmm_map_matches_hmmlearn_and_reports_the_log_posterior(ctype):
    xh = _hmm_data()
    k, d = 2, 2
    cov0 = {
        "diag": np.ones((k, d)),
        "full": np.tile(np.eye(d), (k, 1, 1)),
        "tied": np.eye(d),
    }
    priors = dict(
        startprob_prior=np.array([2.0, 1.5]),
        transmat_prior=np.full((k, k), 1.5) + np.eye(k),
        means_prior=np.array([[0.5, 0.0], [3.0, 3.0]]),
        means_weight=2.0,
        covars_prior={
            "diag": np.full((k, d), 0.3),
            "full": np.tile(0.4 * np.eye(d), (k, 1, 1)),
            "tied": 0.4 * np.eye(d),
        }[ctype],
        covars_weight=3.0 if ctype == "diag" else d + 2.0,
    )
    start = {
        "startprob": np.array([0.6, 0.4]),
        "transmat": np.array([[0.7, 0.3], [0.2, 0.8]]),
        "means": np.array([[0.0, 0.5], [2.0, 3.0]]),
        "covars": cov0[ctype],
    }
    theirs = hmm.GaussianHMM(
        k, covariance_type=ctype, n_iter=12, tol=-np.inf, init_params="", **priors
    )
    theirs.startprob_, theirs.transmat_ = start["startprob"], start["transmat"]
    theirs.means_, theirs.covars_ = start["means"], start["covars"]
    theirs.fit(xh)
    model = jaxem.models.gaussian_hmm(k, d, ctype, **priors)
    ours = jaxem.fit(model, start, xh[None], max_iter=12, tol=0.0)
    np.testing.assert_allclose(ours.params["means"], theirs.means_, rtol=RTOL)
    np.testing.assert_allclose(ours.params["covars"], theirs._covars_, rtol=RTOL)
    np.testing.assert_allclose(ours.params["transmat"], theirs.transmat_, rtol=RTOL)
    np.testing.assert_allclose(ours.params["startprob"], theirs.startprob_, rtol=RTOL)
    # hmmlearn's monitor tracks the plain log-likelihood; jaxem.fit the
    # log-posterior, which never decreases: their difference is the prior
    _assert_monotone(ours.history)
    np.testing.assert_allclose(float(ours.log_likelihood), theirs.score(xh), rtol=1e-12)
    # the estimator keeps hmmlearn's monitor (plain log-likelihood)
    est = jaxem.GaussianHMM(
        k, covariance_type=ctype, n_iter=12, tol=0.0, init_params="", **priors
    )
    est.startprob_, est.transmat_ = start["startprob"], start["transmat"]
    est.means_, est.covars_ = start["means"], start["covars"]
    est.fit(xh)
    np.testing.assert_allclose(
        list(est.monitor_.history), list(theirs.monitor_.history), rtol=1e-10
    )
    assert est._model(xh).log_prior is not None


def test_categorical_hmm_map_is_monotone_and_matches_hmmlearn():
    rng = np.random.default_rng(1)
    z = np.repeat(rng.integers(0, 2, 15), 8)
    x = np.where(z == 1, rng.integers(0, 3, z.shape), rng.integers(1, 4, z.shape))
    priors = dict(startprob_prior=2.0, transmat_prior=3.0, emissionprob_prior=1.5)
    start = {
        "startprob": np.array([0.5, 0.5]),
        "transmat": np.array([[0.8, 0.2], [0.3, 0.7]]),
        "emissionprob": np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]),
    }
    theirs = hmm.CategoricalHMM(2, n_iter=15, tol=-np.inf, init_params="", **priors)
    theirs.startprob_, theirs.transmat_ = start["startprob"], start["transmat"]
    theirs.emissionprob_ = start["emissionprob"]
    theirs.fit(x[:, None])
    model = jaxem.models.categorical_hmm(2, 4, **priors)
    ours = jaxem.fit(model, start, x[None], max_iter=15, tol=0.0)
    np.testing.assert_allclose(
        ours.params["emissionprob"], theirs.emissionprob_, rtol=RTOL
    )
    np.testing.assert_allclose(ours.params["transmat"], theirs.transmat_, rtol=RTOL)
    _assert_monotone(ours.history)
    want = (
        np.sum(0.5 * np.log(ours.params["emissionprob"]))
        + np.sum(2.0 * np.log(ours.params["transmat"]))
        + np.sum(np.log(ours.params["startprob"]))
    )
    np.testing.assert_allclose(float(ours.log_prior), want, rtol=1e-12)


# ------------------------------------------------------------ estimators
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gaussian_mixture_estimator_passes_its_priors_to_the_model():
    kw = _gmm_prior_kwargs("diag")
    est = jaxem.GaussianMixture(
        2,
        covariance_type="diag",
        reg_covar=0.0,
        max_iter=6,
        tol=0.0,
        weights_init=_gmm_start("diag")["weights"],
        means_init=_gmm_start("diag")["means"],
        precisions_init=1.0 / _gmm_start("diag")["covariances"],
        **kw,
    ).fit(X)
    want = _np_gmm_map_em(_gmm_start("diag"), X, "diag", kw, 6)
    np.testing.assert_allclose(est.means_, want["means"], rtol=1e-9)
    np.testing.assert_allclose(est.covariances_, want["covariances"], rtol=1e-9)
    model = est._model(2)
    params = {
        "weights": est.weights_,
        "means": est.means_,
        "covariances": est.covariances_,
    }
    ll = float(jaxem.log_likelihood(model, params, X))
    np.testing.assert_allclose(est.log_likelihood_, ll, rtol=1e-9)
    posterior = (ll + float(model.log_prior(params))) / len(X)
    assert abs(est.lower_bound_ - posterior) < 1e-3  # the last E-step's bound
    assert est.get_params()["covars_weight"] == kw["covars_weight"]
    with pytest.raises(ValueError, match="weights_prior"):
        jaxem.GaussianMixture(2, weights_prior=0.2).fit(X)
    with pytest.raises(ValueError, match="means_prior"):
        jaxem.GaussianMixture(2, means_prior=np.zeros(3)).fit(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_binomial_mixture_estimator_priors_one_and_many_columns():
    x = HEADS[:, None]
    est = jaxem.BinomialMixture(
        2,
        10,
        weights_prior=2.0,
        p_prior=(2.0, 3.0),
        max_iter=5,
        tol=0.0,
        weights_init=[0.5, 0.5],
        p_init=[0.3, 0.8],
    ).fit(x)
    model = jaxem.models.binomial_mixture(2, 10, weights_prior=2.0, p_prior=(2.0, 3.0))
    want = jaxem.fit(
        model,
        {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.8])},
        HEADS,
        max_iter=5,
        tol=0.0,
    )
    np.testing.assert_allclose(est.p_, want.params["p"], rtol=1e-10)
    two = jaxem.BinomialMixture(
        2,
        10,
        weights_prior=2.0,
        p_prior=(2.0, 3.0),
        max_iter=5,
        tol=0.0,
        weights_init=[0.5, 0.5],
        p_init=[[0.3, 0.3], [0.8, 0.8]],
    ).fit(np.concatenate([x, x], axis=1))
    # two identical columns: each has the one-column MAP with doubled counts
    assert two._model(2).log_prior is not None
    assert np.all(np.diff(two.lower_bounds_) >= -1e-12)
    with pytest.raises(ValueError, match="p_prior"):
        jaxem.BinomialMixture(2, 10, p_prior=(0.5, 0.5)).fit(x)


def test_float32_map_fit_stays_float32_and_finite():
    model = jaxem.models.gaussian_mixture(2, 2, "full", **GMM_PRIOR)
    start = jax.tree.map(lambda a: np.asarray(a, np.float32), _gmm_start("full"))
    result = jaxem.fit(model, start, X.astype(np.float32), max_iter=30)
    assert result.history.dtype == np.float32 and result.log_prior.dtype == np.float32
    assert int(result.status) != jaxem.Status.NONFINITE
    h = np.asarray(result.history[: int(result.n_iter)], np.float64)
    assert np.all(np.diff(h) >= -1e-4 * np.abs(h[:-1]))


def test_hyperparameter_shapes_are_documented_ones():
    out = _gmm_prior.check_hyperparameters(
        3, 2, "spherical", covars_prior=[0.1, 0.2, 0.3]
    )
    assert out["covars_prior"] == (0.1, 0.2, 0.3)
