"""Column preprocessing: raw table columns to the network's numeric inputs, fitted on training rows.

A fitted ``Preprocessing`` is a value (like scikit-learn's fitted transformers): the medians,
categories and fill values it learned are plain JSON in the checkpoint's ``preprocessing`` member,
so a checkpoint alone turns raw rows into inputs, and anyone can repeat it with NumPy (README).

Encoded inputs per raw column, in order:

* numeric ``NAME``: the value, a missing cell replaced by ``fill``; then ``NAME_missing`` (1 where
  the cell was missing) when ``indicator`` is set
* categorical ``NAME``: one-hot ``NAME=CATEGORY`` per category (sorted), ``NAME=<other>`` for
  the rare categories folded together when ``other`` is set, ``NAME=<missing>`` when ``missing``
  is ``"category"``. A category never seen in training is all zeros (``unknown: ignore``) or an
  error (``unknown: error``).

Normalization (``norm_shift``, ``norm_scale``) comes after this and leaves one-hot and indicator
inputs unchanged (shift 0, scale 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnctl.data.raw import RawColumn
from nnctl.data.table import Array, canonical_label, format_number, parse_number, preview, show_cell
from nnctl.errors import DataError

NUMERIC_MISSING = ("median", "mean", "constant", "drop_row", "error")
CATEGORICAL_MISSING = ("category", "most_frequent", "drop_row", "error")
UNKNOWN = ("ignore", "error")
OTHER = "<other>"
MISSING = "<missing>"
#: Where a cell is, for messages: (row, column) -> "file.csv:12:3 (column 'island')".
CellLocator = Callable[[int, RawColumn], str]


@dataclass(frozen=True)
class NumericColumn:
    """A numeric column: value (missing -> ``fill``), plus a 0/1 ``NAME_missing`` input if ``indicator``."""

    name: str
    missing: str = "median"
    fill: float | None = None
    indicator: bool = False

    @property
    def encoded_names(self) -> list[str]:
        return [self.name, f"{self.name}_missing"] if self.indicator else [self.name]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "numeric",
            "missing": self.missing,
            "fill": self.fill,
            "indicator": self.indicator,
        }


@dataclass(frozen=True)
class CategoricalColumn:
    """A categorical column, one-hot over ``categories`` (+ ``<other>``, + ``<missing>``)."""

    name: str
    categories: tuple[str, ...]
    infrequent: tuple[str, ...] = ()
    other: bool = False
    missing: str = "category"
    fill: str | None = None
    unknown: str = "ignore"

    @property
    def encoded_names(self) -> list[str]:
        names = [f"{self.name}={c}" for c in self.categories]
        if self.other:
            names.append(f"{self.name}={OTHER}")
        if self.missing == "category":
            names.append(f"{self.name}={MISSING}")
        return names

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "categorical",
            "categories": list(self.categories),
            "infrequent": list(self.infrequent),
            "other": self.other,
            "missing": self.missing,
            "fill": self.fill,
            "unknown": self.unknown,
        }

    def slot_of(self) -> dict[str, int]:
        """Category text -> index among this column's encoded inputs (-1: no slot)."""
        slots = {category: i for i, category in enumerate(self.categories)}
        for category in self.infrequent:
            slots[category] = len(self.categories)
        return slots


Column = NumericColumn | CategoricalColumn


