"""Datasets: read a CSV, .npz or builtin into a ``Table``; encode targets; split rows; normalize features.

Pure module: every problem with the user's data is a ``DataError`` that names the file and, where
there is one, the 1-based line, column and column name. Nothing here prints.

* ``load_table``     CSV (header row) / .npz (arrays ``x``, ``y``) / ``builtin:xor``, ``builtin:spirals``
* ``infer_task``     classification / multilabel / regression from the cost and output layer
* ``TargetEncoder``  raw targets -> float (n, output_units) training targets, and back
* ``split_indices``  seeded (optionally stratified) train/validation/test row indices
* ``Normalizer``     per-feature shift/scale fitted on the training rows only
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import math
import mmap as mmap_module
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.errors import DataError

TASKS = ("classification", "multilabel", "regression")
NORMALIZERS = ("none", "standard", "minmax")

Array = np.ndarray
# Where a bad cell is, as text: "file.csv:12:3 (column 'petal_width')" or "file.npz: x[11, 2]".
Locator = Callable[[int, int], str]

_NPZ_HINT = "save the data with np.savez(path, x=features, y=targets)"
# Everything np.load / NpzFile.__getitem__ raise on corrupt, truncated or hostile archives.
_NPZ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    ValueError,
    OSError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    RuntimeError,
    NotImplementedError,
    MemoryError,
    OverflowError,
)


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


def _parse_number(text: str) -> float | None:
    """float(text), or None. Underscores and non-ASCII digits are refused so the fast
    (np.loadtxt) and slow (per-cell) CSV paths accept exactly the same cells."""
    if "_" in text or not text.isascii():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _format_number(v: float) -> str:
    """Shortest text for a number: 1.0 -> "1", 2.5 -> "2.5"."""
    if v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(v)


def _canonical_label(text: str) -> str:
    """A class label as text. Numeric labels get one spelling ("1", "1.0", "01" -> "1") so labels read
    from a numeric column, a string column or a checkpoint always compare equal."""
    text = text.strip()
    v = _parse_number(text)
    return _format_number(v) if v is not None and math.isfinite(v) else text


def _show(cell: str, limit: int = 40) -> str:
    return repr(cell if len(cell) <= limit else cell[: limit - 3] + "...")


def _preview(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


def _did_you_mean(name: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _target_list(target: str | Sequence[str] | None) -> list[str] | None:
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


def _select_columns(
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
            raise DataError(f"the expected feature names repeat a name: {_preview(feature_names)}")
        for name in feature_names:
            if name not in index:
                raise DataError(
                    f"{source}: no column '{name}', which the model expects as a feature "
                    f"(columns: {_preview(names)})",
                    hint=_did_you_mean(name, names)
                    or f"the file needs the columns the model was trained on: {_preview(feature_names)}",
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
            f"{source}: no target column '{missing}'; columns: {_preview(names)}",
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


def _check_finite_x(x: Array, where: Locator, cell: Callable[[int, int], str]) -> None:
    # min/max propagate NaN and expose +-inf without a (n, f) boolean temporary: the common, clean case.
    if x.size == 0 or (np.isfinite(x.min()) and np.isfinite(x.max())):
        return
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise DataError(
            f"{where(r, c)}: {_show(cell(r, c))} is not a finite number",
            hint="features must be finite numbers; remove or impute missing values first",
        )


def _finish_targets(cells: Array, where: Locator) -> Array:
    """(n, k) target text -> float64 when every cell is a number, else stripped str.

    Works on the unique cells, so a 60,000-row label column costs a handful of float() calls."""
    cells = np.char.strip(cells.astype(np.str_))
    empty = np.argwhere(cells == "")
    if len(empty):
        r, c = (int(v) for v in empty[0])
        raise DataError(f"{where(r, c)}: empty target cell", hint="fill in the target or remove the row")
    uniq, inverse = np.unique(cells, return_inverse=True)
    values = [_parse_number(str(u)) for u in uniq]
    if any(v is None for v in values):
        return np.ascontiguousarray(cells)
    y = np.asarray(values, dtype=np.float64)[inverse.reshape(-1)].reshape(cells.shape)
    bad = np.argwhere(~np.isfinite(y))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise DataError(
            f"{where(r, c)}: target {_show(str(cells[r, c]))} is not a finite number",
            hint="remove rows with missing targets",
        )
    return y


# ---------------------------------------------------------------------------------------------
# Files


def _resolve(spec: str | Path, base_dir: Path | None) -> Path:
    path = Path(spec).expanduser()
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def _read_bytes(path: Path, spec: str | Path, base_dir: Path | None) -> bytes:
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # e.g. a NUL byte in the name
        raise DataError(f"{path}: not a usable path ({exc})") from exc
    if not exists:
        hint = None
        if base_dir is not None and not Path(spec).expanduser().is_absolute():
            hint = f"relative data paths are resolved against {base_dir}"
        raise DataError(f"{path}: no such file", hint=hint)
    if is_dir:
        raise DataError(f"{path}: is a directory, not a data file", hint="give a .csv or .npz file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def load_table(
    spec: str | Path,
    target: str | list[str] | None = None,
    *,
    base_dir: Path | None = None,
    feature_names: list[str] | None = None,
    require_target: bool = True,
    mmap: bool = False,
) -> Table:
    """Load a dataset.

    A folder holding ``x.npy`` (and ``y.npy``) is read as arrays; with ``mmap`` the features stay
    on disk (``np.memmap``) and are read as batches need them, for data larger than memory.

    ``spec``: a .csv (header row) or .npz (arrays ``x`` (n, f) and ``y`` (n,) or (n, k)) path, relative
    to ``base_dir``; or a key of ``BUILTINS``. ``target``: CSV target column(s), default the last
    column. ``feature_names`` (from a checkpoint): the features are exactly these columns, in this
    order; targets are then optional when ``require_target`` is False (``y`` is None without them).
    """
    targets = _target_list(target)
    if feature_names is not None:
        feature_names = list(feature_names)
    if isinstance(spec, str) and spec.startswith("builtin:"):
        return _load_builtin(spec, targets, feature_names, require_target)
    path = _resolve(spec, base_dir)
    if path.is_dir() and (path / "x.npy").is_file():
        return _load_npy_folder(path, feature_names, require_target, mmap)
    if path.suffix.lower() == ".npz" and path.is_file():
        # np.load reads the archive member by member: the file is never held twice in memory.
        return _load_npz(str(path), path, feature_names, require_target)
    data = _read_bytes(path, spec, base_dir)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(str(path), data, feature_names, require_target)
    if suffix == ".npy":
        raise DataError(f"{path}: a .npy file holds one array; x and y are needed", hint=_NPZ_HINT)
    return _load_csv(str(path), data, targets, feature_names, require_target)


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


def _load_csv(
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
    fidx, tidx = _select_columns(source, names, targets, feature_names, require_target)
    parsed = _parse_fast(source, rows, linenos, names, fidx, tidx)
    x, ycells = parsed if parsed is not None else _parse_slow(source, rows, linenos, names, fidx, tidx)
    y = None if ycells is None else _finish_targets(ycells, _cell_locator(source, linenos, names, tidx))
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
    _check_finite_x(
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


def _check_finite_targets(y: Array, where: Locator, cell: Callable[[int, int], str]) -> None:
    bad = np.argwhere(~np.isfinite(y))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise DataError(
            f"{where(r, c)}: target {_show(cell(r, c).strip())} is not a finite number",
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
        values = [_parse_number(c) for c in feats]
        for c, (text, v) in enumerate(zip(feats, values, strict=True)):
            if v is None or not math.isfinite(v):
                what = "is not a number" if v is None else "is not a finite number"
                raise DataError(
                    f"{_cell_locator(source, linenos, names, fidx)(r, c)}: {_show(text.strip())} {what}",
                    hint="features must be finite numbers; remove or impute missing values first",
                )
        x[r] = values
        if tidx:
            ycells.append([cells[j] for j in tidx])
    y = np.array(ycells, dtype=np.str_).reshape(len(rows), len(tidx)) if tidx else None
    return x, y


# ---------------------------------------------------------------------------------------------
# .npz


def _load_npz(
    source: str, data: bytes | Path, feature_names: list[str] | None, require_target: bool
) -> Table:
    try:
        handle = io.BytesIO(data) if isinstance(data, bytes) else data
        loaded = np.load(handle, allow_pickle=False)  # never unpickle: arbitrary code
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{source}: a single .npy array, not an .npz archive", hint=_NPZ_HINT)
        with loaded:
            files = list(loaded.files)
            x = loaded["x"] if "x" in files else None
            y = loaded["y"] if "y" in files else None
    except DataError:
        raise
    except _NPZ_ERRORS as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise DataError(
                f"{source}: holds pickled (object) data, which is never loaded: it could run code",
                hint="store plain numeric arrays: np.savez(path, x=x.astype(float), y=y)",
            ) from exc
        reason = f"{type(exc).__name__}: {exc}"
        raise DataError(f"{source}: not a readable .npz archive ({reason})", hint=_NPZ_HINT) from exc
    if x is None:
        raise DataError(f"{source}: no array 'x' (arrays: {_preview(files) or 'none'})", hint=_NPZ_HINT)
    x = _check_npz_x(source, x, feature_names)
    n, f = x.shape
    if y is None:
        if require_target:
            raise DataError(f"{source}: no array 'y' (the targets)", hint=_NPZ_HINT)
        names = feature_names or [f"x{i}" for i in range(f)]
        return Table(x=x, y=None, feature_names=names, target_names=[], source=source)
    y = _check_npz_y(source, y, n)
    k = y.shape[1]
    return Table(
        x=x,
        y=y,
        feature_names=feature_names or [f"x{i}" for i in range(f)],
        target_names=["y"] if k == 1 else [f"y{i}" for i in range(k)],
        source=source,
    )


def _check_npz_x(source: str, x: Array, feature_names: list[str] | None) -> Array:
    if x.ndim != 2:
        raise DataError(f"{source}: x has shape {x.shape}; expected (rows, features)")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source}: x has dtype {x.dtype}; features must be numbers")
    n, f = x.shape
    if n == 0 or f == 0:
        raise DataError(f"{source}: x has shape {x.shape}; it needs at least one row and one feature")
    if feature_names is not None and f != len(feature_names):
        raise DataError(f"{source}: x has {f} features, the checkpoint expects {len(feature_names)}")
    # float32 data stay float32 (half the memory; a float32 network needs no conversion)
    x = np.ascontiguousarray(x, dtype=np.float32 if x.dtype == np.float32 else np.float64)
    _check_finite_x(x, lambda r, c: f"{source}: x[{r}, {c}]", lambda r, c: _format_value(x[r, c]))
    return x


def _load_npy_folder(
    folder: Path, feature_names: list[str] | None, require_target: bool, mmap: bool
) -> Table:
    """``x.npy`` (rows, features) and ``y.npy`` (rows,) or (rows, targets) in one folder."""
    source = str(folder)
    x = _load_npy(folder / "x.npy", mmap)
    if x.ndim != 2 or x.dtype.kind not in "biuf" or 0 in x.shape:
        raise DataError(
            f"{folder / 'x.npy'}: x has {x.dtype} shape {x.shape}; expected numbers (rows, features)"
        )
    if feature_names is not None and x.shape[1] != len(feature_names):
        raise DataError(f"{source}: x has {x.shape[1]} features, the checkpoint expects {len(feature_names)}")
    if mmap:
        if x.dtype.kind != "f":
            raise DataError(
                f"{folder / 'x.npy'}: memory-mapped features must be float32 or float64, not {x.dtype}"
            )
        _check_finite_streamed(folder / "x.npy", x)
    else:
        x = _check_npz_x(source, x, feature_names)
    names = feature_names or [f"x{i}" for i in range(x.shape[1])]
    if not (folder / "y.npy").is_file():
        if require_target:
            raise DataError(
                f"{source}: no y.npy (the targets) beside x.npy", hint="np.save(folder/'y.npy', y)"
            )
        return Table(x=x, y=None, feature_names=names, target_names=[], source=source)
    y = _check_npz_y(source, _load_npy(folder / "y.npy", mmap=False), x.shape[0])
    k = y.shape[1]
    return Table(x, y, names, ["y"] if k == 1 else [f"y{i}" for i in range(k)], source)


def _load_npy(path: Path, mmap: bool) -> Array:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        advise_random_access(array)
        return array
    except _NPZ_ERRORS as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise DataError(
                f"{path}: holds pickled (object) data, which is never loaded: it could run code"
            ) from exc
        raise DataError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from exc


def _check_finite_streamed(path: Path, x: np.memmap) -> None:
    """NaN/inf check of a memory-mapped array by plain reads, so the pages never count as ours."""
    rows_per_read = max(1, (64 << 20) // max(x.strides[0], 1))
    offset = x.offset if hasattr(x, "offset") else 0
    with path.open("rb") as handle:
        handle.seek(offset)
        for start in range(0, x.shape[0], rows_per_read):
            count = min(rows_per_read, x.shape[0] - start)
            block = np.fromfile(handle, dtype=x.dtype, count=count * x.shape[1]).reshape(count, -1)
            bad = np.argwhere(~np.isfinite(block))
            if bad.size:
                r, c = bad[0]
                raise DataError(f"{path}: x[{start + r}, {c}] is {block[r, c]}, not a finite number")


def advise_random_access(x: Array) -> None:
    """Shuffled minibatches read rows in random order: tell the kernel not to read ahead or map
    neighbouring pages on each fault (which would pull far more than a batch into memory)."""
    mapped = getattr(x, "_mmap", None)
    if mapped is not None and hasattr(mapped, "madvise") and hasattr(mmap_module, "MADV_RANDOM"):
        with contextlib.suppress(OSError, ValueError):
            mapped.madvise(mmap_module.MADV_RANDOM)


def release_pages(x: Array) -> None:
    """Tell the kernel we are done with the pages of a memory-mapped array read so far: they stay
    in the page cache but leave this process's resident memory, which so stays flat."""
    mapped = getattr(x, "_mmap", None)
    if mapped is not None and hasattr(mapped, "madvise") and hasattr(mmap_module, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):
            mapped.madvise(mmap_module.MADV_DONTNEED)


