"""``jaxem fit {gmm,coins,hmm} FILE``: fit a model to a file and report it.

Everything that can be checked before a long fit is checked first (output
folders, the image type, the data), then the estimator fits, and the command
prints its table, saves the model, writes predictions and draws the plot.
"""

from __future__ import annotations

import csv
import pathlib
import sys
from typing import Any

import numpy as np

from . import _plots, _print, _read, _scale
from ._args import PROG, UsageError
from ._run import compiling, timed_fit, want_progress


def run(args) -> int:
    """Run ``jaxem fit`` with parsed ``args``; returns the exit status."""
    _scale.check(args)  # --chunk-rows, --coordinator (docs/scale.md)
    with _scale.distributed(args):
        if args.chunk_rows is not None:
            return _scale.run_streamed(args)
        return _run(args)


def _run(args) -> int:
    for path, option in ((args.out, "--out"), (args.predict, "--predict")):
        _check_output(path, option)
    if args.plot:
        _check_output(args.plot, "--plot")
        _plots.require_matplotlib()
        _plots.check_plot_format(args.plot)
    _check_model_options(args)
    data, lengths, seq_names = _read_data(args)
    dtype = np.float32 if args.float32 else np.float64
    X = data.values.astype(dtype)
    progress = want_progress(args.progress)
    fitter = {"gmm": _fit_gmm, "coins": _fit_coins, "hmm": _fit_hmm}[args.model]
    est, X_used, symbols = fitter(args, X, data, lengths, progress)
    if args.standard_errors:
        _print_standard_errors(est, X_used, lengths)
    if args.out:
        print(f"saved the model to {est.save(args.out)}")
    if args.predict:
        _write_predictions(args.predict, est, X_used, lengths, seq_names)
        print(f"wrote predictions to {args.predict}")
    if args.plot:
        _plot_fit(args, est, X_used, data.names, lengths, symbols)
        print(f"wrote the plot to {args.plot}")
    return 0


def _note(text: str) -> None:
    print(f"{PROG} fit: note: {text}", file=sys.stderr)


def _check_output(path: str | None, option: str) -> None:
    if path is None:
        return
    parent = pathlib.Path(path).resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist")


HISTORY_LIMIT = 5 * 10**7  # log-likelihoods kept in memory: 400 MB in float64


def _check_model_options(args) -> None:
    if args.max_iter * args.n_init > HISTORY_LIMIT:
        raise UsageError(
            f"--max-iter {args.max_iter} with --n-init {args.n_init}: the fit would "
            f"keep {args.max_iter * args.n_init:.2g} log-likelihoods in memory "
            f"(at most {HISTORY_LIMIT:.0e}); lower one of them"
        )
    if args.sequence_column is not None and args.model != "hmm":
        raise UsageError("--sequence-column: only for 'jaxem fit hmm'")
    if args.lengths is not None and args.model != "hmm":
        raise UsageError("--lengths: only for 'jaxem fit hmm'")
    if args.sequence_column is not None and args.lengths is not None:
        raise UsageError("give either --sequence-column or --lengths, not both")
    gaussian = args.model == "gmm" or (
        args.model == "hmm" and args.emission == "gaussian"
    )
    if args.covariance_type is not None and not gaussian:
        raise UsageError("--covariance-type: only for gmm and Gaussian hmm")
    # missing values (docs/missing-values.md)
    if args.missing == "marginalize":
        if not (gaussian or (args.model == "hmm" and args.emission == "poisson")):
            raise UsageError(
                "--missing marginalize: only for gmm, Gaussian hmm and Poisson hmm"
            )
        if args.plot:
            raise UsageError("--missing marginalize: cannot --plot data with holes")


def _read_data(args):
    marginalize = args.missing == "marginalize"
    table = _read.read_table(
        args.file, check_finite=False, note=_note, allow_missing=marginalize
    )
    seq_col, lengths, seq_names = None, args.lengths, None
    if args.sequence_column is not None:
        seq_col = table.column(args.sequence_column)
        _read.check_all_finite(table.select([seq_col]))
        lengths, seq_names = _read.sequence_lengths(table, seq_col)
    label_col = None if args.labels is None else table.column(args.labels)
    if label_col is not None and label_col == seq_col:
        raise UsageError("--labels: must not be the --sequence-column")
    data = _read.select_columns(table, args.columns, seq_col, label_col)
    args.label_values = _labels(args, table, label_col)
    if marginalize:
        _read.check_no_infinity(data)
        if np.isnan(data.values).any():
            _note(f"{int(np.isnan(data.values).sum())} missing cell(s) marginalised")
    else:
        _read.check_all_finite(data)
    if lengths is not None and sum(lengths) != data.values.shape[0]:
        raise UsageError(
            f"--lengths: sum to {sum(lengths)}, but {args.file} has "
            f"{data.values.shape[0]} rows"
        )
    return data, lengths, seq_names


