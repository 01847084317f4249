"""Values to JSON and back, with arrays kept aside, through the allow-list only.

The JSON is a small tagged language. Plain JSON scalars stand for themselves;
every other value is an object with exactly one tag:

=============================================  =================================
``{"__array__": "a0"}``                        the archive's array ``a0``
``{"__scalar__": 1.5, "dtype": "<f8"}``        a numpy scalar (numeric dtypes)
``{"__dtype__": "<f4"}``                       a numpy dtype (numeric dtypes)
``{"__strings__": ["a", "b"]}``               a 1-D object array of strings
``{"__dict__": {...}}``                        a dict with string keys
``{"__list__": [...]}``, ``{"__tuple__": ...}``  a list, a tuple
``{"__deque__": [...], "maxlen": null}``       a ``collections.deque``
``{"__enum__": NAME, "value": 0}``             a registered enum member
``{"__namedtuple__": NAME, "fields": {...}}``  a registered NamedTuple
``{"__object__": NAME, "state": {...}}``       a registered plain object
=============================================  =================================

``NAME`` is looked up in :data:`jaxem._io_registry.REGISTRY`. Reading is two
steps: :meth:`Decoder.decode` turns JSON into data with :class:`Node`
placeholders, checking every registered type's fields against its schema, and
:func:`build` makes the objects once the whole file has passed.
"""

from __future__ import annotations

import collections
import enum
import sys
from typing import Any

import numpy as np

from ._io_archive import DTYPES
from ._io_registry import REGISTRY, Entry, Registry
from ._io_schema import Context, Node, fail


class Encoder:
    """Turns a value into tagged JSON, moving arrays into ``self.arrays``."""

    def __init__(self, registry: Registry = REGISTRY):
        self.registry = registry
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, value) -> dict:
        key = f"a{len(self.arrays)}"
        arr = np.asarray(value)
        if arr.dtype == object and arr.ndim == 1 and all(type(v) is str for v in arr):
            return {"__strings__": arr.tolist()}  # e.g. feature_names_in_
        if arr.dtype.str not in DTYPES:
            raise TypeError(f"cannot save an array of dtype {arr.dtype}")
        self.arrays[key] = arr
        return {"__array__": key}

    def __call__(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, enum.Enum):
            return {"__enum__": self._name(value, "enum"), "value": value.value}
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, np.generic):
            if value.dtype.kind not in "biuf":
                raise TypeError(f"cannot save a scalar of dtype {value.dtype}")
            return {"__scalar__": value.item(), "dtype": value.dtype.str}
        if isinstance(value, type) and issubclass(value, np.generic):
            value = np.dtype(value)
        if isinstance(value, np.dtype):
            if value.str not in DTYPES:
                raise TypeError(f"cannot save the dtype {value}")
            return {"__dtype__": value.str}
        if isinstance(value, np.ndarray) or _is_jax_array(value):
            return self.array(value)
        return self._container(value)

    def _container(self, value: Any) -> Any:
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError("cannot save a dict with non-string keys")
            return {"__dict__": {k: self(v) for k, v in value.items()}}
        if isinstance(value, collections.deque):
            return {"__deque__": [self(v) for v in value], "maxlen": value.maxlen}
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            fields = {f: self(getattr(value, f)) for f in value._fields}
            return {"__namedtuple__": self._name(value, "record"), "fields": fields}
        if isinstance(value, list):
            return {"__list__": [self(v) for v in value]}
        if isinstance(value, tuple):
            return {"__tuple__": [self(v) for v in value]}
        name = self._name(value, "object")
        return {"__object__": name, "state": self(dict(vars(value)))}

    def _name(self, value: Any, kind: str) -> str:
        entry = self.registry.entry_of(type(value))
        if entry is None or entry.kind != kind:
            raise TypeError(
                f"cannot save a value of type {type(value).__name__} (not registered "
                "in jaxem._io_registry)"
            )
        return entry.name


def _is_jax_array(value) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.Array)


_TAGS = {
    "__array__": {"__array__"},
    "__scalar__": {"__scalar__", "dtype"},
    "__dtype__": {"__dtype__"},
    "__strings__": {"__strings__"},
    "__dict__": {"__dict__"},
    "__list__": {"__list__"},
    "__tuple__": {"__tuple__"},
    "__deque__": {"__deque__", "maxlen"},
    "__enum__": {"__enum__", "value"},
    "__namedtuple__": {"__namedtuple__", "fields"},
    "__object__": {"__object__", "state"},
}