def _check_npz_y(source: str, y: Array, n: int) -> Array:
    flat = y.ndim == 1
    if y.ndim not in (1, 2):
        raise DataError(f"{source}: y has shape {y.shape}; expected (rows,) or (rows, targets)")
    if y.shape[0] != n:
        raise DataError(f"{source}: x has {n} rows but y has {y.shape[0]}")
    y = y.reshape(n, -1)
    if y.shape[1] == 0:
        raise DataError(f"{source}: y has shape {y.shape}; it needs at least one target column")

    def where(r: int, c: int) -> str:
        return f"{source}: y[{r}]" if flat else f"{source}: y[{r}, {c}]"

    if y.dtype.kind in "biuf":
        y = np.ascontiguousarray(y, dtype=np.float64)
        _check_finite_targets(y, where, lambda r, c: _format_value(y[r, c]))
        return y
    if y.dtype.kind == "S":
        try:
            y = np.char.decode(y, "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: y holds bytes that are not UTF-8 text") from exc
    if y.dtype.kind != "U":
        raise DataError(f"{source}: y has dtype {y.dtype}; targets must be numbers or text labels")
    return _finish_targets(y, where)


def _format_value(v: float) -> str:
    return str(float(v))


# ---------------------------------------------------------------------------------------------
# Builtins


