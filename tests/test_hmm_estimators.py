"""HMM estimators against hmmlearn 0.3.3 from identical starting parameters."""

import logging

import numpy as np
import pytest

import jaxem

hmm = pytest.importorskip("hmmlearn.hmm")

K, D = 3, 2
RTOL = 1e-6
RNG = np.random.default_rng(0)
STATES = RNG.integers(0, K, 100)
X_GAUSS = RNG.normal(0, 1, (100, D)) + 3.0 * STATES[:, None]
X_CAT = RNG.integers(0, 4, (100, 1)) * (STATES[:, None] > 0)
X_POIS = RNG.poisson(1.0 + 4.0 * STATES[:, None], (100, D))
LENGTHS = [40, 25, 35]


def _start():
    rng = np.random.default_rng(1)
    return {
        "startprob_": rng.dirichlet(np.ones(K)),
        "transmat_": rng.dirichlet(np.ones(K) * 3, size=K),
    }


def _gaussian_covars(cov):
    rng = np.random.default_rng(2)
    if cov == "spherical":
        return rng.uniform(0.5, 2.0, K)
    if cov == "diag":
        return rng.uniform(0.5, 2.0, (K, D))
    a = rng.normal(size=(K, D, D))
    full = a @ np.swapaxes(a, 1, 2) + np.eye(D)
    return full if cov == "full" else full[0]


def _pair(name, **kwargs):
    start = _start()
    if name.startswith("gaussian"):
        cov = name.split("-")[1]
        ours = jaxem.GaussianHMM(K, covariance_type=cov, **kwargs)
        theirs = hmm.GaussianHMM(K, covariance_type=cov, **kwargs)
        start["means_"] = np.array([[0.0, 0.5], [2.0, 3.0], [6.0, 5.0]])
        start["covars_"] = _gaussian_covars(cov)
        X = X_GAUSS
    elif name == "categorical":
        ours = jaxem.CategoricalHMM(K, **kwargs)
        theirs = hmm.CategoricalHMM(K, **kwargs)
        start["emissionprob_"] = np.random.default_rng(3).dirichlet(np.ones(4), K)
        X = X_CAT
    else:
        ours = jaxem.PoissonHMM(K, **kwargs)
        theirs = hmm.PoissonHMM(K, **kwargs)
        start["lambdas_"] = np.array([[1.0, 2.0], [4.0, 3.0], [9.0, 8.0]])
        X = X_POIS
    for est in (ours, theirs):
        for attr, value in start.items():
            setattr(est, attr, value.copy())
    return ours, theirs, X


EMISSIONS = {
    "gaussian": ("means_", "covars_"),
    "categorical": ("emissionprob_",),
    "poisson": ("lambdas_",),
}
CASES = [
    ("gaussian-diag", LENGTHS),
    ("gaussian-diag", None),
    ("gaussian-full", LENGTHS),
    ("gaussian-spherical", LENGTHS),
    ("gaussian-tied", LENGTHS),
    ("categorical", LENGTHS),
    ("categorical", None),
    ("poisson", LENGTHS),
    ("poisson", None),
]


def _read(est, attr):
    # hmmlearn 0.3.3 reads spherical covars_ wrongly after an M-step (it
    # stores (K, d) copies and expands each to a matrix): compare (K,) values.
    if attr == "covars_" and est.covariance_type == "spherical":
        return np.asarray(est._covars_).reshape(K, -1)[:, 0]
    return getattr(est, attr)


