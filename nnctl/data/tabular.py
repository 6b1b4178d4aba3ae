"""Tables as practitioners bring them: pick the columns, drop the row index, drop rows whose target
is missing, decide each column's type, and fit the column preprocessing on the training rows.

``load_tabular`` reads a CSV or Parquet file into ``TabularData`` (raw feature columns, raw targets,
notes and warnings for the user); ``fit_preprocessing`` learns a ``Preprocessing`` from the
training rows only. Bad tables end in one ``DataError``/``ConfigError`` naming the column, the
cells and the key that fixes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.data.columns import (
    CATEGORICAL_MISSING,
    NUMERIC_MISSING,
    CategoricalColumn,
    Column,
    NumericColumn,
    Preprocessing,
    category_keys,
    non_numbers,
    numeric_values,
)
from nnctl.data.raw import MISSING_VALUES, RawColumn, RawTable, describe_cells, read_csv, read_parquet
from nnctl.data.table import (
    Array,
    finish_targets,
    format_number,
    preview,
    show_cell,
    target_list,
)
from nnctl.data.targets import _sort_labels
from nnctl.errors import ConfigError, DataError, did_you_mean

TABULAR_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
#: A text column whose cells are numbers but for at most this many distinct words is refused:
#: the words are most likely unlisted missing-value tokens or typos.
FEW_WORDS = 5
NUMERIC_SHARE = 0.9
ID_MIN_ROWS = 20


@dataclass
class TabularData:
    """Raw feature columns and targets of the rows kept (rows with a missing target dropped)."""

    raw: RawTable
    features: list[RawColumn]
    rows: Array  # the file's data rows kept, 0-based
    y: Array | None
    target_names: list[str]
    types: dict[str, str]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing_counts: dict[str, int] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.raw.source

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> dict[str, RawColumn]:
        return {column.name: column for column in self.features}

    def locate(self, row: int, column: RawColumn) -> str:
        return self.raw.locate(int(self.rows[row]), column)


def is_tabular(spec: str | Path) -> bool:
    return not str(spec).startswith("builtin:") and Path(spec).suffix.lower() in TABULAR_SUFFIXES


def read_table(path: Path, *, delimiter: str | None, missing_values: Sequence[str]) -> RawTable:
    """A CSV (any delimiter) or Parquet file, every column raw."""
    from nnctl.data.load import _read_bytes

    source = str(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        _read_bytes_check(path)
        return read_parquet(source, path, missing_values)
    data = _read_bytes(path, path, None)
    return read_csv(source, data, delimiter=delimiter, missing_values=missing_values)


def _read_bytes_check(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")


# ---------------------------------------------------------------------------------------------
# Loading for training


def load_tabular(path: Path, data: Any) -> TabularData:
    """Read ``path`` and select its columns as ``data`` (the config's DataConfig) says."""
    tokens = tuple(data.missing_values)
    raw = read_table(path, delimiter=data.delimiter, missing_values=tokens)
    notes: list[str] = []
    columns = list(raw.columns)
    if columns and columns[0].name == "":
        notes.append(
            f"{raw.source}: the first column has no name: read as a row index (as pandas' to_csv "
            "and R's write.csv write it) and dropped"
        )
        columns = columns[1:]
    names = [c.name for c in columns]
    by_name = {c.name: c for c in columns}
    targets = target_list(data.target) or names[-1:]
    for name in targets:
        _require_column(raw.source, name, names, "target column", "data.target")
    for name in data.drop:
        _require_column(raw.source, name, names, "column", "data.drop")
    if data.features is not None:
        for name in data.features:
            _require_column(raw.source, name, names, "column", "data.features")
        clash = [n for n in data.features if n in targets or n in data.drop]
        if clash:
            raise ConfigError(f"data.features: '{clash[0]}' is also the target or dropped")
        feature_names = list(data.features)
    else:
        feature_names = [n for n in names if n not in targets and n not in data.drop]
    if not feature_names:
        raise DataError(
            f"{raw.source}: no feature columns left", hint="check data.target, data.features, data.drop"
        )
    for name in data.columns:
        if name not in feature_names:
            raise ConfigError(
                f"data.columns.{name}: no such feature column (features: {preview(feature_names)})",
                hint=did_you_mean(name, feature_names),
            )
    features = [by_name[n] for n in feature_names]
    target_columns = [by_name[n] for n in targets]
    keep = np.ones(raw.n_rows, dtype=bool)
    for column in target_columns:
        keep &= ~column.missing
    dropped_targets = int((~keep).sum())
    if dropped_targets:
        notes.append(
            f"dropped {dropped_targets} row{'s' * (dropped_targets != 1)} whose target is missing "
            f"({', '.join(targets)})"
        )
    types, warnings = resolve_types(raw, features, data.columns, keep)
    before = int(keep.sum())
    for column in features:
        spec = data.columns.get(column.name)
        if spec is not None and spec.missing == "drop_row":
            keep &= ~column.missing
    dropped_rows = before - int(keep.sum())
    if dropped_rows:
        notes.append(
            f"dropped {dropped_rows} row{'s' * (dropped_rows != 1)} with a missing cell (missing: drop_row)"
        )
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise DataError(f"{raw.source}: no rows left after dropping rows with missing values")
    kept = [c.take(rows) for c in features]
    result = TabularData(raw, kept, rows, None, targets, types, notes, warnings)
    result.missing_counts = {c.name: int(c.missing.sum()) for c in kept}
    for column in kept:
        spec = data.columns.get(column.name)
        if spec is not None and spec.missing == "error" and column.missing.any():
            row = int(np.flatnonzero(column.missing)[0])
            raise DataError(
                f"{result.locate(row, column)}: missing value, and "
                f"data.columns.{column.name}.missing is error",
                hint="fill in the cell, or choose another missing strategy for the column",
            )
    result.y = target_values([c.take(rows) for c in target_columns], result.locate)
    return result


def _require_column(source: str, name: str, names: list[str], what: str, key: str) -> None:
    if name not in names:
        raise DataError(
            f"{source}: no {what} '{name}' ({key}); columns: {preview(names)}",
            hint=did_you_mean(name, names) or f"set {key} to columns of the file",
        )


def target_values(columns: list[RawColumn], locate: Any) -> Array:
    """(n, k) raw targets: float64 when every cell is a number, else text."""
    if all(c.numeric for c in columns):
        y = np.column_stack([c.values for c in columns])
        bad = np.argwhere(~np.isfinite(y))
        if len(bad):
            r, c = (int(v) for v in bad[0])
            raise DataError(
                f"{locate(r, columns[c])}: target {format_number(y[r, c])} is not a finite number"
            )
        return np.ascontiguousarray(y, dtype=np.float64)
    cells = np.column_stack(
        [c.values if not c.numeric else np.array([format_number(v) for v in c.values]) for c in columns]
    ).astype(np.str_)
    return finish_targets(cells, lambda r, c: locate(r, columns[c]))


# ---------------------------------------------------------------------------------------------
# Column types


def resolve_types(
    raw: RawTable, features: list[RawColumn], settings: Mapping[str, Any], rows: Array
) -> tuple[dict[str, str], list[str]]:
    """Each feature column's type (declared, or inferred: numeric when every present cell is a
    number) and warnings about ID-like columns. Refuses all-missing columns and columns of
    numbers with a few words in them."""
    types: dict[str, str] = {}
    warnings: list[str] = []
    for column in features:
        present = ~column.missing & rows
        spec = settings.get(column.name)
        declared = getattr(spec, "type", None)
        if not present.any():
            raise DataError(
                f"{raw.source}: column '{column.name}' has no values: every cell is missing",
                hint=f"drop it (data.drop: [{column.name}]) or fill it in",
            )
        if column.numeric:
            kind = declared or "numeric"
        else:
            bad = np.flatnonzero(np.isin(np.arange(len(column.values)), non_numbers(column)) & rows)
            share = 1.0 - bad.size / int(present.sum())
            words = set(column.values[bad].tolist())
            if declared == "numeric" or (
                declared is None and share >= NUMERIC_SHARE and len(words) <= FEW_WORDS
            ):
                count, first = int(present.sum()) - bad.size, int(bad[0])
                others = f"; also {describe_cells(raw, column, bad[1:])}" if bad.size > 1 else ""
                raise DataError(
                    f"{raw.locate(first, column)}: {show_cell(str(column.values[first]))} is not a number, "
                    f"but {count} of the column's {int(present.sum())} cells are{others}",
                    hint=f"if {preview(sorted(repr(w) for w in words), 3)} mark missing values, add them to "
                    f"data.missing_values; if the column is categorical, set "
                    f"data.columns.{column.name}.type: categorical",
                )
            kind = declared or "categorical"
        types[column.name] = kind
        _check_settings(column.name, kind, spec)
        if declared is None and _looks_like_id(column, present, rows):
            warnings.append(
                f"column '{column.name}' has a different value in every row, like an ID: it cannot "
                f"help predict new rows; drop it with data.drop: [{column.name}]"
            )
    return types, warnings


def _looks_like_id(column: RawColumn, present: Array, rows: Array) -> bool:
    count = int(present.sum())
    if count < ID_MIN_ROWS or count != int(rows.sum()):
        return False
    values = column.values[present]
    if column.numeric and not np.all(values == np.round(values)):
        return False
    return len(np.unique(values)) == count


def _check_settings(name: str, kind: str, spec: Any) -> None:
    if spec is None:
        return
    where = f"data.columns.{name}"
    allowed = NUMERIC_MISSING if kind == "numeric" else CATEGORICAL_MISSING
    if spec.missing is not None and spec.missing not in allowed:
        raise ConfigError(
            f"{where}.missing = {spec.missing!r}: not allowed for a {kind} column "
            f"(choose one of: {', '.join(allowed)})"
        )
    if kind == "numeric":
        for key in ("min_frequency", "max_categories"):
            if getattr(spec, key) is not None:
                raise ConfigError(f"{where}.{key}: only categorical columns have categories")
        if spec.missing == "constant" and not isinstance(spec.fill, int | float):
            raise ConfigError(f"{where}.fill: missing: constant needs a number to fill in")
    elif spec.fill is not None:
        raise ConfigError(f"{where}.fill: only numeric columns with missing: constant take a fill")


# ---------------------------------------------------------------------------------------------
# Fitting


def fit_preprocessing(
    data: TabularData,
    train_rows: Array,
    settings: Mapping[str, Any],
    missing_values: Sequence[str] = MISSING_VALUES,
    *,
    memory_limit: int | None = None,
) -> Preprocessing:
    """Learn each column's fill values and categories from the training rows only."""
    columns: list[Column] = []
    width = 0
    limit = memory_limit or _memory_limit()
    for column in data.features:
        spec = settings.get(column.name)
        train = column.take(train_rows)
        if data.types[column.name] == "numeric":
            fitted: Column = _fit_numeric(data, column, train, spec)
        else:
            fitted = _fit_categorical(data, train, spec)
        columns.append(fitted)
        width += len(fitted.encoded_names)
        needed = width * data.n_rows * 8
        if needed > limit:
            raise DataError(
                f"{data.source}: column '{column.name}' would become {len(fitted.encoded_names):,} inputs "
                f"({len(getattr(fitted, 'categories', ())):,} categories); the encoded rows would need "
                f"{_human(needed)} of memory, over the {_human(limit)} available",
                hint=f"drop it (data.drop: [{column.name}]) or cap it "
                f"(data.columns.{column.name}.max_categories: 50)",
            )
    return Preprocessing(tuple(missing_values), tuple(columns))


def _memory_limit() -> int:
    """Half the machine's memory (8 GiB where that cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _fit_numeric(data: TabularData, column: RawColumn, train: RawColumn, spec: Any) -> NumericColumn:
    strategy = getattr(spec, "missing", None) or "median"
    hint = f"set data.columns.{column.name}.type: categorical if the column holds labels"
    numeric_values(column, data.locate, hint=hint)  # every row, not just training: name a bad cell now
    values = (
        train.values.astype(np.float64) if train.numeric else numeric_values(train, data.locate, hint=hint)
    )
    present = values[~train.missing]
    if strategy in ("median", "mean") and present.size == 0:
        raise DataError(
            f"{data.source}: column '{column.name}' has no values in the training rows",
            hint=f"drop it (data.drop: [{column.name}])",
        )
    fill: float | None = None
    if strategy == "median":
        fill = float(np.median(present))
    elif strategy == "mean":
        fill = float(np.mean(present))
    elif strategy == "constant":
        fill = float(spec.fill)
    wants_indicator = getattr(spec, "indicator", True)
    indicator = bool(wants_indicator and fill is not None and train.missing.any())
    return NumericColumn(column.name, strategy, fill, indicator)


def _fit_categorical(data: TabularData, train: RawColumn, spec: Any) -> CategoricalColumn:
    name = train.name
    keys, inverse = category_keys(train)
    present = inverse[~train.missing]
    counts = np.bincount(present, minlength=len(keys))
    seen = {keys[i]: int(counts[i]) for i in np.flatnonzero(counts)}
    if not seen:
        raise DataError(f"{data.source}: column '{name}' has no values in the training rows")
    ordered = _sort_labels(set(seen))
    kept = _frequent(ordered, seen, spec, int(present.size))
    kept_set = set(kept)
    infrequent = tuple(c for c in ordered if c not in kept_set)
    strategy = getattr(spec, "missing", None) or "category"
    if strategy == "category" and not train.missing.any():
        strategy = "most_frequent"  # no <missing> input that training never switched on
    fill = None
    if strategy == "most_frequent":  # the most frequent; the first in sorted order on a tie
        fill = kept[int(np.argmax([seen[c] for c in kept]))]
    unknown = getattr(spec, "unknown", None) or "ignore"
    return CategoricalColumn(name, tuple(kept), infrequent, bool(infrequent), strategy, fill, unknown)


def _frequent(ordered: list[str], counts: dict[str, int], spec: Any, rows: int) -> list[str]:
    """The categories that keep an input of their own (the others fold into <other>)."""
    kept = list(ordered)
    min_frequency = getattr(spec, "min_frequency", None)
    if min_frequency is not None:
        threshold = (
            min_frequency * rows if isinstance(min_frequency, float) and min_frequency < 1 else min_frequency
        )
        kept = [c for c in kept if counts[c] >= threshold]
    max_categories = getattr(spec, "max_categories", None)
    if max_categories is not None and len(kept) > max_categories:
        rank = {c: i for i, c in enumerate(ordered)}
        top = set(sorted(kept, key=lambda c: (-counts[c], rank[c]))[:max_categories])
        kept = [c for c in ordered if c in top]
    if not kept:  # everything rare: keep the most frequent, so the column still says something
        kept = [ordered[int(np.argmax([counts[c] for c in ordered]))]]
    return kept


def unseen_category_warnings(
    preprocessing: Preprocessing, data: TabularData, parts: Mapping[str, Array]
) -> list[str]:
    """One warning per column and split for categories that only the validation/test rows hold."""
    warnings = []
    for part, rows in parts.items():
        if rows.size == 0:
            continue
        for column, categories in preprocessing.unknown_categories(data.columns, rows).items():
            if any(f"column '{column}' has a different value in every row" in w for w in data.warnings):
                continue  # an ID column: already warned about, and every held-out value is new
            warnings.append(
                f"column '{column}': {preview([repr(c) for c in categories], 5)} only in the {part} rows, "
                "never in training; encoded as unknown (all zeros)"
            )
    return warnings


def describe_columns(preprocessing: Preprocessing, data: TabularData) -> list[dict[str, Any]]:
    """One row per column for ``nnctl check``: type, missing cells, categories, encoded width."""
    rows = []
    for spec in preprocessing.columns:
        row: dict[str, Any] = {
            "column": spec.name,
            "type": "numeric" if isinstance(spec, NumericColumn) else "categorical",
            "missing": data.missing_counts.get(spec.name, 0),
            "width": len(spec.encoded_names),
        }
        if isinstance(spec, CategoricalColumn):
            row["categories"] = list(spec.categories) + (
                [f"<other: {len(spec.infrequent)}>"] if spec.other else []
            )
            row["handling"] = f"missing: {spec.missing}" + (f" ({spec.fill})" if spec.fill else "")
        else:
            fill = "" if spec.fill is None else f" ({spec.fill:.4g})"
            row["categories"] = []
            row["handling"] = f"missing: {spec.missing}{fill}" + (", +indicator" if spec.indicator else "")
        rows.append(row)
    return rows
