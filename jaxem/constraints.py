"""Parameter constraints: bijections between unconstrained reals and a support.

Each constraint maps an unconstrained array ``u`` to a constrained parameter with
``forward(u)`` and back with ``inverse(x)``. The gradient M-step optimises in the
unconstrained space; ``num_free`` feeds BIC/AIC; ``check`` validates user-given
parameters on the host before any compiled work.

Shapes: ``simplex`` acts on the last axis (a (..., K) parameter has a (..., K-1)
unconstrained form); ``positive_definite`` acts on the last two axes of a
(..., d, d) parameter, whose unconstrained form is a (..., d, d) array whose
lower triangle holds a Cholesky factor with log-diagonal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Constraint",
    "real",
    "positive",
    "unit_interval",
    "simplex",
    "positive_definite",
    "full_tree",
    "to_unconstrained",
    "from_unconstrained",
    "num_free_parameters",
    "check_params",
]


@dataclasses.dataclass(frozen=True)
class Constraint:
    """A bijection from unconstrained reals onto a parameter's support.

    Attributes:
        name: short name used in messages.
        forward: unconstrained -> constrained.
        inverse: constrained -> unconstrained.
        free: maps a constrained leaf's shape to its number of free parameters.
        violation: host-side check of a constrained numpy value; returns a
            description of the problem, or None if the value is valid.
    """

    name: str
    forward: Callable[[jax.Array], jax.Array] = dataclasses.field(repr=False)
    inverse: Callable[[jax.Array], jax.Array] = dataclasses.field(repr=False)
    free: Callable[[tuple[int, ...]], int] = dataclasses.field(repr=False)
    violation: Callable[[np.ndarray], str | None] = dataclasses.field(repr=False)

    def num_free(self, shape: tuple[int, ...]) -> int:
        """Number of free parameters of a constrained leaf of this ``shape``."""
        return int(self.free(tuple(shape)))

    def check(self, value: Any) -> str | None:
        """Describe why ``value`` lies outside the support, or return None."""
        value = np.asarray(value)
        if not np.all(np.isfinite(value)):
            return "contains NaN or infinite values"
        return self.violation(value)


def _size(shape):
    return int(np.prod(shape, dtype=np.int64))


def _no_violation(_):
    return None


def _positive_violation(x):
    return None if np.all(x > 0) else "must be strictly positive"


def _unit_violation(x):
    return None if np.all((x > 0) & (x < 1)) else "must lie strictly inside (0, 1)"


def _simplex_violation(x):
    if x.ndim == 0:
        return "must have a last axis that sums to 1"
    if np.any(x < 0):
        return "must be non-negative"
    tol = 1e-6 if x.dtype == np.float64 else 1e-4
    if not np.allclose(x.sum(-1), 1.0, atol=tol * x.shape[-1], rtol=0):
        return "must sum to 1 along the last axis"
    return None


def _pd_violation(x):
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        return "must be square matrices (..., d, d)"
    if not np.allclose(x, np.swapaxes(x, -1, -2), rtol=1e-6, atol=1e-10):
        return "must be symmetric"
    if np.any(np.linalg.eigvalsh(x) <= 0):
        return "must be positive definite"
    return None


def _simplex_forward(u):
    zero = jnp.zeros(u.shape[:-1] + (1,), u.dtype)
    return jax.nn.softmax(jnp.concatenate([u, zero], axis=-1), axis=-1)


def _simplex_inverse(x):
    logx = jnp.log(x)
    return logx[..., :-1] - logx[..., -1:]


_diag_matrix = jnp.vectorize(jnp.diag, signature="(d)->(d,d)")


def _pd_forward(u):
    diag = jnp.exp(jnp.diagonal(u, axis1=-2, axis2=-1))
    chol = jnp.tril(u, -1) + _diag_matrix(diag)
    return chol @ jnp.swapaxes(chol, -1, -2)


def _pd_inverse(x):
    chol = jnp.linalg.cholesky(x)
    logdiag = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))
    return jnp.tril(chol, -1) + _diag_matrix(logdiag)


real = Constraint("real", lambda u: u, lambda x: x, _size, _no_violation)
positive = Constraint("positive", jnp.exp, jnp.log, _size, _positive_violation)
unit_interval = Constraint(
    "unit_interval", jax.nn.sigmoid, jax.scipy.special.logit, _size, _unit_violation
)
simplex = Constraint(
    "simplex",
    _simplex_forward,
    _simplex_inverse,
    lambda s: _size(s[:-1]) * (s[-1] - 1),
    _simplex_violation,
)
positive_definite = Constraint(
    "positive_definite",
    _pd_forward,
    _pd_inverse,
    lambda s: _size(s[:-2]) * s[-1] * (s[-1] + 1) // 2,
    _pd_violation,
)


def _is_constraint(x):
    return isinstance(x, Constraint)


def full_tree(constraints: Any, params: Any) -> Any:
    """Expand ``constraints`` to a tree with one constraint per leaf of ``params``.

    ``constraints`` may be None, a single constraint (applied to every leaf), or
    a tree matching a prefix of ``params``; dict keys it does not list are real.
    """
    if constraints is None:
        return jax.tree.map(lambda _: real, params)
    if _is_constraint(constraints):
        return jax.tree.map(lambda _: constraints, params)
    if isinstance(params, dict):
        if not isinstance(constraints, dict):
            raise ValueError(
                f"constraints: expected a dict matching the params dict, got "
                f"{type(constraints).__name__}"
            )
        unknown = set(constraints) - set(params)
        if unknown:
            raise ValueError(
                f"constraints: keys {sorted(unknown)} are not parameters "
                f"(parameters: {sorted(params)})"
            )
        return {k: full_tree(constraints.get(k), v) for k, v in params.items()}
    if isinstance(params, (tuple, list)) and isinstance(constraints, (tuple, list)):
        if len(params) != len(constraints):
            raise ValueError("constraints: length does not match params")
        out = [full_tree(c, p) for c, p in zip(constraints, params, strict=True)]
        return (
            type(params)(out) if not hasattr(params, "_fields") else type(params)(*out)
        )
    raise ValueError(
        f"constraints: cannot match {type(constraints).__name__} against params "
        f"of type {type(params).__name__}"
    )


def to_unconstrained(constraints: Any, params: Any) -> Any:
    """Map constrained ``params`` to unconstrained space, leaf by leaf."""
    tree = full_tree(constraints, params)
    return jax.tree.map(lambda c, p: c.inverse(p), tree, params, is_leaf=_is_constraint)


def from_unconstrained(constraints: Any, unconstrained: Any, like: Any) -> Any:
    """Inverse of :func:`to_unconstrained`; ``like`` gives the params structure."""
    tree = full_tree(constraints, like)
    return jax.tree.map(
        lambda c, u: c.forward(u), tree, unconstrained, is_leaf=_is_constraint
    )


def num_free_parameters(constraints: Any, params: Any) -> int:
    """Total number of free parameters of ``params`` (for BIC/AIC)."""
    tree = full_tree(constraints, params)
    counts = jax.tree.map(
        lambda c, p: c.num_free(np.shape(p)), tree, params, is_leaf=_is_constraint
    )
    return int(sum(jax.tree.leaves(counts)))


def check_params(constraints: Any, params: Any, name: str = "params0") -> None:
    """Raise ``ValueError`` naming the first leaf of ``params`` off its support.

    A key the constraints name but ``params`` lacks is reported as missing from
    ``params`` (naming both), not as a fault of the constraints.
    """
    _check_keys(constraints, params, name)
    tree = full_tree(constraints, params)
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    cons = jax.tree.leaves(tree, is_leaf=_is_constraint)
    for (path, value), con in zip(paths, cons, strict=True):
        problem = con.check(value)
        if problem is not None:
            where = name + jax.tree_util.keystr(path)
            raise ValueError(f"{where}: {problem} (constraint {con.name})")


def _check_keys(constraints: Any, params: Any, name: str) -> None:
    if not (isinstance(constraints, dict) and isinstance(params, dict)):
        return
    missing = [k for k in constraints if k not in params]
    if missing:
        raise ValueError(
            f"{name}: missing key(s) {missing} that the model's constraints name "
            f"({name} has {sorted(params, key=str)}); add them, or fix the "
            f"constraints' keys"
        )
    for key, sub in constraints.items():
        _check_keys(sub, params[key], f"{name}[{key!r}]")