@pytest.mark.parametrize("name, lengths", CASES)
def test_matches_hmmlearn_from_identical_start(name, lengths):
    ours, theirs, X = _pair(name, n_iter=6, init_params="")
    theirs.tol = -np.inf  # hmmlearn stops on gain < tol; run all iterations
    ours.tol = 0.0
    ours.fit(X, lengths)
    theirs.fit(X, lengths)
    attrs = ("startprob_", "transmat_") + EMISSIONS[name.split("-")[0]]
    for attr in attrs:
        np.testing.assert_allclose(
            _read(ours, attr),
            _read(theirs, attr),
            rtol=RTOL,
            atol=1e-10,
            err_msg=attr,
        )
    np.testing.assert_allclose(
        list(ours.monitor_.history), list(theirs.monitor_.history), rtol=RTOL
    )
    assert ours.monitor_.iter == theirs.monitor_.iter == 6
    np.testing.assert_allclose(
        ours.score(X, lengths), theirs.score(X, lengths), rtol=RTOL
    )
    np.testing.assert_allclose(
        ours.predict_proba(X, lengths),
        theirs.predict_proba(X, lengths),
        rtol=RTOL,
        atol=1e-10,
    )
    lp_ours, path_ours = ours.decode(X, lengths)
    lp_theirs, path_theirs = theirs.decode(X, lengths)
    np.testing.assert_array_equal(path_ours, path_theirs)
    np.testing.assert_allclose(lp_ours, lp_theirs, rtol=RTOL)
    lp_ours, path_ours = ours.decode(X, lengths, algorithm="map")
    lp_theirs, path_theirs = theirs.decode(X, lengths, algorithm="map")
    np.testing.assert_array_equal(path_ours, path_theirs)
    np.testing.assert_allclose(lp_ours, lp_theirs, rtol=RTOL)
    np.testing.assert_allclose(ours.bic(X, lengths), theirs.bic(X, lengths), rtol=RTOL)
    np.testing.assert_allclose(ours.aic(X, lengths), theirs.aic(X, lengths), rtol=RTOL)


def test_params_letters_freeze_like_hmmlearn():
    ours, theirs, X = _pair("gaussian-diag", n_iter=4, init_params="", params="stm")
    theirs.tol = -np.inf
    ours.tol = 0.0
    ours.fit(X, LENGTHS)
    theirs.fit(X, LENGTHS)
    np.testing.assert_array_equal(ours._covars_, _gaussian_covars("diag"))
    for attr in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_allclose(
            getattr(ours, attr), getattr(theirs, attr), rtol=RTOL, err_msg=attr
        )


def test_covars_without_means_are_centred_on_the_fixed_means():
    # hmmlearn 0.3.3 drops the mean statistics when "m" is not in params and
    # then divides by a zero count; jaxem centres on the held means (ECM).
    ours, _, X = _pair("gaussian-diag", n_iter=4, init_params="", params="tc")
    ours.tol = 0.0
    ours.fit(X, LENGTHS)
    np.testing.assert_array_equal(ours.startprob_, _start()["startprob_"])
    np.testing.assert_array_equal(ours.means_, _pair("gaussian-diag")[0].means_)
    history = np.asarray(ours.monitor_.history)
    assert np.all(np.diff(history) > 0)


def test_convergence_and_monitor_like_hmmlearn():
    ours, theirs, X = _pair("gaussian-diag", n_iter=100, init_params="", tol=1e-3)
    ours.fit(X, LENGTHS)
    theirs.fit(X, LENGTHS)
    assert ours.monitor_.iter == theirs.monitor_.iter < 100
    assert ours.monitor_.converged and theirs.monitor_.converged
    np.testing.assert_allclose(
        list(ours.monitor_.history), list(theirs.monitor_.history), rtol=RTOL
    )
    history = np.asarray(ours.monitor_.history)
    assert np.all(np.diff(history) > -1e-9 * np.abs(history[1:]))


def test_restarts_pick_the_best_and_sample():
    X = X_GAUSS
    many = jaxem.GaussianHMM(K, n_iter=6, random_state=0, n_init=3)
    many.fit(X, LENGTHS)
    with jaxem.estimators._base.precision_for(np.float64):
        starts = many._draw(
            many._model(X),
            X,
            jaxem.estimators._hmm.to_padded(X, np.array(LENGTHS)),
            np.array(LENGTHS),
            3,
        )
    # The chosen restart is at least as good as the first one run alone.
    alone = jaxem.GaussianHMM(K, n_iter=6, init_params="", tol=many.tol)
    for name in ("startprob", "transmat", "means"):
        setattr(alone, name + "_", starts[name][0])
    alone.covars_ = starts["covars"][0]
    alone.fit(X, LENGTHS)
    assert many.score(X, LENGTHS) >= alone.score(X, LENGTHS) - 1e-9
    x, z = many.sample(50, random_state=1)
    assert x.shape == (50, D) and z.shape == (50,) and set(z) <= set(range(K))
    x, z = many.sample(50, currstate=2)
    assert z[0] == 2


