"""Property tests: random configs, CSV bytes and checkpoint bytes thrown at the loaders.

Every outcome must be success or a clean ``NnctlError`` subclass (the CLI renders those as one
message, exit 2): never another exception (a traceback for the user), never a hang (each example
runs under an alarm). Checkpoints that load after tampering must also be usable: ``predict`` and
``eval`` on them succeed or fail cleanly too.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import signal
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnctl.checkpoint import load_checkpoint
from nnctl.config import apply_override, load_config, validate_config
from nnctl.data.load import load_table
from nnctl.errors import CheckpointError, ConfigError, DataError, NnctlError
from nnctl.evaluation import evaluation_report
from nnctl.workflows import predict_table

REPO = Path(__file__).resolve().parents[1]
IRIS = REPO / "datasets" / "iris.csv"
#: Examples per property; NNCTL_FUZZ_EXAMPLES=5000 for a deeper run than the default suite.
EXAMPLES = int(os.environ.get("NNCTL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=False,
)
SECONDS_PER_EXAMPLE = 10
pytestmark = [
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning"),  # large reprs of blobs
    pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning"),
]


@contextlib.contextmanager
def no_hang(seconds: int = SECONDS_PER_EXAMPLE) -> Iterator[None]:
    """Fail (TimeoutError) instead of hanging, where SIGALRM exists."""
    if sys.platform == "win32":  # pragma: no cover
        yield
        return

    def timeout(signum: int, frame: object) -> None:
        raise TimeoutError(f"a loader took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(call: Callable[[], Any], allowed: type[NnctlError] = NnctlError) -> Any:
    """The call's result, or None for a clean ``allowed`` error; anything else fails the test."""
    with no_hang():
        try:
            return call()
        except allowed:
            return None


# ---------------------------------------------------------------------------------------------
# Configs

VALID = {
    "name": "fuzz",
    "seed": 0,
    "data": {"path": "builtin:xor", "validation": 0, "test": 0},
    "model": {"layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "logistic"}]},
    "cost": "quadratic",
    "training": {"epochs": 2, "learning_rate": 0.5},
}
WORDS = [
    *("name", "seed", "dtype", "data", "model", "cost", "training", "path", "target", "validation"),
    *("test", "normalize", "shuffle", "task", "initializer", "layers", "units", "activation", "dropout"),
    *("epochs", "batch_size", "learning_rate", "optimizer", "schedule", "weight_decay", "clip_norm"),
    *("early_stopping", "alpha", "L", "k", "x0", "momentum", "monitor", "patience", "relu", "elu"),
    *("softmax", "logistic", "identity", "cce", "bce", "quadratic", "sgd", "adam", "he", "xavier"),
    *("float32", "float64", "standard", "minmax", "builtin:xor", "auto", "regression"),
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(WORDS),
)
keys = st.one_of(st.sampled_from(WORDS), st.text(max_size=6))
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=20,
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> Any:
    """A valid config with a few values replaced, keys deleted or added, anywhere in the tree."""
    raw = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        node: Any = raw
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            if not isinstance(node[key], dict | list):
                break
            node = node[key]
        if isinstance(node, dict):
            action = draw(st.sampled_from(["set", "delete", "add"]))
            if action == "delete" and node:
                del node[draw(st.sampled_from(list(node)))]
            elif action == "set" and node:
                node[draw(st.sampled_from(list(node)))] = draw(trees)
            else:
                node[draw(keys)] = draw(trees)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(trees)
    return raw


@FUZZ
@given(st.one_of(mutated_configs(), st.dictionaries(keys, trees, max_size=8)))
def test_random_config_mappings_validate_or_fail_cleanly(raw: dict[str, Any]) -> None:
    outcome(lambda: validate_config(copy.deepcopy(raw), "fuzz.yaml"), ConfigError)


YAML_TOKENS = [
    *("{", "}", "[", "]", ": ", ", ", "- ", "\n", "  ", "'", '"', "? ", "|", ">", "#", "&a ", "*a"),
    *("<<: ", "---", "...", "%YAML 1.1\n", "!!python/object/apply:os.system ['true']", "!!binary "),
    *("!!set ", "!!omap ", "!!str ", "!!float ", "2001-12-14", "~", "null", "true", "0x1F", "1e-3"),
    *(".inf", "-.inf", ".nan", "1_000", "\t", "\x00", "\ufeff", "é"),
    *WORDS,
]
yaml_texts = st.one_of(
    st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join),
    st.text(max_size=200),
    st.builds(lambda raw: yaml.safe_dump(raw), mutated_configs()),
)


