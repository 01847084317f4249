"""``CategoricalHMM``: hmmlearn's categorical HMM as a scikit-learn estimator."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_non_negative, validate_data

from .. import constraints
from .. import models as _models
from ._hmm_base import PRIOR, BaseHMM, _parallel_option, chain_fit_scalars
from ._hmm_sequences import check_prior

MAX_CELLS = 2**27
"""Upper bound on ``n_components * n_features``: ``emissionprob_``'s entries
(1 GiB in float64), refused beyond rather than allocated."""


class CategoricalHMM(BaseHMM):
    """Hidden Markov model with categorical emissions (``hmmlearn`` ``CategoricalHMM``).

    X is (n_samples, 1) non-negative integer symbols in {0, ..., n_features - 1}
    (also accepted: floats with whole values).
    Beyond hmmlearn, X may have c > 1 columns: each step then emits c
    symbols, independently, from its state's ``emissionprob_`` row (a bag of
    c draws per step); one column is hmmlearn's model exactly.

    Args:
        n_components: number of states K.
        startprob_prior: Dirichlet concentrations, a number or (K,).
        transmat_prior: Dirichlet concentrations, a number or (K, K).
        emissionprob_prior: Dirichlet concentrations, a number or (K, M).
        n_features: number of symbols M (None: X.max() + 1 at each fit; the
            number used is ``n_features_``).
        algorithm, random_state, n_iter, tol, verbose, implementation, n_init,
        devices, chunk_rows: as for :class:`GaussianHMM` (a streamed fit
        without ``n_features`` reads X once more for its largest symbol).
        accelerate:
            as for :class:`GaussianHMM`.
        params, init_params: letters ``s``, ``t``, ``e`` (emissionprob).

    Attributes:
        startprob_: (K,) initial state probabilities.
        transmat_: (K, K) transition probabilities.
        emissionprob_: (K, M) emission probabilities.
        n_features_: the number of symbols M of the fitted model.
        monitor_, fit_status_, unvisited_states_, n_features_in_: as for
            :class:`GaussianHMM`.

    Examples:
        >>> import numpy as np, jaxem
        >>> X = np.array([[0], [0], [1], [1], [1], [0]])
        >>> jaxem.CategoricalHMM(2, n_iter=5, random_state=0).fit(X).n_features_
        2
    """

    _name = "CategoricalHMM"
    _letters = {"s": "startprob", "t": "transmat", "e": "emissionprob"}
    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "emissionprob_prior": PRIOR,
        "n_features": [Interval(Integral, 1, MAX_CELLS, closed="both"), None],
    }

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        *,
        emissionprob_prior=1.0,
        n_features=None,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="ste",
        init_params="ste",
        implementation="log",
        n_init=1,
        devices=None,
        chunk_rows=None,
        accelerate=None,
    ):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.implementation = implementation
        self.n_init = n_init
        self.devices = devices
        self.chunk_rows = chunk_rows
        self.accelerate = accelerate

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.positive_only = True
        return tags

    def _get_n_fit_scalars_per_param(self) -> dict[str, int]:
        k, m = self.n_components, self._n_symbols()
        return {**chain_fit_scalars(k), "e": k * (m - 1)}

    def _check_options(self):
        super()._check_options()
        if self.n_features is not None:
            _check_cells(self.n_components, self.n_features)

    def _n_symbols(self) -> int:
        """M: ``n_features``, else that of the fit (or of ``emissionprob_``)."""
        if self.n_features is not None:
            return self.n_features
        if hasattr(self, "_n_features"):
            return self._n_features
        return np.shape(np.atleast_2d(self.emissionprob_))[1]

    @property
    def n_features_(self) -> int:
        """The number of symbols M of the fitted (or hand-set) model."""
        return self._n_symbols()

    def _draws(self, X=None) -> int:
        """Symbols per step: X's columns (hmmlearn: always 1)."""
        if X is not None:
            return X.shape[1]
        return getattr(self, "n_features_in_", 1)

    def _model(self, X=None):
        m, c = int(self._n_symbols()), self._draws(X)
        return _models.categorical_hmm(
            self.n_components,
            m,
            startprob_prior=self.startprob_prior,
            transmat_prior=self.transmat_prior,
            parallel=_parallel_option(self.implementation),
            n_draws=None if c == 1 else c,
            emissionprob_prior=check_prior(
                "emissionprob_prior",
                self.emissionprob_prior,
                (self.n_components, m),
                minimum=0,
            ),
        )

    def _check_and_set_n_features(self, X):
        """hmmlearn's check: X holds non-negative integer symbols; sets
        ``n_features`` (X.max() + 1) when it is None."""
        X = np.asarray(X)
        if X.dtype.kind not in "iu":
            raise ValueError("X: symbols should be integers")
        return self._symbols(X, reset=True)

    def _validate_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=None, ensure_min_samples=1)
        if X.dtype == object:  # numbers held as objects
            X = X.astype(np.float64)
        if X.dtype.kind == "f":
            if not np.all(X == np.round(X)):
                raise ValueError(
                    "X: symbols should be integers, got values with a fraction"
                )
        elif X.dtype.kind not in "iub":
            raise ValueError(f"X: symbols should be integers, got dtype {X.dtype}")
        return self._symbols(X, reset)

    def _infers_symbols(self) -> bool:
        """True when ``fit`` reads M from X (X.max() + 1): no ``n_features``,
        and no ``emissionprob_`` kept from ``init_params``."""
        return self.n_features is None and not (
            hasattr(self, "emissionprob_") and "e" not in self.init_params
        )

    def _symbols(self, X, reset):
        check_non_negative(X, f"{self._name} (X: symbols)")
        m = self.n_features
        if m is None and reset:
            if self._infers_symbols():
                m = _check_cells(self.n_components, int(X.max()) + 1, "X")
            else:
                m = np.shape(np.atleast_2d(self.emissionprob_))[1]
        if reset:
            self._n_features = m
        m = self._n_symbols() if m is None else m
        if X.max() >= m:
            raise ValueError(
                f"X: largest symbol is {X.max()} but the model only emits symbols "
                f"up to {m - 1} (n_features={m})"
            )
        return X.astype(np.int64)

    def _param_dtype(self, X):
        return np.dtype(np.float64)

    def _to_data(self, padded):
        return padded[..., 0] if padded.shape[-1] == 1 else padded

    def _from_data(self, x):
        return x.reshape(len(x), -1)

    def _emission_params(self, dtype, only=None):
        return {"emissionprob": np.asarray(self.emissionprob_, dtype)}

    def _emission_to_attributes(self, params):
        self.emissionprob_ = np.array(params["emissionprob"])

    def _check_emission_attributes(self):
        e = np.atleast_2d(np.asarray(self.emissionprob_))
        m = e.shape[1] if self.n_features is None else self.n_features
        if self.n_features is None and getattr(self, "_n_features", m) != m:
            self._n_features = m  # emissionprob_ was set by hand since the fit
        shape = (self.n_components, m)
        if e.shape != shape:
            raise ValueError(f"emissionprob_: expected shape {shape}, got {e.shape}")
        problem = constraints.simplex.check(e)
        if problem:
            raise ValueError(f"emissionprob_: {problem}")


def _check_cells(k: int, m: int, name: str = "n_features") -> int:
    if k * m > MAX_CELLS:
        raise ValueError(
            f"{name}: {m} symbols with {k} states make an emission table of "
            f"{k * m} entries, more than the {MAX_CELLS} jaxem allows"
        )
    return m