def test_unvisited_states_keep_their_parameters(caplog):
    # State 2 can never be entered: its start probability and every transition
    # into it are zero, so it gets no posterior mass at all.
    est = jaxem.PoissonHMM(K, n_iter=5, init_params="", tol=0.0)
    est.startprob_ = np.array([0.5, 0.5, 0.0])
    est.transmat_ = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.3, 0.3, 0.4]])
    est.lambdas_ = np.array([[1.0, 2.0], [4.0, 3.0], [9.0, 8.0]])
    with caplog.at_level(logging.WARNING):
        est.fit(X_POIS, LENGTHS)
    assert np.all(np.isfinite(est.lambdas_)) and np.all(np.isfinite(est.transmat_))
    np.testing.assert_array_equal(est.lambdas_[2], [9.0, 8.0])
    np.testing.assert_array_equal(est.transmat_[2], [0.3, 0.3, 0.4])
    assert est.unvisited_states_.tolist() == [2]
    assert "received no posterior mass" in caplog.text


@pytest.mark.parametrize(
    "lengths, message",
    [
        ([50, 49], "lengths: sum to 99, but X has 100 samples"),
        ([50, 0, 50], "lengths: every length must be >= 1"),
        ([[50, 50]], "lengths: expected a non-empty 1-D array"),
        ([50.5, 49.5], "lengths: expected integers"),
    ],
)
def test_bad_lengths_raise(lengths, message):
    with pytest.raises(ValueError, match=message):
        jaxem.GaussianHMM(2, n_iter=2).fit(X_GAUSS, lengths)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="Expected 2D array"):
        jaxem.GaussianHMM(2).fit(X_GAUSS[:, 0])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        jaxem.GaussianHMM(2).fit(
            np.where(np.arange(100)[:, None] == 3, np.nan, X_GAUSS)
        )
    with pytest.raises(ValueError, match="X: symbols should be integers"):
        jaxem.CategoricalHMM(2).fit(X_GAUSS[:, :1])
    with pytest.raises(ValueError, match="Negative values in data passed to Poisson"):
        jaxem.PoissonHMM(2).fit(-X_POIS)
    with pytest.raises(ValueError, match="covariance_type"):
        jaxem.GaussianHMM(2, covariance_type="banana").fit(X_GAUSS)
    with pytest.raises(ValueError, match="means_prior: expected a scalar or an"):
        jaxem.GaussianHMM(2, means_prior=np.zeros(3)).fit(X_GAUSS)
    est = jaxem.GaussianHMM(2, init_params="mc")
    est.startprob_ = np.array([0.7, 0.7])
    with pytest.raises(ValueError, match="startprob"):
        est.fit(X_GAUSS)
    with pytest.raises(jaxem.estimators.NotFittedError):
        jaxem.GaussianHMM(2).predict(X_GAUSS)
    fitted = jaxem.GaussianHMM(2, n_iter=2, random_state=0).fit(X_GAUSS)
    with pytest.raises(
        ValueError, match="X has 1 features, but GaussianHMM is expecting 2"
    ):
        fitted.score(X_GAUSS[:, :1])
    with pytest.raises(ValueError, match="algorithm"):
        fitted.decode(X_GAUSS, algorithm="beam")


def _cov_prior(cov):
    full = _gaussian_covars("full") * 0.5
    return {"diag": np.full((K, D), 0.3), "full": full, "tied": full[1]}[cov]


@pytest.mark.parametrize("cov", ["diag", "full", "tied"])
def test_vector_valued_priors_match_hmmlearn(cov):
    # hmmlearn's arrays: means_prior (K, d), covars_prior in the covariances'
    # own shape, Dirichlet priors (K,) and (K, K); weights as numbers (an
    # array weight breaks hmmlearn's own M-step, so there is no oracle).
    priors = dict(
        startprob_prior=np.array([2.0, 1.5, 1.0]),
        transmat_prior=np.full((K, K), 1.5) + np.eye(K),
        means_prior=np.array([[0.5, 0.0], [2.0, 2.0], [5.0, 6.0]]),
        means_weight=2.0,
        covars_prior=_cov_prior(cov),
        covars_weight=3.0 if cov == "diag" else D + 2.0,
    )
    ours, theirs, X = _pair(f"gaussian-{cov}", n_iter=4, init_params="", **priors)
    theirs.tol = -np.inf
    ours.tol = 0.0
    ours.fit(X, LENGTHS)
    theirs.fit(X, LENGTHS)
    for attr in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_allclose(
            getattr(ours, attr), getattr(theirs, attr), rtol=RTOL, err_msg=attr
        )
    np.testing.assert_allclose(
        list(ours.monitor_.history), list(theirs.monitor_.history), rtol=RTOL
    )