@FUZZ
@given(yaml_texts)
def test_random_yaml_files_load_or_fail_cleanly(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("yaml", numbered=True) / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    outcome(lambda: load_config(path), ConfigError)


key_paths = st.lists(
    st.one_of(st.sampled_from([*WORDS, ".", "[0]", "[1]", "[7]", "[", "]", "=", "[x]"]), st.text(max_size=3)),
    max_size=6,
).map("".join)


@FUZZ
@given(st.lists(st.tuples(key_paths, st.one_of(st.text(max_size=12), yaml_texts)), max_size=3))
def test_random_set_overrides_apply_or_fail_cleanly(assignments: list[tuple[str, str]]) -> None:
    def apply_all() -> Any:
        raw = copy.deepcopy(VALID)
        for key, value in assignments:
            apply_override(raw, f"{key}={value}")
        return validate_config(raw, "--set")

    outcome(apply_all, ConfigError)


# ---------------------------------------------------------------------------------------------
# Data

CELLS = [
    *("1", "2.5", "-3e2", "0", "nan", "NaN", "inf", "-inf", "1e400", "a", "b", "", " ", '"', '""'),
    *('"1,2"', '"a""b"', "1_0", "١", "0x1", "\t", "é", ",", "\r"),
]
csv_texts = st.lists(
    st.lists(st.one_of(st.sampled_from(CELLS), st.text(max_size=4)), max_size=5).map(",".join),
    max_size=8,
).map("\n".join)
csv_bytes = st.one_of(
    csv_texts.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=300),
    st.builds(
        lambda head, body: head + body,
        st.sampled_from([b"\xef\xbb\xbf", b"a,b\n", b"PK\x03\x04"]),
        st.binary(max_size=80),
    ),
)


def _check_table(table: Any) -> None:
    assert table.x.ndim == 2 and table.x.shape[0] > 0 and table.x.shape[1] > 0
    assert np.all(np.isfinite(table.x))
    assert len(table.feature_names) == table.x.shape[1]
    if table.y is not None:
        assert len(table.y) == table.x.shape[0]


@FUZZ
@given(
    csv_bytes,
    st.sampled_from([None, "a", "b", ["a", "b"], "label"]),
    st.sampled_from([None, ["a"], ["b", "a"]]),
    st.booleans(),
)
def test_random_csv_bytes_load_or_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory,
    data: bytes,
    target: Any,
    feature_names: list[str] | None,
    require_target: bool,
) -> None:
    path = tmp_path_factory.mktemp("csv", numbered=True) / "fuzz.csv"
    path.write_bytes(data)
    table = outcome(
        lambda: load_table(path, target, feature_names=feature_names, require_target=require_target),
        DataError,
    )
    if table is not None:
        _check_table(table)


