"""Saving and loading: round trips for every model, refusals of bad files."""

from __future__ import annotations

import json
from typing import NamedTuple

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


def test_estimator_fitted_on_a_dataframe_round_trips(tmp_path):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(_gmm_data(), columns=["height", "weight"])
    est = jaxem.GaussianMixture(2, n_init=2, random_state=0).fit(X)
    again = jaxem.GaussianMixture.load(est.save(tmp_path / "df.npz"))
    assert again.feature_names_in_.tolist() == ["height", "weight"]
    np.testing.assert_array_equal(again.predict(X), est.predict(X))


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
    for name in jaxem.FitResult._fields[1:]:  # every field, new ones included
        a, b = getattr(saved.result, name), getattr(result, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a, b)
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


# ------------------------------------------------------------ the registry
def test_every_saved_attribute_has_a_declared_spec():
    """A new fitted attribute needs a spec in jaxem/_io_registry.py ESTIMATORS
    (or the estimator's own register_estimator call): attributes without one
    load only as unchecked plain data."""
    from jaxem._io_registry import REGISTRY

    for key in ESTIMATORS:
        est, _ = _fitted(key)
        entry = REGISTRY.entry_of(type(est))
        undeclared = set(_io._fitted_state(est)) - set(entry.fields)
        assert not undeclared, f"{type(est).__name__}: no spec for {undeclared}"


class _Toy(_io.SaveLoadMixin):
    """A minimal estimator, as a new one would register itself."""

    def __init__(self, n_components=2, tol=1e-3):
        self.n_components = n_components
        self.tol = tol

    def get_params(self, deep=True):
        return {"n_components": self.n_components, "tol": self.tol}

    def fit(self, X):
        self.means_ = np.asarray(X[: self.n_components], float)
        self.n_iter_ = 3
        self.status_ = jaxem.Status.MAX_ITER
        return self


@pytest.fixture
def toy_registered(monkeypatch):
    """_Toy in the global registry for one test (its dicts restored after)."""
    from jaxem._io_registry import REGISTRY, STATUS, register_estimator
    from jaxem._io_schema import Array, Int, Registered

    REGISTRY._ready()
    monkeypatch.setattr(REGISTRY, "_by_name", dict(REGISTRY._by_name))
    monkeypatch.setattr(REGISTRY, "_by_class", dict(REGISTRY._by_class))
    fitted = {
        "means_": Array("f", ndim=2),
        "n_iter_": Int(lo=0),
        "status_": Registered(STATUS),
    }
    register_estimator(_Toy, fitted=fitted)


def test_a_registered_estimator_round_trips_and_is_checked(toy_registered, tmp_path):
    est = _Toy(n_components=2).fit(np.arange(6.0).reshape(3, 2))
    again = _Toy.load(est.save(tmp_path / "toy.npz"))
    assert type(again) is _Toy and again.status_ is jaxem.Status.MAX_ITER
    np.testing.assert_array_equal(again.means_, est.means_)
    _rewrite(tmp_path / "toy.npz", lambda m: m["state"]["__dict__"].update(n_iter_=-1))
    with pytest.raises(ValueError, match=r"state\.n_iter_: -1 is outside"):
        _Toy.load(tmp_path / "toy.npz")
    est.means_ = np.arange(3)  # an int array: save refuses what load would refuse
    with pytest.raises(ValueError, match="would not load back"):
        est.save(tmp_path / "bad.npz")


def test_an_unregistered_class_is_never_saved(tmp_path):
    est = _Toy().fit(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="not registered"):
        jaxem.save(tmp_path / "toy.npz", est)
    assert not (tmp_path / "toy.npz").exists()


def test_batched_fit_result_and_online_state_round_trip(tmp_path):
    """Shapes of a vmapped FitResult (3 restarts) and an OnlineState, by hand."""
    result = jaxem.FitResult(
        params={"p": np.full((3, 2), 0.5), "weights": np.full((3, 2), 0.5)},
        log_likelihood=np.array([-3.0, -2.0, -1.0]),
        history=np.full((3, 5), -1.0),
        n_iter=np.array([5, 2, 1]),
        converged=np.array([False, True, True]),
        status=np.array([1, 0, 0], np.int32),
    )
    saved = jaxem.load(jaxem.save(tmp_path / "r.npz", result))
    assert type(saved.result) is jaxem.FitResult
    np.testing.assert_array_equal(saved.result.n_iter, result.n_iter)
    state = jaxem.OnlineState(
        params={"p": np.array([0.2, 0.7])}, stats=(np.ones(2),), step=np.array(4)
    )
    again = jaxem.load(jaxem.save(tmp_path / "o.npz", state)).params
    assert type(again) is jaxem.OnlineState and int(again.step) == 4
    assert isinstance(again.stats, tuple)


def test_save_refuses_what_it_cannot_describe(tmp_path):
    with pytest.raises(TypeError, match="cannot save"):
        jaxem.save(tmp_path / "a.npz", {"f": print})
    with pytest.raises(TypeError, match="cannot save an array of dtype object"):
        jaxem.save(tmp_path / "b.npz", {"x": np.array(["a", None], dtype=object)})
    assert not list(tmp_path.iterdir())


class _Result(NamedTuple):
    loglik: np.ndarray
    later: np.ndarray  # a field added after files were written


def test_a_record_field_added_later_is_filled_for_older_files():
    from jaxem._io_codec import Decoder, build
    from jaxem._io_registry import Registry, register_record
    from jaxem._io_schema import Array, Context

    registry = Registry()
    register_record(
        _Result,
        fields={"loglik": Array("f"), "later": Array("f")},
        fill=lambda fields: {"later": np.full(np.shape(fields["loglik"]), np.nan)},
        name="Result",
        registry=registry,
    )
    old = {"__namedtuple__": "Result", "fields": {"loglik": {"__array__": "a0"}}}
    decoder = Decoder({"a0": np.zeros(3)}, Context(3), registry)
    result = build(decoder.decode(old, "state"))
    assert type(result) is _Result and result.later.shape == (3,)
    assert np.isnan(result.later).all()
    # The FitResult entry fills any field newer than version 1 the same way.
    from jaxem._io_registry import FIT_RESULT_NAME, REGISTRY

    fit_result = REGISTRY.lookup(FIT_RESULT_NAME, "record")
    assert fit_result.fill is not None
