"""What a saved field may hold: small validators checked before anything is built.

A spec checks one decoded value (plain JSON scalars, numpy arrays and scalars,
dtypes, dicts, lists, tuples, deques and :class:`Node` placeholders for jaxem's
registered types, none of them built yet) and raises ``ValueError`` naming the
field and the problem. Specs are plain objects, so a new estimator declares its
fitted attributes next to its class::

    from jaxem._io_registry import register_estimator
    from jaxem._io_schema import Array, Int

    register_estimator(MyEstimator, fitted={"means_": Array("f", ndim=2),
                                            "n_iter_": Int(lo=0)})
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Node:
    """A registered jaxem type as read from a file, validated but not yet built.

    Attributes:
        name: the registry name the file gave.
        fields: the decoded fields (for an enum, ``{"value": v}``).
        entry: the registry entry that builds it.
    """

    name: str
    fields: dict
    entry: Any = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class Context:
    """Facts about the whole file that bound sizes (see :class:`Size`)."""

    n_elements: int = 0


def fail(where: str, problem: str) -> None:
    raise ValueError(f"{where}: {problem}")


def _kind(value: Any) -> str:
    if isinstance(value, Node):
        return value.name
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} dtype {value.dtype}"
    return type(value).__name__


class Spec:
    """Base class: ``check(value, where, ctx)`` raises ``ValueError`` or returns."""

    def check(self, value: Any, where: str, ctx: Context) -> None:
        raise NotImplementedError


class Bool(Spec):
    def check(self, value, where, ctx):
        if not isinstance(value, (bool, np.bool_)):
            fail(where, f"expected a bool, got {_kind(value)}")


@dataclasses.dataclass(frozen=True)
class Int(Spec):
    """A Python or numpy integer in ``[lo, hi]`` (bools refused)."""

    lo: int | None = None
    hi: int | None = None

    def check(self, value, where, ctx):
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer)
        ):
            fail(where, f"expected an integer, got {_kind(value)}")
        if (self.lo is not None and value < self.lo) or (
            self.hi is not None and value > self.hi
        ):
            fail(where, f"{value} is outside [{self.lo}, {self.hi}]")


class Size(Spec):
    """A dimension: an integer >= 1 and no larger than the numbers in the file.

    A fitted model stores at least one number per feature, so a larger
    dimension is a forgery (and would make the loader allocate for it).
    """

    def check(self, value, where, ctx):
        Int(lo=1, hi=max(1, ctx.n_elements)).check(value, where, ctx)


@dataclasses.dataclass(frozen=True)
class Float(Spec):
    """A real number (Python or numpy float or int; NaN allowed unless finite)."""

    finite: bool = False

    def check(self, value, where, ctx):
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            fail(where, f"expected a number, got {_kind(value)}")
        if self.finite and not np.isfinite(value):
            fail(where, f"expected a finite number, got {value}")


@dataclasses.dataclass(frozen=True)
class Str(Spec):
    choices: tuple[str, ...] | None = None

    def check(self, value, where, ctx):
        if not isinstance(value, str):
            fail(where, f"expected a string, got {_kind(value)}")
        if self.choices is not None and value not in self.choices:
            fail(where, f"{value[:40]!r} is not one of {self.choices}")


@dataclasses.dataclass(frozen=True)
class Array(Spec):
    """A numpy array whose dtype kind is in ``kinds`` ("b", "i", "u", "f", "c")."""

    kinds: str = "biufc"
    ndim: int | tuple[int, ...] | None = None
    finite: bool = False

    def check(self, value, where, ctx):
        if not isinstance(value, np.ndarray):
            fail(where, f"expected an array, got {_kind(value)}")
        if value.dtype.kind not in self.kinds:
            fail(where, f"dtype {value.dtype} is not of kind {self.kinds!r}")
        ndims = (self.ndim,) if isinstance(self.ndim, int) else self.ndim
        if ndims is not None and value.ndim not in ndims:
            fail(where, f"expected {self.ndim} dimension(s), got shape {value.shape}")
        if self.finite and value.dtype.kind in "fc" and not np.isfinite(value).all():
            fail(where, "holds NaN or infinite values")


class Strings(Spec):
    """A 1-D object array of Python strings (scikit-learn's ``feature_names_in_``)."""

    def check(self, value, where, ctx):
        if not (
            isinstance(value, np.ndarray)
            and value.dtype == object
            and value.ndim == 1
            and all(type(v) is str for v in value)
        ):
            fail(where, f"expected a 1-D array of strings, got {_kind(value)}")


@dataclasses.dataclass(frozen=True)
class Dtype(Spec):
    kinds: str = "f"

    def check(self, value, where, ctx):
        if not isinstance(value, np.dtype) or value.kind not in self.kinds:
            fail(where, f"expected a dtype of kind {self.kinds!r}, got {_kind(value)}")


@dataclasses.dataclass(frozen=True)
class Registered(Spec):
    """A value of the registered jaxem type named ``name``."""

    name: str

    def check(self, value, where, ctx):
        if not (isinstance(value, Node) and value.name == self.name):
            fail(where, f"expected a {self.name}, got {_kind(value)}")


@dataclasses.dataclass(frozen=True)
class Optional(Spec):
    spec: Spec

    def check(self, value, where, ctx):
        if value is not None:
            self.spec.check(value, where, ctx)


@dataclasses.dataclass(frozen=True)
class AnyOf(Spec):
    specs: tuple[Spec, ...]

    def check(self, value, where, ctx):
        problems = []
        for spec in self.specs:
            try:
                spec.check(value, where, ctx)
                return
            except ValueError as err:
                problems.append(str(err).removeprefix(f"{where}: "))
        fail(where, " / ".join(problems))


@dataclasses.dataclass(frozen=True)
class SequenceOf(Spec):
    """A list, tuple or deque (as ``types``) whose items all match ``item``."""

    item: Spec
    types: tuple[type, ...] = (list,)

    def check(self, value, where, ctx):
        if not isinstance(value, self.types):
            names = "/".join(t.__name__ for t in self.types)
            fail(where, f"expected a {names}, got {_kind(value)}")
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]", ctx)


