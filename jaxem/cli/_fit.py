"""The ``jaxem`` command line: ``jaxem demo``, ``jaxem fit``, ``jaxem show``.

Run ``jaxem --help`` or ``jaxem <command> --help``. User errors (unreadable
files, bad cells, bad option values) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import pathlib
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

PROG = "jaxem"


class UsageError(ValueError):
    """A problem with the user's input: reported in one line, exit status 2."""


# =============================================================== argument parsing
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(kind, text: str, ok, expected: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 1, "a positive integer")


def _non_negative_float(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < math.inf, "a finite number >= 0")


def _non_negative_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def _lengths(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        )
    return values


_FIT_EXAMPLES = """\
examples:
  jaxem fit gmm heights.csv --components 2 --plot heights.png
  jaxem fit gmm points.npy -k 3 --covariance-type diag --n-init 5 --out gmm.npz
  jaxem fit coins tosses.csv                    # rows of 0/1 tosses
  jaxem fit coins heads.csv --n-trials 10       # one column of head counts
  jaxem fit hmm rolls.csv --emission categorical --columns roll --states 2
  jaxem fit hmm signal.csv --sequence-column run --states 3 --predict states.csv

FILE is .csv (a header row of names is optional; '#' starts a comment line)
or .npy (a 1-D or 2-D numeric array). Each row is one observation.
"""

_DEMO_EXAMPLES = """\
examples:
  jaxem demo                     # plots go to ./jaxem-demo-output
  jaxem demo --out /tmp/demo --no-plots
"""

