"""``Categorical``: a finite discrete latent per observation, enumerated."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation
from ._base import EStep


@dataclasses.dataclass(frozen=True)
class Categorical:
    """A finite discrete latent variable z in {0, ..., K-1} per observation.

    The E-step enumerates z: ``log_joint`` is vmapped over z and observations
    into an (N, K) table, normalised with ``logsumexp``.

    Args:
        num_values: K, the number of latent values.

    Examples:
        >>> import jaxem
        >>> jaxem.Categorical(3).num_values
        3
    """

    num_values: int

    def __post_init__(self):
        if not isinstance(self.num_values, int) or self.num_values < 1:
            raise ValueError(
                f"num_values: expected a positive int, got {self.num_values!r}"
            )

    num_batch_axes = 1

    def check_log_joint(self, log_joint) -> None:
        if not callable(log_joint):
            raise ValueError(
                "log_joint: expected a function log_joint(params, x, z) -> scalar"
            )

    def table(self, model, params: Any, data: Any) -> jax.Array:
        """(N, K) table of ``log_joint(params, x_n, k)``."""
        if model.log_joint_table is not None:
            return model.log_joint_table(params, data)
        zs = jnp.arange(self.num_values)

        def per_observation(x):
            return jax.vmap(lambda z: model.log_joint(params, x, z))(zs)

        return jax.vmap(per_observation)(data)

    def e_step(
        self, model, params, data, weights=None, lengths=None, evidence=None
    ) -> EStep:
        """Posterior responsibilities (N, K) and the total log-likelihood.

        ``evidence``: optional (N, K) log-evidence added to the table before
        normalising (``jaxem._evidence``: -inf clamps a value out, 0 frees it).
        """
        table = self.table(model, params, data)
        if evidence is not None:
            table = table + jnp.asarray(evidence).astype(table.dtype)
        per_obs = jax.nn.logsumexp(table, axis=-1)
        responsibilities = jnp.exp(table - per_obs[:, None])
        if weights is None:
            total = jnp.sum(per_obs)
        else:
            # 0 * -inf would be NaN: zero-weight observations contribute nothing.
            total = jnp.sum(jnp.where(weights > 0, weights * per_obs, 0.0))
        return EStep(responsibilities, total, per_obs)

    def expected_log_joint(
        self, model, params, data, posterior, weights=None, lengths=None
    ) -> jax.Array:
        """Q(params) = sum_n w_n sum_k r_nk log_joint(params, x_n, k)."""
        table = self.table(model, params, data)
        terms = jnp.where(posterior > 0, posterior * table, 0.0)
        per_obs = jnp.sum(terms, axis=-1)
        if weights is not None:
            per_obs = jnp.where(weights > 0, weights * per_obs, 0.0)
        return jnp.sum(per_obs)

    def num_observations(self, data, weights=None, lengths=None) -> jax.Array:
        """N, or the sum of the weights."""
        if weights is not None:
            return jnp.sum(weights)
        return jnp.asarray(jax.tree.leaves(data)[0].shape[0])

    def validate(self, model, data, weights=None, lengths=None, *, fitting=True):
        """Host-side checks of ``fit``'s inputs; raises ``ValueError``.

        ``fitting=False`` (inference on given parameters) allows fewer
        observations than latent values.
        """
        if lengths is not None:
            raise ValueError(
                "lengths: only meaningful for MarkovChain models, got lengths for a "
                "Categorical model"
            )
        (n,) = _validation.check_data_leaves("data", data, 1)
        _validation.check_event_shape("data", data, 1, model.event_shape)
        _validation.check_weights("weights", weights, n)
        # Weights count repeated rows: grouped data (4 phenotypes, 6 genotypes)
        # are enough when the weight total is.
        total = n if weights is None else float(np.sum(weights))
        if fitting and total < self.num_values:
            counted = "" if weights is None else f" (weight total {total:g})"
            raise ValueError(
                f"data: {n} observation(s){counted} is fewer than the "
                f"{self.num_values} latent values (components)"
            )
