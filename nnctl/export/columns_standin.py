"""STAND-IN for issue 12's ``nnctl.data.columns`` (and format-2 checkpoint loading), used until that
branch lands. Export and serve import it only through ``nnctl.export.tabular``; at merge that module's
import lines switch to ``nnctl.data.columns`` and ``nnctl.checkpoint`` and this file is deleted.

It implements the shared contract exactly as written (issue 12 owns the real one):

* ``Preprocessing(missing_values, columns)``: the RAW feature columns in the order the network's
  inputs are built from them; ``feature_names`` are the encoded inputs (numeric: ``name``, then
  ``name_missing`` with an indicator; categorical: ``name=category`` per category, then
  ``name=<other>`` and ``name=<missing>`` when present).
* ``encode(raw, source=...)``: raw cells (CSV text, or JSON numbers/strings/null) to the encoded float64
  matrix; a cell that cannot be encoded is a ``DataError`` naming the source, row and column.
* a format-1 checkpoint reads as ``Preprocessing.numeric_only(feature_names)``.
"""

from __future__ import annotations

import json
import math
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nnctl.data.table import canonical_label, format_number, parse_number, preview, show_cell
from nnctl.errors import CheckpointError, DataError

MISSING_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "None", "?")
OTHER = "<other>"
MISSING = "<missing>"


@dataclass(frozen=True)
class NumericColumn:
    name: str
    missing: str = "error"  # error | drop_row: no fill; median | mean | constant: ``fill``
    fill: float | None = None
    indicator: bool = False
    type: ClassVar[str] = "numeric"

    @property
    def feature_names(self) -> list[str]:
        return [self.name, *([f"{self.name}_missing"] if self.indicator else [])]

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
    name: str
    categories: tuple[str, ...]
    infrequent: tuple[str, ...] = ()
    other: bool = False
    missing: str = "category"  # category | most_frequent (``fill``) | error | drop_row
    fill: str | None = None
    unknown: str = "ignore"  # ignore (all zeros) | error
    type: ClassVar[str] = "categorical"

    @property
    def feature_names(self) -> list[str]:
        names = [f"{self.name}={category}" for category in self.categories]
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


Column = NumericColumn | CategoricalColumn


@dataclass(frozen=True)
class Preprocessing:
    missing_values: tuple[str, ...]
    columns: tuple[Column, ...]

    @classmethod
    def numeric_only(cls, feature_names: Sequence[str]) -> Preprocessing:
        """A format-1 checkpoint: every feature a numeric column without fill or indicator."""
        return cls(MISSING_VALUES, tuple(NumericColumn(str(name)) for name in feature_names))

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Preprocessing:
        columns: list[Column] = []
        for spec in obj["columns"]:
            if spec["type"] == "numeric":
                fill = spec.get("fill")
                columns.append(
                    NumericColumn(
                        spec["name"],
                        spec.get("missing", "error"),
                        None if fill is None else float(fill),
                        bool(spec.get("indicator", False)),
                    )
                )
            elif spec["type"] == "categorical":
                columns.append(
                    CategoricalColumn(
                        spec["name"],
                        tuple(spec["categories"]),
                        tuple(spec.get("infrequent", ())),
                        bool(spec.get("other", False)),
                        spec.get("missing", "category"),
                        spec.get("fill"),
                        spec.get("unknown", "ignore"),
                    )
                )
            else:
                raise ValueError(f"column {spec.get('name')!r}: unknown type {spec['type']!r}")
        return cls(tuple(obj.get("missing_values", MISSING_VALUES)), tuple(columns))

    def to_json(self) -> dict[str, Any]:
        return {"missing_values": list(self.missing_values), "columns": [c.to_json() for c in self.columns]}

    @property
    def feature_names(self) -> list[str]:
        return [name for column in self.columns for name in column.feature_names]

    @property
    def input_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def encode(self, raw: Mapping[str, Sequence[object]], *, source: str) -> np.ndarray:
        """Raw cells per column -> the encoded (n, len(feature_names)) float64 matrix."""
        for column in self.columns:
            if column.name not in raw:
                raise DataError(f"{source}: no column '{column.name}', which the model expects")
        n = len(raw[self.columns[0].name]) if self.columns else 0
        parts = []
        for column in self.columns:
            cells = raw[column.name]
            if isinstance(column, NumericColumn):
                parts.append(self._numeric(column, cells, source))
            else:
                parts.append(self._categorical(column, cells, source))
        return np.hstack(parts) if parts else np.zeros((n, 0))

    def _is_missing(self, cell: object) -> bool:
        if cell is None:
            return True
        if isinstance(cell, float):
            return math.isnan(cell)
        return isinstance(cell, str) and cell.strip() in self.missing_values

    def _numeric(self, column: NumericColumn, cells: Sequence[object], source: str) -> np.ndarray:
        out = np.zeros((len(cells), len(column.feature_names)))
        for row, cell in enumerate(cells):
            if self._is_missing(cell):
                if column.fill is None:
                    raise DataError(
                        f"{source}: row {row + 1}, column '{column.name}': missing value, and the model "
                        f"has no fill for this column (missing: {column.missing})",
                        hint="give a number",
                    )
                out[row, 0] = column.fill
                if column.indicator:
                    out[row, 1] = 1.0
                continue
            value = _number(cell)
            if value is None or not math.isfinite(value):
                raise DataError(
                    f"{source}: row {row + 1}, column '{column.name}': {show_cell(str(cell))} "
                    "is not a finite number"
                )
            out[row, 0] = value
        return out

    def _categorical(self, column: CategoricalColumn, cells: Sequence[object], source: str) -> np.ndarray:
        names = column.feature_names
        slot = {category: i for i, category in enumerate(column.categories)}
        other = names.index(f"{column.name}={OTHER}") if column.other else None
        missing = names.index(f"{column.name}={MISSING}") if column.missing == "category" else None
        out = np.zeros((len(cells), len(names)))
        for row, cell in enumerate(cells):
            if self._is_missing(cell):
                if missing is not None:
                    out[row, missing] = 1.0
                elif column.fill is not None and column.fill in slot:
                    out[row, slot[column.fill]] = 1.0
                else:
                    raise DataError(
                        f"{source}: row {row + 1}, column '{column.name}': missing value "
                        f"(missing: {column.missing})",
                        hint=f"give one of: {preview(list(column.categories))}",
                    )
                continue
            text = _category_text(cell)
            if text in slot:
                out[row, slot[text]] = 1.0
            elif text in column.infrequent and other is not None:
                out[row, other] = 1.0
            elif column.unknown == "error":
                raise DataError(
                    f"{source}: row {row + 1}, column '{column.name}': unknown category "
                    f"{show_cell(text)}; known: {preview(list(column.categories))}"
                )
        return out