def _xor() -> Table:
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    return Table(x=x, y=y, feature_names=["x1", "x2"], target_names=["y"], source="builtin:xor")


def _spirals(points: int = 100, classes: int = 3) -> Table:
    """Three interleaved 2-D spirals (the classic non-linearly-separable toy set). The internal seed
    is fixed so the data never changes between runs or machines."""
    rng = np.random.default_rng(20240611)
    xs, ys = [], []
    radius = np.linspace(0.0, 1.0, points)
    for k in range(classes):
        theta = np.linspace(4.0 * k, 4.0 * (k + 1), points) + rng.normal(0.0, 0.2, points)
        xs.append(np.column_stack([radius * np.sin(theta), radius * np.cos(theta)]))
        ys.append(np.full((points, 1), float(k)))
    return Table(
        x=np.ascontiguousarray(np.vstack(xs)),
        y=np.vstack(ys),
        feature_names=["x1", "x2"],
        target_names=["class"],
        source="builtin:spirals",
    )


def _circles(points: int = 400) -> Table:
    """Binary toy set: 2-D points inside (label 1) or outside (0) a circle of radius 0.6, fixed seed."""
    rng = np.random.default_rng(20240612)
    x = rng.uniform(-1.0, 1.0, size=(points, 2))
    y = (np.hypot(x[:, 0], x[:, 1]) < 0.6).astype(np.float64)[:, None]
    return Table(x=x, y=y, feature_names=["x1", "x2"], target_names=["inside"], source="builtin:circles")


