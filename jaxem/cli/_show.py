"""``jaxem show MODEL``: print a model saved by ``jaxem fit --out`` or ``jaxem.save``.

Reads the file only through ``jaxem.load`` and ``read_metadata``, which
construct nothing but jaxem's own allow-listed types.
"""

from __future__ import annotations

import inspect
import pathlib

import numpy as np

from ._print import describe, fmt, print_table


def run(args) -> int:
    """Run ``jaxem show`` with parsed ``args``; returns the exit status."""
    from .. import _io

    path = pathlib.Path(args.model_file)
    meta = _io.read_metadata(path)
    obj = _io.load(path)
    print(
        f"{path}: jaxem file format {meta['format_version']}, saved by jaxem "
        f"{meta['jaxem_version']}"
    )
    if meta["kind"] == "estimator":
        _show_estimator(obj)
    else:
        _show_functional(meta, obj)
    return 0


def _show_estimator(est) -> None:
    params = est.get_params()
    order = list(inspect.signature(type(est)).parameters)  # the constructor's
    options = ", ".join(
        f"{k}={params[k]!r}"
        for k in sorted(params, key=lambda k: order.index(k) if k in order else 99)
        if not isinstance(params[k], np.ndarray)
    )
    print(f"{type(est).__name__}({options})")
    describe(est, title="fitted parameters")  # no data, so no log-likelihood
    bits = []
    for name in ("converged_", "n_iter_", "lower_bound_", "n_features_in_"):
        if hasattr(est, name):
            value = getattr(est, name)
            bits.append(f"{name}={fmt(value) if name == 'lower_bound_' else value}")
    if hasattr(est, "monitor_"):
        mon = est.monitor_
        bits.append(f"iterations={mon.iter} converged={mon.converged}")
    if bits:
        print("   " + "   ".join(bits))


def _show_functional(meta, saved) -> None:
    model = meta.get("model") or {}
    print(f"{meta['kind']} of model {model.get('name', '(not recorded)')}")
    print_table(
        "parameters",
        ["name", "shape", "dtype", "value"],
        [
            [k, "x".join(map(str, v.shape)) or "()", v.dtype, fmt(v)]
            for k, v in _flatten(saved.params)
        ],
        indent=0,
    )
    if saved.result is not None:
        r = saved.result
        print(
            f"  log-likelihood {float(r.log_likelihood):.6g}   iterations "
            f"{int(r.n_iter)}   converged {bool(r.converged)}"
        )


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = []
        for k, v in tree.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else f"{k}")
        return out
    if isinstance(tree, (list, tuple)):
        out = []
        for i, v in enumerate(tree):
            out += _flatten(v, f"{prefix}[{i}]")
        return out
    return [(prefix or "params", np.asarray(tree))]
