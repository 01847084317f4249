"""Standard errors of a fitted HMM estimator (``BaseHMM.standard_errors``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import _base


class StandardErrorsMixin:
    """``standard_errors(X, lengths)`` for the hmmlearn-style estimators."""

    def standard_errors(self, X, lengths=None) -> dict:
        """Asymptotic standard errors of the fitted parameters, given ``X``.

        The observed information (minus the Hessian of the forward
        algorithm's log-likelihood, by autodiff) inverted in unconstrained
        coordinates and mapped back by the delta method
        (:func:`jaxem.standard_errors`), for every parameter as if all were
        fitted. Meaningful for the data and lengths given to ``fit`` after a
        converged fit; NaN marks entries the data do not identify.

        Args:
            X: (n_samples, n_features) concatenated sequences, as in ``fit``.
            lengths: (n_sequences,) their lengths (None: one sequence).

        Returns:
            A dict keyed by fitted attribute names (``startprob_``,
            ``transmat_``, then ``means_``, ``covars_``, ``emissionprob_`` or
            ``lambdas_``), each value shaped like the attribute.
        """
        from .._information import standard_errors

        X, lengths, data, dtype = self._inference(X, lengths)
        with _base.precision_for(dtype):
            params = self._attributes_to_params(dtype)
            se = standard_errors(
                self._model(X), params, jnp.asarray(data), lengths=lengths
            )
        se = {name: np.asarray(value) for name, value in se.items()}
        return {f"{name}_": value for name, value in self._se_to_attributes(se).items()}

    def _se_to_attributes(self, se: dict) -> dict:
        """Standard errors of the params as the attributes' shapes (subclasses)."""
        return se
