"""Nothing lost, nothing executed: hostile input, crashes and divergence, through the real CLI.

Every case runs ``nnctl`` in a subprocess and asserts the exit status (2 bad input, 1 failed
training), that the message names the key / file / line, that no traceback is printed, and what
is on disk before and after. Faults that cannot be produced for real here (a full disk, a
read-only file system when the tests run as root) are injected into the subprocess by a few lines
of Python run before the CLI's own ``main()``; the atomic-write machinery itself is also tested
in-process, with ``os.replace`` / ``np.savez`` / ``fsync`` failing half-way.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nnctl.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from nnctl.errors import CheckpointError, NnctlError, TrainingFailed
from nnctl.files import atomic_write_text, atomic_write_with, atomic_writer

REPO = Path(__file__).resolve().parents[1]
IRIS = REPO / "datasets" / "iris.csv"
NNCTL_SCRIPT = Path(sys.executable).parent / "nnctl"
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "PYTHONHASHSEED": "0"}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------------------------
# Helpers


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def nnctl(*args: object, cwd: Path, prelude: str | None = None, timeout: float = 90) -> Result:
    """Run the installed ``nnctl`` (or ``python -m nnctl``); with ``prelude``, run that Python
    first in the same process (fault injection), then the CLI's ``main()``."""
    argv = [str(a) for a in args]
    if prelude is not None:
        run_main = "import sys\nfrom nnctl.cli.app import main\nsys.argv = ['nnctl', *sys.argv[1:]]\nmain()\n"
        code = f"{textwrap.dedent(prelude)}\n{run_main}"
        command = [sys.executable, "-c", code, *argv]
    elif NNCTL_SCRIPT.exists():
        command = [str(NNCTL_SCRIPT), *argv]
    else:  # pragma: no cover - an environment without the console script
        command = [sys.executable, "-m", "nnctl", *argv]
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def assert_fails(result: Result, code: int, *needles: str) -> None:
    """Exit ``code``, one rendered message containing every needle, no traceback."""
    assert result.code == code, f"exit {result.code}, expected {code}:\n{result.output}"
    assert "Traceback" not in result.output, result.output
    label = "training failed:" if code == 1 else "error:"
    assert result.stderr.count(label) == 1, f"expected one '{label}' message:\n{result.output}"
    for needle in needles:
        assert needle in result.output, f"{needle!r} not in:\n{result.output}"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def iris_config(
    data: str | Path = IRIS, *, target: str = "species", epochs: int = 2, units: int = 3, extra: str = ""
) -> str:
    return (
        textwrap.dedent(
            f"""\
        name: rel
        seed: 0
        data:
          path: {data}
          target: {target}
          validation: 0.2
          test: 0.2
        model:
          layers:
            - {{units: 8, activation: tanh}}
            - {{units: {units}, activation: softmax}}
        cost: cce
        training:
          epochs: {epochs}
          batch_size: 16
          learning_rate: 0.1
        """
        )
        + extra
    )


