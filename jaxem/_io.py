"""Saving and loading fitted models: one ``.npz`` file, arrays plus JSON metadata.

The file is a NumPy ``.npz`` archive. Its entry ``__jaxem__`` holds UTF-8 JSON
metadata: format name and version, jaxem version, what was saved (an estimator,
a ``FitResult`` or a params pytree), the model kind and options, and for every
array its shape, dtype and SHA-256. The other entries are the arrays. Loading
uses ``np.load(..., allow_pickle=False)`` and rebuilds objects only from a fixed
list of jaxem classes and model factories, so a file can never run code.
"""

from __future__ import annotations

import ast
import collections
import enum
import hashlib
import io
import json
import os
import pathlib
import sys
import zipfile
from typing import Any, NamedTuple

import numpy as np

FORMAT = "jaxem"
FORMAT_VERSION = 1
_META = "__jaxem__"


class Saved(NamedTuple):
    """What :func:`load` returns for a saved params pytree or ``FitResult``.

    Attributes:
        params: the parameters, a pytree of numpy arrays (jaxem functions
            accept them as they are).
        model: the ``LatentModel`` rebuilt from its recorded factory and options
            for prebuilt models (``jaxem.models``); None for a user's own model
            (pass your ``LatentModel`` yourself).
        result: the ``FitResult`` when one was saved, else None.
        metadata: the file's metadata dict (format version, model, shapes, ...).

    Examples:
        >>> import os, tempfile, jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
        >>> heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
        >>> result = jaxem.fit(model, params0, heads, max_iter=10, tol=0.0)
        >>> path = os.path.join(tempfile.mkdtemp(), "fit.npz")
        >>> saved = jaxem.load(jaxem.save(path, result, model=model))
        >>> int(saved.result.n_iter), saved.metadata["model"]["factory"]
        (10, 'binomial_mixture')
    """

    params: Any
    model: Any
    result: Any
    metadata: dict


