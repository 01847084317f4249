"""Prebuilt models in saved files: recorded by factory and options, rebuilt, checked.

A prebuilt model (``jaxem.models``) is recorded as its factory's name and
literal arguments, parsed from the model's ``name``. Loading calls the factory
again only if its name is one of ``jaxem.models.__all__`` declared to return a
``LatentModel``, with plain JSON scalars as arguments; the loaded parameters
must then satisfy the model's constraints. A loaded estimator is checked the
same way against the model its options build.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

import numpy as np

from ._io_schema import fail

_SCALAR = (type(None), bool, int, float, str)


def model_metadata(model) -> dict | None:
    """Factory and options of a prebuilt model, parsed from its ``name``."""
    if model is None:
        return None
    name = getattr(model, "name", None) or getattr(
        getattr(model, "log_joint", None), "__name__", "model"
    )
    try:
        call = ast.parse(name, mode="eval").body
        factory = _factories().get(getattr(getattr(call, "func", None), "id", None))
        if isinstance(call, ast.Call) and factory is not None:
            args = [ast.literal_eval(a) for a in call.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
            if _plain(args, kwargs) and factory(*args, **kwargs) == model:
                factory_name = call.func.id
                return {
                    "name": name,
                    "factory": factory_name,
                    "args": args,
                    "kwargs": kwargs,
                }
    except (SyntaxError, ValueError, TypeError):
        pass
    return {"name": name, "factory": None}


def safe_model_metadata(model_fn) -> dict | None:
    """Metadata of an estimator's model, or None if its options build none."""
    if model_fn is None:
        return None
    try:
        return model_metadata(model_fn())
    except Exception:  # noqa: BLE001 (informational only; never blocks a save)
        return None


def _factories() -> dict:
    """Functions of ``jaxem.models.__all__`` declared to return a ``LatentModel``."""
    from . import models
    from ._model import LatentModel

    out = {}
    for name in models.__all__:
        fn = getattr(models, name, None)
        if callable(fn) and inspect.signature(fn).return_annotation in (
            "LatentModel",
            LatentModel,
        ):
            out[name] = fn
    return out


def _plain(args: Any, kwargs: Any) -> bool:
    return (
        isinstance(args, list)
        and isinstance(kwargs, dict)
        and all(isinstance(a, _SCALAR) for a in args)
        and all(isinstance(v, _SCALAR) for v in kwargs.values())
    )


def check_model_metadata(meta: Any) -> None:
    """The ``model`` entry: None, or a name with an optional factory call."""
    if meta is None:
        return
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        fail("model", "corrupted entry")
    if meta.get("factory") is None:
        if set(meta) - {"name", "factory"}:
            fail("model", "corrupted entry")
        return
    if set(meta) != {"name", "factory", "args", "kwargs"} or not _plain(
        meta["args"], meta["kwargs"]
    ):
        fail("model", "corrupted factory call")
    if meta["factory"] not in _factories():
        fail("model", f"factory {str(meta['factory'])[:40]!r} is unknown to this jaxem")


def rebuild_model(meta: dict | None):
    """The model a checked ``model`` entry records (None for a user's model)."""
    if not meta or meta.get("factory") is None:
        return None
    from ._model import LatentModel

    try:
        model = _factories()[meta["factory"]](*meta["args"], **meta["kwargs"])
    except Exception as err:  # noqa: BLE001 (the factory's own argument checks)
        fail("model", f"cannot rebuild {meta['name'][:80]!r} ({type(err).__name__})")
    if not isinstance(model, LatentModel):
        fail("model", f"{meta['factory']} did not build a LatentModel")
    return model


def check_params(model, params) -> None:
    """Loaded parameters must satisfy the model's constraints."""
    from . import constraints

    try:
        constraints.check_params(model.constraints, params, "params")
    except ValueError as err:
        fail(f"parameters do not fit {model.name}", str(err))
    except Exception as err:  # noqa: BLE001 (pytree structure mismatch)
        fail(f"parameters do not fit {model.name}", type(err).__name__)


PER_COMPONENT = (
    "weights_",
    "means_",
    "p_",
    "lambdas_",
    "startprob_",
    "transmat_",
    "emissionprob_",
)
"""Fitted attributes with one row per component (state): their first axis must
be ``n_components``. (Broadcasting would otherwise let a (1, d) array stand for
K components, and a wrong model load silently.)"""


def _check_component_rows(est, name) -> None:
    k = getattr(est, "n_components", None)
    if not isinstance(k, int):
        return
    for attr in PER_COMPONENT:
        value = est.__dict__.get(attr)
        if isinstance(value, np.ndarray) and (value.ndim == 0 or value.shape[0] != k):
            fail(
                f"inconsistent {name} parameters",
                f"{attr} has shape {value.shape}, not one row per component "
                f"(n_components={k})",
            )


def check_estimator(est) -> None:
    """Fitted arrays must fit the model the estimator's options build.

    An estimator may define ``_check_loaded()`` to do this itself; otherwise its
    ``_model`` and ``_attributes_to_params`` are used. The estimator's own
    methods run on validated plain data here; any failure of theirs means the
    file does not describe a consistent fitted estimator.
    """
    name = type(est).__name__
    _check_component_rows(est, name)
    hook = getattr(type(est), "_check_loaded", None)
    try:
        if hook is not None:
            est._check_loaded()
            return
        model = _estimator_model(est)
        if model is None or not hasattr(type(est), "_attributes_to_params"):
            return
        dtype = getattr(est, "_fit_dtype", np.float64)
        params = est._attributes_to_params(dtype)
        check_params(model, params)
        _check_table(est, model, params, dtype)
    except ValueError as err:
        fail(f"inconsistent {name} parameters", str(err))
    except Exception as err:  # noqa: BLE001 (see above)
        fail(f"inconsistent {name} parameter shapes", f"{type(err).__name__}: {err}")


def _estimator_model(est):
    """``est._model()``, or ``est._model(n_features_in_)`` where it needs that."""
    method = getattr(type(est), "_model", None)
    if method is None:
        return None
    required = [
        p.name
        for p in list(inspect.signature(method).parameters.values())[1:]
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not required:
        return est._model()
    if required == ["n_features"] and hasattr(est, "n_features_in_"):
        return est._model(int(est.n_features_in_))
    return None


def _check_table(est, model, params, dtype) -> None:
    """One observation's log-density table has the model's shape (traced only)."""
    n_features = getattr(est, "n_features_in_", None)
    to_data = getattr(type(est), "_to_data", None)
    if n_features is None or to_data is None or not hasattr(model.latent, "table"):
        return
    import jax

    # n_features_in_ was checked against the file's size (Size), so this is small.
    data = est._to_data(np.zeros((1, int(n_features)), dtype))
    table = jax.eval_shape(lambda p, x: model.latent.table(model, p, x), params, data)
    if table.shape != (1, model.num_values):
        fail(
            "log-density table",
            f"shape {table.shape}, expected (1, {model.num_values})",
        )
