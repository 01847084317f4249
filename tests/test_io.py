"""Saving and loading: round trips for every model, refusals of bad files."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import _io

RNG = np.random.default_rng(0)
HEADS = np.array([[5], [9], [8], [4], [7]])


# Shapes and options match tests/test_cli.py's fits, so the compiled programs
# are reused within one pytest process instead of compiled again.
def _gmm_data():
    return np.concatenate([RNG.normal(-2, 1, (25, 2)), RNG.normal(3, 0.5, (25, 2))])


def _casino_rolls():
    rolls, _ = jaxem.data.load_casino()
    return (rolls[:100] - 1).reshape(-1, 1)


# name -> (constructor kwargs, training data, fit kwargs)
ESTIMATORS = {
    "BinomialMixture": (dict(n_components=2, n_trials=10), lambda: HEADS, {}),
    "GaussianMixture": (dict(n_components=2, n_init=2), _gmm_data, {}),
    "GaussianMixture-tied": (
        dict(n_components=2, covariance_type="tied", max_iter=20),
        _gmm_data,
        {},
    ),
    "GaussianHMM": (
        dict(n_components=2, n_iter=10),
        lambda: np.concatenate([RNG.normal(0, 1, (40, 1)), RNG.normal(4, 1, (40, 1))]),
        {"lengths": [50, 30]},
    ),
    "CategoricalHMM": (
        dict(n_components=2, n_iter=5),
        _casino_rolls,
        {"lengths": [60, 40]},
    ),
    "PoissonHMM": (
        dict(n_components=2, n_iter=10),
        lambda: RNG.poisson(np.repeat([[1.0], [8.0]], 40, axis=0)),
        {},
    ),
}


def _fitted(key):
    name = key.split("-")[0]
    cls = getattr(jaxem, name, None)
    if cls is None:
        pytest.skip(f"jaxem.{name} has not landed yet")
    kwargs, data, fit_kwargs = ESTIMATORS[key]
    X = data()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of tiny fits
        est = cls(random_state=0, **kwargs).fit(X, **fit_kwargs)
    return est, X


def _attrs(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_")}


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    elif isinstance(a, (list, tuple)) and a and isinstance(a[0], float):
        np.testing.assert_array_equal(a, b)
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        assert type(a) is type(b)
        for k in vars(a):
            _same(getattr(a, k), getattr(b, k))
    else:
        assert a == b, (a, b)


@pytest.mark.parametrize("key", list(ESTIMATORS))
def test_estimator_round_trip(key, tmp_path):
    est, X = _fitted(key)
    path = est.save(tmp_path / "model.npz")
    again = type(est).load(path)
    assert type(again) is type(est)
    assert again.get_params().keys() == est.get_params().keys()
    assert set(_attrs(again)) == set(_attrs(est))
    for k, v in _attrs(est).items():
        _same(v, getattr(again, k))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    np.testing.assert_allclose(again.score(X), est.score(X), rtol=1e-12)
    assert isinstance(jaxem.load(path), type(est))


def test_estimator_round_trip_float32(tmp_path):
    X = _gmm_data().astype(np.float32)
    cls = getattr(jaxem, "GaussianMixture", None) or pytest.skip("no GMM yet")
    est = cls(2, covariance_type="diag", random_state=0).fit(X)
    again = cls.load(est.save(tmp_path / "m.npz"))
    assert again.means_.dtype == est.means_.dtype
    np.testing.assert_array_equal(again.predict(X), est.predict(X))


def test_functional_params_round_trip_prebuilt(tmp_path):
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
    result = jaxem.fit(model, params0, HEADS[:, 0] * 1.0, max_iter=10, tol=0.0)
    jaxem.save(tmp_path / "r.npz", result, model=model)
    saved = jaxem.load(tmp_path / "r.npz")
    assert saved.model is model
    assert isinstance(saved.result, jaxem.FitResult)
    np.testing.assert_array_equal(saved.params["p"], result.params["p"])
    np.testing.assert_array_equal(saved.result.history, result.history)
    assert int(saved.result.n_iter) == 10
    assert saved.metadata["model"]["factory"] == "binomial_mixture"
    # The loaded params feed straight back into jaxem.
    ll = jaxem.log_likelihood(saved.model, saved.params, HEADS[:, 0] * 1.0)
    np.testing.assert_allclose(ll, result.log_likelihood)


def test_functional_params_custom_model(tmp_path):
    params = {"p": jnp.array([0.2, 0.7]), "nested": [jnp.eye(2), (jnp.zeros(3),)]}
    jaxem.save(tmp_path / "p.npz", params)
    saved = jaxem.load(tmp_path / "p.npz")
    assert saved.model is None and saved.result is None
    np.testing.assert_array_equal(saved.params["nested"][0], np.eye(2))
    assert isinstance(saved.params["nested"][1], tuple)


def test_metadata_contents(tmp_path):
    est, _ = _fitted("BinomialMixture")
    est.save(tmp_path / "m.npz")
    meta = _io.read_metadata(tmp_path / "m.npz")
    assert meta["format_version"] == _io.FORMAT_VERSION
    assert meta["jaxem_version"] == jaxem.__version__
    assert meta["class"] == "BinomialMixture"
    assert meta["model"]["factory"] == "binomial_mixture"
    shapes = [tuple(a["shape"]) for a in meta["arrays"].values()]
    assert (2,) in shapes
    assert {a["dtype"] for a in meta["arrays"].values()} >= {"<f8"}


# ----------------------------------------------------------------- refusals
def _rewrite(path, edit_meta=None, edit_arrays=None):
    with np.load(path) as npz:
        meta = json.loads(bytes(npz["__jaxem__"]).decode())
        arrays = {k: npz[k] for k in npz.files if k != "__jaxem__"}
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays, meta)
    blob = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, __jaxem__=blob, **arrays)


@pytest.fixture
def saved_coins(tmp_path):
    est, _ = _fitted("BinomialMixture")
    return est.save(tmp_path / "coins.npz")


def test_refuses_unknown_version(saved_coins):
    _rewrite(saved_coins, lambda m: m.update(format_version=99))
    with pytest.raises(ValueError, match="format version 99 is not supported"):
        jaxem.load(saved_coins)


def test_refuses_shape_not_matching_metadata(saved_coins):
    def grow(arrays, meta):
        key = next(k for k, a in arrays.items() if a.shape == (2,))
        arrays[key] = np.concatenate([arrays[key], [0.5]])

    _rewrite(saved_coins, edit_arrays=grow)
    with pytest.raises(ValueError, match="does not match the recorded shape"):
        jaxem.load(saved_coins)


def test_refuses_parameters_that_do_not_fit_the_model(saved_coins):
    def grow(arrays, meta):
        for key, a in list(arrays.items()):
            if a.shape == (2,) and a.dtype.kind == "f":
                arrays[key] = np.array([0.2, 0.3, 0.5])
                meta["arrays"][key]["shape"] = [3]
                meta["arrays"][key]["sha256"] = _io._digest(arrays[key])

    _rewrite(saved_coins, edit_arrays=grow)
    with pytest.raises(ValueError, match="inconsistent BinomialMixture"):
        jaxem.load(saved_coins)


def test_refuses_truncated_file(saved_coins):
    raw = saved_coins.read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 30):
        saved_coins.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="coins.npz"):
            jaxem.load(saved_coins)


def test_refuses_corrupted_bytes(saved_coins):
    raw = bytearray(saved_coins.read_bytes())
    with np.load(saved_coins) as npz:
        key = next(k for k in npz.files if k != "__jaxem__")
        value = npz[key].tobytes()
    at = bytes(raw).find(value)
    assert at > 0
    raw[at + 3] ^= 0xFF
    saved_coins.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupted"):
        jaxem.load(saved_coins)


def test_refuses_other_files(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.arange(3))
    with pytest.raises(ValueError, match="not a jaxem model file"):
        jaxem.load(tmp_path / "plain.npz")
    np.savez(tmp_path / "pickled.npz", __jaxem__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        jaxem.load(tmp_path / "pickled.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="text.npz"):
        jaxem.load(tmp_path / "text.npz")
    with pytest.raises(ValueError, match="cannot read"):
        jaxem.load(tmp_path / "missing.npz")


def test_refuses_unknown_class_and_factory(saved_coins, tmp_path):
    _rewrite(saved_coins, lambda m: m.update({"class": "os.system"}))
    with pytest.raises(ValueError, match="unknown to this jaxem"):
        jaxem.load(saved_coins)
    model = jaxem.models.binomial_mixture(2, 10)
    path = tmp_path / "p.npz"
    jaxem.save(
        path, {"weights": np.array([0.5, 0.5]), "p": np.array([0.1, 0.9])}, model=model
    )
    _rewrite(path, lambda m: m["model"].update(factory="eval"))
    with pytest.raises(ValueError, match="unknown to this jaxem"):
        jaxem.load(path)


def test_save_refuses_unfitted_and_load_checks_class(saved_coins):
    with pytest.raises(ValueError, match="not fitted"):
        jaxem.save("never.npz", jaxem.BinomialMixture(2, n_trials=10))
    cls = getattr(jaxem, "GaussianMixture", None)
    if cls is not None:
        with pytest.raises(ValueError, match="not a GaussianMixture"):
            cls.load(saved_coins)


def _chain(k):
    return {"startprob": np.full(k, 1 / k), "transmat": np.full((k, k), 1 / k)}


# model factory, a valid params dict (built by hand: no compiled initialiser)
PREBUILT = {
    "binomial_mixture": (
        lambda m: m.binomial_mixture(3, 5),
        {"weights": np.full(3, 1 / 3), "p": np.array([0.2, 0.5, 0.8])},
    ),
    "gaussian_mixture": (
        lambda m: m.gaussian_mixture(2, 3, "diag"),
        {
            "weights": np.array([0.4, 0.6]),
            "means": np.arange(6.0).reshape(2, 3),
            "covariances": np.ones((2, 3)),
        },
    ),
    "gaussian_hmm": (
        lambda m: m.gaussian_hmm(2, 2),
        {**_chain(2), "means": np.zeros((2, 2)), "covars": np.ones((2, 2))},
    ),
    "categorical_hmm": (
        lambda m: m.categorical_hmm(2, 6),
        {**_chain(2), "emissionprob": np.full((2, 6), 1 / 6)},
    ),
    "poisson_hmm": (
        lambda m: m.poisson_hmm(3, 1),
        {**_chain(3), "lambdas": np.array([[1.0], [4.0], [9.0]])},
    ),
}


@pytest.mark.parametrize("name", list(PREBUILT))
def test_functional_round_trip_every_prebuilt_model(name, tmp_path):
    factory, params = PREBUILT[name]
    if not hasattr(jaxem.models, name):
        pytest.skip(f"jaxem.models.{name} has not landed yet")
    model = factory(jaxem.models)
    jaxem.constraints.check_params(model.constraints, params)
    jaxem.save(tmp_path / "p.npz", params, model=model)
    saved = jaxem.load(tmp_path / "p.npz")
    assert saved.model is model
    assert saved.metadata["model"]["factory"] == name
    for key, value in params.items():
        np.testing.assert_array_equal(saved.params[key], value)


def test_refuses_functional_params_off_their_model(tmp_path):
    model = jaxem.models.binomial_mixture(2, 10)
    path = tmp_path / "p.npz"
    jaxem.save(
        path, {"weights": np.array([0.5, 0.5]), "p": np.array([0.2, 0.9])}, model=model
    )

    def off(arrays, meta):
        for key, a in arrays.items():
            if np.allclose(a, [0.2, 0.9]):
                arrays[key] = np.array([0.2, 1.5])
                meta["arrays"][key]["sha256"] = _io._digest(arrays[key])

    _rewrite(path, edit_arrays=off)
    with pytest.raises(ValueError, match=r"do not fit binomial_mixture\(2, 10\)"):
        jaxem.load(path)


def test_never_imports_a_module_named_in_the_file(saved_coins):
    import sys

    def point_at_main(meta):
        meta["state"]["__dict__"]["fit_status_"] = {
            "__enum__": "jaxem.__main__:Status",
            "value": 0,
        }

    _rewrite(saved_coins, point_at_main)
    with pytest.raises(ValueError, match="unknown to this jaxem"):
        jaxem.load(saved_coins)
    assert "jaxem.__main__" not in sys.modules