XOR_REGRESSION = textwrap.dedent(
    """\
    name: xor-regression
    seed: 0
    data: {path: builtin:xor, validation: 0, test: 0, normalize: none, shuffle: false}
    model:
      layers:
        - {units: 4, activation: tanh}
        - {units: 1, activation: identity}
    cost: quadratic
    training: {epochs: 3, batch_size: 4, learning_rate: 0.1}
    """
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch iris run (last.npz, best.npz, history.csv, config.yaml); copy before use."""
    root = tmp_path_factory.mktemp("trained")
    config = write(root / "iris.yaml", iris_config())
    result = nnctl("train", config, "--out", root / "run", "-q", cwd=root)
    assert result.code == 0, result.output
    return root / "run"


@pytest.fixture
def run_copy(trained: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    return folder


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def rewrite(src: Path, dst: Path, **changes: object) -> Path:
    """Save ``src``'s arrays with some replaced (a value) or removed (None) as ``dst``."""
    arrays = arrays_of(src)
    for key, value in changes.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value  # type: ignore[assignment]
    np.savez(dst, **arrays)  # type: ignore[arg-type]
    return dst


def with_meta(src: Path, **fields: object) -> dict[str, np.ndarray]:
    meta = json.loads(str(arrays_of(src)["meta"]))
    meta.update(fields)
    return {"meta": np.array(json.dumps(meta))}


class MarkerPayload:
    """Unpickling this creates a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------------------------------------
# Checkpoints from strangers


def test_checkpoint_pickle_payload_is_refused_without_running(run_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    hostile = rewrite(
        run_copy / "last.npz", tmp_path / "hostile.npz", W1=np.array([MarkerPayload(marker)], dtype=object)
    )
    # Control: the payload is live; numpy with allow_pickle=True would run it.
    control = tmp_path / "CONTROL"
    live = rewrite(
        run_copy / "last.npz", tmp_path / "live.npz", W1=np.array([MarkerPayload(control)], dtype=object)
    )
    with np.load(live, allow_pickle=True) as npz:
        npz["W1"]
    assert control.exists()
    before = snapshot(tmp_path)
    for command in (("eval", hostile), ("predict", hostile, IRIS), ("train", "--resume", hostile)):
        result = nnctl(*command, cwd=tmp_path)
        assert_fails(result, 2, "hostile.npz", "'W1'", "pickled")
        assert not marker.exists(), f"{command[0]} unpickled the payload"
    assert snapshot(tmp_path) == before


def test_checkpoint_that_is_a_raw_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    hostile = tmp_path / "model.npz"
    hostile.write_bytes(pickle.dumps(MarkerPayload(marker)))
    result = nnctl("eval", hostile, cwd=tmp_path)
    assert_fails(result, 2, "model.npz", "not an .npz checkpoint")
    assert not marker.exists()


def _truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _random_bytes(src: Path, dst: Path) -> Path:
    dst.write_bytes(np.random.default_rng(0).bytes(4096))
    return dst


def _flipped(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    with np.load(src) as npz:
        assert "W1" in npz.files
    start = data.index(b"W1.npy") + 200  # inside W1's data, past its headers
    data[start] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def _foreign(src: Path, dst: Path) -> Path:
    np.savez(dst, x=np.zeros((4, 2)), y=np.arange(4))
    return dst


def _npy(src: Path, dst: Path) -> Path:
    with dst.open("wb") as handle:
        np.save(handle, np.zeros(3))
    return dst


def _empty(src: Path, dst: Path) -> Path:
    dst.write_bytes(b"")
    return dst


CHECKPOINT_CASES = {
    "truncated": (_truncated, ["truncated or corrupt"]),
    "random-bytes": (_random_bytes, ["not an .npz checkpoint"]),
    "flipped-byte": (_flipped, ["corrupt"]),
    "renamed-foreign-npz": (_foreign, ["no 'meta' entry", "not written by nnctl"]),
    "single-npy": (_npy, ["single .npy array"]),
    "empty-file": (_empty, ["empty"]),
    "missing-W2": (lambda s, d: rewrite(s, d, W2=None), ["missing array 'W2'"]),
    "wrong-shape": (
        lambda s, d: rewrite(s, d, W1=np.zeros((5, 4), np.float32)),
        ["W1 has shape (5, 4)", "(8, 4)"],
    ),
    "wrong-dtype": (
        lambda s, d: rewrite(s, d, W1=arrays_of(s)["W1"].astype(np.float64)),
        ["W1 is float64", "float32"],
    ),
    "nan-weights": (
        lambda s, d: rewrite(s, d, b2=np.array([0.0, np.nan, 0.0], np.float32)),
        ["b2 contains NaN"],
    ),
    "newer-format": (
        lambda s, d: rewrite(s, d, **with_meta(s, format_version=FORMAT_VERSION + 1)),
        [f"checkpoint format {FORMAT_VERSION + 1}", "newer nnctl", "upgrade"],
    ),
    "format-0": (lambda s, d: rewrite(s, d, **with_meta(s, format_version=0)), ["format_version 0"]),
    "format-garbage": (
        lambda s, d: rewrite(s, d, **with_meta(s, format_version="x1")),
        ["format_version 'x1'"],
    ),
    "extra-array": (lambda s, d: rewrite(s, d, evil=np.zeros(3)), ["unexpected arrays 'evil'"]),
    "train-state-garbage": (
        lambda s, d: rewrite(s, d, train_state=np.array('{"loop": {"epoch": "two"}, "generators": {}}')),
        ["train_state.loop.epoch"],
    ),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_bad_checkpoint_is_refused_with_a_clear_message(case: str, run_copy: Path, tmp_path: Path) -> None:
    make, needles = CHECKPOINT_CASES[case]
    bad = make(run_copy / "last.npz", tmp_path / f"{case}.npz")
    before = snapshot(tmp_path)
    result = nnctl("eval", bad, cwd=tmp_path)
    assert_fails(result, 2, f"{case}.npz", *needles)
    assert snapshot(tmp_path) == before


def test_missing_checkpoint_and_folder_given_as_checkpoint(run_copy: Path) -> None:
    assert_fails(nnctl("eval", "nope.npz", cwd=run_copy), 2, "nope.npz", "no such checkpoint")
    assert_fails(nnctl("eval", ".", cwd=run_copy), 2, "is a directory", "best.npz")


# ---------------------------------------------------------------------------------------------
# Configs


def test_config_python_tag_is_an_error_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    text = iris_config().replace("seed: 0", f"seed: !!python/object/apply:os.system ['touch {marker}']")
    config = write(tmp_path / "evil.yaml", text)
    for command in (("check", config), ("train", config, "--out", tmp_path / "run")):
        result = nnctl(*command, cwd=tmp_path)
        assert_fails(result, 2, "evil.yaml:2:7", "python/object/apply:os.system", "never run code")
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


CONFIG_CASES = {
    "empty": ("", ["empty.yaml", "the config is empty"]),
    "list": ("- data\n- model\n", ["list.yaml", "must be a mapping", "not a list"]),
    "duplicate-keys": (
        iris_config() + "seed: 3\n",
        [
            f"duplicate-keys.yaml:{len(iris_config().splitlines()) + 1}:1",
            "duplicate key 'seed'",
            "first on line 2",
        ],
    ),
    "inf-learning-rate": (
        iris_config().replace("learning_rate: 0.1", "learning_rate: .inf"),
        ["training.learning_rate", "inf", "finite"],
    ),
    "nan-dropout": (
        iris_config().replace("activation: tanh}", "activation: tanh, dropout: .nan}"),
        ["model.layers[0].dropout", "nan"],
    ),
    "misspelt-key": (
        iris_config().replace("learning_rate:", "learnin_rate:"),
        ["training.learnin_rate", "unknown key", "did you mean 'learning_rate'"],
    ),
    "billion-laughs": (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "name: *i\n",
        ["billion-laughs.yaml", "name"],
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_is_refused_with_key_and_line(case: str, tmp_path: Path) -> None:
    text, needles = CONFIG_CASES[case]
    config = write(tmp_path / f"{case}.yaml", text)
    result = nnctl("check", config, cwd=tmp_path)
    assert_fails(result, 2, *needles)


#: The child may map at most 2 GiB: allocating the 16 GB layer below would be a MemoryError.
ADDRESS_SPACE_LIMIT = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
"""


def test_absurd_layer_is_refused_with_a_memory_figure_before_allocating(tmp_path: Path) -> None:
    config = write(tmp_path / "huge.yaml", iris_config().replace("units: 8,", "units: 1000000000,"))
    for command in (("check", config), ("train", config, "--out", tmp_path / "run")):
        # nothing is allocated: under a 2 GiB address-space limit the refusal is still the message
        result = nnctl(*command, cwd=tmp_path, timeout=60, prelude=ADDRESS_SPACE_LIMIT)
        assert_fails(result, 2, "model.layers", "parameters", "GiB", "limit")
        assert re.search(r"\d[\d.,]* GiB", result.stderr), result.stderr
    assert not (tmp_path / "run" / "last.npz").exists()


def test_missing_and_directory_config(tmp_path: Path) -> None:
    assert_fails(nnctl("check", "nope.yaml", cwd=tmp_path), 2, "nope.yaml", "no such config file")
    (tmp_path / "folder.yaml").mkdir()
    assert_fails(nnctl("check", "folder.yaml", cwd=tmp_path), 2, "folder.yaml", "is a directory")


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("extra: " + "[" * 3000 + "]" * 3000 + "\n", id="nested-3000-deep"),
        pytest.param("? [a, b]\n: 1\n", id="list-as-key"),
    ],
)
def test_pathological_yaml_is_a_clean_error(extra: str, tmp_path: Path) -> None:
    config = write(tmp_path / "odd.yaml", iris_config() + extra)
    assert_fails(nnctl("check", config, cwd=tmp_path), 2, "odd.yaml")