def _labels(args, table, col):
    """``--labels``: the column as ints in [-1, K) (nan: -1), else None."""
    if col is None:
        return None
    values = table.values[:, col]
    values = np.where(np.isnan(values), -1.0, values)
    bad = np.flatnonzero(
        (values != np.round(values)) | (values < -1) | (values >= args.components)
    )
    if bad.size:
        i = bad[0]
        raise UsageError(
            f"--labels: {table.where(i, col)} is {values[i]:g}; expected a "
            f"component / state 0..{args.components - 1}, or -1 or nan (unknown)"
        )
    return values.astype(np.int64)


def _kwargs(args, max_iter_name: str) -> dict[str, Any]:
    kw: dict[str, Any] = {"random_state": args.seed, max_iter_name: args.max_iter}
    kw.update(_scale.estimator_options(args))
    if args.missing == "marginalize":
        kw["missing"] = "marginalize"
    if args.tol is not None:
        kw["tol"] = args.tol
    if args.accelerate is not None:
        kw["accelerate"] = args.accelerate
    if args.label_values is not None and max_iter_name == "max_iter":
        kw["semi_supervised"] = True
    return kw


def _print_standard_errors(est, X, lengths) -> None:
    kw = {} if not hasattr(est, "transmat_") else {"lengths": lengths}
    se = est.standard_errors(X, **kw)
    _print.print_table(
        "standard errors (observed information; nan: not identified)",
        ["parameter", "standard error"],
        [[name, _print.fmt(value)] for name, value in se.items()],
    )


def _fit_gmm(args, X, data, lengths, progress):
    import jaxem

    if X.shape[0] < args.components:
        raise UsageError(
            f"{args.file}: {X.shape[0]} row(s) is fewer than --components "
            f"{args.components}"
        )
    est = jaxem.GaussianMixture(
        n_components=args.components,
        covariance_type=args.covariance_type or "full",
        n_init=args.n_init,
        verbose=int(progress),
        **_kwargs(args, "max_iter"),
    )
    compiling(progress, "the Gaussian mixture fit")
    seconds = timed_fit(est, X, y=args.label_values)
    _print.describe(
        est,
        X.shape[0],
        seconds,
        title=f"Gaussian mixture of {data.path.name} (columns {', '.join(data.names)})",
        extra=f"BIC {est.bic(X):.6g}",
        tol=args.tol,
    )
    return est, X, None


def _coin_heads(args, X, data):
    whole = np.all(X == np.round(X)) and np.all(X >= 0)
    if not whole:
        raise UsageError(f"{args.file}: coins expects counts (whole numbers >= 0)")
    if X.shape[1] == 1:
        if args.n_trials is None:
            raise UsageError(
                "--n-trials: required when FILE has one column of head counts"
            )
        too_many = np.flatnonzero(X[:, 0] > args.n_trials)
        if too_many.size:
            i = too_many[0]
            raise UsageError(
                f"{args.file}: {data.where(i, 0)} has {X[i, 0]:g} heads, more than "
                f"--n-trials {args.n_trials}"
            )
        return X, args.n_trials
    if not np.all((X == 0) | (X == 1)):
        i, j = np.argwhere((X != 0) & (X != 1))[0]
        raise UsageError(
            f"{args.file}: {data.where(i, j)} is {X[i, j]:g}; rows of tosses "
            "must be 0 (tails) or 1 (heads) (or give one column of head counts)"
        )
    n_trials = X.shape[1]
    if args.n_trials is not None and args.n_trials != n_trials:
        raise UsageError(
            f"--n-trials {args.n_trials}: FILE has {n_trials} tosses per row"
        )
    return X.sum(axis=1, keepdims=True), n_trials


