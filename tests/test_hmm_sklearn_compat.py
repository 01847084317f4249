"""The HMM estimators as scikit-learn estimators: checks, tools, arguments, dtypes.

Small data of one shape class per emission, so the whole file compiles few
programs; scikit-learn's full ``check_estimator`` runs in
``benchmarks/check_estimator_hmm.py`` (minutes), a chosen subset here.
"""

import logging
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks as checks

import jaxem
from jaxem.estimators._hmm_base import expected_failed_checks

RNG = np.random.default_rng(0)
STATES = np.repeat([0, 1, 0, 1], 15)
X_GAUSS = RNG.normal(size=(60, 2)) + 4.0 * STATES[:, None]
X_CAT = (RNG.integers(0, 2, (60, 1)) + 2 * STATES[:, None]).astype(int)
X_POIS = RNG.poisson(1.0 + 6.0 * STATES[:, None], (60, 2))
DATA = {"GaussianHMM": X_GAUSS, "CategoricalHMM": X_CAT, "PoissonHMM": X_POIS}


def _estimators(**kwargs):
    return [
        jaxem.GaussianHMM(2, n_iter=3, random_state=0, **kwargs),
        jaxem.CategoricalHMM(2, n_iter=3, random_state=0, **kwargs),
        jaxem.PoissonHMM(2, n_iter=3, random_state=0, **kwargs),
    ]


ESTIMATORS = _estimators()
IDS = [type(e).__name__ for e in ESTIMATORS]

