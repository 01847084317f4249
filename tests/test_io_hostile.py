"""Hostile files: every one ends in one ValueError, and nothing runs or is written.

The files are built by hand from the version-1 metadata that jaxem 0.1.0
wrote (no fit, nothing compiled), then corrupted: the gadgets of issue 13,
other module paths, dunder tricks, deep nesting, huge sizes, object arrays,
wrong dtypes and shapes, truncation, bit flips, files of other types. Two
hypothesis properties mutate the JSON and the bytes at random.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import copy
import hashlib
import io
import json
import os
import struct
import subprocess
import warnings
import zipfile

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings

import jaxem
from jaxem import _io_registry

WEIGHTS, P = np.array([0.4, 0.6]), np.array([0.5, 0.8])
MONITOR, FIT_RESULT = _io_registry.MONITOR, _io_registry.FIT_RESULT_NAME


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _table(arrays):
    """The metadata's array table, true to ``arrays``."""
    return {
        k: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _sha(a)}
        for k, a in arrays.items()
    }


def _v1_estimator() -> tuple[dict, dict]:
    """A fitted BinomialMixture as jaxem 0.1.0 saved it (format version 1)."""
    state = {
        "converged_": True,
        "n_iter_": 4,
        "lower_bound_": -1.9594039957865756,
        "lower_bounds_": {"__list__": [-1.98, -1.962, -1.9599, -1.9594]},
        "log_likelihood_": -9.79625532382924,
        "fit_status_": {"__enum__": "jaxem._fit:Status", "value": 0},
        "weights_": {"__array__": "a0"},
        "p_": {"__array__": "a1"},
        "n_features_in_": 1,
        "_fit_dtype": {"__dtype__": "<f8"},
    }
    options = {
        "n_components": 2,
        "n_trials": 10,
        "tol": 0.001,
        "max_iter": 100,
        "n_init": 1,
        "init_params": "quantiles",
        "weights_init": None,
        "p_init": None,
        "random_state": 0,
        "warm_start": False,
        "verbose": 0,
    }
    meta = {
        "format": "jaxem",
        "format_version": 1,
        "jaxem_version": "0.1.0",
        "kind": "estimator",
        "class": "BinomialMixture",
        "params": {"__dict__": options},
        "state": {"__dict__": state},
        "model": {
            "name": "binomial_mixture(2, 10)",
            "factory": "binomial_mixture",
            "args": [2, 10],
            "kwargs": {},
        },
    }
    return meta, {"a0": WEIGHTS, "a1": P}


def _v1_fit_result() -> tuple[dict, dict]:
    """A FitResult of binomial_mixture(2, 10) as jaxem 0.1.0 saved it."""
    names = ["params", "log_likelihood", "history", "n_iter", "converged", "status"]
    fields = {n: {"__array__": f"a{i}"} for i, n in enumerate(names[1:], 2)}
    fields["params"] = {
        "__dict__": {"p": {"__array__": "a0"}, "weights": {"__array__": "a1"}}
    }
    meta = {
        "format": "jaxem",
        "format_version": 1,
        "jaxem_version": "0.1.0",
        "kind": "fit_result",
        "state": {"__namedtuple__": "jaxem._fit:FitResult", "fields": fields},
        "model": _v1_estimator()[0]["model"],
    }
    history = np.r_[np.linspace(-11.0, -9.8, 4), np.full(6, np.nan)]
    arrays = {
        "a0": P,
        "a1": WEIGHTS,
        "a2": np.array(-9.8),
        "a3": history,
        "a4": np.array(4),
        "a5": np.array(True),
        "a6": np.array(0, np.int32),
    }
    return meta, arrays


# Placeholders for JSON too deep for Python's own json module to write.
DEEP, NEST_65 = "@@deep@@", "@@nest65@@"
_RAW = {DEEP: "[" * 50_000 + "]" * 50_000, NEST_65: '{"__list__": [' * 65 + "]}" * 65}


