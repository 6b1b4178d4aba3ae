"""One entry point for every data source: CSV, .npz, a folder of .npy arrays, or a builtin."""

from __future__ import annotations

from pathlib import Path

from nnctl.data.arrays import NPZ_HINT, load_npy_folder, load_npz
from nnctl.data.builtins import load_builtin
from nnctl.data.csv import load_csv
from nnctl.data.table import Table, target_list
from nnctl.errors import DataError

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
    targets = target_list(target)
    if feature_names is not None:
        feature_names = list(feature_names)
    if isinstance(spec, str) and spec.startswith("builtin:"):
        return load_builtin(spec, targets, feature_names, require_target)
    path = _resolve(spec, base_dir)
    if path.is_dir() and (path / "x.npy").is_file():
        return load_npy_folder(path, feature_names, require_target, mmap)
    if path.suffix.lower() == ".npz" and path.is_file():
        # np.load reads the archive member by member: the file is never held twice in memory.
        return load_npz(str(path), path, feature_names, require_target)
    data = _read_bytes(path, spec, base_dir)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(str(path), data, feature_names, require_target)
    if suffix == ".npy":
        raise DataError(f"{path}: a .npy file holds one array; x and y are needed", hint=NPZ_HINT)
    return load_csv(str(path), data, targets, feature_names, require_target)
