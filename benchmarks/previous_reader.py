"""The PREVIOUS CSV reader, kept only so that ``benchmarks/csv_read.py`` can time it side by side.

Verbatim from git commit 85c6bf2 (the reader before pyarrow and tabular data): the bodies of
``nnctl/data/table.py`` and ``nnctl/data/csv.py`` of that commit, concatenated, with the imports
merged; ``load_table`` below is that commit's ``nnctl.data.load.load_table`` for a CSV path. Not
used by nnctl; do not edit (re-create with ``git show 85c6bf2:nnctl/data/csv.py``).
"""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.errors import DataError

Array = np.ndarray
# Where a bad cell is, as text: "file.csv:12:3 (column 'petal_width')" or "file.npz: x[11, 2]".
Locator = Callable[[int, int], str]


@dataclass
class Table:
    """A loaded dataset: features, raw targets and the names needed for messages and checkpoints."""

    x: Array  # (n, f) float64, C-contiguous
    y: Array | None  # (n, k) float64 when every target cell is numeric, else str; None: no targets
    feature_names: list[str]
    target_names: list[str]
    source: str  # the path read, or "builtin:xor"


# ---------------------------------------------------------------------------------------------
# Small text helpers


def parse_number(text: str) -> float | None:
    """float(text), or None. Underscores and non-ASCII digits are refused so the fast
    (np.loadtxt) and slow (per-cell) CSV paths accept exactly the same cells."""
    if "_" in text or not text.isascii():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def format_number(v: float) -> str:
    """Shortest text for a number: 1.0 -> "1", 2.5 -> "2.5"."""
    if v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(v)


def canonical_label(text: str) -> str:
    """A class label as text. Numeric labels get one spelling ("1", "1.0", "01" -> "1") so labels read
    from a numeric column, a string column or a checkpoint always compare equal."""
    text = text.strip()
    v = parse_number(text)
    return format_number(v) if v is not None and math.isfinite(v) else text


def show_cell(cell: str, limit: int = 40) -> str:
    return repr(cell if len(cell) <= limit else cell[: limit - 3] + "...")