def _write(path, meta, arrays, fix=True):
    """A file of ``meta`` and ``arrays``; ``fix`` records their true checksums."""
    meta = copy.deepcopy(meta)
    if fix:
        meta["arrays"] = _table(arrays)
    text = json.dumps(meta)
    for placeholder, raw in _RAW.items():
        text = text.replace(json.dumps(placeholder), raw)
    blob = np.frombuffer(text.encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, __jaxem__=blob, **arrays)
    return path


def _refused(path, match=None, load=jaxem.load):
    """Loading ``path`` raises exactly ValueError, one line naming the file."""
    with pytest.raises(ValueError) as info:
        load(path)
    err = info.value
    assert type(err) is ValueError, type(err)
    text = str(err)
    assert "\n" not in text and text.startswith(str(path)), text
    if match is not None:
        assert match in text, text
    return text


# ------------------------------------------------------------ sanity first
def test_version_1_files_load(tmp_path):
    est = jaxem.load(_write(tmp_path / "e.npz", *_v1_estimator()))
    assert type(est) is jaxem.BinomialMixture
    np.testing.assert_array_equal(est.p_, P)
    assert est.fit_status_ is jaxem.Status.CONVERGED and est.n_features_in_ == 1
    assert jaxem.BinomialMixture.load(tmp_path / "e.npz").n_iter_ == 4
    saved = jaxem.load(_write(tmp_path / "r.npz", *_v1_fit_result()))
    assert isinstance(saved.result, jaxem.FitResult)
    assert saved.model == jaxem.models.binomial_mixture(2, 10)
    assert int(saved.result.n_iter) == 4


# ------------------------------------------------------------ the gadgets
POPEN = {
    "__namedtuple__": "jaxem.constraints:jax.version.subprocess.Popen",
    "fields": {"args": ["touch", "MARK"]},
}
FILEIO = {
    "__namedtuple__": "jaxem._io:io.FileIO",
    "fields": {"file": "victim.txt", "mode": "w"},
}
NAMES = [
    "jaxem.constraints:jax.version.subprocess.Popen",
    "jaxem._io:io.FileIO",
    "subprocess:Popen",
    "os:system",
    "builtins:eval",
    "builtins:__import__",
    "jaxem:load",
    "jaxem._io:Saved",
    "jaxem._fit:_FitState",
    "jaxem._fit:FitResult.__class__",
    "jaxem._fit:Status.__class__",
    "jaxem._fit:FitResult.__init__.__globals__",
    "jaxem._fit:FitResult.__new__.__globals__.os.system",
    "jaxem.estimators._hmm:ConvergenceMonitor.__init__",
    "jaxem.__main__:Status",
    "__builtins__",
    "Status",
    "FitResult",
    "",
]


def _with_status(value):
    meta, arrays = _v1_estimator()
    meta["state"]["__dict__"]["fit_status_"] = value
    return meta, arrays


def _gadget_cases():
    cases = {"popen": _with_status(POPEN), "fileio": _with_status(FILEIO)}
    for i, name in enumerate(NAMES):
        for tag, extra in (
            ("__enum__", {"value": 0}),
            ("__namedtuple__", {"fields": {}}),
            ("__object__", {"state": {"__dict__": {}}}),
        ):
            cases[f"{tag.strip('_')}-{i}"] = _with_status({tag: name, **extra})
    return cases


GADGETS = _gadget_cases()


@pytest.mark.parametrize("key", list(GADGETS))
def test_gadgets_are_refused_and_nothing_happens(key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "victim.txt").write_text("precious")
    path = _write(tmp_path / "evil.npz", *GADGETS[key])
    _refused(path)
    assert sorted(os.listdir(tmp_path)) == ["evil.npz", "victim.txt"]
    assert (tmp_path / "victim.txt").read_text() == "precious"