@dataclass(frozen=True)
class Preprocessing:
    """The fitted preprocessing of every raw feature column, in input order."""

    missing_values: tuple[str, ...]
    columns: tuple[Column, ...]

    # -- names --------------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """The encoded inputs (the network's input units), in order."""
        return [name for column in self.columns for name in column.encoded_names]

    @property
    def input_names(self) -> list[str]:
        """The raw columns a row must have."""
        return [column.name for column in self.columns]

    @property
    def is_identity(self) -> bool:
        """Numeric columns only, no indicators: the inputs are the columns themselves."""
        return all(isinstance(c, NumericColumn) and not c.indicator for c in self.columns)

    def scaled_inputs(self) -> Array:
        """bool per encoded input: True for numeric values (normalized), False for one-hot and
        indicator inputs (left as 0/1)."""
        mask: list[bool] = []
        for column in self.columns:
            if isinstance(column, NumericColumn):
                mask += [True] + [False] * column.indicator
            else:
                mask += [False] * len(column.encoded_names)
        return np.array(mask, dtype=bool)

    # -- JSON ---------------------------------------------------------------------------------
    @classmethod
    def numeric_only(cls, feature_names: Sequence[str]) -> Preprocessing:
        """What a format-version-1 checkpoint means: every input a numeric column, no missing cells."""
        return cls((), tuple(NumericColumn(name, "error", None, False) for name in feature_names))

    def to_json(self) -> dict[str, Any]:
        return {
            "missing_values": list(self.missing_values),
            "columns": [column.to_json() for column in self.columns],
        }

    @classmethod
    def from_json(cls, obj: Any) -> Preprocessing:
        """Parse and validate; ValueError names the first problem."""
        if not isinstance(obj, dict) or set(obj) != {"missing_values", "columns"}:
            raise ValueError("preprocessing must be an object with 'missing_values' and 'columns'")
        tokens = obj["missing_values"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError("preprocessing.missing_values must be a list of strings")
        raw_columns = obj["columns"]
        if not isinstance(raw_columns, list) or not raw_columns:
            raise ValueError("preprocessing.columns must be a non-empty list")
        columns = tuple(_column_from_json(i, c) for i, c in enumerate(raw_columns))
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise ValueError("preprocessing.columns repeat a column name")
        result = cls(tuple(tokens), columns)
        encoded = result.feature_names
        if len(set(encoded)) != len(encoded):
            raise ValueError("preprocessing encodes two inputs with the same name")
        return result

    # -- encoding -----------------------------------------------------------------------------
    def encode(
        self,
        raw: Mapping[str, Sequence[object]],
        *,
        source: str,
        locate: CellLocator | None = None,
    ) -> Array:
        """Raw rows -> float64 (n, len(feature_names)). ``raw`` maps each input column to its cells:
        text (CSV cells), numbers or None (JSON). DataError names the source, row and column."""
        missing = [name for name in self.input_names if name not in raw]
        if missing:
            raise DataError(
                f"{source}: no column '{missing[0]}', which the model needs as an input "
                f"(columns: {preview(sorted(map(str, raw)))})",
                hint=f"the rows need the columns the model was trained on: {preview(self.input_names)}",
            )
        columns = {
            name: cells_to_column(name, i, raw[name], self.missing_values)
            for i, name in enumerate(self.input_names)
        }
        lengths = {len(c.values) for c in columns.values()}
        if len(lengths) > 1:
            raise DataError(f"{source}: the columns have different lengths ({sorted(lengths)})")
        where = locate or (lambda row, column: f"{source}: row {row + 1}, column '{column.name}'")
        return self.encode_columns(columns, where)

    def encode_columns(self, columns: Mapping[str, RawColumn], locate: CellLocator) -> Array:
        """Encode raw columns (already split into values and missing cells)."""
        n = len(next(iter(columns.values())).values) if columns else 0
        out = np.zeros((n, len(self.feature_names)), dtype=np.float64)
        start = 0
        for spec in self.columns:
            width = len(spec.encoded_names)
            block = out[:, start : start + width]
            if isinstance(spec, NumericColumn):
                _encode_numeric(spec, columns[spec.name], block, locate)
            else:
                _encode_categorical(spec, columns[spec.name], block, locate)
            start += width
        return out

    def unknown_categories(self, columns: Mapping[str, RawColumn], rows: Array) -> dict[str, list[str]]:
        """Per categorical column, the categories among ``rows`` that training never saw."""
        found: dict[str, list[str]] = {}
        for spec in self.columns:
            if isinstance(spec, CategoricalColumn):
                column = columns[spec.name].take(rows)
                keys, inverse = category_keys(column)
                present = set(np.unique(inverse[~column.missing]).tolist())
                slots = spec.slot_of()
                unseen = [keys[i] for i in sorted(present) if keys[i] not in slots]
                if unseen:
                    found[spec.name] = unseen
        return found


def _column_from_json(index: int, obj: Any) -> Column:
    where = f"preprocessing.columns[{index}]"
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        raise ValueError(f"{where} needs a 'name'")
    kind = obj.get("type")
    if kind == "numeric":
        keys = {"name", "type", "missing", "fill", "indicator"}
        if set(obj) != keys:
            raise ValueError(f"{where} must have exactly the keys {sorted(keys)}")
        if obj["missing"] not in NUMERIC_MISSING:
            raise ValueError(f"{where}.missing must be one of {', '.join(NUMERIC_MISSING)}")
        fill = obj["fill"]
        needs_fill = obj["missing"] in ("median", "mean", "constant")
        valid_fill = (
            isinstance(fill, int | float) and not isinstance(fill, bool) and math.isfinite(fill)
            if needs_fill
            else fill is None
        )
        if not valid_fill:
            raise ValueError(f"{where}.fill must be a finite number for {obj['missing']}, else null")
        if not isinstance(obj["indicator"], bool) or (obj["indicator"] and not needs_fill):
            raise ValueError(f"{where}.indicator must be true or false (false without a fill)")
        return NumericColumn(
            obj["name"], obj["missing"], None if fill is None else float(fill), obj["indicator"]
        )
    if kind == "categorical":
        keys = {"name", "type", "categories", "infrequent", "other", "missing", "fill", "unknown"}
        if set(obj) != keys:
            raise ValueError(f"{where} must have exactly the keys {sorted(keys)}")
        for key in ("categories", "infrequent"):
            value = obj[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{where}.{key} must be a list of strings")
        categories, infrequent = obj["categories"], obj["infrequent"]
        if len(set(categories + infrequent)) != len(categories) + len(infrequent):
            raise ValueError(f"{where}: a category is listed twice")
        if not isinstance(obj["other"], bool) or obj["other"] != bool(infrequent):
            raise ValueError(f"{where}.other must be true exactly when 'infrequent' is non-empty")
        if obj["missing"] not in CATEGORICAL_MISSING:
            raise ValueError(f"{where}.missing must be one of {', '.join(CATEGORICAL_MISSING)}")
        fill = obj["fill"]
        if obj["missing"] == "most_frequent" and fill not in categories:
            raise ValueError(f"{where}.fill must be one of its categories for most_frequent")
        if obj["missing"] != "most_frequent" and fill is not None:
            raise ValueError(f"{where}.fill must be null unless missing is most_frequent")
        if obj["unknown"] not in UNKNOWN:
            raise ValueError(f"{where}.unknown must be ignore or error")
        if not categories and not infrequent:
            raise ValueError(f"{where}.categories is empty")
        return CategoricalColumn(
            obj["name"],
            tuple(categories),
            tuple(infrequent),
            obj["other"],
            obj["missing"],
            fill,
            obj["unknown"],
        )
    raise ValueError(f"{where}.type must be 'numeric' or 'categorical', not {kind!r}")


# ---------------------------------------------------------------------------------------------
# Cells


def cells_to_column(name: str, position: int, cells: Sequence[object], tokens: Sequence[str]) -> RawColumn:
    """Any sequence of cells (str, int, float, None, or a float array with NaN) as a RawColumn."""
    if isinstance(cells, np.ndarray) and cells.dtype.kind in "fiu":
        values = cells.astype(np.float64)
        return RawColumn(name, position, values, np.isnan(values))
    token_set = set(tokens)
    texts: list[str] = []
    missing: list[bool] = []
    for cell in cells:
        if cell is None or (isinstance(cell, float) and math.isnan(cell)):
            texts.append("")
            missing.append(True)
        elif isinstance(cell, bool):
            texts.append(str(cell))
            missing.append(False)
        elif isinstance(cell, int | float | np.number):
            texts.append(repr(float(cell)))
            missing.append(False)
        else:
            text = str(cell).strip()
            texts.append("" if text in token_set else text)
            missing.append(text in token_set)
    mask = np.array(missing, dtype=bool)
    array = np.array(texts, dtype=np.str_) if texts else np.zeros(0, dtype=np.str_)
    parsed = [parse_number(t) if not m else 0.0 for t, m in zip(texts, missing, strict=True)]
    if all(v is not None for v in parsed):
        values = np.array(parsed, dtype=np.float64).reshape(-1)
        values[mask] = np.nan
        return RawColumn(name, position, values, mask | np.isnan(values))
    return RawColumn(name, position, array, mask)


def category_keys(column: RawColumn) -> tuple[list[str], Array]:
    """Each distinct cell as category text (numbers in one spelling: 1.0 and 1 are one
    category), and each row's index into that list. Missing rows point at an arbitrary key."""
    uniq, inverse = np.unique(column.values, return_inverse=True)
    if column.numeric:
        keys = [format_number(float(v)) if math.isfinite(v) else str(v) for v in uniq]
    else:
        keys = [canonical_label(str(v)) for v in uniq]
    return keys, inverse.reshape(-1)


def non_numbers(column: RawColumn) -> Array:
    """Rows of a text column whose present cell is not a number."""
    if column.numeric:
        return np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(column.values, return_inverse=True)
    bad = np.array([parse_number(str(u)) is None for u in uniq], dtype=bool)
    return np.flatnonzero(bad[inverse.reshape(-1)] & ~column.missing)


def numeric_values(column: RawColumn, locate: CellLocator, *, hint: str) -> Array:
    """float64 values of a column that must be numeric (NaN where missing); DataError naming the
    first cell that is not a finite number."""
    if column.numeric:
        values = column.values
    else:
        bad = non_numbers(column)
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{locate(row, column)}: {show_cell(str(column.values[row]))} is not a number", hint=hint
            )
        values = np.array([parse_number(str(v)) if v else np.nan for v in column.values], dtype=np.float64)
        values[column.missing] = np.nan
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        row = int(infinite[0])
        raise DataError(
            f"{locate(row, column)}: {float(values[row])} is not a finite number",
            hint="features must be finite numbers",
        )
    return values


# ---------------------------------------------------------------------------------------------
# Encoding one column


def _missing_error(spec: Column, column: RawColumn, locate: CellLocator) -> None:
    rows = np.flatnonzero(column.missing)
    if rows.size and spec.missing in ("error", "drop_row"):
        raise DataError(
            f"{locate(int(rows[0]), column)}: missing value, and column '{spec.name}' takes none "
            f"(missing: {spec.missing})",
            hint="fill in the cell or drop the row",
        )


def _encode_numeric(spec: NumericColumn, column: RawColumn, block: Array, locate: CellLocator) -> None:
    values = numeric_values(column, locate, hint=f"column '{spec.name}' is numeric in this model")
    _missing_error(spec, column, locate)
    missing = column.missing
    block[:, 0] = values
    if missing.any():
        block[missing, 0] = spec.fill
    if spec.indicator:
        block[:, 1] = missing


def _encode_categorical(
    spec: CategoricalColumn, column: RawColumn, block: Array, locate: CellLocator
) -> None:
    _missing_error(spec, column, locate)
    keys, inverse = category_keys(column)
    slots = spec.slot_of()
    lookup = np.array([slots.get(key, -1) for key in keys], dtype=np.int64)
    slot = lookup[inverse] if len(inverse) else np.zeros(0, dtype=np.int64)
    if spec.missing == "category":
        slot[column.missing] = len(spec.encoded_names) - 1
    elif spec.missing == "most_frequent":
        slot[column.missing] = slots[str(spec.fill)]
    unknown = np.flatnonzero(slot < 0)
    if unknown.size and spec.unknown == "error":
        row = int(unknown[0])
        raise DataError(
            f"{locate(row, column)}: category {show_cell(keys[inverse[row]])} was not seen in training "
            f"(unknown: error); known: {preview(list(spec.categories))}",
            hint=f"set data.columns.{spec.name}.unknown: ignore to encode unseen categories as all zeros",
        )
    known = np.flatnonzero(slot >= 0)
    block[known, slot[known]] = 1.0
