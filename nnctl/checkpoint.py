"""Checkpoints as plain ``.npz``: readable with ``numpy.load(path, allow_pickle=False)``, nothing pickled.

Keys (format version 1):

* ``W1``..``WL`` (units_l, units_{l-1}) and ``b1``..``bL`` (units_l,): the seed's w_ij and b_i
* ``config``: 0-d string, the resolved config as JSON; ``meta``: 0-d string, JSON with ``format``,
  ``format_version``, ``epoch``, ``nnctl_version``, metrics, library versions and BLAS threads
* ``feature_names``, ``target_names``, ``classes`` (strings), ``norm_shift``, ``norm_scale`` (float64)
* ``train_state``: 0-d string, JSON (random-generator states, position in the epoch, schedule and
  early-stopping state); ``opt_*``: the optimizer's state arrays

Loading trusts nothing: the format marker and version, every expected key, shapes against the
stored config, dtypes and finiteness are checked, and any problem is one ``CheckpointError``.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.config import Config, validate_config
from nnctl.errors import CheckpointError, ConfigError
from nnctl.files import atomic_write_with

FORMAT = "nnctl-checkpoint"
FORMAT_VERSION = 1
OPTIMIZER_PREFIX = "opt_"
_JSON_KEYS = ("config", "meta", "train_state")


@dataclass
class Checkpoint:
    """Everything a checkpoint holds, validated."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    config: Config
    meta: dict[str, Any]
    feature_names: list[str]
    target_names: list[str]
    classes: list[str] | None
    norm_shift: np.ndarray
    norm_scale: np.ndarray
    train_state: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])