class Decoder:
    """Tagged JSON to data and unbuilt :class:`Node` s (see the module doc)."""

    def __init__(
        self, arrays: dict[str, np.ndarray], ctx: Context, registry: Registry = REGISTRY
    ):
        self.arrays = arrays
        self.ctx = ctx
        self.registry = registry
        self._used: set[str] = set()
        self._handlers = {
            "__array__": self._array,
            "__scalar__": self._scalar,
            "__dtype__": self._dtype,
            "__strings__": self._strings,
            "__dict__": self._dict,
            "__list__": lambda v, w: self._items(v["__list__"], w),
            "__tuple__": lambda v, w: tuple(self._items(v["__tuple__"], w)),
            "__deque__": self._deque,
            "__enum__": self._enum,
            "__namedtuple__": self._record,
            "__object__": self._object,
        }

    def check_all_used(self) -> None:
        """Every array of the file was referred to (save writes no others)."""
        unused = sorted(set(self.arrays) - self._used)
        if unused:
            fail(f"array {unused[0]}", "is not used by the metadata")

    def decode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if not isinstance(value, dict):
            fail(where, f"untagged JSON {type(value).__name__}")
        tags = [key for key in value if key in _TAGS]
        if len(tags) != 1 or set(value) != _TAGS[tags[0]]:
            fail(where, f"unknown entry {[str(k)[:30] for k in value][:4]}")
        return self._handlers[tags[0]](value, where)

    def _items(self, items: Any, where: str) -> list:
        if not isinstance(items, list):
            fail(where, "expected a JSON list")
        return [self.decode(item, f"{where}[{i}]") for i, item in enumerate(items)]

    def _array(self, value: dict, where: str) -> np.ndarray:
        key = value["__array__"]
        if not isinstance(key, str) or key not in self.arrays:
            fail(where, f"refers to a missing array {str(key)[:40]!r}")
        if key in self._used:  # save writes each array once; copies would multiply
            fail(where, f"array {key} is referred to twice")
        self._used.add(key)
        return self.arrays[key]

    def _scalar(self, value: dict, where: str) -> np.generic:
        dtype, item = value["dtype"], value["__scalar__"]
        if dtype not in DTYPES or np.dtype(dtype).kind not in "biuf":
            fail(where, f"scalar dtype {str(dtype)[:20]!r} is not allowed")
        kind = np.dtype(dtype).kind
        ok = {"b": (bool,), "i": (int,), "u": (int,), "f": (int, float)}[kind]
        if not isinstance(item, ok) or (kind != "b" and isinstance(item, bool)):
            fail(where, f"scalar {str(item)[:20]} does not fit dtype {dtype}")
        try:
            with np.errstate(all="raise"):
                return np.dtype(dtype).type(item)
        except (OverflowError, FloatingPointError, ValueError) as err:
            fail(where, f"scalar does not fit dtype {dtype} ({err})")

    def _dtype(self, value: dict, where: str) -> np.dtype:
        if value["__dtype__"] not in DTYPES:
            fail(where, f"dtype {str(value['__dtype__'])[:20]!r} is not allowed")
        return np.dtype(value["__dtype__"])

    def _strings(self, value: dict, where: str) -> np.ndarray:
        items = value["__strings__"]
        if not (isinstance(items, list) and all(type(v) is str for v in items)):
            fail(where, "expected a JSON list of strings")
        out = np.empty(len(items), dtype=object)  # never parsed: str objects only
        out[:] = items
        return out

    def _dict(self, value: dict, where: str) -> dict:
        items = value["__dict__"]
        if not isinstance(items, dict):
            fail(where, "expected a JSON object")
        return {k: self.decode(v, f"{where}.{k[:40]}") for k, v in items.items()}

    def _deque(self, value: dict, where: str) -> collections.deque:
        items, maxlen = self._items(value["__deque__"], where), value["maxlen"]
        if maxlen is not None and (type(maxlen) is not int or maxlen < len(items)):
            fail(where, f"deque maxlen {str(maxlen)[:20]} is not valid")
        return collections.deque(items, maxlen=maxlen)

    def _node(self, entry: Entry, fields: dict, where: str) -> Node:
        entry.validate(fields, where, self.ctx)
        return Node(entry.name, fields, entry)

    def _enum(self, value: dict, where: str) -> Node:
        entry = self.registry.lookup(value["__enum__"], "enum")
        return self._node(entry, {"value": value["value"]}, where)

    def _record(self, value: dict, where: str) -> Node:
        entry = self.registry.lookup(value["__namedtuple__"], "record")
        if not isinstance(value["fields"], dict):
            fail(where, "expected a JSON object of fields")
        fields = {
            k: self.decode(v, f"{where}.{k[:40]}") for k, v in value["fields"].items()
        }
        return self._node(entry, fields, where)

    def _object(self, value: dict, where: str) -> Node:
        entry = self.registry.lookup(value["__object__"], "object")
        state = value["state"]
        if not (isinstance(state, dict) and set(state) == {"__dict__"}):
            fail(where, "expected a state dict")
        return self._node(entry, self._dict(state, where), where)


def build(value: Any) -> Any:
    """Objects from decoded data: every :class:`Node` becomes its type."""
    if isinstance(value, Node):
        return value.entry.build({k: build(v) for k, v in value.fields.items()})
    if isinstance(value, dict):
        return {k: build(v) for k, v in value.items()}
    if isinstance(value, list):
        return [build(v) for v in value]
    if isinstance(value, tuple):
        return tuple(build(v) for v in value)
    if isinstance(value, collections.deque):
        return collections.deque((build(v) for v in value), maxlen=value.maxlen)
    return value
