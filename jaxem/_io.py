"""Saving and loading fitted models: one ``.npz`` file, arrays plus JSON metadata.

The file is a NumPy ``.npz`` archive (:mod:`jaxem._io_archive`). Its entry
``__jaxem__`` holds UTF-8 JSON metadata: format name and version, jaxem
version, what was saved (an estimator, a ``FitResult`` or a params pytree), the
model kind and options, and for every array its shape, dtype and SHA-256. The
other entries are the arrays. The JSON is a small tagged language
(:mod:`jaxem._io_codec`) that can name only the types of an explicit allow-list
(:mod:`jaxem._io_registry`), each with a schema of its fields
(:mod:`jaxem._io_schema`) checked before anything is built, so a file can never
run code. See ``docs/file-format.md``.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, NamedTuple

from . import _io_models
from ._io_archive import FORMAT, FORMAT_VERSION, check_header, digest
from ._io_archive import read as _read_archive
from ._io_archive import write as _write_archive
from ._io_codec import Decoder, Encoder, build
from ._io_registry import FIT_RESULT_NAME, REGISTRY
from ._io_schema import Context, Pytree, Registered, fail

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SaveLoadMixin",
    "Saved",
    "load",
    "read_metadata",
    "save",
]

_digest = digest  # the tests' name for the checksum
_KINDS = ("estimator", "fit_result", "params")
_TOP = {"format", "format_version", "jaxem_version", "kind", "state", "model", "arrays"}


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
        >>> params = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.75, 0.5])}
        >>> path = os.path.join(tempfile.mkdtemp(), "coins.npz")
        >>> _ = jaxem.save(path, params, model=model)
        >>> saved = jaxem.load(path)
        >>> saved.model is model, saved.params["p"].tolist()
        (True, [0.75, 0.5])
    """
    from . import __version__
    from ._fit import FitResult

    enc = Encoder()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jaxem_version": __version__,
    }
    entry = REGISTRY.entry_of(type(obj))
    if entry is not None and entry.kind == "estimator":
        _check_fitted(obj)
        meta["kind"] = "estimator"
        meta["class"] = entry.name
        meta["params"] = enc(_options(obj))
        meta["state"] = enc(_fitted_state(obj))
        meta["model"] = _io_models.safe_model_metadata(getattr(obj, "_model", None))
    else:
        meta["kind"] = "fit_result" if isinstance(obj, FitResult) else "params"
        meta["state"] = enc(obj)
        meta["model"] = _io_models.model_metadata(model)
    meta["arrays"] = {
        key: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": digest(a)}
        for key, a in enc.arrays.items()
    }
    try:  # never write a file that load would refuse
        _decode(meta, enc.arrays)
    except ValueError as err:
        raise ValueError(f"obj: would not load back ({err})") from None
    path = pathlib.Path(path)
    path.write_bytes(_write_archive(meta, enc.arrays))
    return path


def _check_fitted(est) -> None:
    is_fitted = getattr(est, "_is_fitted", None)
    if not (is_fitted() if is_fitted else any(k.endswith("_") for k in vars(est))):
        raise ValueError(f"obj: this {type(est).__name__} is not fitted yet")


def _options(est) -> dict:
    options = est.get_params(deep=False)
    if not _encodable(options.get("random_state")):
        options["random_state"] = None  # a generator object is not data
    return options


def _fitted_state(est) -> dict:
    """Every attribute that is not a constructor option and can be encoded.

    Fitted attributes (``name_``) and anything else ``fit`` set (e.g. a
    dimension inferred from the data) must be encodable; private attributes
    that are not (caches, compiled functions) are rebuilt, so they are skipped.
    """
    options = set(est.get_params(deep=False))
    state = {}
    for key, value in vars(est).items():
        if key in options or key.startswith("__"):
            continue
        try:
            Encoder()(value)
        except TypeError as err:
            if key.startswith("_"):
                continue
            raise TypeError(f"fitted attribute {key}: {err}") from None
        state[key] = value
    return state


def _encodable(value) -> bool:
    try:
        Encoder()(value)
    except TypeError:
        return False
    return True


