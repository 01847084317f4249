"""Inference of the fitted HMM estimators: scoring, posteriors, decoding,
sampling and the information criteria (a mixin of ``BaseHMM``).

Every call pads the sequences to the estimators' size buckets (:func:`pad`),
so a new number or length of sequences reuses the compiled programs.
"""

from __future__ import annotations

from numbers import Integral

import jax
import numpy as np

from .. import _buckets
from .. import _fit as _fitmod
from .._latent import _markov_chain
from . import _base
from ._hmm_sequences import valid_steps

DECODER_ALGORITHMS = frozenset(("viterbi", "map"))


def pad(data, lengths):
    """numpy (B', T', ...) data and (B',) lengths padded to a size bucket.

    The estimators' buckets: ``jaxem._buckets.pad_sequences`` with at least
    ``sequence_minimum(T)`` sequences, so 1 to 4 short sequences share every
    program (initialisation, fit, scoring, decoding). ``jaxem.fit``'s own
    padding leaves these shapes as they are.
    """
    t = jax.tree.leaves(data)[0].shape[1]
    padded, padded_lengths, _ = _buckets.pad_sequences(
        data, lengths, None, minimum_sequences=_buckets.sequence_minimum(t)
    )
    return padded, np.asarray(padded_lengths)


class HMMInferenceMixin:
    """Scoring, decoding and sampling of a fitted ``BaseHMM``."""

    def _inference(self, X, lengths):
        """Validated inputs of a fitted (or hand-set) model, and its dtype."""
        self._check()
        X, lengths, data = self._prepare(X, lengths, reset=False)
        return X, lengths, data, self._dtype(X)

    def _whole_or_in_chunks(self, method, X, lengths):
        """``method(X, lengths)`` (a float and per-sample rows), or, for an X
        that ``fit`` would stream, the same over chunks of whole sequences."""
        from ._hmm_streaming import by_chunks, streams

        if isinstance(X, np.ndarray) and streams(self, X):
            return by_chunks(self, X, lengths, method)
        return method(X, lengths)

    def _e_step(self, X, lengths):
        return self._whole_or_in_chunks(self._e_step_in_memory, X, lengths)

    def _e_step_in_memory(self, X, lengths):
        """Total log-likelihood and (n_samples, K) posteriors of X in memory."""
        X, lengths, data, dtype = self._inference(X, lengths)
        b, t = jax.tree.leaves(data)[0].shape[:2]
        padded, padded_lengths = pad(data, lengths)
        with _base.precision_for(dtype):
            estep = _fitmod.e_step(
                self._model(X),
                self._attributes_to_params(dtype),
                padded,
                lengths=padded_lengths,
            )
            marginals = np.asarray(estep.posterior.marginals)[:b, :t]
            return float(estep.log_likelihood), marginals[valid_steps(lengths)]

    def score_samples(self, X, lengths=None):
        """Total log-likelihood of X and the (n_samples, K) state posteriors.

        Args:
            X: (n_samples, n_features) concatenated sequences.
            lengths: (n_sequences,) lengths (None: one sequence).

        Returns:
            ``(log_prob, posteriors)``: a float and (n_samples, K) rows that
            sum to 1.
        """
        return self._e_step(X, lengths)

    def score(self, X, lengths=None, *, y=None) -> float:
        """Total log-likelihood of X (summed over its sequences).

        ``y`` is accepted and ignored, so that scikit-learn's scorers can call
        ``score(X, y=y)``.
        """
        return self._e_step(X, lengths)[0]

    def predict_proba(self, X, lengths=None) -> np.ndarray:
        """Posterior probability of each state, (n_samples, K)."""
        return self._e_step(X, lengths)[1]

    def decode(self, X, lengths=None, algorithm=None):
        """Most likely states: ``(log_prob, state_sequence (n_samples,))``.

        ``"viterbi"`` gives the jointly most likely path and its log joint
        density; ``"map"`` the per-step most likely states and, as hmmlearn,
        the sum over steps of their posterior probabilities.
        """
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm not in DECODER_ALGORITHMS:
            raise ValueError(
                f"algorithm: expected 'viterbi' or 'map', got {algorithm!r}"
            )
        if algorithm == "map":
            _, posteriors = self._e_step(X, lengths)
            return float(posteriors.max(axis=1).sum()), posteriors.argmax(axis=1)
        return self._whole_or_in_chunks(self._viterbi, X, lengths)

    def _viterbi(self, X, lengths):
        """``decode(X, lengths, "viterbi")`` of X in memory."""
        X, lengths, data, dtype = self._inference(X, lengths)
        b, t = jax.tree.leaves(data)[0].shape[:2]
        padded, padded_lengths = pad(data, lengths)
        with _base.precision_for(dtype):
            paths, scores = _markov_chain._viterbi_jit(
                self._model(X),
                self._attributes_to_params(dtype),
                padded,
                padded_lengths,
            )
            paths = np.asarray(paths)[:b, :t]
            return float(np.sum(np.asarray(scores)[:b])), paths[valid_steps(lengths)]

    def predict(self, X, lengths=None) -> np.ndarray:
        """Most likely state of each sample (by ``algorithm``), (n_samples,)."""
        return self.decode(X, lengths)[1]

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw one sequence: ``(X (n_samples, ...), states (n_samples,))``.

        Args:
            n_samples: number of time steps.
            random_state: seed or generator (default: the estimator's).
            currstate: optional state to start from.
        """
        self._check()
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral):
            raise ValueError(f"n_samples: expected an int >= 1, got {n_samples!r}")
        if not 1 <= n_samples <= 10**9:
            raise ValueError(f"n_samples: expected an int in [1, 1e9], got {n_samples}")
        dtype = self._dtype()
        params = self._attributes_to_params(dtype)
        if currstate is not None:
            if not 0 <= int(currstate) < self.n_components:
                raise ValueError(
                    f"currstate: expected a state in [0, {self.n_components}), got "
                    f"{currstate!r}"
                )
            params["startprob"] = np.eye(self.n_components, dtype=dtype)[int(currstate)]
        with _base.precision_for(dtype):
            key = _base.check_random_state(
                self.random_state if random_state is None else random_state
            )
            x, z = self._model().sample(key, params, int(n_samples))
            x = jax.tree.map(np.asarray, x)
            return self._from_data(x), np.asarray(z).astype(int)

    def _from_data(self, x):
        return x

    def _n_parameters(self) -> int:
        """hmmlearn's count of free scalars (all parameters, as hmmlearn)."""
        return int(sum(self._get_n_fit_scalars_per_param().values()))

    def aic(self, X, lengths=None) -> float:
        """Akaike information criterion: -2 log-likelihood + 2 n_params."""
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()

    def bic(self, X, lengths=None) -> float:
        """Bayesian information criterion: -2 log-likelihood + n_params log n."""
        n = len(np.asarray(X))
        return -2 * self.score(X, lengths) + self._n_parameters() * np.log(n)

    def get_stationary_distribution(self) -> np.ndarray:
        """Stationary distribution of ``transmat_`` (left eigenvector for 1)."""
        self._check()
        eigvals, eigvecs = np.linalg.eig(np.asarray(self.transmat_).T)
        vec = np.real_if_close(eigvecs[:, np.argmax(eigvals)])
        return vec / vec.sum()