@dataclasses.dataclass(frozen=True)
class DictOf(Spec):
    """A dict with string keys whose values all match ``value``."""

    value: Spec

    def check(self, value, where, ctx):
        if not isinstance(value, dict):
            fail(where, f"expected a dict, got {_kind(value)}")
        for key, item in value.items():
            self.value.check(item, f"{where}[{key!r}]", ctx)


class Pytree(Spec):
    """A params pytree: dicts, lists, tuples and None around numeric leaves.

    Registered jaxem types may appear as nodes (each was already checked
    against its own schema when it was read).
    """

    def check(self, value, where, ctx):
        if value is None or isinstance(value, (Node, np.ndarray, np.generic)):
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if isinstance(value, dict):
            for key, item in value.items():
                self.check(item, f"{where}[{key!r}]", ctx)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                self.check(item, f"{where}[{i}]", ctx)
        else:
            fail(
                where, f"expected arrays in dicts, lists or tuples, got {_kind(value)}"
            )


class Data(Spec):
    """Plain data: JSON scalars, numpy arrays, scalars and dtypes, registered types.

    Containers (dicts, lists, tuples, deques) of those, to any depth the file
    allows. This is what an attribute without a declared spec must be.
    """

    _LEAVES = (type(None), bool, int, float, str, np.ndarray, np.generic, np.dtype)

    def check(self, value, where, ctx):
        if isinstance(value, (Node, *self._LEAVES)):
            return
        if isinstance(value, dict):
            for key, item in value.items():
                self.check(item, f"{where}[{key!r}]", ctx)
        elif isinstance(value, (list, tuple, collections.deque)):
            for i, item in enumerate(value):
                self.check(item, f"{where}[{i}]", ctx)
        else:
            fail(where, f"expected plain data, got {_kind(value)}")


SCALAR = AnyOf((Bool(), Float(), Str()))
"""A plain JSON scalar other than None."""


class Option(Spec):
    """An estimator's constructor option: None, a scalar, an array, or lists of them."""

    def check(self, value, where, ctx):
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                self.check(item, f"{where}[{i}]", ctx)
        elif value is not None and not isinstance(value, (np.ndarray, np.generic)):
            SCALAR.check(value, where, ctx)


DEQUE_OF_FLOATS = SequenceOf(Float(), types=(collections.deque,))