def _estimator_edits():
    """name -> (edit of the v1 estimator metadata, expected words)."""

    def state(**kv):
        return lambda m: m["state"]["__dict__"].update(kv)

    def options(**kv):
        return lambda m: m["params"]["__dict__"].update(kv)

    def top(**kv):
        return lambda m: m.update(kv)

    status = {"__enum__": "jaxem._fit:Status", "value": 0}
    return {
        "class-os.system": (top(**{"class": "os.system"}), "unknown to this jaxem"),
        "class-dunder": (top(**{"class": "__class__"}), "unknown"),
        "class-not-estimator": (top(**{"class": "LatentModel"}), "unknown"),
        "class-other-estimator": (top(**{"class": "GaussianMixture"}), "option"),
        "class-not-string": (top(**{"class": ["BinomialMixture"]}), "unknown"),
        "attr-__class__": (state(__class__=status), "not allowed"),
        "attr-__dict__": (state(__dict__={"__dict__": {}}), "not allowed"),
        "attr-shadows-method": (state(predict=1), "not allowed"),
        "attr-shadows-model": (state(_model=1), "not allowed"),
        "attr-is-an-option": (state(n_components=3), "not allowed"),
        "attr-bad-name": (state(**{"a b": 1}), "not allowed"),
        "option-unknown": (options(exec="print(1)"), "unknown option"),
        "option-object": (options(random_state=POPEN), "unknown"),
        "option-dict": (options(tol={"__dict__": {"a": 1}}), "params.tol"),
        "enum-not-member": (state(fit_status_={**status, "value": 7}), "member"),
        "enum-bool-value": (state(fit_status_={**status, "value": True}), "member"),
        "enum-str-value": (state(fit_status_={**status, "value": "0"}), "member"),
        "enum-extra-key": (state(fit_status_={**status, "x": 1}), "unknown entry"),
        "enum-wrong-kind": (
            state(fit_status_={"__namedtuple__": "jaxem._fit:Status", "fields": {}}),
            "unknown",
        ),
        "wrong-type-bool": (state(converged_="yes"), "converged_"),
        "wrong-type-int": (state(n_iter_=2.5), "n_iter_"),
        "negative-int": (state(n_iter_=-1), "n_iter_"),
        "huge-dimension": (state(n_features_in_=10**12), "n_features_in_"),
        "number-as-array": (
            state(p_={"__scalar__": 0.5, "dtype": "<f8"}),
            "state.p_: expected an array",
        ),
        "missing-array": (state(p_={"__array__": "a9"}), "missing array"),
        "untagged-list": (state(lower_bounds_=[1.0]), "untagged"),
        "strings-not-strings": (
            state(feature_names_in_={"__strings__": [1, 2]}),
            "list of strings",
        ),
        "strings-not-list": (state(feature_names_in_={"__strings__": "ab"}), "list"),
        "names-as-numbers": (state(feature_names_in_=1.5), "array of strings"),
        "object-dunder-state": (
            state(
                extra_={"__object__": MONITOR, "state": {"__dict__": {"__class__": 1}}}
            ),
            "not allowed",
        ),
        "object-shadows-property": (
            state(
                extra_={"__object__": MONITOR, "state": {"__dict__": {"converged": 1}}}
            ),
            "not allowed",
        ),
        "record-dunder-field": (
            state(extra_={"__namedtuple__": FIT_RESULT, "fields": {"__class__": 1}}),
            "do not fit FitResult",
        ),
        "array-twice": (state(p_={"__array__": "a0"}), "referred to twice"),
        "huge-n-components": (options(n_components=10**9), "params.n_components"),
        "two-tags": (state(p_={"__array__": "a1", "__list__": []}), "unknown entry"),
        "dtype-object": (state(_fit_dtype={"__dtype__": "|O"}), "not allowed"),
        "dtype-datetime": (state(_fit_dtype={"__dtype__": "<M8[ns]"}), "not allowed"),
        "scalar-object": (
            state(lower_bound_={"__scalar__": "os", "dtype": "|O"}),
            "not allowed",
        ),
        "scalar-overflow": (
            state(n_iter_={"__scalar__": 300, "dtype": "|u1"}),
            "does not fit",
        ),
        "deque-maxlen": (
            state(lower_bounds_={"__deque__": [1.0, 2.0], "maxlen": 1}),
            "maxlen",
        ),
        "kind-unknown": (top(kind="pickle"), "kind"),
        "kind-fit-result": (top(kind="fit_result"), "metadata"),
        "version": (top(format_version=2), "format version 2 is not supported"),
        "version-bool": (top(format_version=True), "not supported"),
        "format": (top(format="numpy"), "not a jaxem model file"),
        "extra-top-key": (top(code="import os"), "unexpected"),
        "jaxem-version-object": (top(jaxem_version={"a": 1}), "jaxem_version"),
        "model-factory-eval": (
            lambda m: m["model"].update(factory="eval"),
            "unknown to this jaxem",
        ),
        "model-factory-helper": (
            lambda m: m["model"].update(factory="collapsed_components"),
            "unknown to this jaxem",
        ),
        "model-nested-args": (
            lambda m: m["model"].update(args=[{"__import__": "os"}]),
            "corrupted factory call",
        ),
        "deep-nesting": (state(lower_bounds_=DEEP), "nested deeper"),
        "nesting-65": (state(lower_bounds_=NEST_65), "nested deeper"),
    }


