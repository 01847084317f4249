"""The shared base of jaxem's hmmlearn-style HMM estimators.

``BaseHMM`` is a scikit-learn estimator (``BaseEstimator``, declared
``_parameter_constraints``, scikit-learn's validation, exceptions and tags)
with hmmlearn 0.3.3's arguments, attributes and methods. X is the
concatenation of the sequences and ``lengths`` their lengths; inside, the
sequences are padded into a (B, T, ...) batch and all ``n_init`` restarts run
as ONE vmapped, jitted ``jaxem.fit``; ``params`` letters that are left out
become ``fit``'s ``frozen`` keys (with ``chunk_rows``, or a large memory-mapped X,
``fit`` streams X in chunks of whole sequences instead: ``_hmm_streaming``).
Every compiled call runs in the precision of
the data (``_base.precision_for``), so float64 in gives float64 out whatever
JAX's global setting, which is never changed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from numbers import Integral, Real

import jax
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils._param_validation import Interval, StrOptions

from .. import _evidence, _model, _progress, constraints
from .. import _fit as _fitmod
from .._io import SaveLoadMixin
from . import _base, _devices, _hmm_streaming, _labels
from ._hmm_inference import DECODER_ALGORITHMS, HMMInferenceMixin, pad
from ._hmm_information import StandardErrorsMixin
from ._hmm_sequences import (
    ConvergenceMonitor,
    check_prior,
    lengths_or_y,
    log_degenerate,
    to_padded,
)

_log = logging.getLogger(__name__)


MAX_STATES = 10_000
"""Upper bound on ``n_components``: ``transmat_`` has K * K entries."""

PRIOR = ["array-like", Interval(Real, None, None, closed="neither")]
"""Constraint for a prior: a number or an array (values checked in ``fit``)."""


# ``implementation`` -> the model's ``parallel``: hmmlearn's "log" and
# "scaling" (the default "log" included) leave the choice to the backend (the
# sequential scan on a CPU, the parallel one on a GPU or TPU); "sequential"
# and "parallel" force one.
IMPLEMENTATIONS = {"log": None, "scaling": None, "sequential": False, "parallel": True}


def _parallel_option(implementation: str) -> bool | None:
    """The ``parallel`` argument of the model factories for ``implementation``."""
    return IMPLEMENTATIONS[implementation]


@functools.partial(jax.jit, static_argnames=("model", "options", "n_init"))
def _draw_initial(model, key, data, lengths, options, n_init):
    """``model.init`` for each of ``jax.random.split(key, n_init)`` (restarts),
    as one compiled program.

    Call it on sequences padded by :func:`pad` (length-0 sequences, steps past
    every length): the chains' initialisers weigh each step by whether it lies
    within its sequence, so the padding changes nothing, and one program
    serves every data size of a bucket.
    """
    keys = jax.random.split(key, n_init)
    return jax.vmap(lambda k: model.init(k, data, lengths, **dict(options)))(keys)


class BaseHMM(
    _devices.DevicesCloneMixin,
    HMMInferenceMixin,
    DensityMixin,
    SaveLoadMixin,
    StandardErrorsMixin,
    BaseEstimator,
):
    """Shared hmmlearn logic over a prebuilt chain model.

    Subclasses set ``_name``, ``_letters`` (params letter -> parameter key) and
    implement ``_model()``, ``_validate_X(X, reset)``, ``_to_data(padded)``,
    ``_emission_params(dtype)``, ``_emission_to_attributes(params)``,
    ``_check_emission_attributes()`` and ``_get_n_fit_scalars_per_param()``.
    """

    _name = "HMM"
    _letters: dict[str, str] = {}
    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, MAX_STATES, closed="both")],
        "startprob_prior": PRIOR,
        "transmat_prior": PRIOR,
        "algorithm": [StrOptions(set(DECODER_ALGORITHMS))],
        "random_state": _base.RANDOM_STATE,
        "n_iter": [_base.ITERATIONS],
        "tol": [Interval(Real, None, None, closed="neither")],
        "verbose": ["verbose"],
        "params": [str],
        "init_params": [str],
        "implementation": [StrOptions(set(IMPLEMENTATIONS))],
        "n_init": [_base.RESTARTS],
        "devices": _devices.CONSTRAINT,
        "chunk_rows": [None, Interval(Integral, 1, None, closed="left")],
        "accelerate": [StrOptions({"squarem"}), None],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        tags.non_deterministic = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return all(self._has_attribute(name) for name in self._letters.values())

    # ------------------------------------------------------------ options
    def _check_options(self):
        """Checks beyond ``_parameter_constraints``: letters and prior values."""
        self._validate_params()
        for name in ("params", "init_params"):
            unknown = set(getattr(self, name)) - set(self._letters)
            if unknown:
                raise ValueError(
                    f"{name}: unknown letter(s) {''.join(sorted(unknown))!r}; "
                    f"expected letters from {''.join(self._letters)!r}"
                )
        k = self.n_components
        check_prior("startprob_prior", self.startprob_prior, (k,), minimum=0)
        check_prior("transmat_prior", self.transmat_prior, (k, k), minimum=0)
        _devices.resolve(getattr(self, "devices", None))  # before compiling

    def _frozen(self) -> tuple[str, ...]:
        return tuple(
            key for code, key in self._letters.items() if code not in self.params
        )

    def _fit_tol(self, n_steps: int) -> float:
        """hmmlearn's ``tol`` on the total gain as ``jaxem.fit``'s per step."""
        tol = float(self.tol)
        if tol <= 0:  # hmmlearn runs every iteration for tol <= 0
            return 0.0
        return min(tol, np.finfo(np.float32).max) / n_steps

    # --------------------------------------------------------- attributes
    def _param_dtype(self, X) -> np.dtype:
        """The fit's float dtype: X's (float32 stays float32), else float64."""
        return np.dtype(X.dtype if X.dtype == np.float32 else np.float64)

    def _dtype(self, X=None) -> np.dtype:
        """The precision of inference: that of the parameters and of X."""
        dtypes = [np.asarray(self.startprob_).dtype]
        if X is not None and X.dtype.kind == "f":
            dtypes.append(X.dtype)
        dtype = np.result_type(*dtypes)
        return np.dtype(np.float32 if dtype == np.float32 else np.float64)

    def _attributes_to_params(self, dtype) -> dict:
        params = {
            "startprob": np.asarray(self.startprob_, dtype),
            "transmat": np.asarray(self.transmat_, dtype),
        }
        params.update(self._emission_params(dtype))
        return params

    def _params_to_attributes(self, params):
        self.startprob_ = np.array(params["startprob"])
        self.transmat_ = np.array(params["transmat"])
        self._emission_to_attributes(params)

    def _has_attribute(self, key_name) -> bool:
        return hasattr(self, key_name + "_") or (
            key_name == "covars" and hasattr(self, "_covars_")
        )

    def _check(self):
        """hmmlearn's ``_check``: attributes of the right shapes and supports.

        Raises:
            NotFittedError: an attribute is missing (not fitted, not set).
            ValueError: an attribute has the wrong shape or leaves its support.
        """
        _base.check_fitted(self)
        k = self.n_components
        for name, shape in (("startprob_", (k,)), ("transmat_", (k, k))):
            value = np.asarray(getattr(self, name))
            if value.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {value.shape}")
            problem = constraints.simplex.check(value)
            if problem:
                raise ValueError(f"{name}: {problem}")
        self._check_emission_attributes()

    # ------------------------------------------------------ initialisation
    def _needs_init(self, code: str, name: str) -> bool:
        """hmmlearn's rule: draw when the letter is in ``init_params`` or the
        attribute is missing; warn when a set attribute is overwritten."""
        if code in self.init_params:
            if self._has_attribute(name):
                _log.warning(
                    "Even though the %r attribute is set, it will be "
                    "overwritten during initialization because 'init_params' "
                    "contains %r",
                    name + "_",
                    code,
                )
            return True
        return not self._has_attribute(name)

    def _init_options(self) -> tuple:
        return ()

    def _draw(self, model, X, data, lengths, n_init: int) -> dict:
        """(n_init, ...) stacked starting values, drawn or from the attributes."""
        drawn_names = [n for c, n in self._letters.items() if self._needs_init(c, n)]
        data, lengths = pad(data, lengths)
        key = _base.check_random_state(self.random_state)
        args = (model, key, data, lengths, self._init_options(), int(n_init))
        if drawn_names:
            drawn = _draw_initial(*args)
        else:  # shapes only: nothing is computed
            drawn = jax.eval_shape(_draw_initial, *args)
        dtype = self._param_dtype(X)
        params0 = {}
        for name in self._letters.values():
            con = model.constraints[name]
            if name in drawn_names:
                params0[name] = np.asarray(drawn[name])
                problems = [con.check(v) for v in params0[name]]
                if any(problems):
                    raise ValueError(
                        f"{name}_: the initial value drawn from X is invalid "
                        f"({next(p for p in problems if p)}); set {name}_ and "
                        "leave its letter out of init_params"
                    )
                continue
            value = self._attribute_param(name, dtype)
            want = drawn[name].shape[1:]
            if value.shape != want:
                raise ValueError(f"{name}_: expected shape {want}, got {value.shape}")
            problem = con.check(value)
            if problem:
                raise ValueError(f"{name}_: {problem}")
            params0[name] = np.broadcast_to(value, (n_init,) + want).copy()
        counts = self._get_n_fit_scalars_per_param()
        log_degenerate(sum(counts[c] for c in self.params), X.size)
        return params0

    def _attribute_param(self, key_name, dtype):
        if key_name in ("startprob", "transmat"):
            return np.asarray(getattr(self, key_name + "_"), dtype)
        return self._emission_params(dtype, only=key_name)[key_name]

    def _prepare(self, X, lengths, reset: bool):
        """Validated X, lengths and the padded data of the model."""
        X = self._validate_X(X, reset=reset)
        lengths = lengths_or_y(lengths, X.shape[0])
        return X, lengths, self._to_data(to_padded(X, lengths))

    def _init(self, X, lengths=None):
        """hmmlearn's ``_init``: draw the parameters named in ``init_params``
        (and the missing ones) from X, as ``fit`` does before its iterations."""
        self._check_options()
        X, lengths, data = self._prepare(X, lengths, reset=True)
        with _base.precision_for(self._param_dtype(X)):
            params0 = self._draw(self._model(X), X, data, lengths, 1)
        self._params_to_attributes(_base.take(params0, 0))
        self._fit_dtype = self._param_dtype(X)

    # ------------------------------------------------------------- fitting
    def fit(self, X, lengths=None, states=None):
        """Estimate the parameters with EM (``n_init`` restarts, vmapped).

        As hmmlearn: parameters whose letter is in ``init_params``, or that
        are not set yet, are drawn from X; the others start from their
        attributes. ``n_iter=0`` initialises only. With ``chunk_rows`` set,
        or a ``numpy.memmap`` X over 256 MiB, X is streamed in chunks of
        whole sequences instead of loaded (``_hmm_streaming``, docs/scale.md).

        Args:
            X: (n_samples, n_features) concatenated sequences.
            lengths: (n_sequences,) lengths summing to n_samples (None: one
                sequence). A scikit-learn ``y`` passed here (one entry per
                sample, not all ones) is ignored.
            states: optional (n_samples,) known states: a state in [0, K) at
                a step where it is known, -1 where it is not (semi-supervised
                EM: the chain is clamped there; see ``docs/labels.md``).

        Returns:
            self

        Raises:
            sklearn.utils._param_validation.InvalidParameterError: a
                constructor argument of the wrong type or range (a
                ``ValueError``).
            ValueError: bad X, lengths, priors or set attributes.
            FitError: every restart stopped on a non-finite log-likelihood.
        """
        if _hmm_streaming.streams(self, X):  # larger than memory: EM in chunks
            return _hmm_streaming.fit(self, X, lengths, states)
        self._check_options()
        X, lengths, data = self._prepare(X, lengths, reset=True)
        k = self.n_components
        labels = _labels.check_labels("states", states, X.shape[0], k)
        dtype = self._param_dtype(X)
        notice = _progress.compile_notice(self._name, self.verbose)
        with _base.precision_for(dtype), notice:
            model = self._model(X)
            params0 = self._draw(model, X, data, lengths, self.n_init)
            evidence = None
            if labels is not None:
                params0 = self._label_init(params0, X, labels)
                evidence = to_padded(_labels.log_evidence(labels, k, dtype), lengths)
            self._fit_dtype = dtype
            if self.n_iter == 0:
                return self._initialised_only(params0)
            # hmmlearn's MAP-EM tracks and tests the plain log-likelihood
            # (monitor_.history), so the estimators do too; jaxem.fit with
            # the model itself reports the MAP objective (docs/priors.md).
            plain = _model.with_log_prior(model, None)
            result = self._run(plain, params0, data, lengths, evidence)
            self._params_to_attributes(jax.tree.map(np.asarray, result.params))
            self._set_monitor(result)
            self._report_unvisited(model, data, lengths)
            self._after_fit()
        return self

    def _label_init(self, params0, X, labels, chunk_rows=None):
        """A labelled state's mean-like emission parameter (``_label_letter``)
        starts at the mean of its labelled samples, when drawn from X."""
        letter = getattr(self, "_label_letter", None)
        if letter is None or letter not in self.init_params:
            return params0
        key = self._letters[letter]
        return _labels.steer_means(
            params0, key, X, labels, self.n_components, chunk_rows
        )

    def _run(self, model, params0, data, lengths, evidence=None):
        tol = self._fit_tol(int(lengths.sum()))
        kwargs = dict(
            max_iter=int(self.n_iter),
            frozen=self._frozen(),
            accelerate=getattr(self, "accelerate", None),
        )
        progress = (
            _base.progress_printer(self._name, self.n_iter)
            if self.verbose
            else contextlib.nullcontext()
        )
        devices = _devices.resolve(getattr(self, "devices", None))
        data, lengths = pad(data, lengths)
        evidence = _evidence.pad(evidence, data, 2)
        with progress as callback:
            if devices is not None:  # each device runs its own sequences
                data, lengths, evidence = _devices.shard_sequences(
                    data, lengths, devices, evidence
                )
            elif self.n_init == 1:  # fit pads to a size bucket (a no-op here)
                result = _fitmod.fit(
                    model,
                    _base.take(params0, 0),
                    data,
                    lengths=lengths,
                    tol=tol,
                    callback=callback,
                    latent_evidence=evidence,
                    **kwargs,
                )
                result = jax.tree.map(np.asarray, result)
                _base.best_restart(result)  # FitError on a non-finite fit
                return result
            results = _base.fit_restarts(
                model,
                params0,
                data,
                None,
                lengths,
                tol,
                callback=callback,
                evidence=evidence,
                **kwargs,
            )
        return _base.take(results, _base.best_restart(results))

    def _initialised_only(self, params0):
        self._params_to_attributes(_base.take(params0, 0))
        self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
        self.fit_status_ = _fitmod.Status.MAX_ITER
        self.unvisited_states_ = np.array([], dtype=int)
        return self

    def _set_monitor(self, result):
        n_iter = int(result.n_iter)
        monitor = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
        monitor.history.extend(float(v) for v in np.asarray(result.history)[:n_iter])
        monitor.iter = n_iter
        self.fit_status_ = _fitmod.Status(int(result.status))
        monitor.stopped = self.fit_status_ == _fitmod.Status.NONFINITE
        self.monitor_ = monitor
        if monitor.stopped:
            _base.warn_nonfinite(self._name, n_iter)

    def _after_fit(self):
        """Subclass hook: reports on the fitted parameters."""

    def _report_unvisited(self, model, data, lengths):
        params = self._attributes_to_params(self._fit_dtype)
        padded, padded_lengths = pad(data, lengths)
        post = _fitmod.e_step(model, params, padded, lengths=padded_lengths).posterior
        # padding steps and sequences have posterior 0
        self._set_unvisited(np.asarray(post.marginals).sum(axis=(0, 1)), lengths.sum())

    def _set_unvisited(self, occupancy, n_steps):
        """``unvisited_states_`` from the (K,) posterior occupancy."""
        tiny = np.finfo(occupancy.dtype).eps * n_steps
        self.unvisited_states_ = np.flatnonzero(occupancy <= tiny)
        if self.unvisited_states_.size:
            _log.warning(
                "%s: state(s) %s received no posterior mass; their parameters were "
                "kept from the previous iteration instead of becoming NaN.",
                self._name,
                self.unvisited_states_.tolist(),
            )


def chain_fit_scalars(k: int) -> dict[str, int]:
    """Free scalars of ``startprob`` (``s``) and ``transmat`` (``t``)."""
    return {"s": k - 1, "t": k * (k - 1)}


def expected_failed_checks(estimator) -> dict[str, str]:
    """The scikit-learn checks an HMM estimator fails by design, with why.

    For ``check_estimator(est, expected_failed_checks=...)`` and
    ``parametrize_with_checks``.
    """
    sequence = (
        "an HMM's outputs for a sample depend on its neighbours in the "
        "sequence, so they change when samples are reordered or subset"
    )
    return {
        "check_fit_score_takes_y": (
            "hmmlearn's signature fit(X, lengths=None): the second argument is "
            "the sequence lengths (a y passed there is recognised and ignored)"
        ),
        "check_methods_sample_order_invariance": sequence,
        "check_methods_subset_invariance": sequence,
    }
