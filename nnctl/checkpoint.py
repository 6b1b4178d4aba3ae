"""Checkpoints as plain ``.npz``: readable with ``numpy.load(path, allow_pickle=False)``, nothing pickled.

Keys (format version 2; version 1 had no ``preprocessing``):

* ``W1``..``WL`` (units_l, units_{l-1}) and ``b1``..``bL`` (units_l,): the seed's w_ij and b_i
* ``config``: 0-d string, the resolved config as JSON; ``meta``: 0-d string, JSON with ``format``,
  ``format_version``, ``epoch``, ``nnctl_version``, metrics, library versions and BLAS threads
* ``feature_names``, ``target_names``, ``classes`` (strings), ``norm_shift``, ``norm_scale`` (float64)
* ``preprocessing``: 0-d string, JSON: how raw table columns become the inputs ``feature_names``
  (``nnctl.data.columns.Preprocessing``); a version-1 file reads as numeric columns only
* ``train_state``: 0-d string, JSON (random-generator states, position in the epoch, schedule and
  early-stopping state); ``opt_*``: the optimizer's state arrays

Loading trusts nothing. The archive is read by ``nnctl.npz`` (the hardened reader data ``.npz``
files share): member by member with ``zipfile``, every ``.npy`` header inspected before any data is
read, so an object dtype (a pickle, which could run code) is refused without being unpickled, and a
header that claims more bytes than its member holds is refused before anything is allocated. Then
the format marker and version, every expected key (and no other), shapes against the stored config,
dtypes, finiteness, the class list, the normalization statistics, the training state and the
optimizer state are checked. Any problem is one
``CheckpointError`` that names the file and says what is wrong.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.checkpoint_checks import (
    FORMAT,
    FORMAT_VERSION,
    check_class_weights,
    check_meta,
    check_targets,
    check_train_state,
)
from nnctl.config import MAX_PARAMETER_BYTES, Config, check_parameter_budget, validate_config
from nnctl.data.columns import Preprocessing
from nnctl.errors import CheckpointError, ConfigError, TrainingFailed
from nnctl.files import atomic_write_with
from nnctl.npz import NPY_MAGIC, ZIP_MAGIC, NpzArchive, NpzMember, NpzProblem, NpzRules, first_line

OPTIMIZER_PREFIX = "opt_"

#: Largest text member (config, meta, train_state, name lists) read from a checkpoint.
MAX_TEXT_BYTES = 64 * 1024**2
#: Largest total (uncompressed) size of a checkpoint: the parameter budget plus room for text.
MAX_CHECKPOINT_BYTES = MAX_PARAMETER_BYTES + 1024**3
#: What a checkpoint archive may hold: bool, integers, floats, unicode text.
_RULES = NpzRules(
    kinds={"b": "bool", "i": "integers", "u": "integers", "f": "floats", "U": "text"},
    holder="a checkpoint",
    max_total_bytes=MAX_CHECKPOINT_BYTES,
)


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
    preprocessing: Preprocessing = None  # type: ignore[assignment]  # None -> numeric_only(feature_names)

    def __post_init__(self) -> None:
        if self.preprocessing is None:
            self.preprocessing = Preprocessing.numeric_only(self.feature_names)

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])


# ---------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(path: Path | str, checkpoint: Checkpoint) -> None:
    """Write atomically; the file is a plain zip of .npy arrays.

    nnctl never writes a checkpoint it would refuse to read: non-finite weights (a run that has
    just diverged) are refused here, so the previous, finite file stays in place.
    """
    arrays: dict[str, np.ndarray] = {}
    for index, (W, b) in enumerate(zip(checkpoint.weights, checkpoint.biases, strict=True), start=1):
        for name, array in ((f"W{index}", W), (f"b{index}", b)):
            if not np.all(np.isfinite(array)):
                raise TrainingFailed(
                    f"not writing {path}: {name} contains NaN or inf values",
                    hint="the training diverged; lower the learning rate",
                )
            arrays[name] = array
    meta = {**checkpoint.meta, "format": FORMAT, "format_version": FORMAT_VERSION}
    arrays["config"] = np.array(json.dumps(checkpoint.config.model_dump(mode="json")))
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["train_state"] = np.array(json.dumps(checkpoint.train_state))
    arrays["feature_names"] = np.array(checkpoint.feature_names, dtype=str)
    arrays["target_names"] = np.array(checkpoint.target_names, dtype=str)
    if checkpoint.classes is not None:
        arrays["classes"] = np.array(checkpoint.classes, dtype=str)
    arrays["norm_shift"] = np.asarray(checkpoint.norm_shift, dtype=np.float64)
    arrays["norm_scale"] = np.asarray(checkpoint.norm_scale, dtype=np.float64)
    preprocessing = checkpoint.preprocessing or Preprocessing.numeric_only(checkpoint.feature_names)
    arrays["preprocessing"] = np.array(json.dumps(preprocessing.to_json()))
    for key, value in checkpoint.optimizer_state.items():
        arrays[OPTIMIZER_PREFIX + key] = value
    atomic_write_with(path, lambda handle: np.savez(handle, **arrays))


# ---------------------------------------------------------------------------------------------
# Reading


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a ``CheckpointError`` naming the file."""
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. numpy's "created on Python 2" header warning
            with zipfile.ZipFile(path) as archive:
                return _Reader(path, archive).checkpoint()
    except CheckpointError:
        raise
    except NpzProblem as problem:
        raise CheckpointError(f"{path}: {problem}") from None
    except MemoryError:
        raise CheckpointError(f"{path}: too large to load into memory") from None
    except Exception as exc:  # any other failure to parse a stranger's bytes: a corrupt file
        raise CheckpointError(
            f"{path}: not a readable .npz checkpoint (truncated or corrupt: {first_line(exc)})"
        ) from None


