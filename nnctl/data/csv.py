"""CSV files as numbers only (the format-version-1 contract). The fast path: pyarrow reads the
feature columns straight as float64 into one C-contiguous (n, f) array (``nnctl.data.raw``); any
cell it cannot read exactly sends the file to the per-line path, which names the file, line and
column of the bad cell."""

from __future__ import annotations

import csv
import io
import math
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data.table import (
    Array,
    Locator,
    Table,
    check_finite_x,
    finish_targets,
    parse_number,
    select_columns,
    show_cell,
)
from nnctl.errors import DataError

if TYPE_CHECKING:
    from nnctl.data.raw import RawColumn

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


def parse_header(source: str, lineno: int, names: list[str], *, allow_index: bool = False) -> list[str]:
    """Stripped column names; every column needs a unique name. With ``allow_index`` the first
    may be empty: pandas' ``to_csv()`` and R's ``write.csv`` write their row index there."""
    names = [name.strip() for name in names]
    for i, name in enumerate(names):
        if not name and not (allow_index and i == 0 and len(names) > 1):
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


def _parse_header(source: str, lineno: int, line: str) -> list[str]:
    return parse_header(source, lineno, _split_cells(source, lineno, line), allow_index=True)


def read_rows_slowly(
    source: str, data: bytes, sep: str = ","
) -> tuple[list[str], list[list[str]], list[int]]:
    """(names, rows of cells, line of each row) by Python's csv module, for files pyarrow refused:
    the message names the line that is wrong."""
    text = _decode(source, data)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    names: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    linenos: list[int] = []
    previous = 0
    try:
        for record in reader:
            start, previous = previous + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if names is None:
                names, header_line = parse_header(source, start, record, allow_index=True), start
                continue
            if len(record) != len(names):
                raise DataError(f"{source}:{start}: {len(record)} cells, the header has {len(names)}")
            rows.append(record)
            linenos.append(start)
    except csv.Error as exc:
        raise DataError(f"{source}:{reader.line_num}: malformed quoting ({exc})") from None
    if names is None:
        raise DataError(f"{source}: the file is empty", hint="a CSV needs a header row and data rows")
    if not rows:
        raise DataError(f"{source}: only a header row, no data rows")
    del header_line
    return names, rows, linenos


def load_csv(
    source: str,
    data: bytes,
    targets: list[str] | None,
    feature_names: list[str] | None,
    require_target: bool,
) -> Table:
    """Every feature a finite number (the format-version-1 contract): pyarrow reads the file;
    when any cell is not a finite number the per-line reader below names it exactly."""
    table = _load_csv_fast(source, data, targets, feature_names, require_target)
    if table is None:
        return _load_csv_slowly(source, data, targets, feature_names, require_target)
    return table


def _load_csv_fast(
    source: str,
    data: bytes,
    targets: list[str] | None,
    feature_names: list[str] | None,
    require_target: bool,
) -> Table | None:
    """pyarrow reads the feature columns straight as float64 into one (n, f) array and the target
    columns as text (their distinct cells parsed once, as the slow path parses them); the other
    columns (a row index, columns a checkpoint does not use) are split but never converted. None
    when anything is amiss: the slow path then names it."""
    from nnctl.data.raw import (
        arrow_column,
        first_line,
        float_matrix,
        read_csv_arrow,
        sniff_delimiter,
        split_header,
    )

    sep = sniff_delimiter(first_line(data))
    try:
        names = parse_header(source, 1, split_header(data, sep), allow_index=True)
    except DataError:
        return None
    if not names:
        return None
    candidates = names if names[0] else names[1:]  # an empty first name: a row index, never a feature
    offset = len(names) - len(candidates)
    fidx, tidx = select_columns(source, candidates, targets, feature_names, require_target)
    fidx, tidx = [i + offset for i in fidx], [i + offset for i in tidx]
    read = read_csv_arrow(data, sep, (), floats=fidx, texts=tidx, only=sorted(set(fidx + tidx)))
    if read is None:
        return None
    arrow = read[1]
    x = float_matrix(arrow, fidx)
    if x is None or not _all_finite(x):
        return None
    y = None
    if tidx:
        try:
            columns = [arrow_column(names[i], i, arrow.column(f"c{i}"), ()) for i in tidx]
        except Exception:  # pyarrow refused a cell (bytes that are not UTF-8): the slow reader names it
            return None
        y = _targets(source, data, sep, columns)
        if y is None:
            return None
    return _table(source, x, y, names, fidx, tidx)


def _all_finite(x: Array) -> bool:
    # min/max propagate NaN and expose +-inf without an (n, f) boolean temporary.
    return x.size == 0 or bool(np.isfinite(x.min()) and np.isfinite(x.max()))


def _targets(source: str, data: bytes, sep: str, columns: list[RawColumn]) -> Array | None:
    """(n, k) float64 when every target column is numbers, text when none is; None (the slow path
    decides) for a mix, or for a missing or non-finite number."""
    from nnctl.data.raw import RawTable, csv_locator

    if all(c.numeric for c in columns):
        y = np.column_stack([c.values for c in columns])
        return y if np.isfinite(y).all() else None
    if any(c.numeric for c in columns):
        return None
    raw = RawTable(source, columns, len(columns[0].values), csv_locator(source, data, sep))
    cells = np.column_stack([c.values for c in columns])
    return finish_targets(cells, lambda r, c: raw.locate(r, columns[c]))


def _load_csv_slowly(
    source: str, data: bytes, targets: list[str] | None, feature_names: list[str] | None, require_target: bool
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
    offset = 0 if names[0] else 1  # an empty first name: a row index, never a feature
    fidx, tidx = select_columns(source, names[offset:], targets, feature_names, require_target)
    fidx, tidx = [i + offset for i in fidx], [i + offset for i in tidx]
    parsed = _parse_fast(source, rows, linenos, names, fidx, tidx)
    x, ycells = parsed if parsed is not None else _parse_slow(source, rows, linenos, names, fidx, tidx)
    y = None if ycells is None else finish_targets(ycells, _cell_locator(source, linenos, names, tidx))
    return _table(source, x, y, names, fidx, tidx)


def _table(
    source: str, x: Array, y: Array | None, names: list[str], fidx: list[int], tidx: list[int]
) -> Table:
    """The features (columns ``fidx`` of ``names``) as float64 and the targets (columns ``tidx``)."""
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
