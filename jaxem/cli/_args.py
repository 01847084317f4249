"""The command line's parser: commands, options and their checked values.

Every option value is checked here, at parse time, so that a mistake is one
line naming the option (exit status 2) before anything is read or compiled.
Integers have upper bounds that keep a fit finite in memory and time:
``--max-iter`` sizes a history buffer per restart, ``--n-init`` a batch of
restarts, ``-k`` a (K, K) transition matrix. Seeds are what numpy and
scikit-learn accept, 0 to 2**32 - 1; larger seeds are refused rather than
silently reduced, so two different seeds never name the same run.

This module imports neither numpy nor JAX: ``jaxem --help`` stays instant.
"""

from __future__ import annotations

import argparse
import math

PROG = "jaxem"

MAX_ITER_LIMIT = 10**6
MAX_COMPONENTS = 1000
MAX_N_INIT = 1000
MAX_SEED = 2**32 - 1
MAX_TRIALS = 10**9


class UsageError(ValueError):
    """A problem with the user's input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def integer(low: int, high: int, high_text: str | None = None):
    """An argparse ``type`` accepting whole numbers in ``[low, high]``.

    Examples:
        >>> integer(1, 10)("7")
        7
        >>> integer(1, 10)("11")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected an integer from 1 to 10, got '11'
    """
    expected = f"an integer from {low} to {high_text or high}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (``--tol``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def lengths(text: str) -> list[int]:
    """Comma-separated positive sequence lengths (``--lengths 60,40``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        )
    return values


_MAIN_EPILOG = """\
examples:
  jaxem demo
  jaxem fit gmm data.csv --components 3 --plot fit.png --out model.npz
  jaxem show model.npz

Run 'jaxem <command> --help' for the options of a command.
"""

_FIT_EXAMPLES = """\
examples:
  jaxem fit gmm heights.csv --components 2 --plot heights.png
  jaxem fit gmm points.npy -k 3 --covariance-type diag --n-init 5 --out gmm.npz
  jaxem fit coins tosses.csv                    # rows of 0/1 tosses
  jaxem fit coins heads.csv --n-trials 10       # one column of head counts
  jaxem fit hmm rolls.csv --emission categorical --columns roll --states 2
  jaxem fit hmm signal.csv --sequence-column run --states 3 --predict states.csv
  jaxem fit gmm huge.npy -k 8 --chunk-rows 250000   # streamed, never loaded
  jaxem fit gmm points.npy --coordinator 10.0.0.1:1234 --num-processes 2 \\
      --process-id 0                            # on each host, its own id
  jaxem fit gmm cells.csv -k 3 --labels type --accelerate squarem --standard-errors
  jaxem fit gmm survey.csv -k 3 --missing marginalize   # empty cells: missing

FILE is .csv (a header row of names is optional; '#' starts a comment line; an
unnamed first column, as pandas writes its index, is skipped) or .npy (a 1-D
or 2-D numeric array). Each row is one observation.
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


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("jaxem")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxem`` parser; each command sets ``command`` (its module's name)."""
    parser = _Parser(
        prog=PROG,
        description="Expectation-Maximization in JAX: fit mixtures and hidden "
        "Markov models from the command line.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jaxem {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    _add_demo(sub)
    _add_fit(sub)
    _add_show(sub)
    return parser


def _command(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
    )


def _add_demo(sub) -> None:
    demo = _command(
        sub,
        "demo",
        help="fit three models on data shipped with jaxem and plot them",
        description="Fit, on data that ships inside jaxem (no network): a mixture "
        "of two Gaussians to 1000 heights, the two-coin experiment of Do & "
        "Batzoglou (2008), and a two-state HMM to the rolls of the occasionally "
        "dishonest casino. Prints a table per model and writes plots.",
        epilog=_DEMO_EXAMPLES,
    )
    demo.add_argument(
        "--out",
        default="jaxem-demo-output",
        metavar="DIR",
        help="folder for the plots (default: %(default)s)",
    )
    demo.add_argument("--no-plots", action="store_true", help="do not draw plots")
    _seed_option(demo)
    _progress_option(demo)


def _add_fit(sub) -> None:
    fit = _command(
        sub,
        "fit",
        help="fit a Gaussian mixture, a coin mixture or an HMM to a file",
        description="Fit a model to FILE and print its parameters.",
        epilog=_FIT_EXAMPLES,
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
        type=integer(1, MAX_COMPONENTS),
        default=2,
        metavar="K",
        help=f"number of mixture components / HMM states, 1 to {MAX_COMPONENTS} "
        "(default: 2)",
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
        type=integer(1, MAX_TRIALS, "10**9"),
        metavar="N",
        help="coins: tosses per row when FILE holds head counts",
    )
    _data_options(fit)
    _fit_options(fit)
    _scale_options(fit)
    _beyond_em_options(fit)
    _missing_option(fit)
    fit.add_argument("--out", metavar="MODEL.npz", help="save the fitted model")
    fit.add_argument(
        "--plot",
        metavar="FIG.png",
        help="draw the fit to an image (gmm with several columns: a pairs plot)",
    )
    fit.add_argument(
        "--predict",
        metavar="LABELS.csv",
        help="write each row's most likely component / state and the "
        "posterior probabilities",
    )
    _progress_option(fit)


def _data_options(fit) -> None:
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
        type=lengths,
        metavar="L1,L2,...",
        help="hmm: lengths of the concatenated sequences",
    )