def _sine(points: int = 400) -> Table:
    """Regression toy set: y = sin(3 x) + noise for x in [-1, 1], fixed seed."""
    rng = np.random.default_rng(20240613)
    x = rng.uniform(-1.0, 1.0, size=(points, 1))
    y = np.sin(3.0 * x) + rng.normal(0.0, 0.05, size=(points, 1))
    return Table(x=x, y=y, feature_names=["x"], target_names=["y"], source="builtin:sine")


BUILTINS: dict[str, Callable[[], Table]] = {
    "builtin:xor": _xor,
    "builtin:spirals": _spirals,
    "builtin:circles": _circles,
    "builtin:sine": _sine,
}


def _load_builtin(
    spec: str, targets: list[str] | None, feature_names: list[str] | None, require_target: bool
) -> Table:
    make = BUILTINS.get(spec)
    if make is None:
        raise DataError(
            f"unknown builtin dataset '{spec}'; builtins: {', '.join(BUILTINS)}",
            hint=_did_you_mean(spec, list(BUILTINS)),
        )
    full = make()
    assert full.y is not None
    names = full.feature_names + full.target_names
    columns = np.hstack([full.x, full.y])
    fidx, tidx = _select_columns(spec, names, targets, feature_names, require_target)
    return Table(
        x=np.ascontiguousarray(columns[:, fidx]),
        y=np.ascontiguousarray(columns[:, tidx]) if tidx else None,
        feature_names=[names[i] for i in fidx],
        target_names=[names[i] for i in tidx],
        source=spec,
    )


