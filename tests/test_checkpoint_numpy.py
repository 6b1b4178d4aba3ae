"""A checkpoint is readable with ``numpy.load(path, allow_pickle=False)`` alone, and a few lines of
NumPy reproduce ``nnctl predict``.

nnctl is only run, as the installed script (subprocess); the reading code below uses numpy, json,
csv and zipfile only, as a user outside the project would.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import CONFIGS, DATASETS, ok, run_nnctl

IRIS_CSV = DATASETS / "iris.csv"
BREAST_CSV = DATASETS / "breast_cancer.csv"


@pytest.fixture(scope="module")
def iris_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("iris") / "run"
    ok(run_nnctl("train", CONFIGS / "iris.yaml", "--out", out, "--quiet", "--set", "training.epochs=5"))
    return out / "best.npz"


@pytest.fixture(scope="module")
def breast_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("breast") / "run"
    ok(
        run_nnctl(
            "train", CONFIGS / "breast_cancer.yaml", "--out", out, "--quiet", "--set", "training.epochs=3"
        )
    )
    return out / "best.npz"


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def json_scalar(array: np.ndarray) -> dict:
    assert array.shape == () and array.dtype.kind == "U", (array.shape, array.dtype)
    value = json.loads(str(array[()]))
    assert isinstance(value, dict)
    return value


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    return rows[0], rows[1:]


def predict_with_cli(checkpoint: Path, data: Path, tmp_path: Path) -> tuple[list[str], list[list[str]]]:
    out = tmp_path / "predictions.csv"
    ok(run_nnctl("predict", checkpoint, data, "--output", out, cwd=tmp_path))
    return read_rows(out)


# ---------------------------------------------------------------------------------------------
# The format


@pytest.mark.parametrize("which", ["iris", "breast"])
def test_keys_shapes_and_metadata(request: pytest.FixtureRequest, which: str) -> None:
    path = request.getfixturevalue(f"{which}_ckpt")
    with zipfile.ZipFile(path) as archive:  # a plain zip of .npy arrays
        assert all(name.endswith(".npy") for name in archive.namelist())
    arrays = load(path)
    assert all(a.dtype.kind != "O" for a in arrays.values())
    config = json_scalar(arrays["config"])
    meta = json_scalar(arrays["meta"])

    assert meta["format"] == "nnctl-checkpoint"
    assert isinstance(meta["format_version"], int) and not isinstance(meta["format_version"], bool)
    assert meta["format_version"] >= 1
    assert isinstance(meta["epoch"], int) and 1 <= meta["epoch"] <= config["training"]["epochs"]
    assert isinstance(meta["nnctl_version"], str) and meta["nnctl_version"]
    assert "train_loss" in json.dumps(meta)  # the metrics at that epoch

    features = arrays["feature_names"]
    assert features.ndim == 1 and features.dtype.kind == "U"
    classes = arrays["classes"]
    assert classes.ndim == 1 and classes.dtype.kind == "U"
    assert list(classes) == sorted(classes)  # string labels: sorted order
    for key in ("norm_shift", "norm_scale"):
        assert arrays[key].shape == features.shape and arrays[key].dtype.kind == "f"
    assert np.all(arrays["norm_scale"] > 0)

    layers = config["model"]["layers"]
    fan_in = len(features)
    for index, layer in enumerate(layers, start=1):
        W, b = arrays[f"W{index}"], arrays[f"b{index}"]
        assert W.shape == (layer["units"], fan_in)  # (units_l, units_{l-1}): the seed's w_ij
        assert b.shape == (layer["units"],)
        assert W.dtype == np.dtype(config["dtype"]) and b.dtype == W.dtype
        assert np.all(np.isfinite(W)) and np.all(np.isfinite(b))
        fan_in = layer["units"]
    assert f"W{len(layers) + 1}" not in arrays and f"b{len(layers) + 1}" not in arrays


def test_iris_classes_and_features(iris_ckpt: Path) -> None:
    arrays = load(iris_ckpt)
    assert list(arrays["classes"]) == ["setosa", "versicolor", "virginica"]
    assert list(arrays["feature_names"]) == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert json_scalar(arrays["meta"])["epoch"] <= 5


# ---------------------------------------------------------------------------------------------
# predict, reproduced with plain NumPy


def test_numpy_reproduces_predict_softmax(iris_ckpt: Path, tmp_path: Path) -> None:
    header, rows = predict_with_cli(iris_ckpt, IRIS_CSV, tmp_path)
    cli_labels = [row[0] for row in rows]
    cli_probs = np.array([[float(v) for v in row[1:]] for row in rows])

    # --- a user's few lines of NumPy ---
    with np.load(iris_ckpt, allow_pickle=False) as npz:
        ck = dict(npz)
    config = json.loads(str(ck["config"]))
    names, data = read_rows(IRIS_CSV)
    x = np.array([[float(r[names.index(f)]) for f in ck["feature_names"]] for r in data])
    a = (x - ck["norm_shift"]) / ck["norm_scale"]
    for i, layer in enumerate(config["model"]["layers"], start=1):
        z = a @ ck[f"W{i}"].T.astype(np.float64) + ck[f"b{i}"]
        name = layer["activation"]["name"]
        if name == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            a = e / e.sum(axis=1, keepdims=True)
        elif name == "relu":
            a = np.maximum(z, 0)
        else:
            assert name == "tanh", name
            a = np.tanh(z)
    labels = ck["classes"][a.argmax(axis=1)]
    # -----------------------------------

    assert header == ["species", *(f"p_{c}" for c in ck["classes"])]
    assert np.allclose(cli_probs, a, atol=2e-5)
    top2 = np.sort(a, axis=1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > 1e-4
    assert decisive.sum() >= len(a) - 2
    assert [str(v) for v in labels[decisive]] == [
        lab for lab, d in zip(cli_labels, decisive, strict=True) if d
    ]


def test_numpy_reproduces_predict_single_logistic(breast_ckpt: Path, tmp_path: Path) -> None:
    header, rows = predict_with_cli(breast_ckpt, BREAST_CSV, tmp_path)
    cli_labels = [row[0] for row in rows]
    cli_probs = np.array([[float(v) for v in row[1:]] for row in rows])

    # --- a user's few lines of NumPy ---
    with np.load(breast_ckpt, allow_pickle=False) as npz:
        ck = dict(npz)
    config = json.loads(str(ck["config"]))
    names, data = read_rows(BREAST_CSV)
    x = np.array([[float(r[names.index(f)]) for f in ck["feature_names"]] for r in data])
    a = (x - ck["norm_shift"]) / ck["norm_scale"]
    layers = config["model"]["layers"]
    hidden = layers[0]["activation"]["name"]
    assert [hidden, layers[1]["activation"]["name"]] == [hidden, "logistic"] and hidden in ("relu", "tanh")
    z = a @ ck["W1"].T.astype(np.float64) + ck["b1"]
    a = np.maximum(z, 0) if hidden == "relu" else np.tanh(z)
    z = a @ ck["W2"].T.astype(np.float64) + ck["b2"]
    out = layers[-1]["activation"]  # logistic L / (1 + e^{-k (z - x0)}); bce needs L = 1
    p = out.get("L", 1.0) / (1.0 + np.exp(-out.get("k", 1.0) * (z[:, 0] - out.get("x0", 0.0))))
    classes = [str(c) for c in ck["classes"]]
    labels = [classes[1] if q >= 0.5 else classes[0] for q in p]
    # -----------------------------------

    assert config["cost"]["name"] == "bce" and layers[-1]["units"] == 1
    assert classes == ["benign", "malignant"]  # the second class in sorted order is the positive one
    assert header == ["diagnosis", "p_benign", "p_malignant"]
    assert np.allclose(cli_probs[:, 1], p, atol=2e-5)
    assert np.allclose(cli_probs[:, 0], 1.0 - p, atol=2e-5)
    decisive = np.abs(p - 0.5) > 1e-4
    assert decisive.sum() >= len(p) - 2
    assert [lab for lab, d in zip(labels, decisive, strict=True) if d] == [
        lab for lab, d in zip(cli_labels, decisive, strict=True) if d
    ]
    # the labels are the original strings of the data file
    assert set(cli_labels) <= {"benign", "malignant"}
