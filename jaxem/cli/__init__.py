"""The ``jaxem`` command line: ``jaxem demo``, ``jaxem fit``, ``jaxem show``.

Run ``jaxem --help`` or ``jaxem <command> --help``. User errors (unreadable
files, bad cells, bad option values) print one line and exit with status 2.

One module per concern: ``_args`` (the parser and its checked option values),
``_read`` (.csv/.npy files), ``_print`` (tables), ``_plots``, ``_run`` (what
every command shares: scoped precision, warnings, progress) and one module per
command (``_fit``, ``_show``, ``_demo``), imported only when that command runs:
parsing and ``--help`` import neither numpy nor JAX.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from ._args import PROG, UsageError, build_parser

__all__ = ["UsageError", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jaxem`` command line; returns the exit status.

    The computation runs in float64 (``--float32`` for float32) inside a
    ``jax.enable_x64`` context: JAX's global configuration is the same after
    ``main`` returns as before.

    Args:
        argv: the arguments after ``jaxem`` (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when a fit failed, 2 for a usage error (printed as one
        line on stderr), 130 when interrupted.

    Examples:
        >>> from jaxem.cli import main
        >>> main(["fit", "gmm", "missing.csv"])
        2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    return _run_command(args)


def _run_command(args) -> int:
    name = f"{PROG} {args.command}"
    try:
        command = importlib.import_module(f"._{args.command}", __name__)
        from ._run import session

        with session(args):
            return int(command.run(args) or 0)
    except RuntimeError as err:  # e.g. every restart hit a non-finite likelihood
        print(f"{name}: fit failed: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # UsageError, or the estimators' validation
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. --out in a folder that does not exist
        where = f"{err.filename}: " if err.filename else ""
        print(f"{name}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except ImportError as err:  # an optional extra that is not installed
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
