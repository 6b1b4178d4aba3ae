"""Raw tables: every column of a CSV or Parquet file as it is, before any preprocessing.

The CSV reader is pyarrow's (multithreaded C++; figures against the previous ``np.loadtxt``
reader and pandas' C engine in docs/data.md, "Reading speed", from ``benchmarks/csv_read.py``),
imported inside the functions that use it so that ``nnctl --help`` never pays for it. pyarrow
infers each column's type, the missing-value tokens already nulls: numbers become float64 in one
copy (NaN where missing); any other column is dictionary-encoded once, and only its distinct cells
are stripped, checked against the tokens and tried as numbers. Columns convert on every core.
When pyarrow refuses the file (a ragged row, bad quoting, bytes that are not UTF-8), the
pure-Python reader in ``nnctl.data.csv`` reads it again to name the line that is wrong. Line
numbers of data rows are computed only when a message needs one, so the fast path never pays for
them either.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.data.table import Array, parse_number, show_cell
from nnctl.errors import DataError

#: Cells read as missing unless ``data.missing_values`` says otherwise (compared after stripping).
MISSING_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "None", "?")
DELIMITERS = (",", ";", "\t", "|")


@dataclass
class RawColumn:
    """One column of a file: float64 values (NaN where missing) when every present cell is a
    number, else the stripped text of each cell ("" where missing)."""

    name: str
    position: int  # 0-based column of the file, for messages
    values: Array
    missing: Array  # bool (n,)

    @property
    def numeric(self) -> bool:
        return self.values.dtype.kind == "f"

    def take(self, rows: Array) -> RawColumn:
        return RawColumn(self.name, self.position, self.values[rows], self.missing[rows])


@dataclass
class RawTable:
    """Every column of a file, in file order, and a way to name a cell's place in it."""

    source: str
    columns: list[RawColumn]
    n_rows: int
    locator: Callable[[int], str] = field(repr=False)  # data row (0-based) -> "file:LINE" or "file: row N"

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def locate(self, row: int, column: RawColumn) -> str:
        """``file.csv:12:3 (column 'bill_length_mm')`` for CSV, ``file.parquet: row 11 ...`` else."""
        where = self.locator(row)
        if where.rsplit(":", 1)[-1].isdigit():
            return f"{where}:{column.position + 1} (column '{column.name}')"
        return f"{where}, column '{column.name}'"


# ---------------------------------------------------------------------------------------------
# CSV


def sniff_delimiter(header: str) -> str:
    """The delimiter of a header line: the first of , ; TAB | that occurs outside quotes."""
    unquoted = "".join(part for i, part in enumerate(header.split('"')) if i % 2 == 0)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], -DELIMITERS.index(d)))
    return best if counts[best] else ","


def first_line(data: bytes) -> str:
    """The first non-blank line, decoded leniently (only for sniffing)."""
    for line in data[:65536].splitlines():
        text = line.decode("utf-8", errors="replace").lstrip("\ufeff")
        if text.strip():
            return text
    return ""


def read_csv(
    source: str, data: bytes, *, delimiter: str | None = None, missing_values: Sequence[str] = MISSING_VALUES
) -> RawTable:
    """All columns of a CSV file (header row first). The first column is kept even when its
    name is empty: the caller decides whether it is a row index."""
    from nnctl.data.csv import parse_header, read_rows_slowly

    sep = delimiter or sniff_delimiter(first_line(data))
    read = read_csv_arrow(data, sep, missing_values)
    converted = None
    if read is not None:
        names, table = read
        parse_header(source, 1, names, allow_index=True)
        try:
            converted = arrow_columns(names, [table.column(i) for i in range(len(names))], missing_values)
        except Exception:  # pyarrow refused a cell (bytes that are not UTF-8): the slow reader names it
            converted = None
    if converted is None:  # pyarrow refused: the slow reader names the line (or reads what it can)
        names, rows, linenos = read_rows_slowly(source, data, sep)
        return _table_from_rows(source, names, rows, linenos, missing_values)
    return RawTable(source, converted, table.num_rows, csv_locator(source, data, sep))


def _header_line(data: bytes) -> int:
    for number, line in enumerate(data[:65536].splitlines(), start=1):
        if line.strip(b" \t\r\n\xef\xbb\xbf"):
            return number
    return 1


def split_header(data: bytes, sep: str) -> list[str]:
    """The cells of the first non-blank line, as written (not stripped)."""
    text = first_line(data)
    return next(csv.reader([text], delimiter=sep)) if text else []


