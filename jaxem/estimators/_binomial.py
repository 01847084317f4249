"""``BinomialMixture``: the coin mixture as a scikit-learn estimator."""

from __future__ import annotations

import functools
import warnings
from numbers import Integral, Real

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .. import constraints
from .. import models as _models
from .._latent import Categorical
from .._model import ClosedForm, LatentModel
from ..models import _binomial as _binomial_models
from . import _base, _labels
from ._mixture import CollapsedComponentWarning, MixtureEstimator

MAX_TRIALS = 2**24
"""Largest ``n_trials``: counts up to it are exact in float32."""


class BinomialMixture(MixtureEstimator):
    """A mixture of coins: each sample is a number of heads out of ``n_trials``.

    A scikit-learn estimator (``clone``, ``GridSearchCV``, ``Pipeline``) with
    the methods of ``sklearn.mixture.GaussianMixture``. X is (N, 1) whole
    head counts in ``[0, n_trials]``, or (N, d): d coins tossed per sample,
    independent given the component (latent class analysis for binary items
    when ``n_trials=1``). Its tags declare non-negative whole-number input, so
    scikit-learn's ``check_estimator`` feeds it counts. The dtype follows the
    input: float32 counts are fitted in float32, anything else in float64.

    Args:
        n_components: number of coins K.
        n_trials: tosses per sample, 1 to 2**24.
        tol: stop when the average log-likelihood per sample changes by less.
        max_iter: maximum EM iterations per restart; 0 returns the
            initialisation.
        n_init: number of restarts, run together as one vmapped program; the
            one with the highest lower bound is kept.
        init_params: ``"quantiles"`` (head rates at spread quantiles of the
            data) or ``"random"`` (random responsibilities).
        weights_init: optional (K,) initial mixing weights.
        p_init: optional (K,) initial head probabilities ((K, d) for d
            columns).
        random_state: None, an int, a numpy ``RandomState``/``Generator``.
        warm_start: start from the previous fit's parameters.
        verbose: show a progress display of the log-likelihood.
        weights_prior: Dirichlet concentration on the weights (MAP-EM), a
            number or (K,), each >= 1; 1 (the default) is no prior.
        p_prior: Beta ``(a, b)`` prior on each head probability, numbers or
            (K,) arrays, each >= 1; ``(1, 1)`` (the default) is no prior.
            With a prior, ``lower_bound_``/``lower_bounds_`` are the average
            log-posterior per sample (``docs/priors.md``).
        devices: as for :class:`GaussianMixture` (shards the rows over
            devices; the same fit as on one device).
        accelerate: None for plain EM, or ``"squarem"`` (``jaxem.fit``'s
            SQUAREM; ``n_iter_`` then counts cycles of three EM steps).
        semi_supervised: read ``fit``'s ``y`` as partial labels (the coin of
            a sample, -1 for unknown); False: ``y`` is ignored.

    Attributes:
        weights_: (K,) mixing weights.
        p_: (K,) probability of heads of each coin; (K, d) for d columns.
        converged_, n_iter_, lower_bound_, lower_bounds_: as in scikit-learn.
        collapsed_: (K,) bool, coins that ended with no data (held at their
            last ``p_`` with weight near zero; a ``CollapsedComponentWarning``
            says which).
        n_features_in_: 1.

    Raises:
        ValueError: bad arguments (scikit-learn's ``InvalidParameterError``),
            X not whole counts in ``[0, n_trials]``,
            ``n_components`` > number of samples.

    Examples:
        >>> import numpy as np, jaxem
        >>> X = np.array([[5], [9], [8], [4], [7]])
        >>> est = jaxem.BinomialMixture(2, n_trials=10, random_state=0).fit(X)
        >>> est.predict_proba(X).shape
        (5, 2)
    """

    _name = "BinomialMixture"

    _parameter_constraints: dict = {
        **MixtureEstimator._parameter_constraints,
        "n_trials": [Interval(Integral, 1, MAX_TRIALS, closed="both")],
        "init_params": [StrOptions({"quantiles", "random"})],
        "weights_init": ["array-like", None],
        "p_init": ["array-like", None],
        # MAP-EM priors (values checked by models.binomial_mixture).
        "weights_prior": [Interval(Real, 1.0, None, closed="left"), "array-like"],
        "p_prior": [tuple, list, "array-like"],
    }

    def __init__(
        self,
        n_components=2,
        n_trials=1,
        *,
        tol=1e-3,
        max_iter=100,
        n_init=1,
        init_params="quantiles",
        weights_init=None,
        p_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        weights_prior=1.0,
        p_prior=(1.0, 1.0),
        devices=None,
        accelerate=None,
        semi_supervised=False,
    ):
        self.n_components = n_components
        self.n_trials = n_trials
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.p_init = p_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.weights_prior = weights_prior
        self.p_prior = p_prior
        self.devices = devices
        self.accelerate = accelerate
        self.semi_supervised = semi_supervised

    def _model(self, n_features=None):
        if n_features is None:
            n_features = getattr(self, "n_features_in_", 1)
        k, n = int(self.n_components), int(self.n_trials)
        priors = {"weights_prior": self.weights_prior, "p_prior": self.p_prior}
        if n_features == 1:
            return _models.binomial_mixture(k, n, **priors)
        alpha, ab = _binomial_models.check_priors(k, **priors)
        return independent_binomials(k, n, int(n_features), alpha, ab)

    def _check_X(self, X):
        if np.any(X < 0):
            raise ValueError(
                "Negative values in data passed to BinomialMixture: X holds head "
                f"counts, whole numbers in [0, n_trials={self.n_trials}]"
            )
        if np.any(X < 0) or np.any(X > self.n_trials) or np.any(X != np.round(X)):
            raise ValueError(
                f"X: head counts must be whole numbers in [0, n_trials={self.n_trials}]"
            )
        return X

    def _check_parameters(self, X):
        k, inits = self.n_components, {}
        for name, key, con in (
            ("weights_init", "weights", constraints.simplex),
            ("p_init", "p", constraints.unit_interval),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=np.float64)
            shape = (k,) if key == "weights" or X.shape[1] == 1 else (k, X.shape[1])
            if arr.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
            problem = con.check(arr)
            if problem:
                raise ValueError(f"{name}: {problem}")
            inits[key] = arr.astype(X.dtype)
        self._inits = inits

    def _to_data(self, X):
        return X[:, 0] if X.shape[1] == 1 else X

    def _from_data(self, x):
        return x.reshape(x.shape[0], -1)

    def _init_params(self, key, data, weights):
        d = 1 if data.ndim == 1 else data.shape[1]
        params = self._model(d).init(key, data, method=self.init_params)
        return {**params, **{k: jnp.asarray(v) for k, v in self._inits.items()}}

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the coins with EM over ``n_init`` (vmapped) restarts.

        Args:
            X: (N, 1) head counts, or (N, d) for d coins per sample.
            y: with ``semi_supervised=True``, optional (N,) partial labels:
                the coin of a sample in [0, K), or -1 when unknown (see
                ``docs/labels.md``); ignored otherwise.
            sample_weight: optional (N,) non-negative weights.

        Returns:
            self
        """
        super().fit(X, y, sample_weight)
        X = _base.validate_X(self, X, reset=False)
        w = _base.sample_weights(sample_weight, X)
        mass = self.predict_proba(X)
        mass = (mass if w is None else mass * w[:, None]).sum(axis=0)
        self.collapsed_ = mass <= np.finfo(mass.dtype).eps * mass.sum()
        if self.collapsed_.any():
            warnings.warn(
                f"BinomialMixture: coin(s) {np.flatnonzero(self.collapsed_).tolist()}"
                " got no data; they were held at their last p_ with weight near "
                "zero. Try fewer coins or another initialisation.",
                CollapsedComponentWarning,
                stacklevel=2,
            )
        return self

    def _label_init(self, params0, X, labels):
        """A labelled coin starts at its labelled samples' head rate (kept
        inside (0, 1)), unless ``p_init`` is given."""
        if "p" in self._inits:
            return params0
        k = self.n_components
        heads, counts = _labels.labelled_means(self._to_data(X), labels, k)
        rates = np.clip(heads / self.n_trials, 0.01, 0.99)
        known = counts > 0
        p = jnp.where(known, jnp.asarray(rates, X.dtype), params0["p"])
        return {**params0, "p": p}

    def _params_to_attributes(self, params):
        self.weights_ = np.asarray(params["weights"])
        self.p_ = np.asarray(params["p"])

    def _attributes_to_params(self, dtype):
        return {
            "weights": np.asarray(self.weights_, dtype),
            "p": np.asarray(self.p_, dtype),
        }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Counts: scikit-learn's checks then feed non-negative whole numbers.
        tags.input_tags.positive_only = True
        tags.input_tags.categorical = True
        return tags


@functools.cache
def independent_binomials(
    n_components: int, n_trials: int, n_features: int, alpha=1.0, ab=(1.0, 1.0)
):
    """A coin mixture over d columns: each sample is d head counts, each of
    ``n_trials`` tosses, independent given the component.

    Parameters: ``{"weights": (K,) simplex, "p": (K, d) head probabilities}``;
    data (N, d). With one column this is ``models.binomial_mixture``.
    ``alpha`` and ``ab`` are checked priors (``binomial_mixture``'s
    ``weights_prior`` and ``p_prior``, the Beta one per component).
    """
    k, n = n_components, n_trials
    map_update, log_prior = _binomial_models.map_pieces(n, alpha, ab, per_column=True)

    def log_joint(params, x, z):
        return (
            jnp.log(params["weights"][z]) + st.binom.logpmf(x, n, params["p"][z]).sum()
        )

    def log_joint_table(params, data):
        log_pmf = st.binom.logpmf(data[:, None, :], n, params["p"][None])
        return jnp.log(params["weights"])[None, :] + log_pmf.sum(-1)

    def stats(data, resp, weights):
        if weights is not None:
            resp = resp * weights[:, None]
        return {"counts": resp.sum(0), "heads": resp.T @ data}

    def update(s, params):
        if log_prior is not None:
            return map_update(s, params)
        total = s["counts"].sum()
        eps = jnp.finfo(s["counts"].dtype).eps
        alive = (s["counts"] > eps * total)[:, None]
        p = s["heads"] / (n * jnp.where(alive, s["counts"][:, None], 1.0))
        p = jnp.where(alive, jnp.clip(p, eps, 1 - eps), params["p"])
        return {"weights": s["counts"] / total, "p": p}

    def init(key, data, method="quantiles"):
        data = jnp.asarray(data)
        if method == "quantiles":
            levels = (jnp.arange(k) + 0.5) / k
            p = jnp.clip(0.1 + 0.8 * jnp.quantile(data / n, levels, axis=0), 0.05, 0.95)
            jitter = 0.01 * jax.random.uniform(key, (k, n_features), data.dtype)
            weights = jnp.full(k, 1.0 / k, data.dtype)
            return {"weights": weights, "p": jnp.sort(p, axis=0) + jitter}
        resp = jax.random.dirichlet(key, jnp.ones(k, data.dtype), (data.shape[0],))
        start = {"p": jnp.full((k, n_features), 0.5, data.dtype)}
        return update(stats(data, resp, None), start)

    def sample(key, params, size):
        kz, kx = jax.random.split(key)
        z = jax.random.categorical(kz, jnp.log(params["weights"]), shape=(size,))
        return jax.random.binomial(kx, n, params["p"][z]), z

    return LatentModel(
        log_joint,
        latent=Categorical(k),
        constraints={"weights": constraints.simplex, "p": constraints.unit_interval},
        m_step=ClosedForm(stats=stats, update=update),
        log_joint_table=log_joint_table,
        init=init,
        sample=sample,
        event_shape=(n_features,),
        name=f"independent_binomials({k}, {n}, {n_features})",
        log_prior=log_prior,
    )