def save_checkpoint(path: Path | str, checkpoint: Checkpoint) -> None:
    """Write atomically; the file is a plain zip of .npy arrays."""
    arrays: dict[str, np.ndarray] = {}
    for index, (W, b) in enumerate(zip(checkpoint.weights, checkpoint.biases, strict=True), start=1):
        arrays[f"W{index}"] = W
        arrays[f"b{index}"] = b
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint.meta}
    arrays["config"] = np.array(json.dumps(checkpoint.config.model_dump(mode="json")))
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["train_state"] = np.array(json.dumps(checkpoint.train_state))
    arrays["feature_names"] = np.array(checkpoint.feature_names, dtype=str)
    arrays["target_names"] = np.array(checkpoint.target_names, dtype=str)
    if checkpoint.classes is not None:
        arrays["classes"] = np.array(checkpoint.classes, dtype=str)
    arrays["norm_shift"] = np.asarray(checkpoint.norm_shift, dtype=np.float64)
    arrays["norm_scale"] = np.asarray(checkpoint.norm_scale, dtype=np.float64)
    for key, value in checkpoint.optimizer_state.items():
        arrays[OPTIMIZER_PREFIX + key] = value
    atomic_write_with(path, lambda handle: np.savez(handle, **arrays))


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a ``CheckpointError`` naming the file."""
    path = Path(path)
    arrays = _read_arrays(path)
    meta = _read_meta(path, arrays)
    config = _read_config(path, arrays)
    layers = len(config.model.layers)
    weights = [_array(path, arrays, f"W{i}") for i in range(1, layers + 1)]
    biases = [_array(path, arrays, f"b{i}") for i in range(1, layers + 1)]
    feature_names = _strings(path, arrays, "feature_names")
    _check_layers(path, config, weights, biases, len(feature_names))
    if f"W{layers + 1}" in arrays:
        raise CheckpointError(f"{path}: holds more layers than its stored config describes")
    classes = _strings(path, arrays, "classes") if "classes" in arrays else None
    norm_shift = _float_vector(path, arrays, "norm_shift", len(feature_names))
    norm_scale = _float_vector(path, arrays, "norm_scale", len(feature_names))
    if np.any(norm_scale == 0):
        raise CheckpointError(f"{path}: norm_scale contains zeros; the file is corrupt")
    optimizer_state = {
        key[len(OPTIMIZER_PREFIX) :]: arrays[key] for key in arrays if key.startswith(OPTIMIZER_PREFIX)
    }
    return Checkpoint(
        weights=weights,
        biases=biases,
        config=config,
        meta=meta,
        feature_names=feature_names,
        target_names=_strings(path, arrays, "target_names"),
        classes=classes,
        norm_shift=norm_shift,
        norm_scale=norm_scale,
        train_state=_json(path, arrays, "train_state") if "train_state" in arrays else {},
        optimizer_state=optimizer_state,
        path=path,
    )


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint", hint="train one with `nnctl train CONFIG`")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory", hint=f"did you mean {path / 'best.npz'}?")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise CheckpointError(
                f"{path}: contains pickled Python objects, which nnctl never loads (they can run code)"
            ) from None
        raise CheckpointError(f"{path}: not a valid .npz checkpoint ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: not a readable .npz checkpoint (truncated or corrupt: {exc})"
        ) from None


def _json(path: Path, arrays: dict[str, np.ndarray], key: str) -> dict[str, Any]:
    value = arrays.get(key)
    if value is None:
        raise CheckpointError(f"{path}: missing '{key}'; not an nnctl checkpoint")
    if value.shape != () or value.dtype.kind != "U":
        raise CheckpointError(f"{path}: '{key}' must be a 0-d string array")
    try:
        parsed = json.loads(str(value))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: '{key}' is not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise CheckpointError(f"{path}: '{key}' must be a JSON object")
    return parsed


def _read_meta(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if "meta" not in arrays:
        raise CheckpointError(f"{path}: no 'meta' entry; this .npz was not written by nnctl")
    meta = _json(path, arrays, "meta")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format marker is {meta.get('format')!r}, not {FORMAT!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: format_version {version!r} is not a version nnctl ever wrote")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer nnctl (checkpoint format {version}); "
            f"this nnctl reads format {FORMAT_VERSION}",
            hint="upgrade nnctl (pip install -U nnctl)",
        )
    if not isinstance(meta.get("epoch"), int) or meta["epoch"] < 0:
        raise CheckpointError(f"{path}: meta.epoch must be a non-negative integer")
    return meta


def _read_config(path: Path, arrays: dict[str, np.ndarray]) -> Config:
    raw = _json(path, arrays, "config")
    try:
        return validate_config(raw, f"{path} (stored config)")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def _array(path: Path, arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in arrays:
        raise CheckpointError(f"{path}: missing array '{key}' (the stored config needs it)")
    return arrays[key]


def _strings(path: Path, arrays: dict[str, np.ndarray], key: str) -> list[str]:
    value = _array(path, arrays, key)
    if value.ndim != 1 or value.dtype.kind != "U":
        raise CheckpointError(f"{path}: '{key}' must be a 1-d string array, not {value.dtype} {value.shape}")
    return [str(v) for v in value]


def _float_vector(path: Path, arrays: dict[str, np.ndarray], key: str, size: int) -> np.ndarray:
    value = _array(path, arrays, key)
    if value.dtype != np.float64 or value.shape != (size,):
        raise CheckpointError(
            f"{path}: '{key}' must be float64 of shape ({size},), not {value.dtype} {value.shape}"
        )
    if not np.all(np.isfinite(value)):
        raise CheckpointError(f"{path}: '{key}' contains NaN or inf")
    return value


def _check_layers(
    path: Path, config: Config, weights: list[np.ndarray], biases: list[np.ndarray], input_units: int
) -> None:
    dtype = np.dtype(config.dtype)
    fan_in = input_units
    for index, (W, b, layer) in enumerate(zip(weights, biases, config.model.layers, strict=True), start=1):
        expected = (layer.units, fan_in)
        if W.shape != expected:
            raise CheckpointError(f"{path}: W{index} has shape {W.shape}, the stored config needs {expected}")
        if b.shape != (layer.units,):
            raise CheckpointError(
                f"{path}: b{index} has shape {b.shape}, the stored config needs ({layer.units},)"
            )
        for name, array in ((f"W{index}", W), (f"b{index}", b)):
            if array.dtype != dtype:
                raise CheckpointError(f"{path}: {name} is {array.dtype}, the stored config says {dtype}")
            if not np.all(np.isfinite(array)):
                raise CheckpointError(f"{path}: {name} contains NaN or inf values")
        fan_in = layer.units
