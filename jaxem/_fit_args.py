"""Argument checks of ``fit`` and the inference helpers, before any compiling.

Types are checked always; values (finite data, parameters inside their
constraints, weights, lengths) only when they are concrete, not under a
user's ``jit`` or ``vmap``. The model's output shapes are checked by
abstract evaluation (``jaxem._model_checks``), which also works on tracers.
"""

from __future__ import annotations

from typing import Any

from . import _model_checks, _validation
from . import constraints as _constraints
from ._latent import Categorical, MarkovChain, _markov_chain
from ._model import LatentModel


def check_fit_args(
    model: LatentModel,
    params0: Any,
    data: Any,
    weights: Any,
    lengths: Any,
    tol: Any,
    frozen: Any,
    optimizer: Any,
    m_step_iters: Any,
    callback: Any,
    gradient_norm: Any,
) -> tuple[Any, tuple[str, ...]]:
    """Check ``fit``'s arguments; returns ``(params0 as floats, frozen)``.

    Integer and bool leaves of ``params0`` become floats (see
    ``_validation.as_float_params``). The model's output shapes are checked by
    ``fit`` itself, on the padded data its loop sees.

    Raises:
        ValueError: naming the first bad argument.
    """
    _validation.check_optimizer("m_step_optimizer", optimizer)
    if m_step_iters is not None:
        _validation.check_int("m_step_iters", m_step_iters)
    _validation.check_callable("callback", callback)
    if not isinstance(gradient_norm, bool):
        raise ValueError(f"gradient_norm: expected a bool, got {gradient_norm!r:.60}")
    frozen = _validation.check_frozen(frozen, params0)
    if _validation.is_concrete(tol):
        _validation.check_tolerance("tol", tol)
    if _validation.is_concrete(params0, data, weights, lengths):
        model.latent.validate(model, data, weights, lengths)
        _validation.check_params_finite("params0", params0)
        _constraints.check_params(model.constraints, params0, "params0")
    return _validation.as_float_params(params0, data, frozen), frozen


def check_inference_args(
    model: LatentModel, params: Any, data: Any, weights: Any = None, lengths=None
) -> Any:
    """Check ``posterior``/``log_likelihood``'s arguments (any number of rows).

    Returns:
        ``data``, with one unbatched chain sequence (T, ...) read as a batch
        of one.

    Raises:
        ValueError: naming the first bad argument, or the model function whose
            output has the wrong shape.
    """
    if not isinstance(model, LatentModel):
        raise ValueError(f"model: expected a jaxem.LatentModel, got {model!r:.60}")
    if isinstance(model.latent, MarkovChain):
        data = _markov_chain._as_batch(model, data)
    if _validation.is_concrete(params, data, weights, lengths):
        _validation.check_params_finite("params", params)
        if isinstance(model.latent, Categorical):
            model.latent.validate(model, data, weights, lengths, fitting=False)
        else:
            model.latent.validate(model, data, weights, lengths)
    _model_checks.check_model(model, params, data, weights, lengths)
    return data