def _number(cell: object) -> float | None:
    if isinstance(cell, bool):
        return None
    if isinstance(cell, int | float):
        return float(cell)
    if isinstance(cell, str):
        return parse_number(cell.strip())
    return None


def _category_text(cell: object) -> str:
    """The canonical spelling class labels use: 1, 1.0 and " 1" are one category."""
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        value = float(cell)
        return format_number(value) if math.isfinite(value) else str(cell)
    return canonical_label(str(cell))


# ---------------------------------------------------------------------------------------------
# Format-2 checkpoints through the format-1 reader


def load_checkpoint(path: Path | str) -> Any:
    """``nnctl.checkpoint.load_checkpoint`` plus the contract's ``preprocessing`` field.

    Until issue 12 teaches the reader format 2, a format-2 file is read by validating a format-1
    copy of it (without the ``preprocessing`` member) and attaching the parsed member."""
    from nnctl.checkpoint import load_checkpoint as load_v1

    path = Path(path)
    members = _members(path)
    if members is None or "preprocessing.npy" not in members:
        checkpoint = load_v1(path)
        checkpoint.preprocessing = Preprocessing.numeric_only(checkpoint.feature_names)
        return checkpoint
    with tempfile.TemporaryDirectory(prefix="nnctl-v2-") as folder:
        copy = Path(folder) / path.name
        arrays = dict(members)
        text = str(arrays.pop("preprocessing.npy")[()])
        meta = json.loads(str(arrays["meta.npy"][()]))
        meta["format_version"] = 1
        arrays["meta.npy"] = np.array(json.dumps(meta))
        np.savez(copy, **{key[:-4]: value for key, value in arrays.items()})
        try:
            checkpoint = load_v1(copy)
        except CheckpointError as exc:
            raise CheckpointError(exc.message.replace(str(copy), str(path)), hint=exc.hint) from None
    checkpoint.path = path
    try:
        checkpoint.preprocessing = Preprocessing.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: 'preprocessing' is not a valid description ({exc})") from None
    if checkpoint.preprocessing.feature_names != checkpoint.feature_names:
        raise CheckpointError(f"{path}: 'preprocessing' does not describe the checkpoint's feature_names")
    return checkpoint


def _members(path: Path) -> dict[str, np.ndarray] | None:
    """Every member of a checkpoint that holds a 'preprocessing' array, else None (left to the reader)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if "preprocessing.npy" not in archive.namelist():
                return None
        with np.load(path, allow_pickle=False) as npz:
            return {f"{key}.npy": npz[key] for key in npz.files}
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