EDITS = _estimator_edits()


@pytest.mark.parametrize("key", list(EDITS))
def test_hostile_metadata_is_refused(key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    meta, arrays = _v1_estimator()
    edit, words = EDITS[key]
    edit(meta)
    _refused(_write(tmp_path / "m.npz", meta, arrays), words)
    assert os.listdir(tmp_path) == ["m.npz"]


def _array_edits():
    """name -> (edit of (arrays, table), expected words, whether to re-record)."""

    def replace(key, value):
        return lambda arrays, table: arrays.__setitem__(key, value), True

    def entry(**kv):
        return lambda arrays, table: table["a0"].update(kv), False

    cases = {
        "int-weights": (replace("a0", np.array([1, 0])), "weights_"),
        "2d-p": (replace("a1", P[None]), "p_"),
        "p-off-support": (replace("a1", np.array([0.5, 1.5])), "inconsistent"),
        "p-three-coins": (replace("a1", np.array([0.1, 0.5, 0.8])), "inconsistent"),
        "complex-p": (replace("a1", P.astype(complex)), "p_"),
        "no-shape": ((lambda a, t: t["a0"].pop("shape"), False), "metadata entry"),
        "wrong-dtype": (entry(dtype="<i8"), "does not match"),
        "wrong-shape": (entry(shape=[3]), "does not match"),
        "huge-shape": (entry(shape=[2**62, 2**62]), "does not match"),
        "object-dtype": (entry(dtype="|O"), "not numeric"),
        "bad-checksum": (entry(sha256="0" * 64), "checksum"),
        "extra-array": (
            (lambda a, t: a.__setitem__("a7", np.zeros(3)), False),
            "do not match the metadata",
        ),
        "missing-table": ((lambda a, t: t.clear(), False), "do not match"),
    }
    return {k: (*edit, words) for k, (edit, words) in cases.items()}


ARRAY_EDITS = _array_edits()


@pytest.mark.parametrize("key", list(ARRAY_EDITS))
def test_hostile_arrays_are_refused(key, tmp_path):
    meta, arrays = _v1_estimator()
    edit, refix, words = ARRAY_EDITS[key]
    table = _table(arrays)
    edit(arrays, table)
    meta["arrays"] = table
    _refused(_write(tmp_path / "m.npz", meta, arrays, fix=refix), words)


# --------------------------------------------------------- the container
def _raw(meta, arrays, tmp_path):
    return _write(tmp_path / "base.npz", meta, arrays).read_bytes()


def _npy(header: dict, payload: bytes) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + payload


def _zip(entries, method=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", method) as zf:
        warnings.simplefilter("ignore")  # a duplicate name, on purpose
        for name, data in entries:
            zf.writestr(name, data)
    return out.getvalue()


def _meta_npy(meta) -> bytes:
    blob = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    out = io.BytesIO()
    np.save(out, blob)
    return out.getvalue()


def _container_cases(tmp_path):
    meta, arrays = _v1_estimator()
    raw = _raw(meta, arrays, tmp_path)
    full = copy.deepcopy(meta)
    full["arrays"] = _table(arrays)
    good = [("__jaxem__.npy", _meta_npy(full))]
    good += [(f"{k}.npy", _npy_bytes(a)) for k, a in arrays.items()]
    huge = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    huge_meta = copy.deepcopy(full)
    huge_meta["arrays"]["a0"]["shape"] = [10**12]
    at = raw.find(b"PK\x01\x02")  # the first central directory record

    def method(code):  # its compression-method field
        return raw[: at + 10] + struct.pack("<H", code) + raw[at + 12 :]

    return {
        "empty": b"",
        "text": b"hello",
        "pk-only": b"PK",
        "plain-npz": _zip([("x.npy", _npy_bytes(np.arange(3)))]),
        "compression-method-99": method(99),
        "compression-method-deflate": method(8),
        "compression-method-bzip2": method(12),
        "deflated": _zip(good, zipfile.ZIP_DEFLATED),
        "duplicate-entry": _zip(good + good[:1]),
        "path-entry": _zip(good + [("../evil.npy", b"x")]),
        "text-entry": _zip(good + [("evil.txt", b"x")]),
        "no-metadata": _zip(good[1:]),
        "huge-declared": _zip(
            [("__jaxem__.npy", _meta_npy(huge_meta))]
            + [("a0.npy", _npy(huge, b"\0" * 16)), good[2]]
        ),
        "object-array": _zip(
            good[:1]
            + [
                (
                    "a0.npy",
                    _npy({"descr": "|O", "fortran_order": False, "shape": (2,)}, b""),
                ),
                good[2],
            ]
        ),
        "metadata-not-bytes": _zip([("__jaxem__.npy", _npy_bytes(np.arange(3.0)))]),
        "metadata-2d": _zip(
            [("__jaxem__.npy", _npy_bytes(np.zeros((2, 2), np.uint8)))]
        ),
        "metadata-not-utf8": _zip(
            [("__jaxem__.npy", _npy_bytes(np.full(4, 255, np.uint8)))]
        ),
        "metadata-list": _zip([("__jaxem__.npy", _meta_npy([1, 2]))]),
        "duplicate-json-keys": _zip(
            [
                (
                    "__jaxem__.npy",
                    _npy_bytes(
                        np.frombuffer(b'{"format": "jaxem", "format": "x"}', np.uint8)
                    ),
                )
            ]
        ),
        "unterminated-escapes": _zip(  # quadratic for a regex scan of strings
            [
                (
                    "__jaxem__.npy",
                    _npy_bytes(np.frombuffer(b'"' + b'\\"' * 10**5, np.uint8)),
                )
            ]
        ),
        "huge-integer": _zip(
            [("__jaxem__.npy", _npy_bytes(np.frombuffer(b"1" * 5000, np.uint8)))]
        ),
        "encrypted-flag": _flag(raw),
    }


def _npy_bytes(a) -> bytes:
    out = io.BytesIO()
    np.save(out, a)
    return out.getvalue()


def _flag(raw: bytes) -> bytes:
    out = bytearray(raw)
    out[6] |= 0x1
    at = bytes(out).find(b"PK\x01\x02")
    out[at + 8] |= 0x1
    return bytes(out)


def test_corrupted_containers_are_refused(tmp_path):
    cases = _container_cases(tmp_path)
    for name, raw in cases.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(raw)
        _refused(path)
    _refused(tmp_path / "missing.npz", "cannot read")


def test_truncated_files_are_refused(tmp_path):
    raw = _raw(*_v1_estimator(), tmp_path)
    path = tmp_path / "cut.npz"
    for cut in range(0, len(raw), 37):
        path.write_bytes(raw[:cut])
        _refused(path)


def test_every_flipped_byte_is_refused_or_harmless(tmp_path):
    """A flip anywhere either is refused or changes nothing that is loaded."""
    raw = _raw(*_v1_estimator(), tmp_path)
    path = tmp_path / "flip.npz"
    reference = jaxem.load(tmp_path / "base.npz")
    for at in range(0, len(raw), 3):
        flipped = bytearray(raw)
        flipped[at] ^= 0x5A
        path.write_bytes(bytes(flipped))
        try:
            est = jaxem.load(path)
        except ValueError as err:
            assert type(err) is ValueError and "\n" not in str(err)
            continue
        np.testing.assert_array_equal(est.p_, reference.p_)
        assert est.get_params() == reference.get_params()


# ------------------------------------------------------- other types
def test_files_of_other_types_are_refused(tmp_path):
    est_path = _write(tmp_path / "e.npz", *_v1_estimator())
    res_path = _write(tmp_path / "r.npz", *_v1_fit_result())
    _refused(est_path, "not a GaussianMixture", jaxem.GaussianMixture.load)
    _refused(est_path, "not a PoissonHMM", jaxem.PoissonHMM.load)
    _refused(res_path, "holds a fit_result", jaxem.BinomialMixture.load)
    meta, arrays = _v1_fit_result()
    meta["kind"] = "params"  # a FitResult where binomial params are expected
    _refused(_write(tmp_path / "p.npz", meta, arrays), "do not fit binomial_mixture")
    meta["model"] = None
    assert type(jaxem.load(_write(tmp_path / "q.npz", meta, arrays)).params) is (
        jaxem.FitResult
    )
    meta, arrays = _v1_fit_result()
    meta["model"].update(factory="gaussian_mixture", args=[2, 1])
    _refused(_write(tmp_path / "g.npz", meta, arrays), "do not fit gaussian_mixture")
    meta, arrays = _v1_fit_result()
    meta["state"]["__namedtuple__"] = "jaxem._online:OnlineState"
    _refused(_write(tmp_path / "o.npz", meta, arrays), "do not fit OnlineState")
    meta, arrays = _v1_fit_result()
    arrays["a6"] = np.array(9, np.int32)  # not a Status
    _refused(_write(tmp_path / "s.npz", meta, arrays), "Status")
    meta, arrays = _v1_fit_result()
    arrays["a4"] = np.array(11)  # more iterations than the history holds
    _refused(_write(tmp_path / "n.npz", meta, arrays), "n_iter")
    meta, arrays = _v1_fit_result()
    meta["state"]["fields"]["params"]["__dict__"].pop("weights")
    _refused(_write(tmp_path / "u.npz", meta, arrays), "array a1: is not used")
    meta, arrays = _v1_fit_result()
    meta["kind"] = "estimator"
    _refused(_write(tmp_path / "k.npz", meta, arrays), "metadata")


# ------------------------------------------------------- properties
ALLOWED_LEAVES = (type(None), bool, int, float, str, np.generic, np.dtype)


def _allowed(obj, depth=0) -> bool:
    """Only allow-listed types, numeric arrays and plain data, all the way down."""
    assert depth < 100
    registered = tuple(e.cls for e in _io_registry.REGISTRY._by_name.values())
    if isinstance(obj, ALLOWED_LEAVES):
        return True
    if isinstance(obj, np.ndarray):
        strings = obj.dtype == object and all(type(v) is str for v in obj.flat)
        return obj.dtype.kind in "biufc" or strings
    if type(obj) is jaxem.Saved:
        return isinstance(obj.model, (type(None), jaxem.LatentModel)) and all(
            _allowed(v, depth + 1) for v in (obj.params, obj.result, obj.metadata)
        )
    if isinstance(obj, (dict,)):
        return all(_allowed(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple, collections.deque)):
        plain = type(obj) in (list, tuple, collections.deque)
        return (plain or type(obj) in registered) and all(
            _allowed(v, depth + 1) for v in obj
        )
    if type(obj) in registered:
        return all(_allowed(v, depth + 1) for v in vars(obj).values())
    return False


@contextlib.contextmanager
def _spies(tmp_path):
    """Record process starts, shell calls and files opened for writing."""
    seen = []
    real_open, real_fileio = builtins.open, io.FileIO

    class Popen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            seen.append(("Popen", args))
            raise OSError("blocked by the test")

    class FileIO(real_fileio):
        def __init__(self, file, mode="r", *args, **kwargs):
            if set(str(mode)) & set("wax+"):
                seen.append(("FileIO", file, mode))
            super().__init__(file, mode, *args, **kwargs)

    def spy_open(file, mode="r", *args, **kwargs):
        if set(str(mode)) & set("wax+"):
            seen.append(("open", file, mode))
        return real_open(file, mode, *args, **kwargs)

    patches = [
        (subprocess, "Popen", Popen),
        (io, "FileIO", FileIO),
        (builtins, "open", spy_open),
        (io, "open", spy_open),
        (os, "system", lambda cmd: seen.append(("system", cmd))),
        (os, "popen", lambda *a, **k: seen.append(("popen", a))),
    ]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    before = sorted(os.listdir(tmp_path))
    try:
        for mod, name, value in patches:
            setattr(mod, name, value)
        yield seen
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)
    assert sorted(os.listdir(tmp_path)) == before


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NAMES + ["BinomialMixture", "a0", "a1", "<f8", "|O", "__dict__"]),
)
TAGS = ["__array__", "__scalar__", "__dtype__", "__dict__", "__list__", "__tuple__"]
TAGS += ["__deque__", "__enum__", "__namedtuple__", "__object__", "__class__"]
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(TAGS + ["fields", "state", "value", "dtype", "maxlen"]),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)