def _fit_options(fit) -> None:
    fit.add_argument(
        "--n-init",
        type=integer(1, MAX_N_INIT),
        default=1,
        metavar="R",
        help="restarts, run together as one vmapped program; the "
        f"best is kept, 1 to {MAX_N_INIT} (default: 1)",
    )
    fit.add_argument(
        "--max-iter",
        type=integer(1, MAX_ITER_LIMIT, "10**6"),
        default=100,
        metavar="N",
        help="maximum EM iterations, 1 to 10**6 (default: 100)",
    )
    fit.add_argument(
        "--tol",
        type=non_negative_float,
        metavar="TOL",
        help="convergence tolerance (default: the estimator's: "
        "1e-3 on the average log-likelihood per row for mixtures, "
        "1e-2 on the total log-likelihood for HMMs, as hmmlearn); "
        "0 runs all --max-iter iterations",
    )
    _seed_option(fit)
    fit.add_argument(
        "--float32", action="store_true", help="compute in float32 (default: float64)"
    )


# ------------------------------------------------- scale-out (docs/scale.md)
MAX_PROCESSES = 65536
MAX_CHUNK_ROWS = 2**31 - 1


def coordinator(text: str) -> str:
    """``HOST:PORT`` of the ``jax.distributed`` coordinator, or ``auto``.

    Examples:
        >>> coordinator("10.0.0.1:1234")
        '10.0.0.1:1234'
        >>> coordinator("10.0.0.1")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected HOST:PORT (or auto), got '10.0.0.1'
    """
    if text == "auto":
        return text
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (or auto), got {text!r}")
    return text


def _scale_options(fit) -> None:
    fit.add_argument(
        "--chunk-rows",
        type=integer(1, MAX_CHUNK_ROWS, "2**31 - 1"),
        metavar="N",
        help="gmm on a .npy FILE: stream it N rows at a time through exact EM "
        "instead of loading it (for files larger than memory); with "
        "--coordinator, each process streams its own share of the rows",
    )
    fit.add_argument(
        "--coordinator",
        type=coordinator,
        metavar="HOST:PORT",
        help="run as one of several processes under jax.distributed (start the "
        "same command on every host, with --num-processes and --process-id); "
        "'auto' reads them from SLURM, Cloud TPU or Kubernetes",
    )
    fit.add_argument(
        "--num-processes",
        type=integer(1, MAX_PROCESSES),
        metavar="P",
        help="with --coordinator: the number of processes",
    )
    fit.add_argument(
        "--process-id",
        type=integer(0, MAX_PROCESSES - 1),
        metavar="I",
        help="with --coordinator: this process's index, 0 to P - 1 (process 0 "
        "prints and writes the outputs)",
    )


def _beyond_em_options(fit) -> None:
    """Semi-supervised labels, SQUAREM and standard errors (docs/labels.md)."""
    fit.add_argument(
        "--labels",
        metavar="COL",
        help="column of known components / states (0..K-1; -1 or nan: "
        "unknown): a semi-supervised fit; the column is not a feature",
    )
    fit.add_argument(
        "--accelerate",
        choices=["squarem"],
        help="accelerate EM with SQUAREM (same optimum, fewer EM steps)",
    )
    fit.add_argument(
        "--standard-errors",
        action="store_true",
        help="also print the fitted parameters' standard errors (observed "
        "information, by autodiff)",
    )


def _missing_option(fit) -> None:
    # missing values (docs/missing-values.md)
    fit.add_argument(
        "--missing",
        choices=["raise", "marginalize"],
        default="raise",
        help="empty, NA or NaN cells: 'raise' refuses them (default); "
        "'marginalize' treats them as missing at random and integrates them "
        "out exactly (gmm, Gaussian and Poisson hmm)",
    )


def _add_show(sub) -> None:
    show = _command(
        sub,
        "show",
        help="print a saved model",
        description="Print the parameters and metadata of a model saved with "
        "'jaxem fit --out' or jaxem.save.",
        epilog=_SHOW_EXAMPLES,
    )
    show.add_argument("model_file", metavar="MODEL", help="a saved .npz model")


def _seed_option(parser) -> None:
    parser.add_argument(
        "--seed",
        type=integer(0, MAX_SEED, "2**32 - 1"),
        default=0,
        help="random seed of the initialisations, 0 to 2**32 - 1 (default: 0)",
    )


def _progress_option(parser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="say when compiling and show a progress bar on stderr (default: "
        "when the output is a terminal)",
    )
