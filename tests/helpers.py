"""Small helpers shared by the CLI tests.

* ``invoke``: the CLI in-process through Typer's ``CliRunner`` (fast; most tests).
* ``run_nnctl``: the installed ``nnctl`` console script as a real subprocess.
* ``read_checkpoint`` / ``forward`` / ``read_csv``: a checkpoint and a data file read with plain
  NumPy and the standard library. Nothing here imports nnctl at module level, so tests that
  must not depend on nnctl's own reader (``test_checkpoint_numpy.py``) can use these freely.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
DATASETS = REPO / "datasets"

# A wide, colourless terminal: Rich tables then never wrap or truncate the text the tests look for.
CLI_ENV = {"COLUMNS": "240", "LINES": "60", "NO_COLOR": "1", "TERM": "dumb"}


# ---------------------------------------------------------------------------------------------
# Running nnctl


@dataclass
class Outcome:
    """What one nnctl run produced (same shape for in-process and subprocess runs)."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def assert_no_traceback(outcome: Outcome) -> None:
    for stream in (outcome.stdout, outcome.stderr):
        assert "Traceback" not in stream, stream
        assert 'File "' not in stream, stream


def invoke(*args: str | os.PathLike[str]) -> Outcome:
    """``nnctl ARGS`` in-process with Typer's CliRunner; any uncaught exception fails the test
    (that is what a user would see as a traceback)."""
    from typer.testing import CliRunner

    from nnctl.cli.app import app

    result = CliRunner(env=CLI_ENV).invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            f"nnctl {' '.join(map(str, args))} raised {result.exception!r}\n{result.output}"
        ) from result.exception
    outcome = Outcome(result.exit_code, result.stdout, result.stderr)
    assert_no_traceback(outcome)
    return outcome


def nnctl_command() -> list[str]:
    """The installed console script (next to this interpreter), else ``python -m nnctl``."""
    script = Path(sys.executable).with_name("nnctl")
    if script.exists():
        return [str(script)]
    found = shutil.which("nnctl")
    return [found] if found else [sys.executable, "-m", "nnctl"]


