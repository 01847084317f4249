"""Declaring a latent-variable model: ``LatentModel`` and ``ClosedForm``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from . import constraints as _constraints


@dataclasses.dataclass(frozen=True)
class ClosedForm:
    """A registered closed-form M-step.

    Args:
        stats: ``stats(data, posterior, weights) -> pytree`` of expected
            sufficient statistics that ADD across observations (and sequences),
            so they can be summed over chunks, minibatches and devices.
            ``weights`` is None when ``fit`` was given none. A ``stats`` that
            declares a ``params`` keyword also receives the current parameters
            (e.g. to centre sums on a parameter-dependent reference point).
        update: ``update(stats, params) -> params``. May return a dict with only
            some of the parameter keys; the others are then fitted by the
            gradient M-step with the returned ones held fixed.

    With a ``LatentModel(..., log_prior=...)`` (MAP-EM) the ``update`` must
    maximise ``Q(params) + log_prior(params)`` (not Q alone), or EM loses its
    monotonicity in the MAP objective. ``update`` takes no hyperparameters of
    its own: close over them in the function that builds the model (a model
    factory ``make(alpha) -> LatentModel`` whose ``update`` and ``log_prior``
    both read ``alpha``), as the prebuilt models do (see ``docs/priors.md``).
    The statistics stay the data's sums, so chunked fits add the prior once
    per iteration, in ``update``.

    Examples:
        >>> import jaxem
        >>> def stats(data, resp, weights):
        ...     return {"n": resp.sum(0), "sx": resp.T @ data}
        >>> def update(s, params):
        ...     return {"rates": s["sx"] / s["n"]}   # weights left to gradients
        >>> closed = jaxem.ClosedForm(stats, update)
    """

    stats: Callable[..., Any]
    update: Callable[..., Any]


def _is_constraint(x):
    return isinstance(x, _constraints.Constraint)


@dataclasses.dataclass(frozen=True, eq=True, init=False)
class LatentModel:
    """A latent-variable model declared by its joint log-density.

    Immutable and hashable, so it can be a static argument of ``jax.jit``.

    Args:
        log_joint: for ``Categorical``: ``log_joint(params, x, z) -> scalar`` for
            ONE observation ``x`` and ONE latent value ``z`` (an int); for
            ``MarkovChain``: a ``ChainFactors``.
        latent: the latent structure (``Categorical(K)`` or ``MarkovChain(K)``).
        constraints: a pytree of ``jaxem.constraints`` matching (a prefix of) the
            params pytree; unlisted leaves are real.
        m_step: an optional ``ClosedForm``; without it the M-step is gradient
            ascent on the expected log-joint.
        log_joint_table: optional vectorised form of ``log_joint`` for speed.
            ``Categorical``: ``(params, data) -> (N, K)`` table of
            ``log_joint(params, x_n, k)``; ``MarkovChain``:
            ``(params, data) -> (..., K)`` emission log-densities over the
            leading axes of ``data``. It must agree with ``log_joint``.
        init: optional initialiser ``init(key, data, **options) -> params``.
        sample: optional sampler ``sample(key, params, n) -> (x, z)``.
        event_shape: optional shape of ONE observation, checked by ``fit``.
        name: optional display name.
        log_prior: optional ``log_prior(params) -> scalar``, the log-density of
            a prior on the parameters (up to a constant). EM then maximises
            log-likelihood + log-prior (MAP-EM): the gradient M-step adds it
            to Q, a ``ClosedForm.update`` must maximise Q + log-prior, and
            ``FitResult.history`` reports that objective (see ``FitResult``).
            Checked with ``jax.eval_shape`` before compiling: it must return a
            floating scalar.

    Examples:
        >>> import jax.numpy as jnp, jax.scipy.stats as st, jaxem
        >>> def log_joint(params, x, z):
        ...     return (jnp.log(params["weights"][z])
        ...             + st.poisson.logpmf(x, params["rates"][z]))
        >>> model = jaxem.LatentModel(
        ...     log_joint, jaxem.Categorical(2),
        ...     constraints={"weights": jaxem.constraints.simplex,
        ...                  "rates": jaxem.constraints.positive})
        >>> params = {"weights": jnp.array([0.5, 0.5]), "rates": jnp.array([1.0, 9.0])}
        >>> model.num_free_parameters(params)
        3
    """

    log_joint: Any
    latent: Any
    constraints_: Any = dataclasses.field(default=None, repr=False)
    m_step: ClosedForm | None = None
    log_joint_table: Callable[..., Any] | None = dataclasses.field(
        default=None, repr=False
    )
    init: Callable[..., Any] | None = dataclasses.field(default=None, repr=False)
    sample: Callable[..., Any] | None = dataclasses.field(default=None, repr=False)
    event_shape: tuple[int, ...] | None = None
    name: str | None = None
    log_prior: Callable[..., Any] | None = dataclasses.field(default=None, repr=False)

    def __init__(
        self,
        log_joint,
        latent,
        *,
        constraints=None,
        m_step=None,
        log_joint_table=None,
        init=None,
        sample=None,
        event_shape=None,
        name=None,
        log_prior=None,
    ):
        if not hasattr(latent, "e_step"):
            raise ValueError(
                f"latent: expected a latent structure such as jaxem.Categorical(K), "
                f"got {latent!r}"
            )
        if m_step is not None and not isinstance(m_step, ClosedForm):
            raise ValueError(
                f"m_step: expected a jaxem.ClosedForm or None, got {m_step!r}"
            )
        if log_prior is not None and not callable(log_prior):
            raise ValueError(
                f"log_prior: expected a function params -> scalar or None, got "
                f"{log_prior!r:.60}"
            )
        latent.check_log_joint(log_joint)
        leaves, treedef = jax.tree_util.tree_flatten(
            constraints, is_leaf=_is_constraint
        )
        if not all(_is_constraint(c) for c in leaves):
            raise ValueError(
                "constraints: every leaf must be a jaxem.constraints object, e.g. "
                "jaxem.constraints.simplex"
            )
        # Store the constraint tree flattened so the model stays hashable.
        object.__setattr__(self, "log_joint", log_joint)
        object.__setattr__(self, "latent", latent)
        object.__setattr__(self, "constraints_", (treedef, tuple(leaves)))
        object.__setattr__(self, "m_step", m_step)
        object.__setattr__(self, "log_joint_table", log_joint_table)
        object.__setattr__(self, "init", init)
        object.__setattr__(self, "sample", sample)
        shape = None if event_shape is None else tuple(int(s) for s in event_shape)
        object.__setattr__(self, "event_shape", shape)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "log_prior", log_prior)

    @property
    def constraints(self) -> Any:
        """The constraint pytree as given (None if none was given)."""
        treedef, leaves = self.constraints_
        return jax.tree_util.tree_unflatten(treedef, leaves)

    @property
    def num_values(self) -> int:
        """Number of values K of the latent variable (states of a chain)."""
        return self.latent.num_values

    def num_free_parameters(self, params: Any) -> int:
        """Number of free parameters of ``params`` under the constraints."""
        return _constraints.num_free_parameters(self.constraints, params)

    def __repr__(self):
        label = self.name or getattr(self.log_joint, "__name__", "log_joint")
        kind = "closed form" if self.m_step is not None else "gradient"
        prior = ", log_prior" if self.log_prior is not None else ""
        return f"LatentModel({label}, {self.latent!r}, m_step={kind}{prior})"


def with_log_prior(model: LatentModel, log_prior) -> LatentModel:
    """A copy of ``model`` with ``log_prior`` replaced (None: plain EM's
    objective; the closed form, if any, is unchanged). Equal copies hash
    alike, so compiled programs are shared between them."""
    copy = object.__new__(LatentModel)
    for field in dataclasses.fields(LatentModel):
        object.__setattr__(copy, field.name, getattr(model, field.name))
    object.__setattr__(copy, "log_prior", log_prior)
    return copy