def read_csv_arrow(
    data: bytes,
    sep: str,
    missing_values: Sequence[str],
    *,
    floats: Sequence[int] = (),
    texts: Sequence[int] = (),
    only: Sequence[int] = (),
) -> tuple[list[str], Any] | None:
    """(header cells, pyarrow Table with a column per header cell), or None when pyarrow cannot read
    the file. Every column's type is inferred, except that the columns ``floats`` are read as
    float64 (a cell that is not a number then refuses the file, as ``float(cell)`` would) and the
    columns ``texts`` as text (an integer column would read "-0" as 0, not float's -0.0). With
    ``only``, just those columns are converted (the others are still split, so a ragged row is
    still refused); the table's columns keep their file positions' names, ``c0``, ``c1``, ..."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if b"\x00" in data or not first_line(data) or _header_line(data) != 1:
        return None  # the slow reader names the problem, or reads leading blank lines
    try:
        header = split_header(data, sep)
        if not header:
            return None
        generated = [f"c{i}" for i in range(len(header))]
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=generated, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=b'"' in data),
            convert_options=pacsv.ConvertOptions(
                column_types={generated[i]: pa.float64() for i in floats}
                | {generated[i]: pa.string() for i in texts},
                include_columns=[generated[i] for i in only],
                null_values=list(missing_values),
                strings_can_be_null=bool(missing_values),
                quoted_strings_can_be_null=bool(missing_values),
                true_values=[],  # never booleans: "True"/"yes" stay text (categories)
                false_values=[],
            ),
        )
    except (pa.ArrowException, csv.Error, UnicodeDecodeError, ValueError):
        return None
    if table.num_rows == 0:
        return None
    return header, table


def arrow_columns(
    names: Sequence[str], columns: Sequence[Any], missing_values: Sequence[str]
) -> list[RawColumn]:
    """Each pyarrow column as a RawColumn, the columns shared among the cores."""
    cells = sum(len(c) for c in columns)
    return in_threads(
        lambda i: arrow_column(names[i], i, columns[i], missing_values), range(len(names)), cells >= 200_000
    )


def cores() -> int:
    """The cores this process may run on (``taskset`` and containers restrict them)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def in_threads(work: Callable[[int], Any], items: Sequence[int], worth_it: bool = True) -> list[Any]:
    """``[work(i) for i in items]``, on every core when ``worth_it``: pyarrow's kernels and NumPy's
    copies release the GIL, so the cores that just parsed the file share the conversion too."""
    workers = min(len(items), cores())
    if workers < 2 or not worth_it:
        return [work(i) for i in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))


def arrow_column(name: str, position: int, column: Any, missing_values: Sequence[str]) -> RawColumn:
    """A pyarrow column as a RawColumn: float64 when pyarrow read numbers, else through a
    dictionary of its distinct cells (few, as a rule): those are stripped, checked against the
    missing-value tokens and tried as numbers once each, and the rows become indices into them.
    Dates and times that pyarrow recognised are text again."""
    import pyarrow as pa
    import pyarrow.compute as pc

    name = name.strip()
    kind = column.type
    if pa.types.is_null(kind):  # every cell missing
        return RawColumn(name, position, np.full(len(column), np.nan), np.ones(len(column), dtype=bool))
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        # One copy: nulls come out as NaN, integers as float64 (rounded as float(text) rounds them).
        values = np.asarray(column.to_numpy(), dtype=np.float64)
        return RawColumn(name, position, values, np.isnan(values))
    if not pa.types.is_string(kind) and not pa.types.is_large_string(kind):
        column = pc.cast(column, pa.string())
    encoded = pc.dictionary_encode(column).combine_chunks()
    indices = encoded.indices  # int32; a null cell becomes -1: the last entry of each lookup below
    nulls = indices.null_count
    indices = (indices.fill_null(-1) if nulls else indices).to_numpy(zero_copy_only=False)
    words = [str(word).strip() for word in encoded.dictionary.to_pylist()]
    tokens = set(missing_values)
    is_token = np.array([word in tokens for word in words] + [True])
    missing = is_token[indices] if nulls or is_token[:-1].any() else np.zeros(len(indices), dtype=bool)
    numbers = _numbers(words, is_token)
    if numbers is not None:
        lookup = np.array([*numbers, np.nan], dtype=np.float64)
        values = lookup[indices]
        return RawColumn(name, position, values, missing | np.isnan(values))
    text = np.array([("" if token else word) for word, token in zip(words, is_token, strict=False)] + [""])
    return RawColumn(name, position, np.take(text, indices), missing)


def _numbers(words: list[str], is_token: Array) -> list[float] | None:
    """Each word as a number (NaN for a missing-value token), or None at the first that is not one
    (an ID column of 100,000 names stops at its first)."""
    numbers = []
    for word, token in zip(words, is_token.tolist(), strict=False):
        value = np.nan if token else parse_number(word)
        if value is None:
            return None
        numbers.append(value)
    return numbers