def test_per_state_means_weight_is_a_per_state_prior():
    # (K,) weights: one per state; equal weights give the scalar's fit.
    X = X_GAUSS
    kwargs = dict(n_iter=3, init_params="", tol=0.0, means_prior=1.0)
    fits = []
    for weight in (2.0, np.full(K, 2.0), np.array([0.0, 2.0, 50.0])):
        ours, _, _ = _pair("gaussian-diag", means_weight=weight, **kwargs)
        fits.append(ours.fit(X, LENGTHS).means_)
    np.testing.assert_allclose(fits[0], fits[1], rtol=1e-12)
    # the heavily weighted state is pulled to the prior mean, the free one not
    assert np.abs(fits[2][2] - 1.0).max() < np.abs(fits[0][2] - 1.0).max()


def test_poisson_rate_reaching_zero_matches_hmmlearn():
    # A state that sees only zero counts has rate 0: 0 log 0 must be 0.
    X = np.r_[[1], np.zeros(39)].astype(int).reshape(-1, 1)
    ours = jaxem.PoissonHMM(2, n_iter=25, tol=0.0, init_params="")
    theirs = hmm.PoissonHMM(2, n_iter=25, tol=-np.inf, init_params="")
    for est in (ours, theirs):
        est.startprob_ = np.array([0.5, 0.5])
        est.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
        est.lambdas_ = np.array([[0.5], [2.0]])
    ours.fit(X)
    theirs.fit(X)
    assert ours.fit_status_ != jaxem.Status.NONFINITE
    assert theirs.lambdas_.min() == 0.0  # the case under test
    np.testing.assert_allclose(ours.lambdas_, theirs.lambdas_, rtol=RTOL, atol=1e-300)
    np.testing.assert_allclose(ours.transmat_, theirs.transmat_, rtol=RTOL, atol=1e-12)
    history = np.asarray(ours.monitor_.history)
    np.testing.assert_allclose(history, list(theirs.monitor_.history), rtol=RTOL)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))


def test_all_zero_counts_and_one_observation_fit():
    zeros = jaxem.PoissonHMM(2, n_iter=5, random_state=0).fit(np.zeros((30, 1), int))
    assert np.all(zeros.lambdas_ < 1e-300)
    assert zeros.score(np.zeros((30, 1), int)) == pytest.approx(0.0, abs=1e-12)
    one = jaxem.GaussianHMM(2, n_iter=3, random_state=0).fit(X_GAUSS[:1])
    assert np.all(np.isfinite(one.means_)) and np.isfinite(one.score(X_GAUSS[:1]))
    ragged = jaxem.GaussianHMM(K, n_iter=3, random_state=0).fit(
        X_GAUSS[:19], [10, 8, 1]
    )
    assert ragged.monitor_.iter == 3 and np.isfinite(
        ragged.score(X_GAUSS[:19], [10, 8, 1])
    )


# hmmlearn's issue 2: a constant feature and few points per state.
ZERO_VARIANCE = np.array(
    [
        [715.0, 585.0, 0.0, 0.0],
        [715.0, 520.0, 1.04705811, -60.3696289],
        [715.0, 455.0, 0.720886230, -52.7055664],
        [715.0, 390.0, -0.457946777, -78.0605469],
        [715.0, 325.0, -6.43127441, -55.9954834],
        [715.0, 260.0, -2.90063477, -78.0220947],
        [715.0, 195.0, 8.45532227, -70.3294373],
        [715.0, 130.0, 4.09387207, -58.3621216],
        [715.0, 65.0, -1.21667480, -44.8131409],
    ]
)


@pytest.mark.parametrize("cov", ["full", "tied", "diag"])
def test_singular_covariances_still_give_a_model(cov, caplog):
    with caplog.at_level(logging.WARNING):
        est = jaxem.GaussianHMM(3, cov, random_state=0).fit(ZERO_VARIANCE)
    assert est.fit_status_ != jaxem.Status.NONFINITE
    assert np.all(np.isfinite(est.covars_)) and np.isfinite(est.score(ZERO_VARIANCE))
    if cov == "full":  # 50 free scalars for 36 data points
        assert "degenerate solution" in caplog.text
        assert est.singular_states_.size > 0
        assert "turned singular" in caplog.text
        eig = np.linalg.eigvalsh(est.covars_[est.singular_states_])
        assert eig.min() >= 0.5 * est.min_covar