_SHOW_EXAMPLES = """\
examples:
  jaxem fit gmm heights.csv --out gmm.npz && jaxem show gmm.npz
"""


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description="Expectation-Maximization in JAX: fit mixtures and hidden "
        "Markov models from the command line.",
        epilog="examples:\n  jaxem demo\n  jaxem fit gmm data.csv --components 3 "
        "--plot fit.png --out model.npz\n  jaxem show model.npz\n\n"
        "Run 'jaxem <command> --help' for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jaxem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    demo = sub.add_parser(
        "demo",
        help="fit three models on data shipped with jaxem and plot them",
        description="Fit, on data that ships inside jaxem (no network): a mixture "
        "of two Gaussians to 1000 heights, the two-coin experiment of Do & "
        "Batzoglou (2008), and a two-state HMM to the rolls of the occasionally "
        "dishonest casino. Prints a table per model and writes plots.",
        epilog=_DEMO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--out",
        default="jaxem-demo-output",
        metavar="DIR",
        help="folder for the plots (default: %(default)s)",
    )
    demo.add_argument("--no-plots", action="store_true", help="do not draw plots")
    demo.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="random seed of the initialisations (default: 0)",
    )
    _progress_option(demo)
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser(
        "fit",
        help="fit a Gaussian mixture, a coin mixture or an HMM to a file",
        description="Fit a model to FILE and print its parameters.",
        epilog=_FIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument(
        "model",
        choices=["gmm", "coins", "hmm"],
        help="gmm: Gaussian mixture; coins: binomial mixture; hmm: hidden Markov model",
    )
    fit.add_argument("file", metavar="FILE", help=".csv or .npy data file")
    fit.add_argument(
        "-k",
        "--components",
        "--states",
        dest="components",
        type=_positive_int,
        default=2,
        metavar="K",
        help="number of mixture components / HMM states (default: 2)",
    )
    fit.add_argument(
        "--covariance-type",
        choices=["full", "diag", "spherical", "tied"],
        help="Gaussian covariance layout (default: full for gmm, diag for hmm)",
    )
    fit.add_argument(
        "--emission",
        choices=["gaussian", "categorical", "poisson"],
        default="gaussian",
        help="hmm emission distribution (default: gaussian); "
        "categorical codes the distinct values 0..M-1",
    )
    fit.add_argument(
        "--n-trials",
        type=_positive_int,
        metavar="N",
        help="coins: tosses per row when FILE holds head counts",
    )
    fit.add_argument(
        "--columns",
        metavar="COLS",
        help="comma-separated column names or 1-based numbers to use (default: all)",
    )
    fit.add_argument(
        "--sequence-column",
        metavar="COL",
        help="hmm: column of sequence ids; rows of one sequence must be contiguous",
    )
    fit.add_argument(
        "--lengths",
        type=_lengths,
        metavar="L1,L2,...",
        help="hmm: lengths of the concatenated sequences",
    )
    fit.add_argument(
        "--n-init",
        type=_positive_int,
        default=1,
        metavar="R",
        help="restarts, run together as one vmapped program; the "
        "best is kept (default: 1)",
    )
    fit.add_argument(
        "--max-iter",
        type=_positive_int,
        default=100,
        metavar="N",
        help="maximum EM iterations (default: 100)",
    )
    fit.add_argument(
        "--tol",
        type=_non_negative_float,
        metavar="TOL",
        help="convergence tolerance (default: the estimator's: "
        "1e-3 on the average log-likelihood per row for mixtures, "
        "1e-2 on the total log-likelihood for HMMs, as hmmlearn)",
    )
    fit.add_argument(
        "--seed", type=_non_negative_int, default=0, help="random seed (default: 0)"
    )
    fit.add_argument(
        "--float32", action="store_true", help="compute in float32 (default: float64)"
    )
    fit.add_argument("--out", metavar="MODEL.npz", help="save the fitted model")
    fit.add_argument("--plot", metavar="FIG.png", help="draw the fit to an image")
    fit.add_argument(
        "--predict",
        metavar="LABELS.csv",
        help="write each row's most likely component / state and the "
        "posterior probabilities",
    )
    _progress_option(fit)
    fit.set_defaults(func=_cmd_fit)

    show = sub.add_parser(
        "show",
        help="print a saved model",
        description="Print the parameters and metadata of a model saved with "
        "'jaxem fit --out' or jaxem.save.",
        epilog=_SHOW_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("model_file", metavar="MODEL", help="a saved .npz model")
    show.set_defaults(func=_cmd_show)
    return parser


def _progress_option(parser):
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when the output is a terminal)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jaxem`` command line; returns the exit status.

    Examples:
        >>> from jaxem.cli import main
        >>> main(["fit", "gmm", "missing.csv"])
        2
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    name = f"{PROG} {args.command}"
    try:
        with _one_line_warnings():
            return int(args.func(args) or 0)
    except UsageError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # validation by the estimators: the input is wrong
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. --out in a folder that does not exist
        where = f"{err.filename}: " if err.filename else ""
        print(f"{name}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except ImportError as err:  # an optional extra that is not installed
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # e.g. every restart hit a non-finite likelihood
        print(f"{name}: fit failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _one_line_warnings():
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{PROG}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


# ================================================================== reading data
_MISSING = {"", "na", "nan", "n/a", "null", "none"}


class Table:
    """Numeric data read from a file: (N, d) values, column names, line numbers."""

    def __init__(self, path, values, names, lines):
        self.path = path
        self.values = values
        self.names = names
        self.lines = lines

    def where(self, row: int, col: int) -> str:
        return f"row {self.lines[row]}, column {self.names[col]!r}"

    def column(self, spec: str) -> int:
        """Index of a column given by name or 1-based number."""
        if spec in self.names:
            return self.names.index(spec)
        if spec.isdigit() and 1 <= int(spec) <= len(self.names):
            return int(spec) - 1
        raise UsageError(
            f"{self.path}: no column {spec!r} (columns: {', '.join(self.names)})"
        )

    def select(self, cols: list[int]) -> Table:
        return Table(
            self.path, self.values[:, cols], [self.names[c] for c in cols], self.lines
        )


def read_table(path: str | os.PathLike, *, check_finite: bool = True) -> Table:
    """Read a .csv or .npy file of numbers, with one-line errors for bad input."""
    path = pathlib.Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, expected a .csv or .npy file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        table = _read_npy(path)
    elif suffix in (".csv", ".txt"):
        table = _read_csv(path)
    else:
        raise UsageError(f"{path}: unknown file type {suffix!r}, expected .csv or .npy")
    if check_finite:
        _check_finite(table)
    return table


def _read_npy(path) -> Table:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"{path}: cannot read as .npy ({err})") from None
    if arr.dtype.kind not in "biuf":
        raise UsageError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise UsageError(f"{path}: expected a 1-D or 2-D array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise UsageError(f"{path}: no data rows")
    names = [str(j + 1) for j in range(arr.shape[1])]
    return Table(path, arr, names, list(range(1, arr.shape[0] + 1)))


def _parse_number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(path) -> Table:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read ({err})") from None
    rows, lines = [], []
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if (
            not row
            or all(not c.strip() for c in row)
            or row[0].lstrip().startswith("#")
        ):
            continue
        rows.append([c.strip() for c in row])
        lines.append(lineno)
    if not rows:
        raise UsageError(f"{path}: no data rows")
    first = rows[0]
    if all(_parse_number(c) is None and c.lower() not in _MISSING for c in first):
        names = first
        if len(set(names)) != len(names):
            raise UsageError(f"{path}: row {lines[0]}: repeated column names")
        rows, lines = rows[1:], lines[1:]
        if not rows:
            raise UsageError(f"{path}: has a header but no data rows")
    else:
        names = [str(j + 1) for j in range(len(first))]
    width = len(names)
    values = np.empty((len(rows), width))
    for i, (row, lineno) in enumerate(zip(rows, lines, strict=True)):
        if len(row) != width:
            raise UsageError(
                f"{path}: row {lineno} has {len(row)} column(s), expected {width} "
                f"(ragged rows)"
            )
        for j, cell in enumerate(row):
            number = _parse_number(cell)
            if number is None:
                where = f"{path}: row {lineno}, column {names[j]!r}"
                if cell.lower() in _MISSING:
                    raise UsageError(f"{where} is missing (empty or NA)")
                raise UsageError(f"{where}: {cell!r} is not a number")
            values[i, j] = number
    return Table(path, values, names, lines)


def _check_finite(table: Table) -> None:
    bad = np.argwhere(~np.isfinite(table.values))
    if bad.size:
        i, j = bad[0]
        kind = "NaN" if np.isnan(table.values[i, j]) else "infinite"
        raise UsageError(f"{table.path}: {table.where(i, j)} is {kind}")


def _columns(table: Table, spec: str | None, exclude: int | None = None) -> Table:
    if spec:
        cols = [table.column(s.strip()) for s in spec.split(",") if s.strip()]
    else:
        cols = [j for j in range(len(table.names)) if j != exclude]
    if exclude is not None and exclude in cols:
        raise UsageError("--columns: must not include the --sequence-column")
    if not cols:
        raise UsageError(f"{table.path}: no data columns left")
    return table.select(cols)


def _sequence_lengths(table: Table, col: int) -> tuple[list[int], list]:
    ids = table.values[:, col]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    run_ids = ids[starts]
    seen: dict[float, int] = {}
    for s, v in zip(starts, run_ids, strict=True):
        if v in seen:
            raise UsageError(
                f"{table.path}: sequence id {v:g} appears in separate runs (rows "
                f"{table.lines[seen[v]]} and {table.lines[s]}); sort the rows by "
                "sequence"
            )
        seen[v] = s
    lengths = np.diff(np.r_[starts, ids.size]).tolist()
    return lengths, [f"{v:g}" for v in run_ids]


# ======================================================================= output
def _fmt(x: Any, digits: int = 4) -> str:
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 1:
        arr = arr.reshape(())
    if arr.ndim == 0:
        v = float(arr)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return "[" + " ".join(_fmt(v, digits) for v in arr.ravel()) + "]"


def print_table(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    footer: Sequence[str] = (),
    file=None,
    indent: int = 3,
) -> None:
    """Print an aligned text table with a title and footer lines."""
    file = file or sys.stdout
    pad = " " * indent
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]
    print(pad + title, file=file)
    for n, row in enumerate(cells):
        line = "  ".join(
            c.rjust(w) if n and j else c.ljust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print(pad + line.rstrip(), file=file)
        if n == 0:
            print(pad + "  ".join("-" * w for w in widths), file=file)
    for line in footer:
        print(pad + line, file=file)


def _fit_footer(
    ll: float, n: int, n_iter: int, converged: bool, seconds=None, extra: str = ""
) -> str:
    status = "converged" if converged else "not converged"
    parts = [
        f"log-likelihood {ll:.6g} ({ll / n:.4g} per obs., N={n})",
        f"{n_iter} iterations, {status}",
    ]
    if seconds is not None:
        parts.append(f"{seconds:.2f} s")
    if extra:
        parts.append(extra)
    return " | ".join(parts)


def _gmm_rows(est) -> tuple[list[str], list[list[str]]]:
    from .plot import full_covariances

    means = np.asarray(est.means_)
    k, d = means.shape
    covs = full_covariances(est.covariances_, est.covariance_type, k, d)
    stds = np.sqrt(np.diagonal(covs, axis1=1, axis2=2))
    header = ["component", "weight", "mean", "std"]
    if d == 2:
        header.append("corr")
    rows = []
    for j in range(k):
        row = [
            str(j),
            f"{est.weights_[j]:.4f}",
            _fmt(means[j] if d > 1 else means[j, 0]),
            _fmt(stds[j] if d > 1 else stds[j, 0]),
        ]
        if d == 2:
            row.append(f"{covs[j, 0, 1] / (stds[j, 0] * stds[j, 1]):+.3f}")
        rows.append(row)
    return header, rows


def _estimator_ll(est, n: int) -> tuple[float, int, bool]:
    if hasattr(est, "monitor_"):
        mon = est.monitor_
        hist = list(mon.history)
        ll = float(hist[-1]) if hist else float("nan")
        return ll, int(mon.iter), bool(mon.converged)
    ll = getattr(est, "log_likelihood_", None)
    if ll is None:
        ll = float(est.lower_bound_) * n
    return float(ll), int(est.n_iter_), bool(est.converged_)


def describe(
    est,
    n: int | None = None,
    seconds: float | None = None,
    title: str | None = None,
    file=None,
    extra: str = "",
    symbols=None,
) -> None:
    """Print a fitted estimator as a compact table."""
    name = type(est).__name__
    title = title or name
    n = n or getattr(est, "_n_obs", None) or 0
    footer = []
    if n:
        ll, n_iter, converged = _estimator_ll(est, n)
        footer.append(_fit_footer(ll, n, n_iter, converged, seconds, extra))
    if name == "GaussianMixture":
        header, rows = _gmm_rows(est)
        title += f" ({est.covariance_type} covariances)"
    elif name == "BinomialMixture":
        header = ["coin", "weight", "P(heads)"]
        rows = [
            [str(j), f"{w:.4f}", f"{p:.4f}"]
            for j, (w, p) in enumerate(zip(est.weights_, est.p_, strict=True))
        ]
        title += f" ({est.n_trials} tosses per row)"
    elif hasattr(est, "transmat_"):
        header, rows = _hmm_rows(est, symbols)
    else:
        header, rows = (
            ["attribute", "value"],
            [[k, _fmt(v)] for k, v in vars(est).items() if k.endswith("_")],
        )
    print_table(title, header, rows, footer, file=file)


def _hmm_rows(est, symbols=None) -> tuple[list[str], list[list[str]]]:
    K = np.asarray(est.transmat_).shape[0]
    header = ["state", "start"] + [f"->{j}" for j in range(K)]
    kind = type(est).__name__
    if kind == "CategoricalHMM":
        probs = np.asarray(est.emissionprob_)
        names = (
            range(probs.shape[1]) if symbols is None else [f"{v:g}" for v in symbols]
        )
        header += [f"P({m})" for m in names]
    elif kind == "PoissonHMM":
        header += ["rate"]
    else:
        header += ["mean", "std"]
    rows = []
    for k in range(K):
        row = [str(k), f"{est.startprob_[k]:.3f}"] + [
            f"{p:.3f}" for p in est.transmat_[k]
        ]
        if kind == "CategoricalHMM":
            row += [f"{p:.3f}" for p in est.emissionprob_[k]]
        elif kind == "PoissonHMM":
            row.append(_fmt(np.asarray(est.lambdas_)[k]))
        else:
            covars = np.asarray(est.covars_)[k]
            row += [_fmt(np.asarray(est.means_)[k]), _fmt(np.sqrt(np.diag(covars)))]
        rows.append(row)
    return header, rows


# ===================================================================== commands
def _setup_jax(float32: bool) -> None:
    import jax

    if not float32:
        # The command line is an application: it may choose float64 for itself.
        jax.config.update("jax_enable_x64", True)


def _want_progress(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return sys.stdout.isatty()


def _estimator_class(name: str):
    import jaxem

    return getattr(jaxem, name)  # imported lazily: `jaxem --help` stays fast


def _check_output(path: str | None, option: str) -> None:
    if path is None:
        return
    parent = pathlib.Path(path).resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist")


def _check_plot_format(path: str) -> None:
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = pathlib.Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise UsageError(
            f"--plot {path}: unknown image type {suffix!r} (use one of "
            f"{', '.join(sorted(formats))})"
        )


def _cmd_fit(args) -> int:
    # Everything that can be checked before a long fit is checked first.
    for path, option in (
        (args.out, "--out"),
        (args.predict, "--predict"),
        (args.plot, "--plot"),
    ):
        _check_output(path, option)
    if args.plot:
        _pyplot_or_skip()
        _check_plot_format(args.plot)
    _setup_jax(args.float32)
    table = read_table(args.file, check_finite=False)
    seq_col = None
    if args.sequence_column is not None:
        if args.model != "hmm":
            raise UsageError("--sequence-column: only for 'jaxem fit hmm'")
        seq_col = table.column(args.sequence_column)
    if args.lengths is not None and args.model != "hmm":
        raise UsageError("--lengths: only for 'jaxem fit hmm'")
    if args.sequence_column is not None and args.lengths is not None:
        raise UsageError("give either --sequence-column or --lengths, not both")
    lengths, seq_names = args.lengths, None
    if seq_col is not None:
        _check_finite(table.select([seq_col]))
        lengths, seq_names = _sequence_lengths(table, seq_col)
    data = _columns(table, args.columns, exclude=seq_col)
    _check_finite(data)
    if lengths is not None and sum(lengths) != data.values.shape[0]:
        raise UsageError(
            f"--lengths: sum to {sum(lengths)}, but {args.file} has "
            f"{data.values.shape[0]} rows"
        )
    if args.covariance_type is not None and not (
        args.model == "gmm" or (args.model == "hmm" and args.emission == "gaussian")
    ):
        raise UsageError("--covariance-type: only for gmm and Gaussian hmm")
    dtype = np.float32 if args.float32 else np.float64
    X = data.values.astype(dtype)
    progress = _want_progress(args.progress)
    fitter = {"gmm": _fit_gmm, "coins": _fit_coins, "hmm": _fit_hmm}[args.model]
    est, X_used, extra = fitter(args, X, data, lengths, progress)
    if args.out:
        path = est.save(args.out)
        print(f"saved the model to {path}")
    if args.predict:
        _write_predictions(args.predict, est, X_used, lengths, seq_names)
        print(f"wrote predictions to {args.predict}")
    if args.plot:
        _plot_fit(args, est, X_used, lengths, extra)
        print(f"wrote the plot to {args.plot}")
    return 0


def _kwargs(args, max_iter_name: str) -> dict:
    kw: dict[str, Any] = {"random_state": args.seed}
    if args.max_iter is not None:
        kw[max_iter_name] = args.max_iter
    if args.tol is not None:
        kw["tol"] = args.tol
    return kw


def _timed_fit(est, X, **fit_kwargs):
    start = time.perf_counter()
    est.fit(X, **fit_kwargs)
    return time.perf_counter() - start


def _fit_gmm(args, X, data, lengths, progress):
    cls = _estimator_class("GaussianMixture")
    if X.shape[0] < args.components:
        raise UsageError(
            f"{args.file}: {X.shape[0]} row(s) is fewer than --components "
            f"{args.components}"
        )
    est = cls(
        n_components=args.components,
        covariance_type=args.covariance_type or "full",
        n_init=args.n_init,
        verbose=int(progress),
        **_kwargs(args, "max_iter"),
    )
    seconds = _timed_fit(est, X)
    n = X.shape[0]
    bic = est.bic(X)
    describe(
        est,
        n,
        seconds,
        title=f"Gaussian mixture of {data.path.name} (columns {', '.join(data.names)})",
        extra=f"BIC {bic:.6g}",
    )
    return est, X, None


def _fit_coins(args, X, data, lengths, progress):
    cls = _estimator_class("BinomialMixture")
    whole = np.all(X == np.round(X)) and np.all(X >= 0)
    if not whole:
        raise UsageError(f"{args.file}: coins expects counts (whole numbers >= 0)")
    if X.shape[1] == 1:
        if args.n_trials is None:
            raise UsageError(
                "--n-trials: required when FILE has one column of head counts"
            )
        heads, n_trials = X, args.n_trials
        too_many = np.flatnonzero(X[:, 0] > n_trials)
        if too_many.size:
            i = too_many[0]
            raise UsageError(
                f"{args.file}: {data.where(i, 0)} has {X[i, 0]:g} heads, more than "
                f"--n-trials {n_trials}"
            )
    else:
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
        heads = X.sum(axis=1, keepdims=True)
    est = cls(
        n_components=args.components,
        n_trials=int(n_trials),
        n_init=args.n_init,
        verbose=int(progress),
        **_kwargs(args, "max_iter"),
    )
    seconds = _timed_fit(est, heads)
    describe(est, heads.shape[0], seconds, title=f"Coin mixture of {data.path.name}")
    return est, heads, None


def _fit_hmm(args, X, data, lengths, progress):
    mapping = None
    if args.emission == "categorical":
        if X.shape[1] != 1:
            raise UsageError(
                f"--emission categorical: needs one column, {args.file} has "
                f"{X.shape[1]} ({', '.join(data.names)}); choose one with --columns"
            )
        symbols, codes = np.unique(X[:, 0], return_inverse=True)
        mapping = symbols
        X = codes.reshape(-1, 1).astype(np.int64)
        print(
            "categorical symbols: "
            + ", ".join(f"{s:g} -> {i}" for i, s in enumerate(symbols))
        )
        cls = _estimator_class("CategoricalHMM")
        kw = {}
    elif args.emission == "poisson":
        if np.any(X < 0) or np.any(X != np.round(X)):
            raise UsageError(f"{args.file}: poisson emissions need counts >= 0")
        cls = _estimator_class("PoissonHMM")
        kw = {}
    else:
        cls = _estimator_class("GaussianHMM")
        kw = {"covariance_type": args.covariance_type or "diag"}
    kw["n_init"] = args.n_init
    est = cls(
        n_components=args.components,
        verbose=bool(progress),
        **kw,
        **_kwargs(args, "n_iter"),
    )
    seconds = _timed_fit(est, X, lengths=lengths)
    n_seq = 1 if lengths is None else len(lengths)
    describe(
        est,
        X.shape[0],
        seconds,
        title=f"{cls.__name__} of {data.path.name} ({n_seq} sequence(s))",
        symbols=mapping,
    )
    return est, X, mapping


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


def _plot_fit(args, est, X, lengths, extra) -> None:
    from . import plot

    name = pathlib.Path(args.file).name
    if args.model == "gmm":
        fig = plot.plot_gmm(
            est, X, title=f"{name}: {est.n_components} Gaussian components"
        )
    elif args.model == "coins":
        fig = plot.plot_coins(
            coin_trajectory(est, X[:, 0]), title=f"{name}: coin mixture"
        )
    else:
        posterior = est.predict_proba(X, lengths=lengths)
        states = est.predict(X, lengths=lengths)
        shown = X if extra is None else extra[X[:, 0]]  # the original symbols
        if np.all(shown == np.round(shown)):
            shown = shown.astype(np.int64)  # discrete: points, no joining line
        fig = plot.plot_hmm(
            shown,
            states,
            posterior,
            lengths=lengths,
            title=f"{name}: {est.n_components}-state HMM",
        )
    _save_plot(fig, args.plot)


def _save_plot(fig, path) -> None:
    from . import plot

    try:
        plot.save_figure(fig, path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: cannot write the plot ({err})") from None


def coin_trajectory(est, heads):
    """Head probabilities after each iteration, replaying the estimator's best run.

    Reruns EM one iteration at a time from each restart's initial parameters
    with the estimator's stopping rule and returns the path of the restart that
    ends with the highest log-likelihood: (n_iter + 1, K).
    """
    import jax

    from .estimators import _base

    model = est._model()
    data = np.asarray(heads, dtype=est._fit_dtype)
    keys = jax.random.split(_base.check_random_state(est.random_state), est.n_init)
    best, best_ll = None, -np.inf
    for key in keys:
        params = est._init_params(key, data, None)
        path, ll = em_path(model, params, data, est.max_iter, est.tol)
        if ll > best_ll:
            best, best_ll = path, ll
    return np.stack([p["p"] for p in best])


def em_path(model, params, data, max_iter: int, tol: float, frozen=()):
    """Parameters after each EM iteration (list of pytrees) and the final loglik.

    One ``jaxem.fit(max_iter=1)`` per step (compiled once), stopping by the same
    rule as ``fit`` (``jaxem.has_converged``).
    """
    import jax

    import jaxem

    n = data.shape[0]
    path = [jax.tree.map(np.asarray, params)]
    previous = None
    ll = float(jaxem.log_likelihood(model, params, data))
    for _ in range(max_iter):
        # As in fit: test convergence at the E-step, then still take the M-step.
        done = previous is not None and bool(jaxem.has_converged(ll, previous, n, tol))
        result = jaxem.fit(model, params, data, max_iter=1, tol=0.0, frozen=frozen)
        params = result.params
        previous, ll = ll, float(result.log_likelihood)
        path.append(jax.tree.map(np.asarray, params))
        if done:
            break
    return path, ll


def _cmd_show(args) -> int:
    from . import _io

    path = pathlib.Path(args.model_file)
    meta = _io.read_metadata(path)
    obj = _io.load(path)
    print(
        f"{path}: jaxem file format {meta['format_version']}, saved by jaxem "
        f"{meta['jaxem_version']}"
    )
    if meta["kind"] == "estimator":
        options = ", ".join(
            f"{k}={v!r}"
            for k, v in obj.get_params().items()
            if not isinstance(v, np.ndarray)
        )
        print(f"{type(obj).__name__}({options})")
        describe(obj, getattr(obj, "_n_obs", None), title="fitted parameters")
        _show_fit_state(obj)
        return 0
    model = meta.get("model") or {}
    print(f"{meta['kind']} of model {model.get('name', '(not recorded)')}")
    leaves = _flatten(obj.params)
    print_table(
        "parameters",
        ["name", "shape", "dtype", "value"],
        [[k, "x".join(map(str, v.shape)) or "()", v.dtype, _fmt(v)] for k, v in leaves],
        indent=0,
    )
    if obj.result is not None:
        r = obj.result
        print(
            f"  log-likelihood {float(r.log_likelihood):.6g}   iterations "
            f"{int(r.n_iter)}   converged {bool(r.converged)}"
        )
    return 0


def _show_fit_state(est) -> None:
    bits = []
    for name in ("converged_", "n_iter_", "lower_bound_", "n_features_in_"):
        if hasattr(est, name):
            value = getattr(est, name)
            bits.append(f"{name}={_fmt(value) if name == 'lower_bound_' else value}")
    if hasattr(est, "monitor_"):
        mon = est.monitor_
        bits.append(f"iterations={mon.iter} converged={mon.converged}")
    if bits:
        print("   " + "   ".join(bits))


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = []
        for k, v in tree.items():
            out += _flatten(v, f"{prefix}{k}" if not prefix else f"{prefix}.{k}")
        return out
    if isinstance(tree, (list, tuple)):
        out = []
        for i, v in enumerate(tree):
            out += _flatten(v, f"{prefix}[{i}]")
        return out
    return [(prefix or "params", np.asarray(tree))]


# ========================================================================= demo
def _cmd_demo(args) -> int:
    _setup_jax(False)
    out = None if args.no_plots else pathlib.Path(args.out)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"--out {out}: cannot create ({err.strerror})") from None
        _pyplot_or_skip()
    progress = _want_progress(args.progress)
    start = time.perf_counter()
    print("jaxem demo: three EM fits on data shipped inside jaxem (jaxem/data)\n")
    written: list[pathlib.Path] = []
    for section in (_demo_heights, _demo_coins, _demo_casino):
        written += section(out, args.seed, progress)
        print()
    total = time.perf_counter() - start
    if out is None:
        print(f"done in {total:.1f} s (no plots: --no-plots)")
    else:
        print(f"done in {total:.1f} s; plots in {out.resolve()}/:")
        for path in written:
            print(f"  {path.name}")
    return 0


def _pyplot_or_skip() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "plots need matplotlib: python -m pip install 'jaxem[plot]' (or leave "
            "out the plots: jaxem demo --no-plots, jaxem fit without --plot)"
        ) from None


def _demo_plot(out, name, draw) -> list[pathlib.Path]:
    if out is None:
        return []
    path = out / name
    _save_plot(draw(), path)
    return [path]


def _demo_heights(out, seed, progress) -> list[pathlib.Path]:
    import jaxem

    from . import plot

    print("1. Heights: a mixture of two Gaussians fitted to 1000 adult heights (cm)")
    X = jaxem.data.load_heights()
    est = jaxem.GaussianMixture(2, n_init=3, random_state=seed, verbose=int(progress))
    seconds = _timed_fit(est, X)
    order = np.argsort(est.means_[:, 0])
    # Rows sorted by mean, labelled with the estimator's own component index
    # (as the plot's legend is).
    rows = [
        [
            str(k),
            f"{est.weights_[k]:.3f}",
            f"{est.means_[k, 0]:.2f}",
            f"{np.sqrt(est.covariances_[k].ravel()[0]):.2f}",
        ]
        for k in order
    ]
    ll, n_iter, converged = _estimator_ll(est, X.shape[0])
    print_table(
        "jaxem.GaussianMixture(2)",
        ["component", "weight", "mean (cm)", "std (cm)"],
        rows,
        [
            _fit_footer(ll, X.shape[0], n_iter, converged, seconds),
            "the data were drawn from N(162, 6.5^2) and N(176, 7.2^2), half each",
        ],
    )
    return _demo_plot(
        out,
        "heights.png",
        lambda: plot.plot_gmm(
            est, X, title="1000 heights: two Gaussian components", xlabel="height (cm)"
        ),
    ) + _demo_plot(
        out,
        "heights-loglik.png",
        lambda: plot.plot_log_likelihood(est, title="heights: EM log-likelihood"),
    )


def _demo_coins(out, seed, progress) -> list[pathlib.Path]:
    import jax.numpy as jnp

    import jaxem

    from . import _progress, plot

    print("2. Two coins (Do & Batzoglou, 2008): 5 sets of 10 tosses, coin unknown")
    tosses = jaxem.data.load_coins()
    heads = jnp.asarray(tosses.sum(axis=1), dtype=jnp.float64)
    print(f"   heads per set: {', '.join(str(int(h)) for h in heads)}")
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
    start = time.perf_counter()
    with _progress.progress("coins", 10, progress, min_interval=0.5) as callback:
        result = jaxem.fit(
            model,
            params0,
            heads,
            frozen=("weights",),
            tol=0.0,
            max_iter=10,
            callback=callback,
        )
        ll = float(result.log_likelihood)
    seconds = time.perf_counter() - start
    path, _ = em_path(model, params0, heads, 10, 0.0, frozen=("weights",))
    theta = np.stack([p["p"] for p in path])
    rows = [
        [name, f"{theta[0, k]:.2f}", f"{theta[-1, k]:.4f}", paper]
        for k, (name, paper) in enumerate([("A", "0.80"), ("B", "0.52")])
    ]
    print_table(
        "jaxem.models.binomial_mixture(2, 10), weights fixed at 1/2",
        ["coin", "start θ", "θ after 10 iterations", "paper"],
        rows,
        [
            _fit_footer(ll, heads.shape[0], int(result.n_iter), True, seconds).replace(
                "converged", "as asked (tol=0)"
            )
        ],
    )
    return _demo_plot(
        out,
        "coins.png",
        lambda: plot.plot_coins(theta, title="two coins: θ over 10 EM iterations"),
    ) + _demo_plot(
        out,
        "coins-loglik.png",
        lambda: plot.plot_log_likelihood(result, title="coins: EM log-likelihood"),
    )


def _demo_casino(out, seed, progress) -> list[pathlib.Path]:
    import jaxem

    from . import plot

    print("3. The occasionally dishonest casino: a 2-state HMM fitted to 600 rolls")
    rolls, loaded = jaxem.data.load_casino()
    X = (rolls - 1).reshape(-1, 1)
    start = time.perf_counter()
    # HMM likelihoods have poor local optima: keep the best of a few starts,
    # run as one vmapped program.
    est = jaxem.CategoricalHMM(
        n_components=2,
        n_iter=200,
        tol=1e-4,
        n_init=3,
        random_state=seed,
        verbose=bool(progress),
    ).fit(X)
    seconds = time.perf_counter() - start
    L = int(np.argmax(np.asarray(est.emissionprob_)[:, 5]))
    names = ["fair", "loaded"] if L == 1 else ["loaded", "fair"]
    rows = []
    for k in (1 - L, L):
        rows.append(
            [
                names[k],
                f"{est.startprob_[k]:.2f}",
                f"{est.transmat_[k, 1 - L]:.3f}",
                f"{est.transmat_[k, L]:.3f}",
            ]
            + [f"{p:.3f}" for p in est.emissionprob_[k]]
        )
    states = np.asarray(est.predict(X))
    agree = float(np.mean((states == L) == (loaded == 1)))
    ll, n_iter, converged = _estimator_ll(est, X.shape[0])
    print_table(
        "jaxem.CategoricalHMM(2), best of 3 starts",
        ["state", "start", "->fair", "->loaded"] + [f"P({f})" for f in range(1, 7)],
        rows,
        [
            _fit_footer(ll, X.shape[0], n_iter, converged, seconds),
            "truth: loaded die P(6)=0.5, fair->loaded 0.05, loaded->fair 0.10; "
            f"decoded states match the hidden die on {100 * agree:.0f}% of rolls",
        ],
    )
    posterior = np.asarray(est.predict_proba(X))
    return _demo_plot(
        out,
        "casino.png",
        lambda: plot.plot_hmm(
            rolls,
            states,
            posterior,
            true_states=loaded,
            state_names=names,
            title="casino: rolls coloured by decoded die; posterior of each die",
        ),
    ) + _demo_plot(
        out,
        "casino-loglik.png",
        lambda: plot.plot_log_likelihood(est, title="casino HMM: EM log-likelihood"),
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
