"""Checks of a declared model's outputs, by abstract evaluation before compiling.

A ``log_joint`` that returns shape ``(1,)`` instead of a scalar (what
``st.poisson.logpmf(x, rate)`` gives for ``(N, 1)`` data) would broadcast
silently into a wrong fit; a ``ClosedForm.update`` with a misspelt key or a
wrong shape would fail deep inside ``lax.while_loop``. :func:`check_model`
evaluates the model's functions with ``jax.eval_shape`` (shapes and dtypes
only: nothing runs, nothing compiles) and raises a one-line ``ValueError``
naming the function, what it returned and what was expected.

The rules, for ONE observation ``x`` (the data without its leading batch axes)
and ONE latent value ``z``:

- ``log_joint(params, x, z)`` and each ``ChainFactors`` factor return a scalar;
- ``log_joint_table(params, data)`` returns the batch axes of ``data`` plus K;
- ``ClosedForm.stats`` returns a pytree of arrays;
- ``ClosedForm.update`` returns ``params``' structure (for a dict, a subset of
  its keys), each leaf with the shape of the parameter it replaces and a dtype
  that does not promote it.

Abstract evaluation works on tracers too, so the checks also run under a
user's ``jit`` or ``vmap``; results are cached per model and shape signature.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _mstep
from ._latent import Categorical, ChainFactors, MarkovChain


def check_model(
    model,
    params: Any,
    data: Any,
    weights: Any = None,
    lengths: Any = None,
    frozen: tuple[str, ...] = (),
) -> None:
    """Raise ``ValueError`` if ``model``'s functions return the wrong shapes.

    Args:
        model: a ``LatentModel``.
        params: parameters (arrays or tracers), as given to ``fit``.
        data: the data (arrays or tracers), with the latent's batch axes.
        weights, lengths: as given to ``fit`` (None or arrays).
        frozen: the keys held fixed (passed to an ``update`` that takes them).

    Raises:
        ValueError: naming the function, the shape it returned and the shape
            expected.
    """
    _check_cached(
        model,
        _signature(params),
        _signature(data, getattr(model.latent, "num_batch_axes", 1)),
        _signature(weights, 1),
        _signature(lengths, 1),
        tuple(frozen),
    )


def _signature(tree, batch_axes: int = 0):
    """Treedef and abstract leaves, the leading ``batch_axes`` made small.

    The rules hold for any number of observations (sequences, steps), so the
    checks run on one observation (one sequence of at most 2 steps) and their
    result is cached per model and shape class, not per data size.
    """
    leaves, treedef = jax.tree.flatten(tree)
    avals = tuple(_abstract(leaf, batch_axes) for leaf in leaves)
    return treedef, avals


def _abstract(leaf, batch_axes):
    aval = jax.typeof(leaf)
    small = tuple(min(n, 1 if i == 0 else 2) for i, n in enumerate(aval.shape))
    shape = small[:batch_axes] + tuple(aval.shape[batch_axes:])
    return jax.ShapeDtypeStruct(shape, aval.dtype, weak_type=aval.weak_type)


def _rebuild(signature):
    treedef, avals = signature
    return jax.tree.unflatten(treedef, avals)


@functools.lru_cache(maxsize=256)
def _check_cached(model, params_sig, data_sig, weights_sig, lengths_sig, frozen):
    params, data = _rebuild(params_sig), _rebuild(data_sig)
    weights, lengths = _rebuild(weights_sig), _rebuild(lengths_sig)
    _check_log_joint(model, params, data)
    _check_table(model, params, data)
    _check_log_prior(model, params)
    if model.m_step is not None:
        _check_closed_form(model, params, data, weights, lengths, frozen)


def _check_log_prior(model, params) -> None:
    """``log_prior(params)`` must be one floating scalar."""
    if getattr(model, "log_prior", None) is None:
        return
    out = _evaluate("log_prior", model.log_prior, params)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"log_prior: returned {shape}; expected a scalar log-density, shape ()"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(
            f"log_prior: returned dtype {out.dtype}; expected a floating scalar"
        )


def _one_latent(latent, dtype):
    """An abstract latent value z for ONE observation (None: unknown structure)."""
    example = getattr(latent, "example_latent", None)
    if callable(example):
        return example(dtype)
    if isinstance(latent, Categorical | MarkovChain):
        return jax.ShapeDtypeStruct((), jax.dtypes.canonicalize_dtype(np.int64))
    dim = getattr(latent, "dim", None)
    if isinstance(dim, int) and not isinstance(dim, bool):
        return jax.ShapeDtypeStruct((dim,), dtype)
    return None


def _one_observation(latent, data):
    batch = getattr(latent, "num_batch_axes", 1)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[batch:], s.dtype), data)


def _describe(tree) -> str:
    shapes = [tuple(s.shape) for s in jax.tree.leaves(tree)]
    if len(shapes) == 1 and not isinstance(tree, dict | list | tuple):
        return f"shape {shapes[0]}"
    return f"shapes {jax.tree.map(lambda s: tuple(s.shape), tree)}"


def _evaluate(name: str, fn, *args, **kwargs):
    """``jax.eval_shape(fn, *args)``, an error in ``fn`` reported as one line."""
    try:
        return jax.eval_shape(functools.partial(fn, **kwargs), *args)
    except Exception as err:  # the user's function failed: say which one
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(
            f"{name}: failed when evaluated on the declared shapes "
            f"({type(err).__name__}: {first[:300]})"
        ) from err


def _expect_scalar(name: str, fn, params, x, z, what: str) -> None:
    out = _evaluate(name, fn, *((params, z) if x is None else (params, x, z)))
    leaves = jax.tree.leaves(out)
    if len(leaves) != 1 or not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(
            f"{name}: returned a {type(out).__name__} for {what}; expected one "
            f"scalar log-density"
        )
    if out.shape != ():
        raise ValueError(
            f"{name}: returned shape {tuple(out.shape)} for {what}; expected a "
            f"scalar, shape () (sum the log-density over the entries of x, or "
            f"give data without the extra axes)"
        )


def _check_log_joint(model, params, data) -> None:
    latent = model.latent
    x = _one_observation(latent, data)
    from ._validation import float_dtype

    z = _one_latent(latent, float_dtype(data))
    if z is None:
        return
    one = f"one observation x of {_describe(x)} and one latent value z"
    if isinstance(model.log_joint, ChainFactors):
        f = model.log_joint
        _expect_scalar("ChainFactors.initial", f.initial, params, None, z, "one z")
        _expect_scalar(
            "ChainFactors.transition",
            lambda p, z: f.transition(p, z, z),
            params,
            None,
            z,
            "one pair of states",
        )
        _expect_scalar("ChainFactors.emission", f.emission, params, x, z, one)
    else:
        _expect_scalar("log_joint", model.log_joint, params, x, z, one)


def _check_table(model, params, data) -> None:
    if model.log_joint_table is None:
        return
    latent = model.latent
    batch = getattr(latent, "num_batch_axes", 1)
    lead = tuple(jax.tree.leaves(data)[0].shape[:batch])
    expected = lead + (latent.num_values,)
    out = _evaluate("log_joint_table", model.log_joint_table, params, data)
    if not isinstance(out, jax.ShapeDtypeStruct) or tuple(out.shape) != expected:
        raise ValueError(
            f"log_joint_table: returned {_describe(out)} for data with batch axes "
            f"{lead}; expected shape {expected} (the batch axes, then K)"
        )


def _check_closed_form(model, params, data, weights, lengths, frozen) -> None:
    closed = model.m_step
    posterior = _evaluate(
        "log_joint",
        lambda p, d, w, n: model.latent.e_step(model, p, d, w, n).posterior,
        params,
        data,
        weights,
        lengths,
    )
    stats = _evaluate(
        "ClosedForm.stats",
        lambda d, q, w, p: _mstep.call_stats(closed.stats, d, q, w, p),
        data,
        posterior,
        weights,
        params,
    )
    update = _evaluate(
        "ClosedForm.update",
        lambda s, p: _mstep._closed_form_update(closed.update, s, p, frozen),
        stats,
        params,
    )
    check_update(update, params)


def check_update(update: Any, params: Any, name: str = "ClosedForm.update") -> None:
    """``update`` (abstract) must match ``params``: keys, structure, shapes, dtypes."""
    if isinstance(params, dict):
        if not isinstance(update, dict):
            raise ValueError(
                f"{name}: returned a {type(update).__name__}; expected a dict with "
                f"(some of) the parameter keys {sorted(params)}"
            )
        unknown = sorted(set(update) - set(params), key=str)
        if unknown:
            raise ValueError(
                f"{name}: returned key(s) {unknown} that are not parameters "
                f"(parameters: {sorted(params, key=str)})"
            )
        for key, value in update.items():
            _check_leaves(name, value, params[key], f"[{key!r}]")
    else:
        _check_leaves(name, update, params, "")


def _check_leaves(name, update, params, where) -> None:
    got, want = jax.tree.structure(update), jax.tree.structure(params)
    if got != want:
        raise ValueError(
            f"{name}: returned{where and ' ' + where} with structure {got}; "
            f"expected that of params{where}, {want}"
        )
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    for (path, p), u in zip(paths, jax.tree.leaves(update), strict=True):
        at = where + jax.tree_util.keystr(path)
        if tuple(u.shape) != tuple(p.shape):
            raise ValueError(
                f"{name}: returned shape {tuple(u.shape)} for params{at}; expected "
                f"{tuple(p.shape)}, the shape of params{at}"
            )
        if not _keeps_dtype(u, p.dtype):
            raise ValueError(
                f"{name}: returned dtype {u.dtype} for params{at}; expected "
                f"{p.dtype}, the dtype of params{at}"
            )


def _keeps_dtype(value, dtype) -> bool:
    """True if ``value`` can replace a ``dtype`` leaf without promoting it."""
    if value.dtype == dtype:
        return True
    if getattr(value, "weak_type", False):
        return jnp.issubdtype(dtype, jnp.inexact) or not jnp.issubdtype(
            value.dtype, jnp.inexact
        )
    return jnp.promote_types(dtype, value.dtype) == dtype


def check_posterior(model, params, data, posterior, lengths=None) -> None:
    """``posterior`` must have the structure and shapes of the model's E-step."""
    expected = _evaluate(
        "log_joint",
        lambda p, d, n: model.latent.e_step(model, p, d, None, n).posterior,
        params,
        data,
        lengths,
    )
    got = jax.tree.map(lambda x: tuple(np.shape(x)), posterior)
    want = jax.tree.map(lambda x: tuple(x.shape), expected)
    if jax.tree.structure(posterior) != jax.tree.structure(expected) or got != want:
        raise ValueError(
            f"posterior: got {got}; expected {want}, the E-step's posterior for "
            f"these data (jaxem.posterior(model, params, data))"
        )
