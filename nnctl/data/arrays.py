"""Arrays on disk: ``.npz`` (x, y), folders of ``x.npy``/``y.npy``, memory-mapped with page advice."""

from __future__ import annotations

import contextlib
import io
import mmap as mmap_module
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from nnctl.data.table import Array, Table, check_finite_targets, check_finite_x, finish_targets, preview
from nnctl.errors import DataError
from nnctl.npz import NPY_MAGIC, NpzArchive, NpzProblem, NpzRules, first_line

NPZ_HINT = "save the data with np.savez(path, x=features, y=targets)"
# Everything np.load / NpzFile.__getitem__ raise on corrupt, truncated or hostile archives.
NPZ_ERRORS = (
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
#: What a data archive may hold: numbers (x and y) and text or bytes (class labels in y); other
#: arrays beside x and y are allowed but checked the same way (and never read).
_DATA_RULES = NpzRules(
    kinds={**dict.fromkeys("biufc", "numbers"), "U": "text", "S": "text"},
    holder="a data .npz",
)


# ---------------------------------------------------------------------------------------------
# .npz


def load_npz(source: str, data: bytes | Path, feature_names: list[str] | None, require_target: bool) -> Table:
    """Arrays ``x`` and (optionally) ``y`` of an ``.npz``, read by the hardened ``nnctl.npz`` reader."""
    x, y, names = _read_npz_xy(source, data)
    if x is None:
        raise DataError(f"{source}: no array 'x' (arrays: {preview(names) or 'none'})", hint=NPZ_HINT)
    x = _check_npz_x(source, x, feature_names)
    n, f = x.shape
    if y is None:
        if require_target:
            raise DataError(f"{source}: no array 'y' (the targets)", hint=NPZ_HINT)
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


def _read_npz_xy(source: str, data: bytes | Path) -> tuple[Array | None, Array | None, list[str]]:
    """(x or None, y or None, every array's name); every problem is one DataError naming ``source``."""
    head = data[:8] if isinstance(data, bytes) else _head(source, data)
    if head.startswith(NPY_MAGIC):
        raise DataError(f"{source}: a single .npy array, not an .npz archive", hint=NPZ_HINT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. numpy's "created on Python 2" header warning
            with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
                npz = NpzArchive(archive, _DATA_RULES)
                x, y = (npz.read(key) if key in npz.members else None for key in ("x", "y"))
                return x, y, list(npz.members)
    except NpzProblem as problem:
        raise DataError(f"{source}: {problem}", hint=NPZ_HINT) from None
    except MemoryError:
        raise DataError(f"{source}: too large to load into memory") from None
    except NPZ_ERRORS as exc:  # any other failure to parse a stranger's bytes: a corrupt file
        raise DataError(f"{source}: not a readable .npz archive ({first_line(exc)})", hint=NPZ_HINT) from None


def _head(source: str, path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(8)
    except OSError as exc:
        raise DataError(f"{source}: cannot read the file ({exc.strerror or exc})") from None


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
    check_finite_x(x, lambda r, c: f"{source}: x[{r}, {c}]", lambda r, c: _format_value(x[r, c]))
    return x


def load_npy_folder(folder: Path, feature_names: list[str] | None, require_target: bool, mmap: bool) -> Table:
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
    except NPZ_ERRORS as exc:
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
        check_finite_targets(y, where, lambda r, c: _format_value(y[r, c]))
        return y
    if y.dtype.kind == "S":
        try:
            y = np.char.decode(y, "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: y holds bytes that are not UTF-8 text") from exc
    if y.dtype.kind != "U":
        raise DataError(f"{source}: y has dtype {y.dtype}; targets must be numbers or text labels")
    return finish_targets(y, where)


def _format_value(v: float) -> str:
    return str(float(v))