# ------------------------------------------------------------------ encoding
class _Encoder:
    """Turns a Python value into JSON, moving arrays into ``self.arrays``."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, value) -> dict:
        key = f"a{len(self.arrays)}"
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"cannot save an array of dtype {arr.dtype}")
        self.arrays[key] = arr
        return {"__array__": key}

    def __call__(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, enum.Enum):
            return {"__enum__": _class_path(type(value)), "value": value.value}
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, np.generic):
            return {"__scalar__": value.item(), "dtype": value.dtype.str}
        if isinstance(value, np.dtype):
            return {"__dtype__": value.str}
        if isinstance(value, type) and issubclass(value, np.generic):
            return {"__dtype__": np.dtype(value).str}
        if isinstance(value, np.ndarray) or _is_jax_array(value):
            return self.array(value)
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError("cannot save a dict with non-string keys")
            return {"__dict__": {k: self(v) for k, v in value.items()}}
        if isinstance(value, collections.deque):
            return {"__deque__": [self(v) for v in value], "maxlen": value.maxlen}
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            fields = {f: self(getattr(value, f)) for f in value._fields}
            return {"__namedtuple__": _class_path(type(value)), "fields": fields}
        if isinstance(value, list):
            return {"__list__": [self(v) for v in value]}
        if isinstance(value, tuple):
            return {"__tuple__": [self(v) for v in value]}
        if type(value).__module__.startswith("jaxem.") and hasattr(value, "__dict__"):
            return {"__object__": _class_path(type(value)), "state": self(vars(value))}
        raise TypeError(f"cannot save a value of type {type(value).__name__}")


def _is_jax_array(value) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.Array)


def _class_path(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _jaxem_class(path: str):
    """A class defined inside jaxem, by ``module:qualname``; nothing else."""
    module, _, qualname = path.partition(":")
    if not (module == "jaxem" or module.startswith("jaxem.")) or not qualname:
        raise ValueError(f"refers to {path!r}, which is not a jaxem class")
    # Only modules jaxem has already imported: loading a file never imports
    # (and so never runs) anything.
    obj = sys.modules.get(module)
    try:
        if obj is None:
            raise AttributeError(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError as err:
        raise ValueError(f"refers to {path!r}, unknown to this jaxem") from err
    if not isinstance(obj, type):
        raise ValueError(f"refers to {path!r}, which is not a class")
    return obj


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if "__array__" in value:
            return self.arrays[value["__array__"]]
        if "__scalar__" in value:
            return np.dtype(value["dtype"]).type(value["__scalar__"])
        if "__dtype__" in value:
            return np.dtype(value["__dtype__"])
        if "__enum__" in value:
            return _jaxem_class(value["__enum__"])(value["value"])
        if "__dict__" in value:
            return {k: self(v) for k, v in value["__dict__"].items()}
        if "__deque__" in value:
            return collections.deque(
                [self(v) for v in value["__deque__"]], maxlen=value["maxlen"]
            )
        if "__list__" in value:
            return [self(v) for v in value["__list__"]]
        if "__tuple__" in value:
            return tuple(self(v) for v in value["__tuple__"])
        if "__namedtuple__" in value:
            cls = _jaxem_class(value["__namedtuple__"])
            return cls(**{k: self(v) for k, v in value["fields"].items()})
        if "__object__" in value:
            cls = _jaxem_class(value["__object__"])
            obj = cls.__new__(cls)
            obj.__dict__.update(self(value["state"]))
            return obj
        raise ValueError(f"unknown entry {sorted(value)}")


# ------------------------------------------------------------------- models
def _model_metadata(model) -> dict | None:
    """Factory and options of a prebuilt model, parsed from its ``name``."""
    if model is None:
        return None
    from . import models as _models

    name = getattr(model, "name", None) or getattr(
        getattr(model, "log_joint", None), "__name__", "model"
    )
    try:
        call = ast.parse(name, mode="eval").body
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id in _models.__all__
        ):
            args = [ast.literal_eval(a) for a in call.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
            if getattr(_models, call.func.id)(*args, **kwargs) == model:
                return {
                    "name": name,
                    "factory": call.func.id,
                    "args": args,
                    "kwargs": kwargs,
                }
    except (SyntaxError, ValueError, TypeError):
        pass
    return {"name": name, "factory": None}


def _rebuild_model(meta: dict | None):
    if not meta or not meta.get("factory"):
        return None
    from . import models as _models

    factory = meta["factory"]
    if factory not in _models.__all__:
        raise ValueError(f"model factory {factory!r} is unknown to this jaxem")
    try:
        return getattr(_models, factory)(*meta["args"], **meta["kwargs"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot rebuild {meta.get('name')!r}: {err}") from err


def _estimator_classes() -> dict[str, type]:
    import jaxem

    return {
        name: obj
        for name in jaxem.__all__
        if isinstance(obj := getattr(jaxem, name), type) and hasattr(obj, "get_params")
    }


def _is_estimator(obj) -> bool:
    return type(obj) in _estimator_classes().values()


def _fitted_state(est) -> dict:
    """Every attribute that is not a constructor option and can be encoded.

    Fitted attributes (``name_``) and anything else ``fit`` set (e.g. a
    dimension inferred from the data) must be encodable; private attributes
    that are not (caches, compiled functions) are rebuilt, so they are skipped.
    """
    options = set(est.get_params())
    state = {}
    for key, value in vars(est).items():
        if key in options or key.startswith("__"):
            continue
        try:
            _Encoder()(value)
        except TypeError as err:
            if key.startswith("_"):
                continue
            raise TypeError(f"fitted attribute {key}: {err}") from err
        state[key] = value
    return state


# -------------------------------------------------------------------- save
def save(path: str | os.PathLike, obj: Any, *, model: Any = None) -> pathlib.Path:
    """Save a fitted estimator, a ``FitResult`` or a params pytree to one file.

    The file is a NumPy ``.npz`` archive with the arrays and a JSON metadata
    entry (format version, jaxem version, model kind and options, each array's
    shape, dtype and checksum). It is written exactly at ``path``; ``.npz`` is
    the customary suffix.

    Args:
        path: file to write (overwritten if it exists).
        obj: a fitted jaxem estimator (``GaussianMixture``, ``BinomialMixture``,
            the HMMs), a ``jaxem.FitResult``, or a params pytree (nested dicts,
            lists and tuples of arrays).
        model: for a ``FitResult`` or params, the ``LatentModel`` they belong
            to. Prebuilt models (``jaxem.models``) are recorded by factory and
            options and rebuilt by :func:`load`; for your own model only its
            name is recorded.

    Returns:
        The path written.

    Raises:
        ValueError: ``obj`` is an estimator that is not fitted.
        TypeError: ``obj`` holds something that is not an array or a number.

    Examples:
        >>> import os, tempfile, jax.numpy as jnp, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.8, 0.5])}
        >>> path = os.path.join(tempfile.mkdtemp(), "coins.npz")
        >>> _ = jaxem.save(path, params, model=model)
        >>> saved = jaxem.load(path)
        >>> saved.model is model, saved.params["p"].tolist()
        (True, [0.8, 0.5])
    """
    from . import __version__
    from ._fit import FitResult

    enc = _Encoder()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jaxem_version": __version__,
    }
    if _is_estimator(obj):
        is_fitted = getattr(obj, "_is_fitted", None)
        if not (is_fitted() if is_fitted else any(k.endswith("_") for k in vars(obj))):
            raise ValueError(f"obj: this {type(obj).__name__} is not fitted yet")
        params = obj.get_params()
        if not _encodable(params.get("random_state")):
            params["random_state"] = None  # a generator object is not data
        meta["kind"] = "estimator"
        meta["class"] = type(obj).__name__
        meta["params"] = enc(params)
        meta["state"] = enc(_fitted_state(obj))
        model_fn = getattr(obj, "_model", None)
        meta["model"] = _safe_model_metadata(model_fn)
    elif isinstance(obj, FitResult):
        meta["kind"] = "fit_result"
        meta["state"] = enc(obj)
        meta["model"] = _model_metadata(model)
    else:
        meta["kind"] = "params"
        meta["state"] = enc(obj)
        meta["model"] = _model_metadata(model)
    meta["arrays"] = {
        key: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _digest(a)}
        for key, a in enc.arrays.items()
    }
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    path = pathlib.Path(path)
    buffer = io.BytesIO()
    np.savez(buffer, **{_META: blob}, **enc.arrays)
    path.write_bytes(buffer.getvalue())
    return path


def _encodable(value) -> bool:
    try:
        _Encoder()(value)
    except TypeError:
        return False
    return True


def _safe_model_metadata(model_fn):
    if model_fn is None:
        return None
    try:
        return _model_metadata(model_fn())
    except Exception:  # an estimator whose options do not build a model
        return None


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# -------------------------------------------------------------------- load
def load(path: str | os.PathLike) -> Any:
    """Load what :func:`save` wrote.

    Args:
        path: a file written by :func:`save` (or an estimator's ``save``).

    Returns:
        The fitted estimator for a saved estimator; otherwise a :class:`Saved`
        with ``params``, ``model`` (rebuilt for prebuilt models, else None),
        ``result`` (the ``FitResult`` if one was saved) and ``metadata``.

    Raises:
        ValueError: the file is missing, truncated or corrupted, is not a jaxem
            file, has an unknown format version, or its arrays do not have the
            recorded shapes, dtypes and checksums or do not fit the model.

    Examples:
        >>> import os, tempfile, numpy as np, jaxem
        >>> X = np.array([[5], [9], [8], [4], [7]])
        >>> est = jaxem.BinomialMixture(2, n_trials=10, random_state=0).fit(X)
        >>> path = os.path.join(tempfile.mkdtemp(), "coins.npz")
        >>> _ = est.save(path)
        >>> again = jaxem.BinomialMixture.load(path)
        >>> bool(np.allclose(again.p_, est.p_))
        True
    """
    path = pathlib.Path(path)
    meta, arrays = _read(path)
    try:
        return _restore(meta, arrays)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: corrupted metadata ({err!r})") from None


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a saved file, after the integrity checks of ``load``."""
    return _read(pathlib.Path(path))[0]


def _read(path: pathlib.Path) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from None
    if not raw.startswith(b"PK"):
        raise ValueError(
            f"{path}: not a jaxem model file (expected an .npz archive written by "
            "jaxem.save)"
        )
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            names = list(npz.files)
            if _META not in names:
                raise ValueError("not a jaxem model file (no metadata entry)")
            meta = json.loads(bytes(npz[_META]).decode("utf-8"))
            arrays = {k: npz[k] for k in names if k != _META}
    except ValueError as err:
        raise ValueError(f"{path}: {_npz_problem(err)}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as err:
        raise ValueError(
            f"{path}: truncated or corrupted file ({type(err).__name__}: {err})"
        ) from None
    try:
        _check(meta, arrays)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return meta, arrays


def _npz_problem(err: ValueError) -> str:
    text = str(err)
    if "pickle" in text.lower():
        return "holds pickled objects, which jaxem never loads"
    if text.startswith("not a jaxem"):
        return text
    return f"not a jaxem model file or corrupted ({text})"


def _check(meta: Any, arrays: dict[str, np.ndarray]) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not a jaxem model file")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"format version {version!r} is not supported by jaxem "
            f"(this jaxem reads version {FORMAT_VERSION}); saved by jaxem "
            f"{meta.get('jaxem_version', '?')}"
        )
    recorded = meta.get("arrays")
    if not isinstance(recorded, dict) or set(recorded) != set(arrays):
        raise ValueError("corrupted: the arrays do not match the metadata")
    for key, info in recorded.items():
        a = arrays[key]
        if list(a.shape) != info["shape"] or a.dtype.str != info["dtype"]:
            raise ValueError(
                f"array {key}: shape {a.shape} dtype {a.dtype} does not match the "
                f"recorded shape {tuple(info['shape'])} dtype {info['dtype']}"
            )
        if _digest(a) != info["sha256"]:
            raise ValueError(f"array {key}: corrupted (checksum mismatch)")


def _restore(meta: dict, arrays: dict[str, np.ndarray]) -> Any:
    decode = _Decoder(arrays)
    kind = meta.get("kind")
    if kind == "estimator":
        return _restore_estimator(meta, decode)
    if kind not in ("params", "fit_result"):
        raise ValueError(f"unknown content {kind!r}")
    state = decode(meta["state"])
    model = _rebuild_model(meta.get("model"))
    result = state if kind == "fit_result" else None
    params = state.params if kind == "fit_result" else state
    if model is not None:
        _check_params(model, params)
    return Saved(params=params, model=model, result=result, metadata=meta)


def _check_params(model, params) -> None:
    from . import constraints as _constraints

    try:
        _constraints.check_params(model.constraints, params, "params")
    except ValueError as err:
        raise ValueError(f"parameters do not fit {model.name}: {err}") from None


def _restore_estimator(meta: dict, decode: _Decoder):
    classes = _estimator_classes()
    name = meta.get("class")
    if name not in classes:
        raise ValueError(f"estimator class {name!r} is unknown to this jaxem")
    cls = classes[name]
    est = cls(**decode(meta["params"]))
    for key, value in decode(meta["state"]).items():
        setattr(est, key, value)
    _check_estimator(est)
    return est


def _check_estimator(est) -> None:
    """Fitted arrays must fit the model the estimator's options build."""
    to_params = getattr(est, "_attributes_to_params", None)
    model_fn = getattr(est, "_model", None)
    if to_params is None or model_fn is None:
        return
    dtype = getattr(est, "_fit_dtype", np.float64)
    try:
        model = model_fn()
        params = to_params(dtype)
        _check_params(model, params)
        n_features = getattr(est, "n_features_in_", None)
        to_data = getattr(est, "_to_data", None)
        if (
            n_features is not None
            and to_data is not None
            and hasattr(model.latent, "table")
        ):
            import jax

            data = to_data(np.zeros((1, int(n_features)), dtype))
            table = jax.eval_shape(
                lambda p, x: model.latent.table(model, p, x), params, data
            )
            if table.shape != (1, model.num_values):
                raise ValueError(f"log-density table has shape {table.shape}")
    except ValueError as err:
        name = type(est).__name__
        raise ValueError(f"inconsistent {name} parameters: {err}") from None
    except TypeError as err:  # shapes that do not broadcast inside the model
        raise ValueError(
            f"inconsistent {type(est).__name__} parameter shapes: {err}"
        ) from None


class SaveLoadMixin:
    """``save(path)`` / ``Class.load(path)`` for estimators (see :func:`save`)."""

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Save this fitted estimator to ``path`` (an ``.npz`` file; ``jaxem.save``)."""
        return save(path, self)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Load an estimator saved by ``save``; it must be of this class."""
        obj = load(path)
        if not isinstance(obj, cls):
            raise ValueError(
                f"{path}: holds a {type(obj).__name__}, not a {cls.__name__}"
            )
        return obj