def preview(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


def _did_you_mean(name: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def target_list(target: str | Sequence[str] | None) -> list[str] | None:
    if target is None:
        return None
    names = [target] if isinstance(target, str) else list(target)
    if not names:
        raise DataError("the target column list is empty", hint="name at least one target column")
    if len(set(names)) != len(names):
        raise DataError(f"the target columns repeat a name: {', '.join(names)}")
    return names


# ---------------------------------------------------------------------------------------------
# Column selection (shared by CSV and builtins: both are named columns)


def select_columns(
    source: str,
    names: list[str],
    targets: list[str] | None,
    feature_names: list[str] | None,
    require_target: bool,
) -> tuple[list[int], list[int]]:
    """Indices of the feature and target columns. Without feature_names the features are every
    non-target column in file order; with them, exactly those columns in that order."""
    index = {name: i for i, name in enumerate(names)}
    if feature_names is not None:
        if len(set(feature_names)) != len(feature_names):
            raise DataError(f"the expected feature names repeat a name: {preview(feature_names)}")
        for name in feature_names:
            if name not in index:
                raise DataError(
                    f"{source}: no column '{name}', which the model expects as a feature "
                    f"(columns: {preview(names)})",
                    hint=_did_you_mean(name, names)
                    or f"the file needs the columns the model was trained on: {preview(feature_names)}",
                )
        wanted = targets if targets is not None else [n for n in names[-1:] if n not in feature_names]
        clash = [t for t in wanted if t in feature_names]
        if clash:
            raise DataError(f"{source}: column '{clash[0]}' cannot be both a feature and a target")
        fidx = [index[n] for n in feature_names]
    else:
        wanted = targets if targets is not None else names[-1:]
        fidx = []
    present = [t for t in wanted if t in index]
    if len(present) < len(wanted) and (present or require_target):
        missing = next(t for t in wanted if t not in index)
        raise DataError(
            f"{source}: no target column '{missing}'; columns: {preview(names)}",
            hint=_did_you_mean(missing, names) or "set the target to one of the columns",
        )
    tidx = [index[t] for t in present] if len(present) == len(wanted) else []
    if not tidx and require_target:
        raise DataError(f"{source}: no target column", hint="name the target column(s) explicitly")
    if feature_names is None:
        taken = set(tidx)
        fidx = [i for i in range(len(names)) if i not in taken]
    if not fidx:
        raise DataError(f"{source}: no feature columns (every column is a target)")
    return fidx, tidx


# ---------------------------------------------------------------------------------------------
# Finite checks and target finishing (shared by CSV and .npz)


def check_finite_x(x: Array, where: Locator, cell: Callable[[int, int], str]) -> None:
    # min/max propagate NaN and expose +-inf without a (n, f) boolean temporary: the common, clean case.
    if x.size == 0 or (np.isfinite(x.min()) and np.isfinite(x.max())):
        return
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise DataError(
            f"{where(r, c)}: {show_cell(cell(r, c))} is not a finite number",
            hint="features must be finite numbers; remove or impute missing values first",
        )


def finish_targets(cells: Array, where: Locator) -> Array:
    """(n, k) target text -> float64 when every cell is a number, else stripped str.

    Works on the unique cells, so a 60,000-row label column costs a handful of float() calls."""
    cells = np.char.strip(cells.astype(np.str_))
    empty = np.argwhere(cells == "")
    if len(empty):
        r, c = (int(v) for v in empty[0])
        raise DataError(f"{where(r, c)}: empty target cell", hint="fill in the target or remove the row")
    uniq, inverse = np.unique(cells, return_inverse=True)
    values = [parse_number(str(u)) for u in uniq]
    if any(v is None for v in values):
        return np.ascontiguousarray(cells)
    y = np.asarray(values, dtype=np.float64)[inverse.reshape(-1)].reshape(cells.shape)
    bad = np.argwhere(~np.isfinite(y))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise DataError(
            f"{where(r, c)}: target {show_cell(str(cells[r, c]))} is not a finite number",
            hint="remove rows with missing targets",
        )
    return y


# ---------------------------------------------------------------------------------------------
# CSV


def _decode(source: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")  # tolerates the BOM that Excel writes
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{source}:{line}: not UTF-8 text (byte {data[exc.start]:#04x})",
            hint="save the file as UTF-8 CSV",
        ) from exc
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DataError(f"{source}:{line}: contains a NUL byte; is this really a CSV text file?")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _split_cells(source: str, lineno: int, line: str) -> list[str]:
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line], strict=True))
    except (csv.Error, StopIteration) as exc:
        raise DataError(f"{source}:{lineno}: malformed quoting ({exc})") from exc


def _parse_header(source: str, lineno: int, line: str) -> list[str]:
    names = [name.strip() for name in _split_cells(source, lineno, line)]
    for i, name in enumerate(names):
        if not name:
            raise DataError(
                f"{source}:{lineno}: column {i + 1} has no name",
                hint="the first line must be a header row naming every column",
            )
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(
                f"{source}:{lineno}: duplicate column name '{name}' (columns {seen[name] + 1} and {i + 1})",
                hint="column names must be unique",
            )
        seen[name] = i
    return names


def load_csv(
    source: str,
    data: bytes,
    targets: list[str] | None,
    feature_names: list[str] | None,
    require_target: bool,
) -> Table:
    text = _decode(source, data)
    rows: list[str] = []
    linenos: list[int] = []
    for i, line in enumerate(text.split("\n")):
        if line.strip():  # blank lines (trailing ones in particular) carry no row
            rows.append(line)
            linenos.append(i + 1)
    if not rows:
        raise DataError(f"{source}: the file is empty", hint="a CSV needs a header row and data rows")
    names = _parse_header(source, linenos[0], rows[0])
    rows, linenos = rows[1:], linenos[1:]
    if not rows:
        raise DataError(f"{source}: only a header row, no data rows")
    fidx, tidx = select_columns(source, names, targets, feature_names, require_target)
    parsed = _parse_fast(source, rows, linenos, names, fidx, tidx)
    x, ycells = parsed if parsed is not None else _parse_slow(source, rows, linenos, names, fidx, tidx)
    y = None if ycells is None else finish_targets(ycells, _cell_locator(source, linenos, names, tidx))
    return Table(
        x=np.ascontiguousarray(x, dtype=np.float64),
        y=y,
        feature_names=[names[i] for i in fidx],
        target_names=[names[i] for i in tidx],
        source=source,
    )


def _cell_locator(source: str, linenos: list[int], names: list[str], cols: list[int]) -> Locator:
    return lambda r, c: f"{source}:{linenos[r]}:{cols[c] + 1} (column '{names[cols[c]]}')"


def _parse_fast(
    source: str, rows: list[str], linenos: list[int], names: list[str], fidx: list[int], tidx: list[int]
) -> tuple[Array, Array | None] | None:
    """np.loadtxt (C speed) on the feature columns of an unquoted file, targets by string slicing.
    Returns (x, target text) or None when a feature cell does not parse, leaving the exact location
    to ``_parse_slow``."""
    if any('"' in row for row in rows):
        return None
    ncols = len(names)
    for lineno, row in zip(linenos, rows, strict=True):
        # No quotes, so commas count cells exactly; loadtxt with usecols does not check the width.
        if row.count(",") + 1 != ncols:
            raise DataError(f"{source}:{lineno}: {row.count(',') + 1} cells, the header has {ncols}")
    try:
        x = np.loadtxt(rows, delimiter=",", comments=None, usecols=fidx, dtype=np.float64, ndmin=2)
    except ValueError:
        return None
    check_finite_x(
        x, _cell_locator(source, linenos, names, fidx), lambda r, c: rows[r].split(",")[fidx[c]].strip()
    )
    if not tidx:
        return x, None
    # One target cell per row without splitting the whole (possibly 785-cell) row.
    columns = [[_nth_cell(row, j, ncols) for row in rows] for j in tidx]
    return x, np.array(columns, dtype=np.str_).T


def _nth_cell(row: str, j: int, ncols: int) -> str:
    """Cell j of an unquoted row, splitting from whichever end is nearer."""
    if j < ncols // 2:
        return row.split(",", j + 1)[j]
    return row.rsplit(",", ncols - j)[1]


def check_finite_targets(y: Array, where: Locator, cell: Callable[[int, int], str]) -> None:
    bad = np.argwhere(~np.isfinite(y))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise DataError(
            f"{where(r, c)}: target {show_cell(cell(r, c).strip())} is not a finite number",
            hint="remove rows with missing targets",
        )


def _parse_slow(
    source: str, rows: list[str], linenos: list[int], names: list[str], fidx: list[int], tidx: list[int]
) -> tuple[Array, Array | None]:
    """Row by row, with csv quoting; finds the first bad cell and names it exactly."""
    ncols = len(names)
    x = np.empty((len(rows), len(fidx)), dtype=np.float64)
    ycells: list[list[str]] = []
    for r, (lineno, row) in enumerate(zip(linenos, rows, strict=True)):
        cells = _split_cells(source, lineno, row)
        if len(cells) != ncols:
            raise DataError(f"{source}:{lineno}: {len(cells)} cells, the header has {ncols}")
        feats = [cells[j] for j in fidx]
        values = [parse_number(c) for c in feats]
        for c, (text, v) in enumerate(zip(feats, values, strict=True)):
            if v is None or not math.isfinite(v):
                what = "is not a number" if v is None else "is not a finite number"
                raise DataError(
                    f"{_cell_locator(source, linenos, names, fidx)(r, c)}: {show_cell(text.strip())} {what}",
                    hint="features must be finite numbers; remove or impute missing values first",
                )
        x[r] = values
        if tidx:
            ycells.append([cells[j] for j in tidx])
    y = np.array(ycells, dtype=np.str_).reshape(len(rows), len(tidx)) if tidx else None
    return x, y


def load_table(path: Path, target: str | list[str] | None = None) -> Table:
    """85c6bf2's ``load_table`` for a CSV file: the bytes, then ``load_csv``."""
    return load_csv(str(path), Path(path).read_bytes(), target_list(target), None, True)
