"""Gaussian mixtures: the functional model and the scikit-learn-style estimator."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import datasets
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import jaxem
from jaxem.models import _gmm

TYPES = ("full", "diag", "spherical", "tied")


def _blobs(n=240, d=3, k=3, seed=0):
    x, _ = datasets.make_blobs(n, d, centers=k, cluster_std=1.5, random_state=seed)
    return x


def _data(name):
    if name == "iris":
        return datasets.load_iris().data
    return _blobs()


def _precisions(cov, ctype):
    return np.linalg.inv(cov) if ctype in ("full", "tied") else 1.0 / cov


def _params(ctype, k=2, d=2, seed=0):
    rng = np.random.default_rng(seed)
    shape = _gmm.covariance_shape(ctype, k, d)
    if ctype in ("full", "tied"):
        a = rng.normal(size=shape)
        cov = a @ np.swapaxes(a, -1, -2) + np.eye(d)
    else:
        cov = rng.uniform(0.5, 2.0, shape)
    w = rng.uniform(1, 2, k)
    means = rng.normal(size=(k, d))
    return {"weights": w / w.sum(), "means": means, "covariances": cov}


# ------------------------------------------------------------ scikit-learn
@pytest.mark.parametrize("name", ["iris", "blobs"])
@pytest.mark.parametrize("ctype", TYPES)
def test_matches_sklearn_from_identical_start(ctype, name):
    X = _data(name)
    k = 3
    model = jaxem.models.gaussian_mixture(k, X.shape[1], ctype)
    p0 = jax.tree.map(np.asarray, model.init(jax.random.key(0), X))
    inits = dict(
        weights_init=p0["weights"],
        means_init=p0["means"],
        precisions_init=_precisions(p0["covariances"], ctype),
        covariance_type=ctype,
        tol=1e-4,
        max_iter=200,
    )
    sk = SkGaussianMixture(k, **inits).fit(X)
    gm = jaxem.GaussianMixture(k, **inits).fit(X)
    assert gm.n_iter_ == sk.n_iter_ and gm.converged_ and sk.converged_
    for attr in (
        "weights_",
        "means_",
        "covariances_",
        "precisions_",
        "precisions_cholesky_",
    ):
        np.testing.assert_allclose(
            getattr(gm, attr), getattr(sk, attr), rtol=1e-6, atol=1e-10, err_msg=attr
        )
    np.testing.assert_allclose(gm.lower_bound_, sk.lower_bound_, rtol=1e-6)
    np.testing.assert_allclose(gm.predict_proba(X), sk.predict_proba(X), atol=1e-7)
    np.testing.assert_allclose(gm.score_samples(X), sk.score_samples(X), rtol=1e-6)
    np.testing.assert_allclose(gm.bic(X), sk.bic(X), rtol=1e-6)
    np.testing.assert_allclose(gm.aic(X), sk.aic(X), rtol=1e-6)
    np.testing.assert_array_equal(gm.predict(X), sk.predict(X))


# ---------------------------------------------------------- the functional model
@pytest.mark.parametrize("ctype", TYPES)
def test_float32_table_and_statistics_compute_in_float32(ctype, monkeypatch):
    # Several row blocks; with x64 on, no float64 array may appear anywhere in
    # the computation (Python scalars enter as f64[] and are converted).
    monkeypatch.setattr(_gmm, "_BLOCK_ENTRIES", 1)
    model = jaxem.models.gaussian_mixture(3, 2, ctype)
    p64 = jax.tree.map(jnp.asarray, _params(ctype, k=3))
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), p64)
    x64 = jnp.asarray(np.random.default_rng(3).normal(size=(150, 2)) * 2)
    x32 = x64.astype(jnp.float32)
    for fn, args in (
        (model.log_joint_table, (p32, x32)),
        (model.m_step.stats, (x32, jnp.full((150, 3), 1 / 3, jnp.float32), None, p32)),
    ):
        assert not re.search(r"f64\[\d", str(jax.make_jaxpr(fn)(*args)))
    table = model.log_joint_table(p32, x32)
    assert table.dtype == jnp.float32
    np.testing.assert_allclose(table, model.log_joint_table(p64, x64), rtol=1e-5)
    resp = jax.nn.softmax(model.log_joint_table(p64, x64), axis=1)
    s32 = model.m_step.stats(x32, resp.astype(jnp.float32), None, p32)
    s64 = model.m_step.stats(x64, resp, None, p64)
    for key in s64:
        assert s32[key].dtype == jnp.float32
        np.testing.assert_allclose(s32[key], s64[key], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ctype", TYPES)
def test_table_equals_vmapped_log_joint_in_blocks(ctype, monkeypatch):
    # Small blocks: 3 of 64 rows for 150 rows, the last one overlapping.
    monkeypatch.setattr(_gmm, "_BLOCK_ENTRIES", 1)
    model = jaxem.models.gaussian_mixture(3, 2, ctype)
    params = _params(ctype, k=3)
    x = np.random.default_rng(1).normal(size=(150, 2)) * 2
    table = model.log_joint_table(params, jnp.asarray(x))
    ks = jnp.arange(3)
    brute = jax.vmap(lambda xi: jax.vmap(lambda z: model.log_joint(params, xi, z))(ks))(
        jnp.asarray(x)
    )
    np.testing.assert_allclose(table, brute, rtol=1e-12, atol=1e-12)
    # Blocked statistics equal one-block statistics.
    resp = jax.nn.softmax(table, axis=1)
    w = jnp.asarray(np.random.default_rng(2).uniform(0, 2, 150))
    blocked = model.m_step.stats(jnp.asarray(x), resp, w, params)
    monkeypatch.setattr(_gmm, "_BLOCK_ENTRIES", 10**9)
    whole = model.m_step.stats(jnp.asarray(x), resp, w, params)
    for key in whole:
        np.testing.assert_allclose(blocked[key], whole[key], rtol=1e-12, atol=1e-12)
    # Additive: the statistics of two chunks sum to those of the whole data
    # (the reference point depends on the parameters, not on the chunk).
    halves = [
        model.m_step.stats(jnp.asarray(x[sl]), resp[sl], w[sl], params)
        for sl in (slice(0, 70), slice(70, 150))
    ]
    for key in whole:
        np.testing.assert_allclose(
            halves[0][key] + halves[1][key], whole[key], rtol=1e-10, atol=1e-10
        )


@pytest.mark.parametrize("ctype", TYPES)
def test_closed_form_equals_gradient_m_step(ctype):
    # reg_covar=0: the closed form then maximises exactly E[log_joint].
    x = jnp.asarray(_blobs(n=80, d=2, k=2, seed=3))
    closed = jaxem.models.gaussian_mixture(2, 2, ctype, reg_covar=0.0)
    gradient = jaxem.LatentModel(
        closed.log_joint, jaxem.Categorical(2), constraints=closed.constraints
    )
    params = closed.init(jax.random.key(0), x)
    post = jaxem.posterior(closed, params, x)
    by_closed = jaxem.m_step(closed, params, x, post)
    by_gradient = jaxem.m_step(gradient, params, x, post, num_iters=200)
    for key in by_closed:
        np.testing.assert_allclose(
            by_gradient[key], by_closed[key], rtol=2e-5, atol=1e-6, err_msg=key
        )


def test_frozen_means_centre_covariances_on_held_means():
    x = jnp.asarray(_blobs(n=80, d=2, k=2, seed=3))
    model = jaxem.models.gaussian_mixture(2, 2, "full", reg_covar=0.0)
    params = model.init(jax.random.key(0), x)
    post = np.asarray(jaxem.posterior(model, params, x))
    new = jaxem.m_step(model, params, x, jnp.asarray(post), frozen=("means",))
    np.testing.assert_array_equal(new["means"], params["means"])
    for k in range(2):
        diff = np.asarray(x) - np.asarray(params["means"][k])
        want = (post[:, k, None] * diff).T @ diff / post[:, k].sum()
        np.testing.assert_allclose(new["covariances"][k], want, rtol=1e-9)


def test_integer_sample_weights_equal_repeated_rows():
    x = _blobs(n=60, d=2, k=2, seed=4)
    counts = np.random.default_rng(0).integers(0, 4, 60)
    model = jaxem.models.gaussian_mixture(2, 2, "full")
    p0 = model.init(jax.random.key(1), x)
    weighted = jaxem.fit(model, p0, x, weights=counts.astype(float), max_iter=30)
    repeated = jaxem.fit(model, p0, np.repeat(x, counts, axis=0), max_iter=30)
    assert int(weighted.n_iter) == int(repeated.n_iter)
    for key in p0:
        np.testing.assert_allclose(
            weighted.params[key], repeated.params[key], rtol=1e-9, atol=1e-12
        )
    np.testing.assert_allclose(
        weighted.log_likelihood, repeated.log_likelihood, rtol=1e-10
    )


def test_float32_badly_scaled_data_stays_finite_and_close():
    rng = np.random.default_rng(5)
    z = rng.integers(0, 2, 400)
    x64 = 1e4 + np.array([[0.0, 0.0], [3.0, -2.0]])[z] + rng.normal(size=(400, 2))
    x32 = x64.astype(np.float32)
    # float32 rounds 1e4 to 1e-3: compare with float64 on the same rounded data.
    x64 = x32.astype(np.float64)
    # A seed whose two drawn rows lie in different clusters (a fast fit).
    ref = jaxem.GaussianMixture(
        2, random_state=1, tol=1e-6, init_params="random_from_data"
    ).fit(x64)
    inits = dict(
        weights_init=ref.weights_,
        means_init=ref.means_,
        precisions_init=ref.precisions_,
        tol=1e-6,
    )
    gm = jaxem.GaussianMixture(2, **inits).fit(x32)
    assert gm.means_.dtype == np.float32 and gm.covariances_.dtype == np.float32
    assert gm.predict_proba(x32).dtype == np.float32
    assert np.all(np.isfinite(gm.covariances_))
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-6)
    np.testing.assert_allclose(gm.covariances_, ref.covariances_, rtol=1e-2)
    # The same number of EM steps in float32 and float64 from the same start.
    model = jaxem.models.gaussian_mixture(2, 2, "full")
    p64 = {
        "weights": ref.weights_,
        "means": ref.means_,
        "covariances": ref.covariances_,
    }
    p32 = jax.tree.map(lambda a: a.astype(np.float32), p64)
    r32 = jaxem.fit(model, p32, x32, max_iter=20, tol=0.0)
    r64 = jaxem.fit(model, p64, x64, max_iter=20, tol=0.0)
    assert r32.params["covariances"].dtype == jnp.float32
    np.testing.assert_allclose(
        r32.params["covariances"], r64.params["covariances"], rtol=1e-4
    )
    # The statistics match a float64 two-pass computation from the same
    # responsibilities, where one pass about the origin would cancel.
    # Sums are centred on the current means' centre, which EM keeps inside
    # the data (here a start one spread away from the fitted means).
    resp = ref.predict_proba(x64)
    start = {
        **_params("full"),
        "means": ref.means_ + np.sqrt(np.diag(ref.covariances_[0])),
    }
    new = jaxem.m_step(
        model,
        jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), start),
        jnp.asarray(x32),
        jnp.asarray(resp, jnp.float32),
    )
    assert new["covariances"].dtype == jnp.float32
    for k in range(2):
        mean = resp[:, k] @ x64 / resp[:, k].sum()
        diff = x64 - mean
        cov = (resp[:, k, None] * diff).T @ diff / resp[:, k].sum()
        np.testing.assert_allclose(
            new["covariances"][k], cov + 1e-6 * np.eye(2), rtol=2e-3, atol=1e-4
        )


def test_history_non_decreasing_jit_and_vmapped_restarts_equal_loop():
    x = jnp.asarray(_blobs(n=90, d=2, k=3, seed=6))
    model = jaxem.models.gaussian_mixture(3, 2, "diag")
    keys = jax.random.split(jax.random.key(7), 3)
    params0 = jax.vmap(lambda k: model.init(k, x, "random"))(keys)
    run = jax.jit(lambda p: jaxem.fit(model, p, x, max_iter=40, tol=0.0))
    batched = jax.vmap(run)(params0)
    for i in range(3):
        single = run(jax.tree.map(lambda a, i=i: a[i], params0))
        for got, want in zip(
            jax.tree.leaves(jax.tree.map(lambda a, i=i: a[i], batched)),
            jax.tree.leaves(single),
            strict=True,
        ):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        steps = np.diff(np.asarray(single.history))
        assert np.all(steps >= -1e-9 * np.abs(np.asarray(single.history[1:])))


@pytest.mark.parametrize("method", _gmm.INIT_METHODS)
def test_init_methods_are_valid_and_vmap_over_keys(method):
    x = jnp.asarray(_blobs(n=120, d=2, k=3, seed=8))
    model = jaxem.models.gaussian_mixture(3, 2, "full")
    keys = jax.random.split(jax.random.key(0), 2)
    params = jax.vmap(lambda k: model.init(k, x, method))(keys)
    for i in range(2):
        p = jax.tree.map(lambda a, i=i: np.asarray(a[i]), params)
        jaxem.constraints.check_params(model.constraints, p)


def test_kmeans_recovers_blob_centres():
    x, _, centres = datasets.make_blobs(
        300, 2, centers=3, cluster_std=0.3, random_state=1, return_centers=True
    )
    found, labels = _gmm.kmeans(jax.random.key(0), jnp.asarray(x), 3)
    found = np.asarray(found)[np.argsort(np.asarray(found)[:, 0])]
    np.testing.assert_allclose(found, centres[np.argsort(centres[:, 0])], atol=0.1)
    assert labels.shape == (300,)


def test_collapsed_component_is_held_and_reported():
    x = _blobs(n=60, d=2, k=2, seed=9)
    model = jaxem.models.gaussian_mixture(3, 2, "full")
    p0 = {
        "weights": np.array([0.45, 0.45, 0.1]),
        "means": np.array([x[0], x[1], [1e3, 1e3]]),
        "covariances": np.stack([np.eye(2), np.eye(2), 1e-3 * np.eye(2)]),
    }
    result = jaxem.fit(model, p0, x, max_iter=20)
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(result.params))
    np.testing.assert_array_equal(result.params["means"][2], p0["means"][2])
    collapsed = jaxem.models.collapsed_components(model, result.params, x)
    np.testing.assert_array_equal(collapsed, [False, False, True])
    gm = jaxem.GaussianMixture(
        3,
        weights_init=p0["weights"],
        means_init=p0["means"],
        precisions_init=np.linalg.inv(p0["covariances"]),
        max_iter=20,
    )
    with pytest.warns(jaxem.estimators.CollapsedComponentWarning):
        gm.fit(x)
    np.testing.assert_array_equal(gm.collapsed_, [False, False, True])
    assert np.all(np.isfinite(gm.score_samples(x)))


def test_same_arguments_give_the_same_model():
    a = jaxem.models.gaussian_mixture(2, 3, "diag")
    assert a is jaxem.models.gaussian_mixture(2, 3, "diag")
    assert a.num_free_parameters(_params("diag", 2, 3)) == 1 + 6 + 6


def test_sample_shapes_and_moments():
    model = jaxem.models.gaussian_mixture(2, 2, "full")
    params = _params("full")
    x, z = model.sample(jax.random.key(0), params, 4000)
    assert x.shape == (4000, 2) and z.shape == (4000,)
    for k in range(2):
        np.testing.assert_allclose(
            np.mean(np.asarray(x)[np.asarray(z) == k], 0),
            params["means"][k],
            atol=0.15,
        )


# ------------------------------------------------------------------ estimator
def test_estimator_api_and_semantics():
    X = _blobs(n=150, d=2, k=2, seed=10)
    gm = jaxem.GaussianMixture(
        2,
        covariance_type="diag",
        n_init=3,
        random_state=0,
        init_params="random_from_data",
    )
    labels = gm.fit_predict(X)
    np.testing.assert_array_equal(labels, gm.predict(X))
    np.testing.assert_allclose(gm.predict_proba(X).sum(1), 1.0)
    assert gm.score(X) == pytest.approx(gm.score_samples(X).mean())
    assert gm.n_features_in_ == 2 and len(gm.lower_bounds_) == gm.n_iter_
    assert gm.covariances_.shape == gm.precisions_.shape == (2, 2)
    Xs, ys = gm.sample(20)
    assert Xs.shape == (20, 2) and np.all(np.diff(ys) >= 0)
    assert set(gm.get_params()) >= {"verbose_interval", "precisions_init"}
    # warm start continues from the fitted parameters
    gm.set_params(warm_start=True, max_iter=2)
    before = gm.means_.copy()
    gm.fit(X)
    np.testing.assert_allclose(gm.means_, before, atol=1e-2)
    with pytest.warns(jaxem.estimators.ConvergenceWarning):
        jaxem.GaussianMixture(
            2,
            covariance_type="diag",
            max_iter=1,
            tol=0.0,
            init_params="random_from_data",
        ).fit(X)
    with pytest.raises(jaxem.estimators.NotFittedError):
        jaxem.GaussianMixture(2).predict(X)


def test_select_gaussian_mixture():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-4, 1, (100, 1)), rng.normal(4, 1, (100, 1))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxem.estimators.CollapsedComponentWarning)
        sel = jaxem.select_gaussian_mixture(
            X,
            [1, 2, 3],
            "spherical",
            random_state=0,
            init_params="random_from_data",
        )
    assert sel.bic.shape == sel.aic.shape == (3, 1)
    assert sel.best_n_components == 2
    assert sel.best.n_components == 2
    assert sel.bic.min() == pytest.approx(sel.best.bic(X))
    assert "best" in sel.format()
    with pytest.raises(ValueError, match="criterion"):
        jaxem.select_gaussian_mixture(X, criterion="icl")


@pytest.mark.parametrize(
    "kwargs, X, match",
    [
        ({"covariance_type": "banded"}, None, "covariance_type"),
        ({"init_params": "magic"}, None, "init_params"),
        ({"reg_covar": -1.0}, None, "reg_covar"),
        ({"n_components": 0}, None, "n_components"),
        ({"tol": -1.0}, None, "tol"),
        ({"weights_init": [0.2, 0.2]}, None, "weights_init"),
        ({"weights_init": [0.5, 0.5, 0.5]}, None, "weights_init"),
        ({"means_init": np.zeros((2, 3))}, None, "means_init"),
        ({"precisions_init": -np.ones((2, 2, 2))}, None, "precisions_init"),
        ({}, np.array([[1.0, np.nan]] * 5), "Input X contains NaN"),
        ({}, np.ones(5), "Expected 2D array, got 1D array"),
        ({}, np.ones((1, 2)), "minimum of 2 is required"),
        ({"n_components": 3}, np.ones((2, 2)), "n_components = 3, n_samples = 2"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, X, match):
    X = np.random.default_rng(0).normal(size=(20, 2)) if X is None else X
    with pytest.raises(ValueError, match=match):
        jaxem.GaussianMixture(**{"n_components": 2, **kwargs}).fit(X)


def test_bad_input_elsewhere_raises():
    X = np.random.default_rng(0).normal(size=(20, 2))
    gm = jaxem.GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X"):
        gm.predict(np.ones((3, 5)))
    with pytest.raises(ValueError, match="sample_weight"):
        jaxem.GaussianMixture(2).fit(X, sample_weight=-np.ones(20))
    with pytest.raises(ValueError, match="covariance_type"):
        jaxem.models.gaussian_mixture(2, 2, "banded")
    with pytest.raises(ValueError, match="n_features"):
        jaxem.models.gaussian_mixture(2, 0)
    model = jaxem.models.gaussian_mixture(2, 2)
    bad = {**_params("full"), "covariances": -np.ones((2, 2, 2))}
    with pytest.raises(ValueError, match="covariances"):
        jaxem.fit(model, bad, X)


# ------------------------------------------------- scikit-learn's semantics
def test_warm_start_carries_the_lower_bound_and_converges():
    X = _blobs(n=90, d=2, k=2, seed=11)
    gm = jaxem.GaussianMixture(2, warm_start=True, max_iter=1, random_state=0)
    fits = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxem.estimators.ConvergenceWarning)
        for fits in range(1, 60):  # noqa: B007
            previous = getattr(gm, "lower_bound_", -np.inf)
            gm.fit(X)
            assert gm.lower_bound_ >= previous - 1e-12
            if gm.converged_:
                break
    assert gm.converged_ and gm.n_iter_ == 1 and fits < 60
    # Two warm steps of one iteration equal one cold fit of two.
    cold = jaxem.GaussianMixture(2, max_iter=2, random_state=3, tol=0.0)
    warm = jaxem.GaussianMixture(2, max_iter=1, random_state=3, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxem.estimators.ConvergenceWarning)
        cold.fit(X)
        warm.fit(X)
        warm.fit(X)
    np.testing.assert_allclose(warm.means_, cold.means_, rtol=1e-12)


def test_lower_bound_never_falls_as_n_init_grows():
    X = np.random.default_rng(5).normal(size=(50, 2))
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxem.estimators.ConvergenceWarning)
        for n_init in (1, 4, 10):
            gm = jaxem.GaussianMixture(
                2, max_iter=1, n_init=n_init, random_state=5, init_params="random"
            ).fit(X)
            # lower_bound_ is the kept restart's bound at its last E-step.
            assert gm.lower_bound_ == gm.lower_bounds_[-1]
            bounds.append(gm.lower_bound_)
    assert bounds == sorted(bounds)


def test_max_iter_zero_returns_the_initialisation():
    X = _blobs(n=60, d=2, k=2, seed=12)
    means = [[-5.0, 0.0], [5.0, 1.0]]
    gm = jaxem.GaussianMixture(2, means_init=means, max_iter=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gm.fit(X)
    np.testing.assert_array_equal(gm.means_, means)
    assert gm.n_iter_ == 0 and not gm.converged_ and gm.lower_bound_ == -np.inf
    assert gm.predict(X).shape == (60,)


@pytest.mark.parametrize("ctype", TYPES)
def test_reg_covar_zero_on_ill_defined_covariances_raises_sklearns_error(ctype):
    X = np.vstack([np.ones((5, 3)), np.zeros((5, 3))])
    gm = jaxem.GaussianMixture(10, covariance_type=ctype, reg_covar=0, random_state=0)
    with pytest.raises(ValueError, match="increase reg_covar"):
        gm.fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxem.estimators.CollapsedComponentWarning)
        gm.set_params(reg_covar=1e-6).fit(X)
    assert np.all(np.isfinite(gm.score_samples(X)))


def test_sklearn_messages_where_its_tests_match_them():
    X = _blobs(n=40, d=2, k=2, seed=13)
    with pytest.raises(ValueError, match="The parameter 'means' should have the shape"):
        jaxem.GaussianMixture(2, means_init=np.zeros((3, 2))).fit(X)
    with pytest.raises(ValueError, match="'full precision' should be symmetric"):
        jaxem.GaussianMixture(2, precisions_init=-np.ones((2, 2, 2))).fit(X)
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        jaxem.GaussianMixture(50).fit(X)
    gm = jaxem.GaussianMixture(2, random_state=0, max_iter=5, tol=1.0).fit(X)
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        gm.sample(0)


def test_non_finite_stop_is_reported_never_converged():
    # A component on one isolated point: with reg_covar=0 its variance becomes
    # exactly 0 and the next log-likelihood is infinite.
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(30, 2)), [[100.0, 100.0]]])
    args = dict(
        covariance_type="spherical",
        reg_covar=0,
        means_init=[[0, 0], [100, 100]],
        weights_init=[0.9, 0.1],
        precisions_init=[1.0, 1e6],
    )
    gm = jaxem.GaussianMixture(2, max_iter=1, **args)
    with pytest.warns(jaxem.estimators.ConvergenceWarning, match="NaN or infinite"):
        gm.fit(X)
    assert gm.fit_status_ == jaxem.Status.NONFINITE and not gm.converged_
    np.testing.assert_allclose(gm.covariances_, [1.0, 1e-6])  # last finite
    with pytest.raises(ValueError, match="increase reg_covar"):
        jaxem.GaussianMixture(2, max_iter=5, **args).fit(X)
