"""The allow-list: the only types a saved file can make jaxem construct.

A file names a type by a registry name (a plain string, looked up in a dict:
never imported, never resolved by attribute access). Each entry pairs the class
with the schema of its fields (:mod:`jaxem._io_schema`), which the loader checks
before it builds anything. Four kinds of entry:

- ``enum``: an ``enum.Enum``, built as ``cls(value)`` from a member's value;
- ``record``: a ``NamedTuple``, built as ``cls(**fields)``;
- ``object``: a plain class, built with ``cls.__new__`` and its ``__dict__``;
- ``estimator``: a jaxem estimator, built as ``cls(**options)`` plus its fitted
  attributes.

A new type registers itself next to its class, e.g.
``register_estimator(FactorAnalysis, fitted={"components_": Array("f", 2)})``.
jaxem's public estimators (``jaxem.__all__``) that did not register are still
allowed, with every fitted attribute checked as plain data (:class:`Data`).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._io_schema import (
    DEQUE_OF_FLOATS,
    Array,
    Bool,
    Context,
    Data,
    DictOf,
    Dtype,
    Float,
    Int,
    Node,
    Option,
    Optional,
    Pytree,
    Registered,
    SequenceOf,
    Size,
    Spec,
    Strings,
    fail,
)

KINDS = ("enum", "record", "object", "estimator")
SIZE_OPTIONS = {"n_components": Optional(Size()), "n_features": Optional(Size())}
"""Options that size the model: never more than the numbers the file stores."""
_ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One allow-listed type.

    Attributes:
        name: the name files use for it.
        cls: the class.
        kind: one of ``KINDS``.
        fields: specs of its fields (record, object) or fitted attributes
            (estimator); undeclared fields and attributes must be plain data
            (:class:`Data`), attributes under an ordinary name.
        options: specs of an estimator's constructor options (default
            :class:`Option` for each).
        check: an optional cross-field check ``check(fields, where, ctx)`` run
            on the decoded, unbuilt fields.
        fill: for a record, ``fill(fields) -> dict`` of values for fields that
            an older file lacks and the NamedTuple gives no default for.
    """

    name: str
    cls: type
    kind: str
    fields: Mapping[str, Spec] = dataclasses.field(default_factory=dict)
    options: Mapping[str, Spec] = dataclasses.field(default_factory=dict)
    check: Callable[[dict, str, Context], None] | None = None
    fill: Callable[[dict], dict] | None = None

    def validate(self, fields: dict, where: str, ctx: Context) -> None:
        """Check decoded fields against this entry (nothing is built)."""
        if self.kind == "enum":
            values = [m.value for m in self.cls]
            if set(fields) != {"value"} or not any(
                type(fields["value"]) is type(v) and fields["value"] == v
                for v in values
            ):
                fail(where, f"not a member of {self.cls.__name__}")
            return
        if self.kind == "record":
            self._validate_record(fields, where)
            fields.update(self._filled(fields))
        for key, value in fields.items():
            spec = self.fields.get(key)
            if spec is None:
                self._check_undeclared(key, where)
                spec = Data()
            spec.check(value, f"{where}.{key}", ctx)
        if self.check is not None:
            self.check(fields, where, ctx)

    def _validate_record(self, fields: dict, where: str) -> None:
        known = self.cls._fields
        unknown = sorted(set(fields) - set(known))
        missing = sorted(set(known) - set(fields) - set(self.cls._field_defaults))
        if missing and self.fill is not None and not unknown:
            missing = sorted(set(missing) - set(self._filled(fields)))
        if unknown or missing:
            fail(where, f"fields {unknown or missing} do not fit {self.cls.__name__}")

    def _filled(self, fields: dict) -> dict:
        """Values for the fields an older file lacks (see ``fill``)."""
        lacking = set(self.cls._fields) - set(fields) - set(self.cls._field_defaults)
        if not lacking or self.fill is None:
            return {}
        return {k: v for k, v in self.fill(fields).items() if k in lacking}

    def _check_undeclared(self, key: str, where: str) -> None:
        if self.kind == "record":
            return  # a field of the NamedTuple (checked above)
        if (
            not _ATTRIBUTE.fullmatch(key)
            or key.startswith("__")
            or any(key in vars(base) for base in self.cls.__mro__)  # no getattr
            or key in self.option_names()
        ):
            fail(where, f"attribute {key[:40]!r} is not allowed")

    def validate_options(self, options: dict, where: str, ctx: Context) -> None:
        """Check an estimator's saved constructor options (nothing is built)."""
        names = self.option_names()
        unknown = sorted(set(options) - set(names))
        if unknown:
            fail(where, f"unknown option(s) {[k[:40] for k in unknown][:5]}")
        for key, value in options.items():
            spec = self.options.get(key, SIZE_OPTIONS.get(key, Option()))
            spec.check(value, f"{where}.{key}", ctx)

    def option_names(self) -> tuple[str, ...]:
        """Names of an estimator's constructor options (from its signature)."""
        if self.kind != "estimator":
            return ()
        params = inspect.signature(self.cls.__init__).parameters.values()
        ordinary = (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        return tuple(p.name for p in params if p.kind in ordinary and p.name != "self")

    def build(self, fields: dict) -> Any:
        """The object, from validated and built fields."""
        if self.kind == "enum":
            return self.cls(fields["value"])
        if self.kind == "record":
            return self.cls(**fields)
        obj = self.cls.__new__(self.cls)
        obj.__dict__.update(fields)
        return obj


class Registry:
    """Names to entries (and classes to entries, for saving)."""

    def __init__(self, builtins: Callable[[Registry], None] | None = None):
        self._by_name: dict[str, Entry] = {}
        self._by_class: dict[type, Entry] = {}
        self._builtins = builtins

    def add(self, entry: Entry) -> None:
        """Allow ``entry``; its name and class must not already mean another."""
        if entry.kind not in KINDS:
            raise ValueError(f"kind: {entry.kind!r} is not one of {KINDS}")
        taken = self._by_name.get(entry.name)
        if taken is not None and taken.cls is not entry.cls:
            raise ValueError(f"name {entry.name!r} is registered for {taken.cls}")
        self._by_name[entry.name] = entry
        self._by_class[entry.cls] = entry

    def _ready(self) -> None:
        """Add jaxem's own entries on first use (importing them here would cycle)."""
        if self._builtins is not None:
            self._builtins(self)
            self._builtins = None

    def lookup(self, name: Any, kind: str) -> Entry:
        """The entry a file names; ``ValueError`` unless it is allow-listed."""
        self._ready()
        entry = self._by_name.get(name) if isinstance(name, str) else None
        if entry is None and kind == "estimator" and isinstance(name, str):
            entry = _exported_estimator(name)
        if entry is None or entry.kind != kind:
            fail(
                f"{kind} {str(name)[:80]!r}",
                "unknown to this jaxem (not in its allow-list of loadable types)",
            )
        return entry

    def entry_of(self, cls: type) -> Entry | None:
        """The entry of a class (for saving), or None if it is not allowed."""
        self._ready()
        entry = self._by_class.get(cls)
        if entry is None and hasattr(cls, "get_params"):
            entry = _exported_estimator(cls.__name__)
            entry = entry if entry is not None and entry.cls is cls else None
        return entry


def _exported_estimator(name: str) -> Entry | None:
    """A public jaxem estimator that did not register (checked as plain data)."""
    import jaxem

    exported = {
        n: obj
        for n in jaxem.__all__
        if isinstance(obj := getattr(jaxem, n, None), type)
        and hasattr(obj, "get_params")
    }
    cls = exported.get(name)
    return None if cls is None else Entry(name, cls, "estimator")


def _name(cls: type, name: str | None) -> str:
    return name or f"{cls.__module__}:{cls.__qualname__}"


def register_enum(
    cls: type[enum.Enum], *, name: str | None = None, registry: Registry | None = None
) -> type:
    """Allow an enum (members are saved by value)."""
    _target(registry).add(Entry(_name(cls, name), cls, "enum"))
    return cls


def register_record(
    cls: type,
    *,
    fields: Mapping[str, Spec] | None = None,
    check: Callable | None = None,
    fill: Callable[[dict], dict] | None = None,
    name: str | None = None,
    registry: Registry | None = None,
) -> type:
    """Allow a NamedTuple; fields without a spec must be plain :class:`Data`.

    ``check(fields, where, ctx)`` checks fields together; ``fill(fields)`` gives
    values for fields that older files lack (see :class:`Entry`).
    """
    fields = dict(fields or {})
    entry = Entry(_name(cls, name), cls, "record", fields, check=check, fill=fill)
    _target(registry).add(entry)
    return cls


def register_object(
    cls: type,
    *,
    fields: Mapping[str, Spec],
    name: str | None = None,
    registry: Registry | None = None,
) -> type:
    """Allow a plain class rebuilt from its ``__dict__`` (never ``__init__``)."""
    _target(registry).add(Entry(_name(cls, name), cls, "object", dict(fields)))
    return cls


def register_estimator(
    cls: type,
    *,
    fitted: Mapping[str, Spec] | None = None,
    options: Mapping[str, Spec] | None = None,
    name: str | None = None,
    registry: Registry | None = None,
) -> type:
    """Allow an estimator, saved under its class name, with fitted-attribute specs.

    Call it next to the class. Attributes ``fit`` sets that have no spec must
    be plain data (:class:`Data`); options default to :class:`Option`.

    Args:
        cls: the estimator class (scikit-learn style: options in ``__init__``).
        fitted: spec of each attribute ``fit`` sets (``weights_``, ...).
        options: specs of constructor options, where :class:`Option` is too loose.
        name: the name files use; the class name by default.
        registry: where to register (the global :data:`REGISTRY` by default).

    Returns:
        ``cls`` itself.

    Examples:
        >>> from jaxem._io_registry import Registry, register_estimator
        >>> from jaxem._io_schema import Array
        >>> class Toy:
        ...     def __init__(self, n_components=2):
        ...         self.n_components = n_components
        >>> registry = Registry()
        >>> fitted = {"means_": Array("f", ndim=2)}
        >>> _ = register_estimator(Toy, fitted=fitted, registry=registry)
        >>> registry.lookup("Toy", "estimator").option_names()
        ('n_components',)
    """
    fitted, options = dict(fitted or {}), dict(options or {})
    entry = Entry(name or cls.__name__, cls, "estimator", fitted, options)
    _target(registry).add(entry)
    return cls


def _target(registry: Registry | None) -> Registry:
    return REGISTRY if registry is None else registry


# ------------------------------------------------------------ jaxem's own
STATUS = "jaxem._fit:Status"
FIT_RESULT_NAME = "jaxem._fit:FitResult"
MONITOR = "jaxem.estimators._hmm:ConvergenceMonitor"


def _fill_fit_result(fields: dict) -> dict:
    """A field added to FitResult after version 1 reads as NaN from older files."""
    import numpy as np

    from ._fit import FitResult

    batch = np.shape(fields.get("log_likelihood", np.nan))
    later = [k for k in FitResult._fields if k not in FIT_RESULT]
    return {k: np.full(batch, np.nan) for k in later}


def _check_fit_result(fields: dict, where: str, ctx: Context) -> None:
    """Batch shapes agree, iteration counts fit the history, status is known."""
    import numpy as np

    from ._fit import Status

    batch = np.shape(fields["log_likelihood"])
    history = np.shape(fields["history"])
    if history[:-1] != batch:
        fail(where, f"history shape {history} does not fit log_likelihood {batch}")
    for key in ("n_iter", "converged", "status", "gradient_norm", "log_prior"):
        if fields.get(key) is not None and np.shape(fields[key]) != batch:
            fail(where, f"{key} shape {np.shape(fields[key])} is not {batch}")
    n_iter = np.asarray(fields["n_iter"])
    if ((n_iter < 0) | (n_iter > history[-1])).any():
        fail(where, f"n_iter outside [0, {history[-1]}]")
    if not np.isin(fields["status"], [s.value for s in Status]).all():
        fail(where, "status is not a jaxem.Status")


FIT_RESULT = {
    "params": Pytree(),
    "log_likelihood": Array("f"),
    "history": Array("f", ndim=tuple(range(1, 33))),
    "n_iter": Array("iu"),
    "converged": Array("b"),
    "status": Array("iu"),
    "gradient_norm": Optional(Array("f")),  # newer than version 1: None there
    "log_prior": Optional(Array("f")),  # MAP-EM; None without a prior (and before)
}

_MIXTURE = {
    "converged_": Bool(),
    "n_iter_": Int(lo=0),
    "lower_bound_": Float(),
    "lower_bounds_": SequenceOf(Float()),
    "log_likelihood_": Float(),
    "fit_status_": Registered(STATUS),
    "n_features_in_": Size(),
    "_fit_dtype": Dtype("f"),
    "feature_names_in_": Strings(),
    "_inits": DictOf(Array("f")),
    "weights_": Array("f", ndim=1),
    "collapsed_": Array("biu", ndim=1),
}
_COVARIANCE = Array("f", ndim=(1, 2, 3))
_HMM = {
    "startprob_": Array("f", ndim=1),
    "transmat_": Array("f", ndim=2),
    "monitor_": Registered(MONITOR),
    "fit_status_": Registered(STATUS),
    "n_features_in_": Size(),
    "n_features": Size(),
    "_n_features": Size(),
    "unvisited_states_": Array("iu", ndim=1),
    "feature_names_in_": Strings(),
    "_fit_dtype": Dtype("f"),
}
ESTIMATORS = {
    "BinomialMixture": {**_MIXTURE, "p_": Array("f", ndim=(1, 2))},
    "GaussianMixture": {
        **_MIXTURE,
        "_n_features": Size(),
        "means_": Array("f", ndim=2),
        "covariances_": _COVARIANCE,
        "precisions_": _COVARIANCE,
        "precisions_cholesky_": _COVARIANCE,
    },
    "GaussianHMM": {
        **_HMM,
        "means_": Array("f", ndim=2),
        "_covars_": _COVARIANCE,
        "singular_states_": Array("iu", ndim=1),
    },
    "CategoricalHMM": {**_HMM, "emissionprob_": Array("f", ndim=2)},
    "PoissonHMM": {**_HMM, "lambdas_": Array("f", ndim=2)},
}
"""Fitted-attribute specs of the estimators that predate the registry."""

MONITOR_FIELDS = {
    "tol": Float(),
    "n_iter": Int(lo=0),
    "verbose": Option(),
    "history": DEQUE_OF_FLOATS,
    "iter": Int(lo=0),
    "stopped": Bool(),
}


def _builtins(registry: Registry) -> None:
    """jaxem's own types, under the names version-1 files use (fixed code)."""
    from . import _fit, _online, estimators

    def add(entry: Entry) -> None:
        if entry.cls is not None and entry.cls not in registry._by_class:
            registry.add(entry)

    add(Entry(STATUS, _fit.Status, "enum"))
    add(
        Entry(
            FIT_RESULT_NAME,
            _fit.FitResult,
            "record",
            FIT_RESULT,
            check=_check_fit_result,
            fill=_fill_fit_result,
        )
    )
    online = {"params": Pytree(), "stats": Pytree(), "step": Array("iu", ndim=0)}
    add(Entry("jaxem._online:OnlineState", _online.OnlineState, "record", online))
    monitor = getattr(estimators, "ConvergenceMonitor", None)
    if isinstance(monitor, type):
        add(Entry(MONITOR, monitor, "object", MONITOR_FIELDS))
    for name, fitted in ESTIMATORS.items():
        cls = getattr(estimators, name, None)
        if isinstance(cls, type):
            add(Entry(name, cls, "estimator", fitted))


REGISTRY = Registry(_builtins)
"""The allow-list every :func:`jaxem.load` consults."""

__all__ = [
    "REGISTRY",
    "Entry",
    "Node",
    "Registry",
    "register_enum",
    "register_estimator",
    "register_object",
    "register_record",
]