# -------------------------------------------------------------------- load
def load(path: str | os.PathLike) -> Any:
    """Load what :func:`save` wrote; a file can never make this run code.

    Only jaxem's own allow-listed types are ever constructed (the estimators,
    ``FitResult``, ``Status``, ``OnlineState``, the prebuilt models), by name from
    a fixed registry, after every field of the file has been checked against
    its schema (type, dtype, shape, domain), every array against its recorded
    shape, dtype and SHA-256, and the parameters against their model. Nothing
    is imported, pickled or looked up by attribute from a name in the file.
    See ``docs/file-format.md``.

    Args:
        path: a file written by :func:`save` (or an estimator's ``save``).

    Returns:
        The fitted estimator for a saved estimator; otherwise a :class:`Saved`
        with ``params``, ``model`` (rebuilt for prebuilt models, else None),
        ``result`` (the ``FitResult`` if one was saved) and ``metadata``.

    Raises:
        ValueError: (one line, naming the file) the file is missing, truncated,
            corrupted or tampered with, is not a jaxem file, has an unknown
            format version, names a type outside the allow-list, or holds
            fields, arrays or parameters that do not fit their schema or model.
            No other exception escapes for any file content.

    Examples:
        >>> import os, tempfile, numpy as np, jaxem
        >>> X = np.array([[5], [9], [8], [4], [7]])
        >>> est = jaxem.BinomialMixture(2, n_trials=10, random_state=0).fit(X)
        >>> path = os.path.join(tempfile.mkdtemp(), "coins.npz")
        >>> _ = est.save(path)
        >>> again = jaxem.load(path)
        >>> type(again).__name__, bool(np.allclose(again.p_, est.p_))
        ('BinomialMixture', True)
    """
    return _load(pathlib.Path(path))


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a saved file, after the integrity checks of ``load``."""
    path = pathlib.Path(path)
    return _guarded(path, lambda: _read(path)[0])


def _load(path: pathlib.Path, expect: type | None = None) -> Any:
    def restore():
        meta, arrays = _read(path)
        if expect is not None:
            _check_holds(meta, expect)
        return _restore(meta, arrays)

    return _guarded(path, restore)


def _guarded(path: pathlib.Path, step):
    """Run ``step``; any failure becomes one line ``ValueError`` naming ``path``."""
    try:
        return step()
    except ValueError as err:
        problem = str(err)
    except Exception as err:  # noqa: BLE001 (a hostile file must end in ValueError)
        problem = f"cannot be loaded ({type(err).__name__}: {err})"
    problem = " ".join(problem.split())
    problem = problem if len(problem) <= 300 else problem[:297] + "..."
    raise ValueError(f"{path}: {problem}") from None


def _read(path: pathlib.Path) -> tuple[dict, dict]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read ({err.strerror or err})") from None
    meta, arrays = _read_archive(raw)
    _check_top(meta)
    return meta, arrays


def _check_top(meta: dict) -> None:
    """Top-level keys of the metadata, before any of them is used."""
    check_header(meta)
    kind = meta.get("kind")
    if kind not in _KINDS:
        fail("kind", f"{str(kind)[:40]!r} is not one of {_KINDS}")
    allowed = _TOP | ({"class", "params"} if kind == "estimator" else set())
    if set(meta) - allowed or not (allowed - {"model"}) <= set(meta):
        fail(
            "metadata",
            f"unexpected or missing entries {sorted(set(meta) ^ allowed)[:5]}",
        )
    if not isinstance(meta["jaxem_version"], str):
        fail("jaxem_version", "not a string")
    _io_models.check_model_metadata(meta.get("model"))


def _check_holds(meta: dict, cls: type) -> None:
    entry = REGISTRY.entry_of(cls)
    if entry is None or entry.kind != "estimator":
        fail("load", f"{cls.__name__} is not a jaxem estimator")
    held = meta["class"] if meta["kind"] == "estimator" else meta["kind"]
    if held != entry.name:
        fail("file", f"holds a {str(held)[:40]}, not a {entry.name}")


def _decode(meta: dict, arrays: dict) -> tuple:
    """Decoded and validated, not built: (estimator entry or None, state, options)."""
    ctx = Context(n_elements=sum(int(a.size) for a in arrays.values()))
    decoder = Decoder(arrays, ctx)
    state = decoder.decode(meta["state"], "state")
    entry = options = None
    if meta["kind"] == "fit_result":
        Registered(FIT_RESULT_NAME).check(state, "state", ctx)
    elif meta["kind"] == "params":
        Pytree().check(state, "state", ctx)
    else:
        entry = REGISTRY.lookup(meta["class"], "estimator")
        options = decoder.decode(meta["params"], "params")
        if not isinstance(options, dict) or not isinstance(state, dict):
            fail("estimator", "options and state must be dicts")
        entry.validate_options(options, "params", ctx)
        entry.validate(state, "state", ctx)
    decoder.check_all_used()
    return entry, state, options


def _restore(meta: dict, arrays: dict) -> Any:
    entry, state, options = _decode(meta, arrays)
    if entry is not None:
        est = entry.cls(**build(options))
        est.__dict__.update(build(state))
        _io_models.check_estimator(est)
        return est
    model = _io_models.rebuild_model(meta.get("model"))
    obj = build(state)
    result = obj if meta["kind"] == "fit_result" else None
    params = obj.params if result is not None else obj
    if model is not None:
        _io_models.check_params(model, params)
    return Saved(params=params, model=model, result=result, metadata=meta)


class SaveLoadMixin:
    """``save(path)`` / ``Class.load(path)`` for estimators (see :func:`save`)."""

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Save this fitted estimator to ``path`` (an ``.npz`` file; ``jaxem.save``)."""
        return save(path, self)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Load an estimator saved by ``save``; the file must hold this class.

        The class is checked from the metadata before anything is built; see
        :func:`jaxem.load` for everything else that is checked.
        """
        return _load(pathlib.Path(path), expect=cls)
