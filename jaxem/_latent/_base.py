"""What every latent structure provides (see ``Categorical`` for the template).

A latent structure is a small frozen dataclass with ``num_values`` and:

- ``e_step(model, params, data, weights, lengths) -> EStep``; a discrete
  structure also takes ``evidence=`` (a log-table of its shape, added to the
  log-joint before normalising: ``jaxem._evidence``)
- ``expected_log_joint(model, params, data, posterior, weights, lengths) -> Q``
- ``num_observations(data, weights, lengths)``: the count ``tol`` is relative to
- ``validate(model, data, weights, lengths)``: host-side ``ValueError`` checks
- ``check_log_joint(log_joint)``: checks the declared density's form
- ``num_batch_axes``: leading axes of ``data`` (1 for N, 2 for (B, T)).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax


class EStep(NamedTuple):
    """Result of an E-step.

    Attributes:
        posterior: the latent posterior: (N, K) responsibilities for
            ``Categorical``; a ``ChainPosterior`` for ``MarkovChain``.
        log_likelihood: scalar total (weighted) log marginal likelihood.
        per_item: per-observation (N,) or per-sequence (B,) log-likelihoods.
    """

    posterior: Any
    log_likelihood: jax.Array
    per_item: jax.Array


def check_positive_ints(structure, *names: str) -> None:
    """Raise ``ValueError`` unless each named field of ``structure`` is an int >= 1."""
    for name in names:
        value = getattr(structure, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