def _fit_coins(args, X, data, lengths, progress):
    import jaxem

    heads, n_trials = _coin_heads(args, X, data)
    est = jaxem.BinomialMixture(
        n_components=args.components,
        n_trials=int(n_trials),
        n_init=args.n_init,
        verbose=int(progress),
        **_kwargs(args, "max_iter"),
    )
    compiling(progress, "the coin mixture fit")
    seconds = timed_fit(est, heads, y=args.label_values)
    _print.describe(
        est,
        heads.shape[0],
        seconds,
        title=f"Coin mixture of {data.path.name}",
        tol=args.tol,
    )
    return est, heads, None


def _hmm_estimator(args, X, data):
    import jaxem

    if args.emission == "categorical":
        if X.shape[1] != 1:
            raise UsageError(
                f"--emission categorical: needs one column, {args.file} has "
                f"{X.shape[1]} ({', '.join(data.names)}); choose one with --columns"
            )
        symbols, codes = np.unique(X[:, 0], return_inverse=True)
        print(
            "categorical symbols: "
            + ", ".join(f"{s:g} -> {i}" for i, s in enumerate(symbols))
        )
        return jaxem.CategoricalHMM, {}, codes.reshape(-1, 1), symbols
    if args.emission == "poisson":
        seen = X[~np.isnan(X)]
        if np.any(seen < 0) or np.any(seen != np.round(seen)):
            raise UsageError(f"{args.file}: poisson emissions need counts >= 0")
        return jaxem.PoissonHMM, {}, X, None
    kw = {"covariance_type": args.covariance_type or "diag"}
    return jaxem.GaussianHMM, kw, X, None


def _fit_hmm(args, X, data, lengths, progress):
    cls, kw, X, symbols = _hmm_estimator(args, X, data)
    est = cls(
        n_components=args.components,
        n_init=args.n_init,
        verbose=bool(progress),
        **kw,
        **_kwargs(args, "n_iter"),
    )
    compiling(progress, f"the {cls.__name__} fit")
    seconds = timed_fit(est, X, lengths=lengths, states=args.label_values)
    n_seq = 1 if lengths is None else len(lengths)
    _print.describe(
        est,
        X.shape[0],
        seconds,
        title=f"{cls.__name__} of {data.path.name} ({n_seq} sequence(s))",
        symbols=symbols,
        tol=args.tol,
    )
    return est, X, symbols


def _write_predictions(path, est, X, lengths, seq_names) -> None:
    kw = {} if not hasattr(est, "transmat_") else {"lengths": lengths}
    proba = np.asarray(est.predict_proba(X, **kw))
    labels = np.asarray(est.predict(X, **kw))
    header = ["label"] + [f"p_{k}" for k in range(proba.shape[1])]
    rows = [
        [int(lab)] + [f"{p:.6g}" for p in pr]
        for lab, pr in zip(labels, proba, strict=True)
    ]
    if seq_names is not None:
        ids = np.repeat(seq_names, lengths)
        header = ["sequence"] + header
        rows = [[s] + r for s, r in zip(ids, rows, strict=True)]
    try:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as err:
        raise UsageError(f"{path}: cannot write ({err.strerror or err})") from None


def _plot_fit(args, est, X, names, lengths, symbols) -> None:
    from .. import plot

    name = pathlib.Path(args.file).name
    if args.model == "gmm":
        title = f"{name}: {est.n_components} Gaussian components"
        fig = _plots.gmm_figure(est, X, names, title, note=_note)
    elif args.model == "coins":
        trajectory = _plots.coin_trajectory(est, X[:, 0], note=_note)
        fig = plot.plot_coins(trajectory, title=f"{name}: coin mixture")
    else:
        fig = _hmm_figure(est, X, names, lengths, symbols, name)
    _plots.save_plot(fig, args.plot)


def _hmm_figure(est, X, names, lengths, symbols, name):
    from .. import plot

    posterior = est.predict_proba(X, lengths=lengths)
    states = est.predict(X, lengths=lengths)
    shown = X if symbols is None else symbols[X[:, 0]]  # the original symbols
    if np.all(shown == np.round(shown)):
        shown = shown.astype(np.int64)  # discrete: points, no joining line
    if shown.ndim > 1 and shown.shape[1] > 1:
        _note(f"--plot: the observation panel shows the first column, {names[0]!r}")
    fig = plot.plot_hmm(
        shown,
        states,
        posterior,
        lengths=lengths,
        title=f"{name}: {est.n_components}-state HMM",
    )
    fig.axes[0].set_ylabel(names[0])
    return fig