def _paths(node, prefix=()):
    """Every path into a JSON tree, containers first."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _mutate(meta, path, action, value):
    if not path:
        return value if action == "replace" else meta
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[value if isinstance(value, str) else str(value)[:20]] = parent[last]
    else:
        parent.append(value)
    return meta


def _expect_safe(path, tmp_path):
    with _spies(tmp_path) as seen:
        try:
            obj = jaxem.load(path)
            event("loaded")
        except ValueError as err:
            assert type(err) is ValueError and "\n" not in str(err), repr(err)
            event("refused")
            obj = None
    assert seen == []
    if obj is not None:
        assert _allowed(obj), obj


BASES = {"estimator": _v1_estimator, "fit_result": _v1_fit_result}


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_json_never_runs_code(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    meta, arrays = BASES[data.draw(st.sampled_from(sorted(BASES)))]()
    full = json.loads(json.dumps(meta))
    full["arrays"] = _table(arrays)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(full))
        where = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "delete", "rename"]))
        if not where and action != "replace":
            continue
        full = _mutate(full, where, action, data.draw(JSON_VALUE))
    path = _write(tmp_path / "m.npz", full, arrays, fix=False)
    _expect_safe(path, tmp_path)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    base=st.sampled_from(sorted(BASES)),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_bytes_never_run_code(base, flips, cut, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = bytearray(_raw(*BASES[base](), tmp_path))
    for at, mask in flips:
        raw[at % len(raw)] ^= mask
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(raw if cut is None else raw[: cut % len(raw)]))
    _expect_safe(path, tmp_path)


def test_loading_with_jax_defaults_warns_nothing(tmp_path):
    """As users run it: x64 off, warnings as errors, in a fresh process."""
    import sys

    good = _write(tmp_path / "e.npz", *_v1_estimator())
    evil = _write(tmp_path / "evil.npz", *GADGETS["popen"])
    script = f"""
import jax, jaxem
assert not jax.config.jax_enable_x64
est = jaxem.load({str(good)!r})
assert est.predict([[3], [9]]).tolist() == [0, 1], est.predict([[3], [9]])
try:
    jaxem.load({str(evil)!r})
except ValueError as err:
    print("refused", err)
"""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused" in proc.stdout and "allow-list" in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["e.npz", "evil.npz"]