# ---------------------------------------------------------------------------------------------
# Data


IRIS_LINES = IRIS.read_text(encoding="utf-8").splitlines()


def _lines_with(index: int, line: str) -> str:
    lines = list(IRIS_LINES)
    lines[index] = line
    return "\n".join(lines) + "\n"


DATA_CASES = {
    "empty.csv": ("", ["empty.csv", "empty"]),
    "header-only.csv": (IRIS_LINES[0] + "\n", ["header-only.csv", "only a header row"]),
    "ragged.csv": (_lines_with(5, IRIS_LINES[5] + ",9.9"), ["ragged.csv:6", "6 cells", "header has 5"]),
    "text-cell.csv": (
        _lines_with(7, "5.0,abc,1.4,0.2,setosa"),
        ["text-cell.csv:8:2", "sepal_width", "'abc'", "not a number"],
    ),
    "overflow-cell.csv": (  # ("nan" is a missing-value token now: imputed, see test_tabular.py)
        _lines_with(9, "5.0,3.1,1e999,0.2,setosa"),
        ["overflow-cell.csv:10:3", "petal_length", "not a finite number"],
    ),
    "inf-cell.csv": (
        _lines_with(11, "5.0,3.1,1.2,-inf,setosa"),
        ["inf-cell.csv:12:4", "petal_width", "not a finite number"],
    ),
    "quoted-inf-cell.csv": (
        _lines_with(11, '"5.0",3.1,1.2,inf,setosa'),
        ["quoted-inf-cell.csv:12:4", "petal_width", "not a finite number"],
    ),
}


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_bad_data_is_refused_with_file_line_column(name: str, tmp_path: Path) -> None:
    text, needles = DATA_CASES[name]
    write(tmp_path / name, text)
    config = write(tmp_path / "config.yaml", iris_config(name))
    before = snapshot(tmp_path)
    result = nnctl("train", config, "--out", tmp_path / "run", cwd=tmp_path)
    assert_fails(result, 2, *needles)
    assert snapshot(tmp_path) == before  # no run folder files, nothing else touched