# ---------------------------------------------------------------------------------------------
# Tasks and target encoding


def infer_task(requested: str, cost: str, output_activation: str, output_units: int, y: Array) -> str:
    """The task: ``requested`` unless it is "auto", else read off the cost (cce -> classification;
    bce -> binary classification with one output unit, multilabel with more; quadratic ->
    regression for numeric targets without a softmax output, classification otherwise)."""
    if requested not in ("auto", *TASKS):
        raise ValueError(f"unknown task {requested!r}; expected one of: auto, {', '.join(TASKS)}")
    if requested != "auto":
        return requested
    if cost == "cce":
        return "classification"
    if cost == "bce":
        return "classification" if output_units == 1 else "multilabel"
    if cost == "quadratic":
        numeric = y is None or np.asarray(y).dtype.kind == "f"
        return "regression" if numeric and output_activation != "softmax" else "classification"
    raise ValueError(f"unknown cost {cost!r}; expected cce, bce or quadratic")


def _as_2d(y: Array) -> Array:
    y = np.asarray(y)
    return y.reshape(len(y), -1) if y.ndim != 2 else y


def _label_codes(column: Array) -> tuple[list[str], Array]:
    """Canonical label text of each distinct value, and each row's index into that list."""
    uniq, inverse = np.unique(column, return_inverse=True)
    if uniq.dtype.kind in "biuf":
        labels = [_format_number(float(u)) for u in uniq]
    else:
        labels = [_canonical_label(str(u)) for u in uniq]
    return labels, inverse.reshape(-1)


