"""``fit_chunked(..., across_processes=True)``: one streamed EM over every
process of ``jax.distributed``.

Each process streams its own chunks; after every pass the totals (statistics,
log-likelihood, number of observations) of every process are gathered on the
host (``multihost_utils.process_allgather``, one collective per pass) and
summed in the same order everywhere, so every process applies the same update
and reaches the same iterates, history and status. A failure in one process
(a bad chunk, different starts) is sent with the totals, so every process
raises instead of waiting for the others.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def _gather(vector: np.ndarray, error: Exception | None) -> np.ndarray:
    """(P, L): every process's (L,) ``vector``.

    Each process also sends whether it failed (``error``); then the failing
    process raises its error and every other one a ``ValueError``, so that a
    failure in one process ends the fit everywhere instead of leaving the
    others waiting for it.
    """
    flag = np.asarray([error is not None], vector.dtype)
    rows = multihost_utils.process_allgather(np.concatenate([flag, vector]))
    if error is not None:
        raise error
    failed = np.flatnonzero(rows[:, 0]).tolist()
    if failed:
        raise ValueError(
            f"chunks: the fit failed in process(es) {failed} (see their error); "
            "it stops in every process"
        )
    return rows[:, 1:]


def _flat(tree) -> np.ndarray:
    """The leaves of ``tree`` on the host, raveled and concatenated.

    On the host, as the rest of the loop's bookkeeping: ``ravel_pytree`` and
    its inverse would compile small programs.
    """
    leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]
    dtype = np.result_type(*leaves)
    return np.concatenate([x.ravel().astype(dtype) for x in leaves])


def _unflat(vector: np.ndarray, like):
    """``like``'s tree, its leaves read back from ``vector``, on the device."""
    leaves, treedef = jax.tree.flatten(like)
    out, start = [], 0
    for leaf in leaves:
        stop = start + leaf.size
        out.append(vector[start:stop].reshape(leaf.shape).astype(leaf.dtype))
        start = stop
    return jax.device_put(jax.tree.unflatten(treedef, out))


def _agree_on_start(params, template, error) -> None:
    """Raise in every process if the start failed in one, or if the processes'
    ``params0`` or totals (sizes, dtype) differ."""
    flat_params = _flat(params)
    header = np.zeros(3, np.int32)
    if template is not None:
        flat = _flat(template)
        header[:] = flat_params.size, flat.size, flat.dtype.itemsize
    if np.any(_gather(header, error) != header):
        raise ValueError(
            "params0, chunks: the processes' parameters, chunks' trailing shapes "
            "or dtypes differ; every process must fit the same model from the "
            "same params0 on data of the same kind"
        )
    starts = _gather(flat_params, None)
    if not all(np.array_equal(row, starts[0], equal_nan=True) for row in starts):
        raise ValueError(
            "params0: differs between processes; give every process the same start"
        )


def across(params, start, run_pass):
    """``(first, zeros, run_pass)`` for a fit over every process of
    jax.distributed.

    ``start()`` returns the first chunk and zero totals (it runs the start's
    checks); its failure in any process, or different ``params`` or totals'
    shapes, raise in every process. The returned ``run_pass(params, checks)``
    is the given one with its totals summed over the processes.
    """
    first, template, error = None, None, None
    try:
        first, template = start()
    except Exception as err:  # raised by _gather, once every process knows
        error = err
    _agree_on_start(params, template, error)

    def summed(p, check):
        totals, err = template, None
        try:
            totals = run_pass(p, check)
        except Exception as e:  # raised by _gather, once every process knows
            err = e
        rows = _gather(_flat(totals), err)
        # The same sum, in the same order, in every process.
        return _unflat(rows.sum(axis=0), template)

    return first, template, summed
