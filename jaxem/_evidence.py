"""Latent evidence: partial labels, clamped and soft-labelled latents.

``latent_evidence`` is a log-table ``e`` added to the latent's log-joint
before normalising: (N, K) per observation for ``Categorical``, (B, T, K) per
time step for ``MarkovChain`` (added to the emission log-potential, before
forward-backward). The E-step then computes

    p(z | x, evidence) ∝ p(x, z) exp(e_z),

so ``e_z = -inf`` clamps ``z`` out, ``e = 0`` leaves the latent free and finite
values are soft labels (``e_z = log p(evidence | z)``). The reported
log-likelihood is ``sum_n log sum_z p(x_n, z) exp(e_nz)``, which is
``log p(x, evidence)`` when ``exp(e)`` is a likelihood of the evidence; for
hard labels it is the log-probability of the data with their labels
(semi-supervised EM maximises it, and its history is non-decreasing). The
M-step does not change: the evidence does not depend on the parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _buckets, _validation
from ._latent import Categorical, MarkovChain

NAME = "latent_evidence"


def check(model, evidence: Any, data: Any) -> Any:
    """``evidence`` as an array of the model's table shape; ``ValueError`` else.

    Shapes are checked always; values (no NaN, no +inf, no row that clamps
    every value out) only when ``evidence`` is concrete. A (T, K) evidence of
    one unbatched chain sequence reads as (1, T, K), like the data.
    """
    if evidence is None:
        return None
    latent = model.latent
    if not isinstance(latent, (Categorical, MarkovChain)):
        raise ValueError(
            f"{NAME}: is for discrete latents (Categorical, MarkovChain); this "
            f"model's latent is {type(latent).__name__}"
        )
    if not hasattr(evidence, "shape"):
        evidence = np.asarray(evidence)
    k = latent.num_values
    lead = jax.tree.leaves(data)[0].shape[: latent.num_batch_axes]
    if isinstance(latent, MarkovChain) and evidence.ndim == 2 and len(lead) == 2:
        evidence = evidence[None] if lead[0] == 1 else evidence
    expected = tuple(lead) + (k,)
    if tuple(evidence.shape) != expected:
        raise ValueError(
            f"{NAME}: expected shape {expected} (the data's leading axes, then "
            f"the {k} latent values), got {tuple(evidence.shape)}"
        )
    if np.dtype(evidence.dtype).kind not in "biuf":
        raise ValueError(f"{NAME}: expected numbers, got dtype {evidence.dtype}")
    if _validation.is_concrete(evidence):
        _check_values(np.asarray(evidence))
    return evidence


def _check_values(arr: np.ndarray) -> None:
    if np.isnan(arr).any():
        raise ValueError(f"{NAME}: contains NaN (use 0 for a free latent value)")
    if np.isposinf(arr).any():
        raise ValueError(f"{NAME}: contains +inf (log-evidence must be < +inf)")
    clamped = np.all(np.isneginf(arr), axis=-1)
    if clamped.any():
        index = tuple(int(i) for i in np.argwhere(clamped)[0])
        raise ValueError(
            f"{NAME}: every latent value is clamped out (-inf) at index {index}"
        )


def pad(evidence: Any, padded_data: Any, num_batch_axes: int) -> Any:
    """Pad ``evidence`` with zeros (free latents) to the padded data's shape."""
    if evidence is None:
        return None
    target = jax.tree.leaves(padded_data)[0].shape[:num_batch_axes]
    if tuple(evidence.shape[:-1]) == tuple(target):
        return evidence
    widths = [(0, m - n) for m, n in zip(target, evidence.shape[:-1], strict=True)]
    if _buckets.can_pad(evidence):
        return np.pad(np.asarray(evidence), widths + [(0, 0)])
    return jnp.pad(evidence, widths + [(0, 0)])  # traced: concrete data padded
