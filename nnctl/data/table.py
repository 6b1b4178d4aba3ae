"""The in-memory table every reader returns, and the cell helpers the readers share."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nnctl.errors import DataError, did_you_mean

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


def missing_column(source: str, name: str, names: list[str], role: str, needed: Sequence[str]) -> DataError:
    """A column the model needs is not in ``source`` (which has ``names``): the nearest name, else the
    columns needed."""
    return DataError(
        f"{source}: no column '{name}', which the model {role} (columns: {preview(names)})",
        hint=did_you_mean(name, names)
        or f"the file needs the columns the model was trained on: {preview(needed)}",
    )


def preview(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


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
                raise missing_column(source, name, names, "expects as a feature", feature_names)
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
            hint=did_you_mean(missing, names) or "set the target to one of the columns",
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


def first_cell(mask: Array) -> tuple[int, int] | None:
    """(row, column) of the first True cell of a 2-d mask, or None: where an error points."""
    found = np.argwhere(mask)
    return (int(found[0][0]), int(found[0][1])) if len(found) else None


def check_finite_x(x: Array, where: Locator, cell: Callable[[int, int], str]) -> None:
    # min/max propagate NaN and expose +-inf without a (n, f) boolean temporary: the common, clean case.
    if x.size == 0 or (np.isfinite(x.min()) and np.isfinite(x.max())):
        return
    hint = "features must be finite numbers; remove or impute missing values first"
    refuse_nonfinite(x, where, cell, what="", hint=hint)


def finish_targets(cells: Array, where: Locator) -> Array:
    """(n, k) target text -> float64 when every cell is a number, else stripped str.

    Works on the unique cells, so a 60,000-row label column costs a handful of float() calls."""
    cells = np.char.strip(cells.astype(np.str_))
    empty = first_cell(cells == "")
    if empty is not None:
        r, c = empty
        raise DataError(f"{where(r, c)}: empty target cell", hint="fill in the target or remove the row")
    uniq, inverse = np.unique(cells, return_inverse=True)
    values = [parse_number(str(u)) for u in uniq]
    if any(v is None for v in values):
        return np.ascontiguousarray(cells)
    y = np.asarray(values, dtype=np.float64)[inverse.reshape(-1)].reshape(cells.shape)
    check_finite_targets(y, where, lambda r, c: str(cells[r, c]))
    return y


def check_finite_targets(y: Array, where: Locator, cell: Callable[[int, int], str]) -> None:
    refuse_nonfinite(y, where, cell, what="target ", hint="remove rows with missing targets")


def refuse_nonfinite(
    values: Array, where: Locator, cell: Callable[[int, int], str], *, what: str, hint: str
) -> None:
    """DataError at the first NaN or inf, naming its place and showing the cell as written."""
    bad = first_cell(~np.isfinite(values))
    if bad is not None:
        r, c = bad
        raise DataError(
            f"{where(r, c)}: {what}{show_cell(cell(r, c).strip())} is not a finite number", hint=hint
        )
