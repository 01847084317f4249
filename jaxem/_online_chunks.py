"""Online (stepwise) EM over a chunk source: :func:`fit_online`.

The streaming form of :func:`jaxem.fit_minibatch`: one ``online_update`` per
chunk of any source :func:`jaxem.fit_chunked` takes, with the next chunk read
while the current one is computed.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _buckets, _compile_cache, _fit
from . import constraints as _constraints
from ._chunk_sources import Batch, iterate_chunks
from ._chunked import _check_chunk, _prefetched
from ._model import LatentModel


class OnlineResult(NamedTuple):
    """The outcome of :func:`fit_online`.

    Attributes:
        state: the final ``OnlineState`` (``state.params`` are the fitted
            parameters).
        batch_log_likelihoods: (C,) log-likelihood of each chunk at the
            parameters before its update, in the order seen (all epochs).
    """

    state: Any
    batch_log_likelihoods: np.ndarray


def fit_online(
    model: LatentModel,
    params0: Any,
    chunks: Any,
    *,
    chunk_rows: int | None = None,
    num_epochs: int = 1,
    step_exponent: float = 0.6,
    step_offset: float = 1.0,
) -> OnlineResult:
    """Online (stepwise) EM over a chunk source: one update per chunk.

    The streaming form of :func:`jaxem.fit_minibatch` for data that do not fit
    in memory: each chunk from ``chunks`` (any source :func:`fit_chunked`
    takes) is padded to a size bucket with zero-weight rows, so one compiled
    :func:`jaxem.online_update` serves every chunk size, and the next chunk is
    read while the current one is computed. One pass over the data is often
    enough to come close to the full-data optimum; :func:`fit_chunked` then
    finishes it exactly if needed.

    Args:
        model: a ``Categorical`` model with a full ``ClosedForm`` M-step.
        params0: initial parameters.
        chunks: the chunk source, as for :func:`fit_chunked`.
        chunk_rows: rows per chunk when ``chunks`` is one array or path.
        num_epochs: passes over the source.
        step_exponent, step_offset: step sizes, as for ``online_update``.

    Returns:
        An :class:`OnlineResult`.

    Examples:
        >>> import numpy as np, jaxem
        >>> model = jaxem.models.binomial_mixture(2, 10)
        >>> params0 = {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.7])}
        >>> rng = np.random.default_rng(0)
        >>> heads = rng.binomial(10, np.where(rng.random(2000) < 0.5, 0.2, 0.9))
        >>> out = jaxem.fit_online(model, params0, heads.astype(float),
        ...                        chunk_rows=250)
        >>> [round(float(p), 1) for p in np.sort(out.state.params["p"])]
        [0.2, 0.9]
    """
    from . import _online

    if not isinstance(model, LatentModel):
        raise ValueError(f"model: expected a jaxem.LatentModel, got {model!r}")
    if model.latent.num_batch_axes != 1:
        raise ValueError(
            "model: fit_online streams observations (a Categorical or Gaussian "
            "latent); fit chains with fit_chunked"
        )
    if (
        isinstance(num_epochs, bool)
        or not isinstance(num_epochs, numbers.Integral)
        or num_epochs < 1
    ):
        raise ValueError(f"num_epochs: expected a positive int, got {num_epochs!r}")
    _constraints.check_params(model.constraints, params0, "params0")
    _compile_cache.enable()
    params0 = jax.tree.map(jnp.asarray, params0)
    first = next(iterate_chunks(chunks, chunk_rows), None)
    if first is None:
        raise ValueError("chunks: the source yielded no chunk")
    dtype = _fit._float_dtype(params0, first.data)

    def prepare(batch: Batch):
        _check_chunk(batch, first)
        data, weights, _ = _buckets.pad_observations(batch.data, batch.weights, dtype)
        return data, weights.astype(dtype)

    data, weights = prepare(first)
    state = _online.online_init(model, params0, data)
    lls = []
    for _ in range(num_epochs):
        for data, weights in _prefetched(iterate_chunks(chunks, chunk_rows), prepare):
            state, ll = _online.online_update(
                model, state, data, weights, step_exponent, step_offset
            )
            lls.append(ll)
            if len(lls) > 1:  # back-pressure, as in fit_chunked's passes
                jax.block_until_ready(lls[-2])
    return OnlineResult(state, np.asarray(jnp.stack(lls)))