def _sort_labels(labels: set[str]) -> list[str]:
    """Numeric order when every label is a number (so "2" precedes "10"), text order otherwise."""
    values = {label: _parse_number(label) for label in labels}
    if all(v is not None and math.isfinite(v) for v in values.values()):
        return sorted(labels, key=lambda label: (values[label], label))
    return sorted(labels)


def _numeric_targets(y: Array, source: str, task: str) -> Array:
    """float64 copy of numeric targets; DataError naming the first non-number otherwise."""
    if y.dtype.kind in "biuf":
        out = y.astype(np.float64)
    else:
        out = np.empty(y.shape, dtype=np.float64)
        for (r, c), cell in np.ndenumerate(y):
            v = _parse_number(str(cell).strip())
            if v is None:
                raise DataError(
                    f"{source}: data row {r + 1}, target column {c + 1}: {_show(str(cell))} is not a number; "
                    f"{task} targets must be numeric",
                    hint="use task: classification for text labels",
                )
            out[r, c] = v
    bad = np.argwhere(~np.isfinite(out))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        where = f"{source}: data row {r + 1}, target column {c + 1}"
        raise DataError(f"{where}: {out[r, c]} is not a finite number")
    return out


@dataclass
class TargetEncoder:
    """Maps raw targets to the network's output space and back.

    classification: one target column; ``classes`` are the sorted labels (as text); one-hot
    column i is class i, or, for two classes and one output unit, 1.0 marks ``classes[1]``.
    multilabel: k columns of 0/1, one unit each. regression: k numeric columns, one unit each.
    """

    task: str
    classes: list[str] | None
    output_units: int

    @classmethod
    def fit(
        cls,
        y: Array,
        task: str,
        output_units: int,
        *,
        target_names: list[str] | None = None,
        source: str = "data",
    ) -> TargetEncoder:
        """Learn the classes (classification) and check the targets fit ``output_units``.
        ``target_names`` and ``source`` only make the error messages name the column and file."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")
        y = _as_2d(y)
        names = ", ".join(target_names) if target_names else None
        k = y.shape[1]
        if task == "classification":
            if k != 1:
                raise DataError(
                    f"classification needs exactly one target column; got {k}"
                    + (f" ({names})" if names else ""),
                    hint="use task: multilabel (bce) or regression for several target columns",
                )
            labels, _ = _label_codes(y[:, 0])
            classes = _sort_labels(set(labels))
            what = f"the target '{names}'" if names else "the target"
            if len(classes) < 2:
                raise DataError(
                    f"{source}: {what} has {len(classes)} class{'es' * (len(classes) != 1)} "
                    f"({_preview(classes)}); classification needs at least 2"
                )
            n = len(classes)
            if output_units != n and not (n == 2 and output_units == 1):
                raise DataError(
                    f"the output layer has {output_units} units but {what} has {n} classes "
                    f"({_preview(classes)}); set the last layer's units to {n}"
                )
            return cls(task=task, classes=classes, output_units=output_units)
        if k != output_units:
            cols = f" ({names})" if names else ""
            raise DataError(
                f"the output layer has {output_units} units but there are {k} target columns{cols}; "
                f"set the last layer's units to {k}"
            )
        encoder = cls(task=task, classes=None, output_units=output_units)
        encoder.encode(y, source=source)  # validates: numeric, and 0/1 for multilabel
        return encoder

    def _expect_columns(self, y: Array, source: str) -> Array:
        y = _as_2d(y)
        expected = 1 if self.task == "classification" else self.output_units
        if y.shape[1] != expected:
            raise DataError(f"{source}: {y.shape[1]} target columns, the model expects {expected}")
        return y

    def class_indices(self, y: Array, *, source: str = "data") -> Array:
        """Classification: the class index (int64) of every row; unseen labels are a DataError."""
        if self.task != "classification" or self.classes is None:
            raise ValueError(f"class indices exist for classification only, not {self.task}")
        y = self._expect_columns(y, source)
        labels, inverse = _label_codes(y[:, 0])
        position = {label: i for i, label in enumerate(self.classes)}
        lookup = np.array([position.get(label, -1) for label in labels], dtype=np.int64)
        idx = lookup[inverse] if len(inverse) else np.zeros(0, dtype=np.int64)
        unseen = np.flatnonzero(idx < 0)
        if len(unseen):
            row = int(unseen[0])
            raise DataError(
                f"{source}: data row {row + 1}: label '{labels[inverse[row]]}' was not seen in training; "
                f"known classes: {_preview(self.classes)}"
            )
        return idx

    def encode(self, y: Array, *, source: str = "data") -> Array:
        """Raw targets (n, k) -> float64 training targets (n, output_units)."""
        y = self._expect_columns(y, source)
        if self.task == "classification":
            idx = self.class_indices(y, source=source)
            if self.output_units == 1:
                return (idx == 1).astype(np.float64).reshape(-1, 1)
            out = np.zeros((len(idx), self.output_units), dtype=np.float64)
            out[np.arange(len(idx)), idx] = 1.0
            return out
        out = _numeric_targets(y, source, self.task)
        if self.task == "multilabel":
            bad = np.argwhere((out != 0.0) & (out != 1.0))
            if len(bad):
                r, c = (int(v) for v in bad[0])
                raise DataError(
                    f"{source}: data row {r + 1}, target column {c + 1}: {_format_number(out[r, c])} "
                    "is not 0 or 1; multilabel targets must be 0 or 1"
                )
        return np.ascontiguousarray(out)

    def decode(self, outputs: Array) -> Array:
        """Network outputs -> labels (classification, str (n,)), 0/1 int (multilabel) or values."""
        outputs = _as_2d(outputs)
        if self.task == "classification":
            assert self.classes is not None
            if outputs.shape[1] == 1:
                idx = (outputs[:, 0] >= 0.5).astype(np.int64)
            else:
                idx = np.argmax(outputs, axis=1)
            return np.asarray(self.classes, dtype=np.str_)[idx]
        if self.task == "multilabel":
            return (outputs >= 0.5).astype(np.int64)
        return np.array(outputs, dtype=np.float64)


def describe_targets(encoder: TargetEncoder) -> str:
    """One line for the run summary, e.g. "classification, 3 classes: setosa, versicolor, virginica"."""
    if encoder.task == "classification" and encoder.classes is not None:
        text = f"classification, {len(encoder.classes)} classes: {_preview(encoder.classes)}"
        if encoder.output_units == 1:
            text += f" (one output unit; positive class: {encoder.classes[1]})"
        return text
    if encoder.task == "multilabel":
        return f"multilabel, {encoder.output_units} label{'s' * (encoder.output_units != 1)}"
    return f"regression, {encoder.output_units} output{'s' * (encoder.output_units != 1)}"


# ---------------------------------------------------------------------------------------------
# Splitting


def _too_small(n: int, validation: float, test: float) -> DataError:
    return DataError(
        f"the dataset has {n} row{'s' * (n != 1)}: too small for validation={validation:g} and "
        f"test={test:g} (no rows would be left for training)",
        hint="use more data or smaller validation/test fractions",
    )


def split_indices(
    n: int,
    validation: float,
    test: float,
    rng: np.random.Generator,
    strata: Array | None = None,
) -> tuple[Array, Array, Array]:
    """(train, validation, test): sorted, disjoint int64 row indices covering 0..n-1.

    Test rows are taken first, then validation rows, round(fraction * count) of each; with
    ``strata`` (the class index of every row) per class, so every split keeps the class
    proportions and every class keeps at least one training row. A split with a non-zero
    fraction gets at least one row when the training part can spare it.
    """
    if not (0.0 <= validation < 1.0 and 0.0 <= test < 1.0) or validation + test >= 1.0:
        raise ValueError(f"validation ({validation}) and test ({test}) must be >= 0 and sum to less than 1")
    if n < 1:
        raise _too_small(n, validation, test)
    if strata is None:
        order = rng.permutation(n)
        n_test, n_val = round(test * n), round(validation * n)
        if test > 0 and n_test == 0 and n - n_val >= 2:
            n_test = 1
        if validation > 0 and n_val == 0 and n - n_test >= 2:
            n_val = 1
        if n - n_test - n_val < 1:
            raise _too_small(n, validation, test)
        parts = (order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test])
        train_idx, val_idx, test_idx = (np.sort(p).astype(np.int64) for p in parts)
        return train_idx, val_idx, test_idx
    strata = np.asarray(strata)
    if strata.shape != (n,):
        raise ValueError(f"strata has shape {strata.shape}; expected ({n},)")
    trains: list[list[int]] = []
    vals: list[int] = []
    tests: list[int] = []
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value)).tolist()
        count = len(members)
        t, v = round(test * count), round(validation * count)
        # Keep one training row per class: a class the model never trains on cannot be learned.
        v = min(v, count - 1 - min(t, count - 1))
        t = min(t, count - 1)
        tests += members[:t]
        vals += members[t : t + v]
        trains.append(members[t + v :])
    # Honour "at least one row" for a requested split by borrowing from the largest training part.
    for fraction, part in ((test, tests), (validation, vals)):
        if fraction > 0 and not part:
            donor = max(trains, key=len)
            if len(donor) >= 2:
                part.append(donor.pop(0))
    train = [i for group in trains for i in group]
    if not train:
        raise _too_small(n, validation, test)
    train_idx, val_idx, test_idx = (np.sort(np.asarray(p, dtype=np.int64)) for p in (train, vals, tests))
    return train_idx, val_idx, test_idx


# ---------------------------------------------------------------------------------------------
# Normalization


@dataclass
class Normalizer:
    """x' = (x - shift) / scale per feature, fitted on the training rows only (no leakage)."""

    kind: str  # "none" | "standard" | "minmax"
    shift: Array  # (f,) float64
    scale: Array  # (f,) float64, never 0

    @classmethod
    def fit(cls, kind: str, x_train: Array) -> Normalizer:
        if kind not in NORMALIZERS:
            raise ValueError(f"unknown normalization {kind!r}; expected one of: {', '.join(NORMALIZERS)}")
        x = np.asarray(x_train, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"x_train has shape {x.shape}; expected (rows, features)")
        f = x.shape[1]
        if kind == "none" or len(x) == 0:
            return cls(kind=kind, shift=np.zeros(f), scale=np.ones(f))
        lo, hi = x.min(axis=0), x.max(axis=0)
        if kind == "standard":
            shift, scale = x.mean(axis=0), x.std(axis=0)
        else:
            shift, scale = lo, hi - lo
        # Constant columns by exact comparison: a rounding-noise std of 1e-17 would blow them up.
        scale = np.where(hi == lo, 1.0, scale)
        return cls(kind=kind, shift=np.ascontiguousarray(shift), scale=np.ascontiguousarray(scale))

    def apply(self, x: Array, dtype: np.dtype | type = np.float32) -> Array:
        """(x - shift) / scale computed in float64, then cast, so float32 and float64 runs agree."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.shift):
            raise ValueError(f"x has shape {x.shape}; the normalizer expects {len(self.shift)} features")
        return np.ascontiguousarray((x - self.shift) / self.scale, dtype=dtype)