# scikit-learn checks that need no fit, or fail before compiling: all three.
CHEAP_CHECKS = [
    checks.check_no_attributes_set_in_init,
    checks.check_parameters_default_constructible,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_estimators_unfitted,
    checks.check_estimator_sparse_matrix,
    checks.check_estimator_repr,
    checks.check_estimator_tags_renamed,
    checks.check_valid_tag_types,
    checks.check_param_validation,
]
# Checks that fit: Gaussian only (the others run in the benchmark script).
FITTING_CHECKS = [
    checks.check_dont_overwrite_parameters,
    checks.check_n_features_in_after_fitting,
    checks.check_fit_check_is_fitted,
    checks.check_estimators_nan_inf,
    checks.check_dict_unchanged,
]


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("check", CHEAP_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_checks_without_fitting(est, check):
    check(type(est).__name__, clone(est))


@pytest.mark.parametrize("check", FITTING_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_checks_that_fit(check):
    check("GaussianHMM", jaxem.GaussianHMM(2, n_iter=3, random_state=0))


def test_expected_failed_checks_say_why():
    for est in ESTIMATORS:
        reasons = expected_failed_checks(est)
        assert "check_fit_score_takes_y" in reasons
        assert all(len(why) > 20 for why in reasons.values())


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_tags_declare_the_data(est):
    tags = est.__sklearn_tags__()
    assert tags.target_tags.required is False
    name = type(est).__name__
    assert tags.input_tags.positive_only == (name != "GaussianHMM")
    # whole numbers: scikit-learn's checks round their data for this tag
    assert tags.input_tags.categorical == (name != "GaussianHMM")


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_clone_pickle_and_y_read_as_y(est):
    X = DATA[type(est).__name__]
    fitted = clone(est).fit(X)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    assert again.score(X) == fitted.score(X)
    assert clone(fitted).get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        clone(fitted).predict(X)
    # scikit-learn passes y where hmmlearn has lengths: y is ignored.
    y = STATES.copy()
    with_y = clone(est).fit(X, y)
    np.testing.assert_allclose(with_y.score(X, y=y), fitted.score(X), rtol=1e-12)
    assert with_y.score(X, y) == with_y.score(X)


def test_grid_search_and_cross_val_score_on_one_sequence():
    cv = KFold(3)  # contiguous folds: each a piece of the sequence
    search = GridSearchCV(
        jaxem.GaussianHMM(n_iter=3, random_state=0), {"n_components": [1, 2]}, cv=cv
    )
    search.fit(X_GAUSS)
    assert search.best_params_ == {"n_components": 2}
    scores = cross_val_score(
        jaxem.GaussianHMM(2, n_iter=3, random_state=0), X_GAUSS, cv=cv
    )
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_pipeline_with_pandas_output_keeps_feature_names():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X_GAUSS, columns=["a", "b"])
    pipe = make_pipeline(
        StandardScaler(), jaxem.GaussianHMM(2, n_iter=3, random_state=0)
    )
    pipe.set_output(transform="pandas").fit(frame)
    hmm = pipe[-1]
    assert list(hmm.feature_names_in_) == ["a", "b"] and hmm.n_features_in_ == 2
    assert pipe.predict(frame).shape == (60,)
    assert np.isfinite(pipe.score(frame))
    with pytest.raises(ValueError, match="feature names"):
        hmm.predict(frame[["b", "a"]].rename(columns={"b": "c"}))


# ----------------------------------------------------- constructor arguments
COMMON_BAD = {
    "n_components": ["abc", None, 0, -1, 2.5, np.nan, np.inf, 10**30, [2]],
    "n_iter": ["abc", None, -1, 2.5, np.nan, np.inf, 10**30, [2]],
    "n_init": ["abc", None, 0, 2.5, np.nan, 2**40, [2]],
    "tol": ["abc", None, np.nan, [1e-2]],
    "verbose": ["abc", None, -1, 2.5],
    "random_state": ["abc", -1, 2.5, 10**30, [0]],
    "algorithm": ["beam", None, 1],
    "params": [None, 1, "xyz"],
    "init_params": [None, 1, "q"],
    "implementation": ["fast", None],
    "startprob_prior": [
        "abc",
        None,
        np.nan,
        np.inf,
        -1.0,
        [1.0, 2.0, 3.0],
        [np.nan, 1],
    ],
    "transmat_prior": ["abc", None, np.nan, np.inf, [[1.0, np.nan], [1, 1]], [1, 2, 3]],
}
SPECIFIC_BAD = {
    "GaussianHMM": {
        "covariance_type": ["banana", None, 1],
        "min_covar": ["abc", None, -1.0, np.nan, np.inf, [1e-3]],
        "means_prior": ["abc", None, np.nan, np.zeros(3), np.zeros((3, 2))],
        "means_weight": ["abc", None, -1.0, np.nan, [1.0, 2.0, 3.0]],
        "covars_prior": ["abc", None, np.inf, np.ones((2, 3))],
        "covars_weight": ["abc", None, -2.0, np.nan, [1.0, 1.0, 1.0]],
    },
    "CategoricalHMM": {
        "emissionprob_prior": ["abc", None, np.nan, -1.0, np.ones((2, 7))],
        "n_features": ["abc", 0, -1, 2.5, np.nan, 10**9, 10**30],
    },
    "PoissonHMM": {
        "lambdas_prior": ["abc", None, np.nan, -1.0, np.ones((3, 2))],
        "lambdas_weight": ["abc", None, np.inf, -1.0, [1.0, 2.0, 3.0]],
    },
}
AUDIT = [
    (type(est).__name__, name, value)
    for est in ESTIMATORS
    for table in (COMMON_BAD, SPECIFIC_BAD[type(est).__name__])
    for name, values in table.items()
    for value in values
]


@pytest.mark.parametrize("cls, name, value", AUDIT, ids=lambda v: repr(v)[:20])
def test_every_bad_constructor_argument_is_refused_by_name(cls, name, value):
    est = getattr(jaxem, cls)(2, n_iter=3, random_state=0).set_params(**{name: value})
    with pytest.raises(ValueError, match=name):
        est.fit(DATA[cls])


# ---------------------------------------------------------------- dtypes
DTYPE_SCRIPT = textwrap.dedent(
    """
    import warnings
    warnings.simplefilter("error")
    import jax, numpy as np, jaxem
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)) + 4.0 * (np.arange(40) >= 20)[:, None]
    counts = rng.poisson(3.0, (40, 2))
    symbols = rng.integers(0, 3, (40, 1))
    cases = [
        (jaxem.GaussianHMM, x, "means_"),
        (jaxem.GaussianHMM, x.astype(np.float32), "means_"),
        (jaxem.PoissonHMM, counts.astype(np.float64), "lambdas_"),
        (jaxem.PoissonHMM, counts.astype(np.float32), "lambdas_"),
        (jaxem.PoissonHMM, counts, "lambdas_"),
        (jaxem.CategoricalHMM, symbols, "emissionprob_"),
    ]
    for cls, data, attr in cases:
        est = cls(2, n_iter=3, random_state=0).fit(data)
        want = np.float32 if data.dtype == np.float32 else np.float64
        for name in ("startprob_", "transmat_", attr):
            assert getattr(est, name).dtype == want, (cls, data.dtype, name)
        _, post = est.score_samples(data)
        assert post.dtype == want, (cls, data.dtype, post.dtype)
        sample, _ = est.sample(5, random_state=0)
        assert np.isfinite(est.score(data))
    assert jax.config.jax_enable_x64 is False
    print("dtypes ok")
    """
)


def test_dtypes_follow_the_input_with_jax_defaults_and_warnings_as_errors():
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", DTYPE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        env={"JAX_PLATFORMS": "cpu", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dtypes ok" in result.stdout


# ----------------------------------------------------- hmmlearn behaviours
def test_degenerate_solution_is_logged_as_hmmlearn(caplog):
    with caplog.at_level(logging.WARNING):
        jaxem.GaussianHMM(3, n_iter=0, random_state=0).fit(X_GAUSS[:5])
    assert "degenerate solution" in caplog.text


def test_n_iter_zero_initialises_only():
    est = jaxem.GaussianHMM(2, n_iter=0, random_state=0).fit(X_GAUSS)
    assert est.monitor_.iter == 0 and len(est.monitor_.history) == 0
    ref = jaxem.GaussianHMM(2, random_state=0)
    ref._init(X_GAUSS)
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_array_equal(getattr(est, name), getattr(ref, name))


@pytest.mark.parametrize("cov", ["spherical", "diag", "full", "tied"])
def test_covars_setter_takes_what_the_getter_returns(cov):
    est = jaxem.GaussianHMM(2, cov, n_iter=0, random_state=0).fit(X_GAUSS)
    own = np.array(est._covars_)
    est.covars_ = est.covars_
    np.testing.assert_allclose(est._covars_, own)
    if cov == "spherical":
        est.covars_ = own.reshape(2, 1, 1, 1)  # hmmlearn's issue 385 layout
        np.testing.assert_allclose(est._covars_, own)


def test_several_symbol_columns_are_independent_draws():
    # Beyond hmmlearn: c columns are c symbols drawn per step from one row.
    X = np.c_[X_CAT, X_CAT[::-1]]
    est = jaxem.CategoricalHMM(1, n_iter=1, random_state=0).fit(X)
    freq = np.bincount(X.ravel(), minlength=4) / X.size
    np.testing.assert_allclose(est.emissionprob_[0], freq, rtol=1e-12)
    assert est.score(X) == pytest.approx(np.sum(np.log(freq[X])), rel=1e-12)
    assert est.sample(5, random_state=0)[0].shape == (5, 2)