def run_nnctl(
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> Outcome:
    """``nnctl ARGS`` as a real subprocess of the installed script."""
    full_env = {**os.environ, **CLI_ENV, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [*nnctl_command(), *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    outcome = Outcome(proc.returncode, proc.stdout, proc.stderr)
    assert_no_traceback(outcome)
    return outcome


def ok(outcome: Outcome) -> Outcome:
    """Assert exit status 0 and return the outcome."""
    assert outcome.code == 0, f"exit {outcome.code}\nstdout:\n{outcome.stdout}\nstderr:\n{outcome.stderr}"
    return outcome


def train(config: str | os.PathLike[str], out: Path, *sets: str, extra: tuple[str, ...] = ()) -> Path:
    """Train quietly in-process into ``out``; returns ``out``."""
    args: list[str] = ["train", str(config), "--out", str(out), "--quiet", *extra]
    for assignment in sets:
        args += ["--set", assignment]
    ok(invoke(*args))
    return out


def eval_json(checkpoint: Path, *more: str) -> dict[str, Any]:
    outcome = ok(invoke("eval", str(checkpoint), "--json", *more))
    return json.loads(outcome.stdout)


# ---------------------------------------------------------------------------------------------
# Plain NumPy reading of checkpoints and data (no nnctl imports)


@dataclass
class NumpyCheckpoint:
    arrays: dict[str, np.ndarray]
    config: dict[str, Any]
    meta: dict[str, Any]

    @property
    def layers(self) -> int:
        return len(self.config["model"]["layers"])

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.arrays["classes"]]

    @property
    def feature_names(self) -> list[str]:
        return [str(c) for c in self.arrays["feature_names"]]


def read_checkpoint(path: str | os.PathLike[str]) -> NumpyCheckpoint:
    """A checkpoint with ``numpy.load(path, allow_pickle=False)`` and ``json`` only."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    config = json.loads(str(arrays["config"][()]))
    meta = json.loads(str(arrays["meta"][()]))
    return NumpyCheckpoint(arrays, config, meta)


def activate(spec: dict[str, Any], z: np.ndarray) -> np.ndarray:
    name = spec["name"]
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "elu":
        alpha = spec.get("alpha", 1.0)
        return np.where(z >= 0, z, alpha * np.expm1(np.minimum(z, 0.0)))
    if name == "tanh":
        return np.tanh(z)
    if name == "identity":
        return z
    if name == "logistic":
        L, k, x0 = spec.get("L", 1.0), spec.get("k", 1.0), spec.get("x0", 0.0)
        return L / (1.0 + np.exp(-k * (z - x0)))
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise AssertionError(f"unknown activation {name}")


def forward(ckpt: NumpyCheckpoint, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, a) of the output layer for raw feature rows, in float64."""
    a = (np.asarray(x_raw, dtype=np.float64) - ckpt.arrays["norm_shift"]) / ckpt.arrays["norm_scale"]
    z = a
    for index, layer in enumerate(ckpt.config["model"]["layers"], start=1):
        W = ckpt.arrays[f"W{index}"].astype(np.float64)
        b = ckpt.arrays[f"b{index}"].astype(np.float64)
        z = a @ W.T + b
        a = activate(layer["activation"], z)
    return z, a


def read_csv(path: str | os.PathLike[str]) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [row for row in rows[1:] if row]


def csv_columns(path: str | os.PathLike[str], names: list[str]) -> np.ndarray:
    """The named columns of a CSV as a float64 (rows, len(names)) array."""
    header, rows = read_csv(path)
    index = [header.index(name) for name in names]
    return np.array([[float(row[i]) for i in index] for row in rows], dtype=np.float64)


def csv_column(path: str | os.PathLike[str], name: str) -> list[str]:
    header, rows = read_csv(path)
    i = header.index(name)
    return [row[i].strip() for row in rows]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def history_rows(run: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(run / "history.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


UNPICKLED: list[str] = []  # "ran" once per PicklePayload unpickled


def _record_unpickle() -> str:
    UNPICKLED.append("ran")
    return "payload"


class PicklePayload:
    """Unpickling this appends to ``UNPICKLED``: proof of whether a loader executed a pickle."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_record_unpickle, ())


def weights(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """The bytes of every W and b array of a checkpoint, by name: equal dicts, bit-identical weights."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k].tobytes() for k in npz.files if k[0] in "Wb" and k[1:].isdigit()}


def read_rows(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as dicts keyed by its header."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def weights_equal(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Every W*/b* array of two checkpoints bit-identical (and the same set of them)."""
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        keys_x = sorted(k for k in x.files if k[:1] in "Wb" and k[1:].isdigit())
        keys_y = sorted(k for k in y.files if k[:1] in "Wb" and k[1:].isdigit())
        return keys_x == keys_y and bool(keys_x) and all(np.array_equal(x[k], y[k]) for k in keys_x)


def config_component(key: str, spec: object) -> object:
    """``spec`` as the config reads it at ``key`` (cost, model.initializer, training.optimizer, ...):
    the one way a component is built from its YAML name."""
    from nnctl.config import validate_config

    raw: dict[str, Any] = {
        "data": {"path": "builtin:xor"},
        "model": {"layers": [{"units": 2, "activation": "softmax"}]},
        "cost": "cce",
        "training": {"epochs": 1, "learning_rate": 0.1},
    }
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = spec
    value: Any = validate_config(raw, "test.yaml")
    for part in key.split("."):
        value = getattr(value, part)
    return value


# ---------------------------------------------------------------------------------------------
# Independent recomputation of what a run saw


def split_of(ckpt: NumpyCheckpoint, rows: int, strata: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The train/validation/test row indices of a run, rebuilt from its stored config through the
    public split functions (same seed, same stream): ``{"train": ..., "validation": ..., "test": ...}``."""
    from nnctl.data.splits import split_indices
    from nnctl.training.prepare import random_streams

    data = ckpt.config["data"]
    rng = random_streams(ckpt.config["seed"])["split"]
    parts = split_indices(rows, data["validation"], data["test"], rng, strata)
    return dict(zip(("train", "validation", "test"), parts, strict=True))


def cce_loss_and_accuracy(ckpt: NumpyCheckpoint, x_raw: np.ndarray, labels: list[str]) -> tuple[float, float]:
    """Mean categorical cross-entropy (2.18) and accuracy of a softmax checkpoint on raw rows, in
    float64 NumPy from the checkpoint's own arrays."""
    truth = np.array([ckpt.classes.index(label) for label in labels])
    z, _ = forward(ckpt, x_raw)
    shifted = z - z.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_softmax[np.arange(len(truth)), truth].mean()
    return float(loss), float(np.mean(z.argmax(axis=1) == truth))