def test_missing_data_file_and_directory(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", iris_config("nothere.csv"))
    assert_fails(nnctl("check", config, cwd=tmp_path), 2, "nothere.csv", "no such file")
    (tmp_path / "folder.csv").mkdir()
    config = write(tmp_path / "config.yaml", iris_config("folder.csv"))
    assert_fails(nnctl("check", config, cwd=tmp_path), 2, "folder.csv", "is a directory")


def test_missing_target_column_suggests_the_nearest(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", iris_config(target="specie"))
    assert_fails(nnctl("check", config, cwd=tmp_path), 2, "iris.csv", "no target column 'specie'", "species")


def test_single_class_is_refused_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path / "one-class.csv", "\n".join(IRIS_LINES[:51]) + "\n")  # setosa only
    config = write(tmp_path / "config.yaml", iris_config("one-class.csv"))
    result = nnctl("check", config, cwd=tmp_path)
    assert_fails(result, 2, "one-class.csv", "'species'", "1 class", "setosa", "at least 2")


def test_eval_data_with_unseen_class(run_copy: Path, tmp_path: Path) -> None:
    lines = [IRIS_LINES[0], *(line.replace("setosa", "daisy") for line in IRIS_LINES[1:6])]
    data = write(tmp_path / "unseen.csv", "\n".join(lines) + "\n")
    result = nnctl("eval", run_copy / "best.npz", "--data", data, cwd=tmp_path)
    assert_fails(result, 2, "unseen.csv", "'daisy'", "not seen in training", "setosa, versicolor, virginica")


def test_eval_data_with_other_features_than_the_checkpoint(run_copy: Path, tmp_path: Path) -> None:
    fewer = [",".join(c for i, c in enumerate(line.split(",")) if i != 3) for line in IRIS_LINES[:10]]
    data = write(tmp_path / "fewer.csv", "\n".join(fewer) + "\n")
    for command in (
        ("eval", run_copy / "best.npz", "--data", data),
        ("predict", run_copy / "best.npz", data),
    ):
        assert_fails(nnctl(*command, cwd=tmp_path), 2, "fewer.csv", "no column 'petal_width'")
    npz = tmp_path / "three.npz"
    np.savez(npz, x=np.zeros((5, 3)), y=np.array(["setosa"] * 5))
    result = nnctl("eval", run_copy / "best.npz", "--data", npz, cwd=tmp_path)
    assert_fails(result, 2, "three.npz", "3 features", "expects 4")


# ---------------------------------------------------------------------------------------------
# Atomic writes and failing runs in an existing folder


def test_train_into_a_folder_with_a_checkpoint_refuses_without_force(run_copy: Path, tmp_path: Path) -> None:
    config = write(tmp_path / "iris.yaml", iris_config())
    before = snapshot(run_copy)
    assert_fails(
        nnctl("train", config, "--out", run_copy, cwd=tmp_path), 2, "already holds a checkpoint", "--force"
    )
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("bad", ["data", "config", "resume-change"])
def test_failing_train_with_force_leaves_earlier_files_byte_identical(
    bad: str, run_copy: Path, tmp_path: Path
) -> None:
    before = snapshot(run_copy)
    if bad == "data":
        write(tmp_path / "ragged.csv", _lines_with(3, "1,2"))
        config = write(tmp_path / "iris.yaml", iris_config("ragged.csv"))
        result = nnctl("train", config, "--out", run_copy, "--force", cwd=tmp_path)
        assert_fails(result, 2, "ragged.csv:4")
    elif bad == "config":
        config = write(tmp_path / "iris.yaml", iris_config())
        result = nnctl(
            "train", config, "--out", run_copy, "--force", "--set", "training.batch_size=-1", cwd=tmp_path
        )
        assert_fails(result, 2, "training.batch_size")
    else:
        result = nnctl("train", "--resume", run_copy / "last.npz", "--set", "seed=7", cwd=tmp_path)
        assert_fails(result, 2, "seed")
    assert snapshot(run_copy) == before
    assert not temp_files(run_copy)


def test_diverging_force_run_without_a_finished_epoch_leaves_earlier_files(tmp_path: Path) -> None:
    config = write(tmp_path / "xor.yaml", XOR_REGRESSION)
    assert nnctl("train", config, "--out", tmp_path / "run", "-q", cwd=tmp_path).code == 0
    before = snapshot(tmp_path / "run")
    result = nnctl(
        "train", config, "--out", tmp_path / "run", "--force", "-q",
        "--set", "training.batch_size=1", "--set", "training.learning_rate=1e30",
        cwd=tmp_path,
    )  # fmt: skip
    assert_fails(result, 1, "epoch 1, batch")
    assert snapshot(tmp_path / "run") == before


def test_divergence_exits_1_names_epoch_and_batch_and_keeps_finite_checkpoint(tmp_path: Path) -> None:
    config = write(
        tmp_path / "xor.yaml", XOR_REGRESSION.replace("learning_rate: 0.1", "learning_rate: 1.0e+30")
    )
    result = nnctl("train", config, "--out", tmp_path / "run", cwd=tmp_path)
    assert_fails(result, 1, "diverged", "lower the learning rate", "--set training.learning_rate=")
    assert "Warning" not in result.output  # one message, not numpy's overflow warnings as well
    where = re.search(r"at epoch (\d+), batch (\d+)", result.stderr)
    assert where, result.stderr
    epoch = int(where.group(1))
    assert epoch >= 2  # full-batch steps: epoch 1's loss is finite, its update explodes
    checkpoint = load_checkpoint(tmp_path / "run" / "last.npz")  # refuses non-finite weights
    assert checkpoint.epoch == epoch - 1
    assert all(np.all(np.isfinite(w)) for w in checkpoint.weights + checkpoint.biases)
    for npz in (tmp_path / "run").glob("*.npz"):
        load_checkpoint(npz)
    assert not temp_files(tmp_path)


def test_predict_output_is_replaced_atomically_and_kept_on_failure(run_copy: Path, tmp_path: Path) -> None:
    output = tmp_path / "predictions.csv"
    output.write_text("old predictions\n")
    os.chmod(output, 0o640)
    result = nnctl("predict", tmp_path / "missing.npz", IRIS, "--output", output, cwd=tmp_path)
    assert_fails(result, 2, "missing.npz")
    assert output.read_text() == "old predictions\n"
    result = nnctl("predict", run_copy / "best.npz", IRIS, "--output", output, cwd=tmp_path)
    assert result.code == 0, result.output
    lines = output.read_text().splitlines()
    assert lines[0].startswith("species,p_setosa") and len(lines) == 151
    assert output.stat().st_mode & 0o777 == 0o640  # the replaced file's permissions are kept
    assert not temp_files(tmp_path)


# ---------------------------------------------------------------------------------------------
# Read-only output and a full disk

# Fault injection, run in the nnctl process before main(). A full disk: fsync of a file whose
# name contains NEEDLE fails with ENOSPC, as it would when the data cannot be flushed (Linux: the
# name of a descriptor is read from /proc, whatever created it).
ENOSPC_PRELUDE = """
import errno, os
NEEDLE = {needle!r}
_fsync = os.fsync
def fsync(fd):
    try:
        name = os.readlink(f"/proc/self/fd/{{fd}}")
    except OSError:
        name = ""
    if NEEDLE in os.path.basename(name):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _fsync(fd)
os.fsync = fsync
"""
NEEDS_PROC = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")

# A read-only file system: creating any file fails with EROFS (os.open with O_CREAT is what both
# tempfile.mkstemp and nnctl.files use; root ignores chmod, not this).
EROFS_PRELUDE = """
import errno, os
_open = os.open
def read_only_open(path, flags, *args, **kwargs):
    if flags & os.O_CREAT:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    return _open(path, flags, *args, **kwargs)
os.open = read_only_open
"""


@NEEDS_PROC
def test_disk_full_while_saving_a_checkpoint(run_copy: Path, tmp_path: Path) -> None:
    """ENOSPC on last.npz in a --force run: exit 2, "no space left", the old last.npz and history.csv
    byte-identical, every file whole and loadable, no temporary file left."""
    config = write(tmp_path / "iris.yaml", iris_config(epochs=3))
    before = snapshot(run_copy)
    result = nnctl(
        "train", config, "--out", run_copy, "--force", "-q",
        cwd=tmp_path, prelude=ENOSPC_PRELUDE.format(needle="last.npz"),
    )  # fmt: skip
    assert_fails(result, 2, "last.npz", "no space left")
    after = snapshot(run_copy)
    assert after["last.npz"] == before["last.npz"]
    assert after["history.csv"] == before["history.csv"]
    assert not temp_files(run_copy)
    for name in ("last.npz", "best.npz"):
        load_checkpoint(run_copy / name)


@NEEDS_PROC
def test_disk_full_while_writing_predictions(run_copy: Path, tmp_path: Path) -> None:
    output = write(tmp_path / "out.csv", "old\n")
    result = nnctl(
        "predict", run_copy / "best.npz", IRIS, "--output", output,
        cwd=tmp_path, prelude=ENOSPC_PRELUDE.format(needle="out.csv"),
    )  # fmt: skip
    assert_fails(result, 2, "out.csv", "no space left")
    assert output.read_text() == "old\n"
    assert not temp_files(tmp_path)


def test_read_only_file_system(tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    config = write(tmp_path / "iris.yaml", iris_config())
    result = nnctl("train", config, "--out", folder, cwd=tmp_path, prelude=EROFS_PRELUDE)
    assert_fails(result, 2, "readonly", "read-only")
    assert list(folder.iterdir()) == []


def test_output_folder_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    config = write(tmp_path / "iris.yaml", iris_config())
    result = nnctl("train", config, "--out", tmp_path / "file" / "run", cwd=tmp_path)
    assert_fails(result, 2, "file/run")
    assert (tmp_path / "file").read_text() == "not a folder"


@pytest.mark.skipif(IS_ROOT, reason="running as root: chmod 555 does not stop root from writing")
def test_read_only_output_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        config = write(tmp_path / "iris.yaml", iris_config())
        result = nnctl("train", config, "--out", folder, cwd=tmp_path)
        assert_fails(result, 2, "locked", "permission denied")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# The atomic writer itself (in-process): a failure at any point leaves the old file whole


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "state.bin"
    path.write_bytes(b"old contents")
    return path


def test_atomic_write_replace_failing_keeps_old_file(old_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_replace(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(NnctlError, match=r"cannot write .*state\.bin"):
        atomic_write_with(old_file, lambda handle: handle.write(b"new contents"))
    assert old_file.read_bytes() == b"old contents"
    assert not temp_files(old_file.parent)


def test_atomic_write_crash_half_way_through_keeps_old_file(old_file: Path) -> None:
    def half_then_crash(handle: object) -> None:
        handle.write(b"new con")  # type: ignore[attr-defined]
        raise RuntimeError("crash in the middle of np.savez")

    with pytest.raises(RuntimeError, match="crash"):
        atomic_write_with(old_file, half_then_crash)
    assert old_file.read_bytes() == b"old contents"
    assert not temp_files(old_file.parent)


def test_atomic_write_ctrl_c_half_way_through_keeps_old_file(old_file: Path) -> None:
    def interrupted(handle: object) -> None:
        handle.write(b"new")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_with(old_file, interrupted)
    assert old_file.read_bytes() == b"old contents"
    assert not temp_files(old_file.parent)


def test_atomic_write_interrupted_right_after_the_temp_file_is_created(
    old_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second Ctrl-C raises KeyboardInterrupt wherever Python is, also between the creation of
    the temporary file and the line that remembers it: it must still be removed."""
    real_open = os.open

    def open_then_interrupt(path: object, flags: int, *args: object) -> int:
        fd = real_open(path, flags, *args)  # type: ignore[arg-type]
        if flags & os.O_CREAT:
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_with(old_file, lambda handle: handle.write(b"new contents"))
    monkeypatch.undo()
    assert old_file.read_bytes() == b"old contents"
    assert not temp_files(old_file.parent)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_atomic_write_disk_full(where: str, old_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "fsync":
        monkeypatch.setattr(os, "fsync", full)
        writer = lambda handle: handle.write(b"new contents")  # noqa: E731
    else:
        writer = full
    with pytest.raises(NnctlError, match="no space left") as caught:
        atomic_write_with(old_file, writer)
    assert "state.bin" in str(caught.value)
    assert old_file.read_bytes() == b"old contents"
    assert not temp_files(old_file.parent)


def test_checkpoint_save_failing_mid_savez_keeps_old_checkpoint(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = run_copy / "last.npz"
    before = last.read_bytes()
    checkpoint = load_checkpoint(last)
    real_savez = np.savez

    def savez_then_fail(file: object, **arrays: object) -> None:
        real_savez(file, **dict(list(arrays.items())[:3]))  # part of the archive is on disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(NnctlError, match="no space left"):
        save_checkpoint(last, checkpoint)
    assert last.read_bytes() == before
    assert not temp_files(run_copy)


def test_checkpoint_with_non_finite_weights_is_never_written(run_copy: Path) -> None:
    last = run_copy / "last.npz"
    before = last.read_bytes()
    checkpoint = load_checkpoint(last)
    checkpoint.weights[0][0, 0] = np.inf
    with pytest.raises(TrainingFailed, match="W1 contains NaN or inf"):
        save_checkpoint(last, checkpoint)
    assert last.read_bytes() == before


def test_atomic_write_keeps_permissions_and_gives_new_files_the_umask(tmp_path: Path) -> None:
    existing = tmp_path / "existing.txt"
    existing.write_text("old")
    existing.chmod(0o640)
    atomic_write_text(existing, "new")
    assert existing.read_text() == "new"
    assert existing.stat().st_mode & 0o777 == 0o640
    mask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        atomic_write_text(fresh, "x")
        assert fresh.stat().st_mode & 0o777 == 0o644  # like open(), not mkstemp's 0o600
    finally:
        os.umask(mask)


def test_atomic_writer_into_a_folder_or_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(NnctlError, match="it is a folder"), atomic_writer(tmp_path / "folder"):
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(NnctlError, match="not a folder"):
        atomic_write_text(tmp_path / "file" / "out.txt", "y")
    assert (tmp_path / "file").read_text() == "x"


def test_loader_checks_train_state_meta_and_classes(run_copy: Path, tmp_path: Path) -> None:
    """In-process: semantic tampering that would crash eval/predict/resume later is refused now."""
    src = run_copy / "last.npz"
    state = json.loads(str(arrays_of(src)["train_state"]))
    cases = {
        "no task": (with_meta(src, task=None), "meta.task"),
        "data_path not text": (with_meta(src, data_path=5), "meta.data_path"),
        "epoch bool": (with_meta(src, epoch=True), "meta.epoch"),
        "bad generator": (
            {"train_state": np.array(json.dumps({**state, "generators": {"shuffle": 1, "dropout": 2}}))},
            "generators.shuffle",
        ),
        "unknown loop key": (
            {"train_state": np.array(json.dumps({**state, "loop": {**state["loop"], "x": 1}}))},
            "unknown key 'x'",
        ),
        "one class": ({"classes": np.array(["a"])}, "'classes'"),
        "classes vs units": ({"classes": np.array(["a", "b"])}, "do not fit"),
        "names 2-d": ({"feature_names": np.array([["a", "b"], ["c", "d"]])}, "1-d string array"),
        "scale zero": ({"norm_scale": np.zeros(4)}, "norm_scale"),
        "optimizer state shape": ({"opt_step": np.zeros(3)}, "opt_step"),
        "bytes config": ({"config": np.array(b"{}")}, "'config' has dtype"),
    }
    for name, (changes, needle) in cases.items():
        bad = rewrite(src, tmp_path / "bad.npz", **changes)
        with pytest.raises(CheckpointError, match=re.escape(needle)):
            load_checkpoint(bad)
        assert name


# ---------------------------------------------------------------------------------------------
# The loader's refusal branches, one tampered file each


def members_of(src: Path) -> list[tuple[str, bytes]]:
    """The archive's members as (name, raw .npy bytes), in order."""
    with zipfile.ZipFile(src) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def write_members(dst: Path, members: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name on purpose
        with zipfile.ZipFile(dst, "w") as archive:
            for name, data in members:
                archive.writestr(name, data)
    return dst


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def stored_config(src: Path) -> dict:
    return json.loads(str(arrays_of(src)["config"]))


def _duplicate_member(src: Path, dst: Path) -> Path:
    members = members_of(src)
    w1 = next(data for name, data in members if name == "W1.npy")
    return write_members(dst, [*members, ("W1.npy", w1)])


def _header_claims_more_than_it_holds(src: Path, dst: Path) -> Path:
    members = [(n, d[:-4] if n == "b1.npy" else d) for n, d in members_of(src)]  # 1 of 8 floats cut
    return write_members(dst, members)


def _npy_format_3(src: Path, dst: Path) -> Path:
    members = members_of(src)
    header = np.lib.format.magic(3, 0)
    return write_members(dst, [(n, header + d[8:] if n == "b2.npy" else d) for n, d in members])


def _member_not_npy(src: Path, dst: Path) -> Path:
    return write_members(dst, [*members_of(src), ("run.py", b"print('hi')")])


def _other_optimizer(src: Path, dst: Path) -> Path:
    W1 = arrays_of(src)["W1"]
    return rewrite(src, dst, opt_m_0=np.zeros_like(W1))  # adam's first moment in an sgd checkpoint


def _config_names_adam(src: Path, dst: Path) -> Path:
    config = stored_config(src)
    config["training"]["optimizer"] = {"name": "adam"}
    return rewrite(src, dst, config=np.array(json.dumps(config)))


def _regression_with_classes(src: Path, dst: Path) -> Path:
    config = {**stored_config(src), "cost": "quadratic"}  # with an identity output: regression fits
    config["model"]["layers"][-1]["activation"] = {"name": "identity"}
    return rewrite(src, dst, **with_meta(src, task="regression"), config=np.array(json.dumps(config)))


def _extra_layer(src: Path, dst: Path) -> Path:
    return rewrite(src, dst, W3=np.zeros((3, 3), np.float32), b3=np.zeros(3, np.float32))


def _task_against_config(src: Path, dst: Path) -> Path:
    config = stored_config(src)
    config["data"]["task"] = "multilabel"
    return rewrite(src, dst, config=np.array(json.dumps(config)))


def _schedule_state_of_another_schedule(src: Path, dst: Path) -> Path:
    state = json.loads(str(arrays_of(src)["train_state"]))
    state["loop"]["schedule"] = {"scale": 0.5, "best": 0.1, "wait": 0}  # plateau state, constant schedule
    return rewrite(src, dst, train_state=np.array(json.dumps(state)))


def _mid_epoch_without_shuffle_state(src: Path, dst: Path) -> Path:
    state = json.loads(str(arrays_of(src)["train_state"]))
    state["loop"].update(batch=3, epoch_start_shuffle=None)
    meta = json.loads(str(arrays_of(src)["meta"]))
    meta["batch"] = 3
    return rewrite(src, dst, train_state=np.array(json.dumps(state)), meta=np.array(json.dumps(meta)))


def _loop_epoch_against_meta(src: Path, dst: Path) -> Path:
    state = json.loads(str(arrays_of(src)["train_state"]))
    state["loop"]["epoch"] += 1
    return rewrite(src, dst, train_state=np.array(json.dumps(state)))


REFUSALS = {
    "duplicate member": (_duplicate_member, "the array 'W1' appears twice"),
    "header vs size": (_header_claims_more_than_it_holds, "'b1' declares 32 bytes of data"),
    "npy format 3": (_npy_format_3, "'b2' uses .npy format (3, 0)"),
    "foreign member": (_member_not_npy, "unexpected archive member 'run.py'"),
    "format marker": (
        lambda s, d: rewrite(s, d, **with_meta(s, format="pytorch-state-dict")),
        "format marker is 'pytorch-state-dict'",
    ),
    "meta not an object": (
        lambda s, d: rewrite(s, d, meta=np.array("[1, 2]")),
        "'meta' must be a JSON object",
    ),
    "meta not json": (lambda s, d: rewrite(s, d, meta=np.array("{nope")), "'meta' is not valid JSON"),
    "extra layer": (_extra_layer, "holds more layers than its stored config describes ('W3'"),
    "other optimizer's state": (_other_optimizer, "'opt_m_0' does not belong to the stored optimizer (sgd)"),
    "optimizer state missing": (_config_names_adam, "missing array 'opt_m_0' (the adam optimizer's state"),
    "task vs config": (_task_against_config, "meta.task is 'classification' but the stored config says"),
    "task vs cost": (
        lambda s, d: rewrite(s, d, **with_meta(s, task="regression")),
        "does not fit the stored cost",
    ),
    "classes on regression": (_regression_with_classes, "holds 'classes', but its task is regression"),
    "schedule state": (_schedule_state_of_another_schedule, "does not fit the stored schedule (constant"),
    "mid-epoch without shuffle": (
        _mid_epoch_without_shuffle_state,
        "saved mid-epoch without the epoch's shuffle",
    ),
    "loop vs meta epoch": (
        _loop_epoch_against_meta,
        "train_state.loop.epoch (3) differs from meta.epoch (2)",
    ),
    "negative step": (lambda s, d: rewrite(s, d, opt_step=np.array(-1)), "opt_step is negative"),
    "empty feature names": (lambda s, d: rewrite(s, d, feature_names=np.array([], dtype=str)), "is empty"),
    "repeated feature names": (
        lambda s, d: rewrite(s, d, feature_names=np.array(["a", "a", "b", "c"])),
        "'feature_names' repeats a name",
    ),
    "norm_shift nan": (
        lambda s, d: rewrite(s, d, norm_shift=np.array([0.0, np.nan, 0.0, 0.0])),
        "'norm_shift' contains NaN",
    ),
    "norm_shift float32": (
        lambda s, d: rewrite(s, d, norm_shift=np.zeros(4, np.float32)),
        "'norm_shift' must be float64 of shape (4,)",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_loader_refusal_branches(case: str, run_copy: Path, tmp_path: Path) -> None:
    make, needle = REFUSALS[case]
    src = run_copy / "last.npz"
    load_checkpoint(src)  # the untouched file loads: each case below is its one change
    bad = make(src, tmp_path / "bad.npz")
    with pytest.raises(CheckpointError, match=re.escape(needle)) as caught:
        load_checkpoint(bad)
    assert str(bad) in caught.value.message