def _check_file(path: Path) -> None:
    try:
        if not path.exists():
            raise CheckpointError(f"{path}: no such checkpoint", hint="train one with `nnctl train CONFIG`")
        if path.is_dir():
            raise CheckpointError(f"{path}: is a directory", hint=f"did you mean {path / 'best.npz'}?")
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. a NUL byte in the name
        raise CheckpointError(f"{path}: not a usable path ({exc})") from None
    if not head:
        raise CheckpointError(f"{path}: the file is empty; not an nnctl checkpoint")
    if head.startswith(NPY_MAGIC):
        raise CheckpointError(f"{path}: a single .npy array, not an .npz checkpoint written by nnctl train")
    if not head.startswith(ZIP_MAGIC):
        raise CheckpointError(
            f"{path}: not an .npz checkpoint (the file does not start with a zip signature; "
            f"first bytes {head[:4]!r})"
        )


class _Reader:
    """One pass over a checkpoint archive: headers first, data only once they are known to fit."""

    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self.npz = NpzArchive(archive, _RULES)
        self.members = self.npz.members

    def has(self, key: str) -> bool:
        return key in self.members

    def header(self, key: str, needed_for: str = "the stored config needs it") -> NpzMember:
        if key not in self.members:
            raise CheckpointError(f"{self.path}: missing array '{key}' ({needed_for})")
        return self.members[key]

    def read(self, key: str) -> np.ndarray:
        member = self.header(key)
        if member.dtype.kind == "U" and member.nbytes > MAX_TEXT_BYTES:
            raise CheckpointError(f"{self.path}: '{key}' holds {member.nbytes:,} bytes of text; too large")
        return self.npz.read(key)

    # -- the checkpoint, field by field --------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        path = self.path
        if not self.has("meta"):
            raise CheckpointError(f"{path}: no 'meta' entry; this .npz was not written by nnctl")
        meta = check_meta(path, self._json("meta"))
        config = self._config()
        layers = len(config.model.layers)
        feature_names = self._strings("feature_names")
        if not feature_names:
            raise CheckpointError(f"{path}: 'feature_names' is empty; the model needs at least one input")
        if len(set(feature_names)) != len(feature_names):
            raise CheckpointError(f"{path}: 'feature_names' repeats a name")
        try:
            check_parameter_budget(config, len(feature_names))
        except ConfigError as exc:
            raise CheckpointError(f"{path}: {exc.message}") from None
        dtype = np.dtype(config.dtype)
        # Shapes and dtypes are checked on the headers, before any weight is read.
        fan_in = len(feature_names)
        for index, layer in enumerate(config.model.layers, start=1):
            self._expect(f"W{index}", (layer.units, fan_in), dtype)
            self._expect(f"b{index}", (layer.units,), dtype)
            fan_in = layer.units
        weights = [self._finite(f"W{i}") for i in range(1, layers + 1)]
        biases = [self._finite(f"b{i}") for i in range(1, layers + 1)]
        target_names = self._strings("target_names")
        classes = self._strings("classes") if self.has("classes") else None
        check_targets(path, config, meta["task"], target_names, classes)
        norm_shift = self._float_vector("norm_shift", len(feature_names))
        norm_scale = self._float_vector("norm_scale", len(feature_names))
        if np.any(norm_scale <= 0):
            raise CheckpointError(f"{path}: norm_scale holds zero or negative values; the file is corrupt")
        preprocessing = self._preprocessing(meta["format_version"], feature_names, norm_shift, norm_scale)
        check_class_weights(path, meta, classes)
        train_state = check_train_state(path, self._json("train_state"), meta, config)
        optimizer_state = self._optimizer_state(config, weights, biases)
        known = {"meta", "config", "train_state", "feature_names", "target_names", "classes"}
        known |= {"norm_shift", "norm_scale"} | {f"{p}{i}" for p in "Wb" for i in range(1, layers + 1)}
        if meta["format_version"] >= 2:
            known.add("preprocessing")
        known |= {OPTIMIZER_PREFIX + key for key in optimizer_state}
        extra = sorted(set(self.members) - known)
        if extra:
            listed = ", ".join(f"'{k}'" for k in extra[:5]) + (
                f" and {len(extra) - 5} more" if len(extra) > 5 else ""
            )
            if f"W{layers + 1}" in extra:
                raise CheckpointError(
                    f"{path}: holds more layers than its stored config describes ({listed})"
                )
            raise CheckpointError(
                f"{path}: holds unexpected arrays {listed}, which are not part of checkpoint format "
                f"{meta['format_version']}; the file was not written by nnctl or was tampered with"
            )
        return Checkpoint(
            weights=weights,
            biases=biases,
            config=config,
            meta=meta,
            feature_names=feature_names,
            target_names=target_names,
            classes=classes,
            norm_shift=norm_shift,
            norm_scale=norm_scale,
            train_state=train_state,
            optimizer_state=optimizer_state,
            path=path,
            preprocessing=preprocessing,
        )

    def _preprocessing(
        self, version: int, feature_names: list[str], shift: np.ndarray, scale: np.ndarray
    ) -> Preprocessing:
        """Version 2: the stored preprocessing, which must encode exactly ``feature_names`` and
        leave one-hot and indicator inputs unscaled. Version 1: numeric columns only."""
        if version < 2:
            return Preprocessing.numeric_only(feature_names)
        try:
            preprocessing = Preprocessing.from_json(self._json("preprocessing"))
        except ValueError as exc:
            raise CheckpointError(f"{self.path}: 'preprocessing' is invalid: {exc}") from None
        if preprocessing.feature_names != feature_names:
            raise CheckpointError(
                f"{self.path}: 'preprocessing' encodes other inputs than 'feature_names'; the file is corrupt"
            )
        fixed = ~preprocessing.scaled_inputs()
        if np.any(shift[fixed] != 0.0) or np.any(scale[fixed] != 1.0):
            raise CheckpointError(f"{self.path}: one-hot or indicator inputs have a normalization; corrupt")
        return preprocessing

    def _json(self, key: str) -> dict[str, Any]:
        member = self.header(key, "every nnctl checkpoint has it")
        if member.shape != () or member.dtype.kind != "U":
            raise CheckpointError(
                f"{self.path}: '{key}' must be a 0-d string array, not {member.dtype} {member.shape}"
            )
        try:
            parsed = json.loads(str(self.read(key)[()]))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge integers, deep nesting
            raise CheckpointError(f"{self.path}: '{key}' is not valid JSON ({first_line(exc)})") from None
        if not isinstance(parsed, dict):
            raise CheckpointError(f"{self.path}: '{key}' must be a JSON object, not {type(parsed).__name__}")
        return parsed

    def _config(self) -> Config:
        raw = self._json("config")
        try:
            return validate_config(raw, f"{self.path} (stored config)")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
        except RecursionError:
            raise CheckpointError(f"{self.path}: the stored config is nested too deeply") from None

    def _strings(self, key: str) -> list[str]:
        member = self.header(key, "every nnctl checkpoint has it")
        if len(member.shape) != 1 or member.dtype.kind != "U":
            raise CheckpointError(
                f"{self.path}: '{key}' must be a 1-d string array, not {member.dtype} {member.shape}"
            )
        return [str(v) for v in self.read(key)]

    def _expect(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        member = self.header(key)
        if member.shape != shape:
            raise CheckpointError(
                f"{self.path}: {key} has shape {member.shape}, the stored config needs {shape}"
            )
        if member.dtype != dtype:
            raise CheckpointError(f"{self.path}: {key} is {member.dtype}, the stored config says {dtype}")

    def _finite(self, key: str) -> np.ndarray:
        array = self.read(key)
        if not np.all(np.isfinite(array)):
            raise CheckpointError(f"{self.path}: {key} contains NaN or inf values")
        return array

    def _float_vector(self, key: str, size: int) -> np.ndarray:
        member = self.header(key, "every nnctl checkpoint has it")
        if member.dtype != np.float64 or member.shape != (size,):
            raise CheckpointError(
                f"{self.path}: '{key}' must be float64 of shape ({size},), not {member.dtype} {member.shape}"
            )
        value = self.read(key)
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{self.path}: '{key}' contains NaN or inf")
        return value

    def _optimizer_state(
        self, config: Config, weights: list[np.ndarray], biases: list[np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Exactly the arrays the configured optimizer keeps, with the shapes of the parameters."""
        params = [p for pair in zip(weights, biases, strict=True) for p in pair]
        expected = config.training.optimizer.init(params)
        optimizer = config.training.optimizer.name
        stored = {k[len(OPTIMIZER_PREFIX) :] for k in self.members if k.startswith(OPTIMIZER_PREFIX)}
        unexpected = sorted(stored - set(expected))
        if unexpected:
            raise CheckpointError(
                f"{self.path}: optimizer state '{OPTIMIZER_PREFIX}{unexpected[0]}' does not belong to "
                f"the stored optimizer ({optimizer})"
            )
        state: dict[str, np.ndarray] = {}
        for key, template in expected.items():
            name = OPTIMIZER_PREFIX + key
            member = self.header(name, f"the {optimizer} optimizer's state; resume needs it")
            if member.shape != template.shape or member.dtype != template.dtype:
                raise CheckpointError(
                    f"{self.path}: {name} is {member.dtype} {member.shape}, the {optimizer} optimizer "
                    f"needs {template.dtype} {template.shape}"
                )
            value = self._finite(name)
            if key == "step" and int(value) < 0:
                raise CheckpointError(f"{self.path}: {name} is negative")
            state[key] = value
        return state
