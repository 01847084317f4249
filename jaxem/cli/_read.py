"""Reading the command line's data files: .csv and .npy into a numeric table.

Every problem in a file is one :class:`UsageError` that says where it is, in
the file's own terms: the line number and the column's name (or 1-based
number when the file has no header).
"""

from __future__ import annotations

import csv
import os
import pathlib
from collections.abc import Callable

import numpy as np

from ._args import UsageError

_MISSING = {"", "na", "nan", "n/a", "null", "none"}
# What pandas calls an index column without a name when it reads one back.
_INDEX_NAMES = {"", "unnamed: 0"}


class Table:
    """Numeric data read from a file: (N, d) values, column names, line numbers.

    Attributes:
        path: the file read.
        values: (N, d) float64 array.
        names: d column names (the header's, or "1".."d").
        lines: N line numbers in the file, one per row (for messages).
    """

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


def read_table(
    path: str | os.PathLike,
    *,
    check_finite: bool = True,
    note: Callable[[str], None] = print,
    allow_missing: bool = False,
) -> Table:
    """Read a .csv or .npy file of numbers, with one-line errors for bad input.

    Args:
        path: the file.
        check_finite: refuse NaN and infinite cells.
        note: called with one line when the reader skips something (a
            pandas index column).
        allow_missing: read empty and NA cells of a .csv as NaN (missing)
            instead of refusing them.

    Returns:
        A :class:`Table`.

    Raises:
        UsageError: the file is missing, unreadable, or has a bad cell.

    Examples:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.csv"
        >>> _ = path.write_text(",x,y\\n0,1.5,2\\n1,3,4\\n")  # pandas' to_csv
        >>> table = read_table(path, note=print)  # doctest: +ELLIPSIS
        p.csv: skipped the first column (no name: an index, as pandas writes)
        >>> table.names, table.values.shape
        (['x', 'y'], (2, 2))
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, expected a .csv or .npy file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        table = _read_npy(path)
    elif suffix in (".csv", ".txt"):
        table = _read_csv(path, note, allow_missing)
    else:
        raise UsageError(f"{path}: unknown file type {suffix!r}, expected .csv or .npy")
    if check_finite:
        check_all_finite(table)
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


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _rows(path) -> tuple[list[list[str]], list[int]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read ({err})") from None
    rows, lines = [], []
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or all(not c.strip() for c in row) or row[0].lstrip()[:1] == "#":
            continue
        rows.append([c.strip() for c in row])
        lines.append(lineno)
    if not rows:
        raise UsageError(f"{path}: no data rows")
    return rows, lines


def _is_header(row: list[str]) -> bool:
    # A header has no numbers and at least one name; an empty first name is
    # what pandas writes above its index.
    return all(_number(c) is None for c in row) and any(
        c.lower() not in _MISSING for c in row
    )


def _read_csv(path, note, allow_missing=False) -> Table:
    rows, lines = _rows(path)
    skip = 0
    if _is_header(rows[0]):
        names, rows, header_line, lines = rows[0], rows[1:], lines[0], lines[1:]
        if names[0].lower() in _INDEX_NAMES and len(names) > 1:
            skip = 1
            note(
                f"{path.name}: skipped the first column (no name: an index, "
                "as pandas writes)"
            )
        names = names[skip:]
        _check_names(path, header_line, names, skip)
        if not rows:
            raise UsageError(f"{path}: has a header but no data rows")
    else:
        names = [str(j + 1) for j in range(len(rows[0]))]
    values = np.empty((len(rows), len(names)))
    for i, (row, lineno) in enumerate(zip(rows, lines, strict=True)):
        if len(row) != len(names) + skip:
            raise UsageError(
                f"{path}: row {lineno} has {len(row)} column(s), expected "
                f"{len(names) + skip} (ragged rows)"
            )
        cells = zip(names, row[skip:], strict=True)
        values[i] = [_cell(path, lineno, name, c, allow_missing) for name, c in cells]
    return Table(path, values, names, lines)


def _check_names(path, line: int, names: list[str], skip: int) -> None:
    for j, name in enumerate(names):
        if name.lower() in _MISSING:
            raise UsageError(
                f"{path}: row {line} (the header): column {j + 1 + skip} has no name"
            )
    if len(set(names)) != len(names):
        raise UsageError(f"{path}: row {line}: repeated column names")


def _cell(path, lineno: int, name: str, cell: str, allow_missing=False) -> float:
    number = _number(cell)
    if number is None and allow_missing and cell.lower() in _MISSING:
        return float("nan")
    if number is None:
        where = f"{path}: row {lineno}, column {name!r}"
        if cell.lower() in _MISSING:
            raise UsageError(f"{where} is missing (empty or NA)")
        raise UsageError(f"{where}: {cell!r} is not a number")
    return number


def check_all_finite(table: Table) -> None:
    """Refuse a NaN or infinite cell, naming the first one."""
    bad = np.argwhere(~np.isfinite(table.values))
    if bad.size:
        i, j = bad[0]
        kind = "NaN" if np.isnan(table.values[i, j]) else "infinite"
        raise UsageError(f"{table.path}: {table.where(i, j)} is {kind}")


def check_no_infinity(table: Table) -> None:
    """Refuse an infinite cell (NaN, a missing cell, is allowed), naming it."""
    bad = np.argwhere(np.isinf(table.values))
    if bad.size:
        i, j = bad[0]
        raise UsageError(f"{table.path}: {table.where(i, j)} is infinite")


def select_columns(
    table: Table, spec: str | None, exclude: int | None = None, labels=None
):
    """The columns named by ``--columns`` (default: all but ``exclude`` and
    the ``labels`` column)."""
    if spec:
        cols = [table.column(s.strip()) for s in spec.split(",") if s.strip()]
    else:
        cols = [j for j in range(len(table.names)) if j not in (exclude, labels)]
    if exclude is not None and exclude in cols:
        raise UsageError("--columns: must not include the --sequence-column")
    if labels is not None and labels in cols:
        raise UsageError("--columns: must not include the --labels column")
    if not cols:
        raise UsageError(f"{table.path}: no data columns left")
    return table.select(cols)


def sequence_lengths(table: Table, col: int) -> tuple[list[int], list[str]]:
    """Lengths and ids of the contiguous runs of a sequence-id column."""
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