npz_arrays = st.dictionaries(
    st.sampled_from(["x", "y", "z"]),
    st.one_of(
        st.builds(
            lambda shape, dtype, fill: np.full(shape, fill).astype(dtype, casting="unsafe"),
            st.lists(st.integers(0, 4), max_size=3).map(tuple),
            st.sampled_from(["float64", "float32", "int64", "bool", "<U3", "S3", "complex64"]),
            st.sampled_from([0, 1, 2.5, np.nan, np.inf, -1]),
        ),
        st.just(np.array([None, 1], dtype=object)),
    ),
    max_size=3,
)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@FUZZ
@given(st.one_of(npz_arrays.map(_npz_bytes), st.binary(max_size=200)))
def test_random_npz_data_load_or_fail_cleanly(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("npz", numbered=True) / "fuzz.npz"
    path.write_bytes(data)
    table = outcome(lambda: load_table(path), DataError)
    if table is not None:
        _check_table(table)


# ---------------------------------------------------------------------------------------------
# Checkpoints


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real checkpoint (iris, Adam, so the optimizer state has slots), written by the trainer."""
    from nnctl.config import Config
    from nnctl.runs import RunFolder, RunWriter
    from nnctl.training.loop import Trainer
    from nnctl.training.prepare import build_network, prepare

    raw = {
        "name": "fuzz-iris",
        "seed": 0,
        "data": {"path": str(IRIS), "target": "species", "validation": 0.2, "test": 0.2},
        "model": {"layers": [{"units": 5, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]},
        "cost": "cce",
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 0.05, "optimizer": "adam"},
    }
    config = Config.model_validate(raw)
    prepared = prepare(config, None)
    folder = RunFolder(tmp_path_factory.mktemp("ckpt") / "run")
    folder.ensure_writable()
    writer = RunWriter(folder)
    Trainer(prepared, build_network(config, prepared.train.x.shape[1]), callbacks=[writer]).fit()
    return folder.last.read_bytes()


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**6), 10**40),
        st.floats(allow_nan=False),
        st.text(max_size=6),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
random_arrays = st.builds(
    lambda shape, dtype, fill: np.full(shape, fill).astype(dtype, casting="unsafe"),
    st.lists(st.integers(0, 5), max_size=3).map(tuple),
    st.sampled_from(["float32", "float64", "int64", "bool", "<U4", ">f4"]),
    st.sampled_from([0, 1, -1, 0.5, np.nan, np.inf]),
)


def _json_or_none(value: Any) -> Any:
    if not (isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind == "U"):
        return None
    try:
        return json.loads(str(value))
    except ValueError:
        return None


@st.composite
def tampered_checkpoints(draw: st.DrawFn, original: bytes) -> bytes:
    """Structural tampering a stranger could do: a JSON field changed, an array replaced, dropped or
    added (an object array now and then), then saved as a well-formed .npz."""
    arrays: dict[str, Any] = _arrays(original)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*sorted(arrays), "W9", "opt_m_0", "classes", "evil"]))
        action = draw(st.sampled_from(["json", "json", "array", "delete", "object"]))
        document = _json_or_none(arrays.get(key))
        if action == "json" and isinstance(document, dict):
            node: Any = document
            while isinstance(node, dict) and node and draw(st.booleans()):
                child = node[draw(st.sampled_from(sorted(node)))]
                if not isinstance(child, dict):
                    break
                node = child
            if isinstance(node, dict) and node:
                node[draw(st.sampled_from(sorted(node)))] = draw(json_values)
            arrays[key] = np.array(json.dumps(document))
        elif action == "delete":
            arrays.pop(key, None)
        elif action == "object":
            arrays[key] = np.array([1, "x", None], dtype=object)
        else:
            arrays[key] = draw(random_arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@st.composite
def damaged_bytes(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    kind = draw(st.sampled_from(["flip", "truncate", "both", "splice"]))
    if kind in ("flip", "both"):
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    if kind in ("truncate", "both"):
        data = data[: draw(st.integers(0, len(data)))]
    if kind == "splice":
        at = draw(st.integers(0, len(data)))
        data[at : at + draw(st.integers(0, 64))] = draw(st.binary(max_size=64))
    return bytes(data)


def _load_and_use(path: Path) -> None:
    checkpoint = outcome(lambda: load_checkpoint(path), CheckpointError)
    if checkpoint is None:
        return
    assert all(np.all(np.isfinite(w)) for w in checkpoint.weights + checkpoint.biases)
    outcome(lambda: predict_table(path, IRIS))
    outcome(lambda: evaluation_report(path, IRIS))


@FUZZ
@given(data=st.data())
def test_random_and_damaged_checkpoint_bytes_load_or_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_bytes: bytes, data: st.DataObject
) -> None:
    blob = data.draw(
        st.one_of(
            damaged_bytes(checkpoint_bytes),
            st.binary(max_size=300),
            st.binary(max_size=120).map(lambda b: b"PK\x03\x04" + b),
            st.binary(max_size=120).map(lambda b: b"\x93NUMPY" + b),
        )
    )
    path = tmp_path_factory.mktemp("ckpt", numbered=True) / "fuzz.npz"
    path.write_bytes(blob)
    _load_and_use(path)


@FUZZ
@given(data=st.data())
def test_tampered_checkpoints_load_or_fail_cleanly_and_stay_usable(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_bytes: bytes, data: st.DataObject
) -> None:
    blob = data.draw(tampered_checkpoints(checkpoint_bytes))
    path = tmp_path_factory.mktemp("ckpt", numbered=True) / "fuzz.npz"
    path.write_bytes(blob)
    _load_and_use(path)


def test_the_fuzzed_checkpoint_itself_is_valid(tmp_path: Path, checkpoint_bytes: bytes) -> None:
    """Control for the two properties above: unmodified, the file loads and predicts."""
    path = tmp_path / "good.npz"
    path.write_bytes(checkpoint_bytes)
    checkpoint = load_checkpoint(path)
    assert checkpoint.config.training.optimizer.name == "adam"
    assert {"step", "m_0", "v_0"} <= set(checkpoint.optimizer_state)
    header, rows = predict_table(path, IRIS)
    assert len(rows) == 150 and header[0] == "species"
    with zipfile.ZipFile(path) as archive:  # plain stored .npy members, as the format promises
        assert all(name.endswith(".npy") for name in archive.namelist())