def float_matrix(table: Any, columns: Sequence[int]) -> Array | None:
    """The float64 columns ``c{i}`` of a pyarrow Table as one C-contiguous (n, f) array, filled in
    place block by block (no per-column concatenation, no transposed copy; a block of rows stays in
    cache while its columns are written), the blocks shared among the cores. None when a cell is
    null."""
    names = [f"c{i}" for i in columns]
    if any(table.column(name).null_count for name in names):
        return None
    batches = table.select(names).to_batches()
    starts = np.cumsum([0] + [batch.num_rows for batch in batches])
    x = np.empty((table.num_rows, len(names)), dtype=np.float64)

    def fill(share: int) -> None:
        for k in range(share, len(batches), workers):
            block = x[starts[k] : starts[k + 1]]
            for j, array in enumerate(batches[k].columns):
                block[:, j] = array.to_numpy(zero_copy_only=False)

    workers = max(1, min(len(batches), cores(), 8))
    in_threads(fill, range(workers), x.size >= 1_000_000)
    return x


def csv_locator(source: str, data: bytes, sep: str) -> Callable[[int], str]:
    """Data row (0-based) -> "file.csv:LINE" for a file whose header is its first line."""
    lines = _LazyLines(data, sep, 1)
    return lambda row: f"{source}:{lines[row]}"


class _LazyLines:
    """Line number of each data row, computed on first use (only error messages need them)."""

    def __init__(self, data: bytes, sep: str, header_line: int) -> None:
        self.data, self.sep, self.header_line = data, sep, header_line
        self.lines: list[int] | None = None

    def __getitem__(self, row: int) -> int:
        if self.lines is None:
            text = self.data.decode("utf-8-sig", errors="replace")
            self.lines = record_lines(text, self.sep, self.header_line)
        return self.lines[row] if row < len(self.lines) else self.header_line + row + 1


def record_lines(text: str, sep: str, header_line: int) -> list[int]:
    """The line on which each non-blank record after the header starts (quoted newlines count)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    lines: list[int] = []
    previous = 0
    try:
        for record in reader:
            start = previous + 1
            previous = reader.line_num
            if start <= header_line or not any(cell.strip() for cell in record):
                continue
            lines.append(start)
    except csv.Error:
        pass
    return lines


def _table_from_rows(
    source: str, names: list[str], rows: list[list[str]], linenos: list[int], missing_values: Sequence[str]
) -> RawTable:
    """A RawTable from rows the slow reader split (the file pyarrow could not read)."""
    columns = []
    tokens = set(missing_values)
    for j, name in enumerate(names):
        cells = np.array([row[j].strip() for row in rows], dtype=np.str_)
        columns.append(column_from_cells(name, j, cells, tokens))
    return RawTable(source, columns, len(rows), lambda r: f"{source}:{linenos[r]}")


def column_from_cells(name: str, position: int, cells: Array, tokens: set[str]) -> RawColumn:
    """Stripped text cells -> RawColumn (float64 when every present cell is a number)."""
    missing = np.isin(cells, list(tokens)) if tokens else np.zeros(len(cells), dtype=bool)
    uniq, inverse = np.unique(cells, return_inverse=True)
    parsed = [parse_number(str(u)) for u in uniq]
    present = np.unique(inverse[~missing])
    if all(parsed[i] is not None for i in present):
        lookup = np.array([np.nan if v is None else v for v in parsed], dtype=np.float64)
        values = lookup[inverse.reshape(-1)]
        values[missing] = np.nan
        return RawColumn(name, position, values, missing | np.isnan(values))
    return RawColumn(name, position, np.where(missing, "", cells).astype(np.str_), missing)


# ---------------------------------------------------------------------------------------------
# Parquet


def read_parquet(source: str, path: Path, missing_values: Sequence[str] = MISSING_VALUES) -> RawTable:
    """All columns of a Parquet file: numeric types as float64 (nulls missing), others as text."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{source}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    if table.num_rows == 0 or table.num_columns == 0:
        raise DataError(f"{source}: the table has no rows or no columns")
    columns = []
    for position, name in enumerate(table.column_names):
        column = table.column(position)
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            values = pc.cast(column, pa.float64())
            missing = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            array = np.asarray(values.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
            columns.append(RawColumn(str(name), position, array, missing | np.isnan(array)))
            continue
        try:
            text = pc.cast(column, pa.string())
        except pa.ArrowException as exc:
            raise DataError(f"{source}: column '{name}' has type {kind}, which nnctl cannot read") from exc
        cells = np.asarray(text.fill_null("").to_numpy(zero_copy_only=False), dtype=np.str_)
        cells = np.char.strip(cells)
        nulls = np.asarray(text.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        tokens = set(missing_values)
        column_ = column_from_cells(str(name), position, cells, tokens)
        column_.missing |= nulls
        if column_.numeric:
            column_.values[nulls] = np.nan
        columns.append(column_)
    return RawTable(source, columns, table.num_rows, lambda r: f"{source}: row {r + 1}")


def describe_cells(table: RawTable, column: RawColumn, rows: Sequence[int], limit: int = 3) -> str:
    """ "file.csv:5:2 (column 'x') 'abc', ..." for the first few ``rows`` of a column."""
    shown = [f"{table.locate(int(r), column)} {show_cell(str(column.values[int(r)]))}" for r in rows[:limit]]
    more = len(rows) - limit
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
