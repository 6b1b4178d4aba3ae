"""Every nnctl command through the real CLI, against the public contract of issue 3.

Most tests drive ``nnctl.cli.app`` in-process with Typer's CliRunner (``helpers.invoke``); a few run
the installed ``nnctl`` script as a subprocess (``helpers.run_nnctl``). Runs are kept tiny (few epochs
via ``--set``); the accuracy thresholds live in ``test_shipped_configs.py``.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import (
    CLI_ENV,
    CONFIGS,
    DATASETS,
    cce_loss_and_accuracy,
    csv_column,
    csv_columns,
    eval_json,
    forward,
    history_rows,
    invoke,
    nnctl_command,
    ok,
    read_checkpoint,
    read_csv,
    run_nnctl,
    split_of,
    train,
    weights_equal,
    write_csv,
)

IRIS = CONFIGS / "iris.yaml"
XOR = CONFIGS / "xor.yaml"
DIABETES = CONFIGS / "diabetes.yaml"
BREAST = CONFIGS / "breast_cancer.yaml"
DIGITS = CONFIGS / "digits.yaml"
IRIS_CSV = DATASETS / "iris.csv"
DIABETES_CSV = DATASETS / "diabetes.csv"
BREAST_CSV = DATASETS / "breast_cancer.csv"
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]
COMMANDS = ["train", "eval", "predict", "check", "gradcheck", "explain", "init"]


# ---------------------------------------------------------------------------------------------
# Shared runs (trained once per module, only read by the tests)


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(IRIS, tmp_path_factory.mktemp("iris") / "run", "training.epochs=5")


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(XOR, tmp_path_factory.mktemp("xor") / "run", "training.epochs=20")


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(DIABETES, tmp_path_factory.mktemp("diabetes") / "run", "training.epochs=5")


@pytest.fixture(scope="module")
def breast_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(BREAST, tmp_path_factory.mktemp("breast") / "run", "training.epochs=3")


def error_text(outcome) -> str:
    return " ".join(outcome.output.split())  # Rich may wrap long messages


# ---------------------------------------------------------------------------------------------
# --version, --help


def test_version_prints_package_version() -> None:
    import nnctl

    outcome = ok(invoke("--version"))
    assert outcome.stdout.strip() == f"nnctl {nnctl.__version__}"


def test_help_lists_every_command() -> None:
    outcome = ok(invoke("--help"))
    assert "Usage:" in outcome.stdout
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\b", outcome.stdout, re.M), command


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("train", ["--set", "--out", "--resume", "--force", "--quiet"]),
        ("eval", ["--data", "--json"]),
        ("predict", ["--output"]),
        ("check", ["--set"]),
        ("gradcheck", ["--set", "--tolerance"]),
        ("explain", ["--markdown"]),
        ("init", ["--template", "--force"]),
    ],
)
def test_command_help(command: str, options: list[str]) -> None:
    outcome = ok(invoke(command, "--help"))
    assert f"Usage: nnctl {command} " in outcome.stdout
    for option in options:
        assert option in outcome.stdout, (command, option)


# ---------------------------------------------------------------------------------------------
# The installed script as a subprocess


def test_subprocess_version_and_help(tmp_path: Path) -> None:
    import nnctl

    outcome = ok(run_nnctl("--version", cwd=tmp_path))
    assert nnctl.__version__ in outcome.stdout
    outcome = ok(run_nnctl("--help", cwd=tmp_path))
    assert "train" in outcome.stdout and "predict" in outcome.stdout
    ok(run_nnctl("eval", "--help", cwd=tmp_path))


def test_subprocess_train_eval_predict(tmp_path: Path) -> None:
    outcome = ok(run_nnctl("train", IRIS, "--set", "training.epochs=3", cwd=tmp_path))
    assert "classification" in outcome.stdout  # the task is announced at the start of train
    run = tmp_path / "runs" / "iris"
    for name in ("last.npz", "best.npz", "history.csv", "config.yaml"):
        assert (run / name).is_file(), name
    metrics = json.loads(ok(run_nnctl("eval", run / "best.npz", "--json", cwd=tmp_path)).stdout)
    assert metrics["samples"] == 30 and 0.0 <= metrics["accuracy"] <= 1.0
    predicted = ok(run_nnctl("predict", run / "best.npz", IRIS_CSV, cwd=tmp_path)).stdout.splitlines()
    assert predicted[0] == "species,p_setosa,p_versicolor,p_virginica"
    assert len(predicted) == 151


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["check", str(IRIS), "--set", "training.learning_rat=0.1"], "did you mean 'learning_rate'"),
        (["train", str(IRIS), "--bogus-option"], "--bogus-option"),
        (["eval", "{junk}"], "{junk}"),
        (["check", "{missing}"], "{missing}"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_subprocess_exit_status_2(tmp_path: Path, args: list[str], needle: str) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(400))
    fill = {"{junk}": str(junk), "{missing}": str(tmp_path / "missing.yaml")}
    args = [fill.get(a, a) for a in args]
    outcome = run_nnctl(*args, cwd=tmp_path)
    assert outcome.code == 2, outcome.output
    assert fill.get(needle, needle) in error_text(outcome)
    assert not (tmp_path / "runs").exists()


def test_subprocess_divergence_exits_1(tmp_path: Path) -> None:
    outcome = run_nnctl(
        "train", DIABETES, "--out", tmp_path / "run", "--set", "training.learning_rate=1e6", cwd=tmp_path
    )
    assert outcome.code == 1, outcome.output
    assert "diverged" in outcome.stderr


def test_subprocess_divergence_output_is_one_message(tmp_path: Path) -> None:
    outcome = run_nnctl(
        "train", DIABETES, "--out", tmp_path / "run", "--set", "training.learning_rate=1e6", cwd=tmp_path
    )
    assert outcome.code == 1
    assert "RuntimeWarning" not in outcome.stderr
    assert ".py:" not in outcome.stderr


def test_ctrl_c_saves_last_and_resumes_bit_exactly(tmp_path: Path) -> None:
    """SIGINT: exit 130 after saving last.npz (mid-epoch); resuming it equals a straight run."""
    epochs = "training.epochs=12"
    env = {**os.environ, **CLI_ENV, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*nnctl_command(), "train", str(DIGITS), "--out", str(tmp_path / "cut"), "--set", epochs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("epoch 1/"):
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    cut = read_checkpoint(tmp_path / "cut" / "last.npz")
    assert 1 <= cut.meta["epoch"] < 12
    ok(invoke("train", "--resume", tmp_path / "cut" / "last.npz", "--quiet"))
    straight = train(DIGITS, tmp_path / "straight", epochs)
    assert weights_equal(tmp_path / "cut" / "last.npz", straight / "last.npz")
    assert weights_equal(tmp_path / "cut" / "best.npz", straight / "best.npz")
    _, rows = history_rows(tmp_path / "cut")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 13))


# ---------------------------------------------------------------------------------------------
# train: the run folder


def test_train_writes_run_folder(iris_run: Path) -> None:
    for name in ("last.npz", "best.npz", "history.csv", "config.yaml"):
        assert (iris_run / name).is_file(), name
    columns, rows = history_rows(iris_run)
    assert {"epoch", "train_loss", "seconds", "val_loss", "val_accuracy"} <= set(columns)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    for row in rows:
        assert math.isfinite(float(row["train_loss"])) and float(row["train_loss"]) > 0
        assert math.isfinite(float(row["seconds"])) and float(row["seconds"]) >= 0.0
        assert 0.0 <= float(row["val_accuracy"]) <= 1.0
    assert read_checkpoint(iris_run / "last.npz").meta["epoch"] == 5


def test_history_without_validation_has_no_val_columns(xor_run: Path) -> None:
    columns, rows = history_rows(xor_run)
    assert {"epoch", "train_loss", "seconds"} <= set(columns)
    assert not [c for c in columns if c.startswith("val")]
    assert len(rows) == 20


def test_best_is_last_without_validation(xor_run: Path) -> None:
    assert weights_equal(xor_run / "best.npz", xor_run / "last.npz")


def test_best_has_lowest_validation_loss(iris_run: Path) -> None:
    _, rows = history_rows(iris_run)
    losses = [float(r["val_loss"]) for r in rows]
    best_epoch = int(np.argmin(losses)) + 1
    assert read_checkpoint(iris_run / "best.npz").meta["epoch"] == best_epoch


def test_config_yaml_is_resolved_and_loads_back(iris_run: Path) -> None:
    from nnctl.config import validate_config

    resolved = yaml.safe_load((iris_run / "config.yaml").read_text())
    # resolved: overrides applied, defaults filled in
    assert resolved["training"]["epochs"] == 5
    assert resolved["data"]["shuffle"] is True
    assert resolved["dtype"] == "float32"
    assert resolved["name"] == "iris"
    config = validate_config(resolved, "config.yaml")
    assert config.model_dump(mode="json") == read_checkpoint(iris_run / "last.npz").config


def test_run_folder_config_yaml_is_usable(iris_run: Path) -> None:
    ok(invoke("check", iris_run / "config.yaml"))


def test_default_run_folder_is_runs_name_under_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ok(invoke("train", IRIS, "--quiet", "--set", "training.epochs=1"))
    assert (tmp_path / "runs" / "iris" / "last.npz").is_file()
    # without a name the config file's stem names the run
    nameless = tmp_path / "conf" / "my-experiment.yaml"
    nameless.parent.mkdir()
    raw = yaml.safe_load(XOR.read_text())
    del raw["name"]
    raw["training"]["epochs"] = 2
    nameless.write_text(yaml.safe_dump(raw))
    ok(invoke("train", nameless, "--quiet"))
    assert (tmp_path / "runs" / "my-experiment" / "best.npz").is_file()
    assert yaml.safe_load((tmp_path / "runs" / "my-experiment" / "config.yaml").read_text())["name"] == (
        "my-experiment"
    )
    assert not (CONFIGS / "runs").exists()


def test_out_option(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "folder"
    ok(invoke("train", XOR, "--out", out, "--quiet", "--set", "training.epochs=2"))
    assert sorted(p.name for p in out.iterdir()) == ["best.npz", "config.yaml", "history.csv", "last.npz"]


def test_set_overrides_reach_config_yaml_and_checkpoint(tmp_path: Path) -> None:
    run = train(
        IRIS,
        tmp_path / "run",
        "training.epochs=2",
        "training.learning_rate=1e-3",
        "model.layers[0].units=8",
        "model.layers[0].activation={name: elu, alpha: 0.5}",
    )
    for config in (
        yaml.safe_load((run / "config.yaml").read_text()),
        read_checkpoint(run / "last.npz").config,
    ):
        assert config["training"]["learning_rate"] == 0.001
        assert isinstance(config["training"]["learning_rate"], float)
        assert config["training"]["epochs"] == 2
        assert config["model"]["layers"][0]["units"] == 8
        assert config["model"]["layers"][0]["activation"] == {"name": "elu", "alpha": 0.5}
    ckpt = read_checkpoint(run / "last.npz")
    assert ckpt.arrays["W1"].shape == (8, 4)
    assert ckpt.meta["epoch"] == 2


def test_set_yaml_list_value(tmp_path: Path) -> None:
    run = train(IRIS, tmp_path / "run", "training.epochs=1", "model.layers=[{units: 3, activation: softmax}]")
    ckpt = read_checkpoint(run / "last.npz")
    assert ckpt.arrays["W1"].shape == (3, 4)
    assert "W2" not in ckpt.arrays


def test_yaml_1e3_number_in_config_file(tmp_path: Path) -> None:
    raw = XOR.read_text().replace("learning_rate: 1.0", "learning_rate: 1e-3")
    assert "1e-3" in raw
    config = tmp_path / "xor.yaml"
    config.write_text(raw)
    outcome = ok(invoke("check", config))
    assert "learning rate 0.001" in outcome.stdout


@pytest.mark.parametrize(
    ("assignment", "needle"),
    [
        ("model.layers[7].units=3", "out of range"),
        ("training.learning_rate", "KEY.PATH=VALUE"),
        ("training.learning_rate=-1", "training.learning_rate"),
        ("training.epochs=many", "training.epochs"),
    ],
)
def test_bad_set_exits_2(tmp_path: Path, assignment: str, needle: str) -> None:
    outcome = invoke("train", IRIS, "--out", tmp_path / "run", "--set", assignment)
    assert outcome.code == 2, outcome.output
    assert needle in error_text(outcome)
    assert not (tmp_path / "run" / "last.npz").exists()


def test_train_refuses_folder_with_checkpoint_unless_force(tmp_path: Path) -> None:
    run = train(XOR, tmp_path / "run", "training.epochs=2")
    before = (run / "last.npz").read_bytes()
    outcome = invoke("train", XOR, "--out", run, "--quiet", "--set", "training.epochs=3")
    assert outcome.code == 2
    assert "--force" in error_text(outcome)
    assert (run / "last.npz").read_bytes() == before
    ok(invoke("train", XOR, "--out", run, "--quiet", "--force", "--set", "training.epochs=3"))
    assert read_checkpoint(run / "last.npz").meta["epoch"] == 3
    _, rows = history_rows(run)
    assert len(rows) == 3


def test_resume_is_bit_identical_to_straight_run(tmp_path: Path) -> None:
    straight = train(IRIS, tmp_path / "straight", "training.epochs=6")
    cut = train(IRIS, tmp_path / "cut", "training.epochs=3")
    stored = read_checkpoint(cut / "last.npz").config
    assert stored["data"]["shuffle"] is True and stored["data"]["validation"] > 0
    assert read_checkpoint(cut / "last.npz").meta["epoch"] == 3
    ok(invoke("train", "--resume", cut / "last.npz", "--set", "training.epochs=6", "--quiet"))
    assert read_checkpoint(cut / "last.npz").meta["epoch"] == 6
    assert weights_equal(cut / "last.npz", straight / "last.npz")
    assert weights_equal(cut / "best.npz", straight / "best.npz")
    _, resumed_rows = history_rows(cut)
    _, straight_rows = history_rows(straight)
    assert [int(r["epoch"]) for r in resumed_rows] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(resumed_rows, straight_rows, strict=True):
        assert (a["train_loss"], a["val_loss"]) == (b["train_loss"], b["val_loss"])
    assert yaml.safe_load((cut / "config.yaml").read_text())["training"]["epochs"] == 6


def test_resume_into_other_folder_copies_history(tmp_path: Path) -> None:
    cut = train(XOR, tmp_path / "cut", "training.epochs=2")
    out = tmp_path / "continued"
    ok(invoke("train", "--resume", cut / "last.npz", "--out", out, "--set", "training.epochs=4", "--quiet"))
    _, rows = history_rows(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    straight = train(XOR, tmp_path / "straight", "training.epochs=4")
    assert weights_equal(out / "last.npz", straight / "last.npz")


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ("training.learning_rate=0.1", "training.learning_rate"),
        ("model.layers[0].units=8", "model.layers[0].units"),
        ("seed=7", "seed"),
    ],
)
def test_resume_refuses_other_changes(tmp_path: Path, assignment: str, key: str) -> None:
    cut = train(XOR, tmp_path / "cut", "training.epochs=2")
    before = (cut / "last.npz").read_bytes()
    outcome = invoke("train", "--resume", cut / "last.npz", "--set", "training.epochs=4", "--set", assignment)
    assert outcome.code == 2, outcome.output
    assert key in error_text(outcome)
    assert (cut / "last.npz").read_bytes() == before


# ---------------------------------------------------------------------------------------------
# eval


def test_eval_json_classification_on_test_split(iris_run: Path) -> None:
    """Loss and accuracy on the checkpoint's own test split, recomputed independently: the split
    rebuilt from the stored seed, the forward pass in NumPy from the checkpoint's arrays."""
    metrics = eval_json(iris_run / "best.npz")
    ckpt = read_checkpoint(iris_run / "best.npz")
    labels = csv_column(IRIS_CSV, "species")
    strata = np.array([ckpt.classes.index(label) for label in labels])
    rows = split_of(ckpt, len(labels), strata)["test"]
    assert metrics["samples"] == rows.size == 30  # 150 rows, test: 0.2
    x = csv_columns(IRIS_CSV, ckpt.feature_names)[rows]
    loss, accuracy = cce_loss_and_accuracy(ckpt, x, [labels[i] for i in rows])
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert metrics["data"].startswith("test split"), metrics["data"]


def test_eval_data_matches_numpy_recomputation_cce(iris_run: Path) -> None:
    ckpt = read_checkpoint(iris_run / "best.npz")
    metrics = eval_json(iris_run / "best.npz", "--data", str(IRIS_CSV))
    x = csv_columns(IRIS_CSV, ckpt.feature_names)
    labels = csv_column(IRIS_CSV, "species")
    truth = np.array([ckpt.classes.index(label) for label in labels])
    z, _ = forward(ckpt, x)
    zmax = z.max(axis=1, keepdims=True)
    log_softmax = z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
    loss = -log_softmax[np.arange(len(truth)), truth].mean()
    accuracy = (z.argmax(axis=1) == truth).mean()
    assert metrics["samples"] == 150
    assert metrics["loss"] == pytest.approx(loss, rel=1e-4)
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_eval_data_matches_numpy_recomputation_bce(breast_run: Path) -> None:
    ckpt = read_checkpoint(breast_run / "best.npz")
    assert ckpt.classes == ["benign", "malignant"]
    metrics = eval_json(breast_run / "best.npz", "--data", str(BREAST_CSV))
    x = csv_columns(BREAST_CSV, ckpt.feature_names)
    t = np.array([label == "malignant" for label in csv_column(BREAST_CSV, "diagnosis")], dtype=float)
    z, p = forward(ckpt, x)
    z, p = z[:, 0], p[:, 0]
    # -[t log p + (1-t) log(1-p)] with p = sigmoid(z): softplus(z) - t z
    loss = np.mean(np.logaddexp(0.0, z) - t * z)
    accuracy = np.mean((p >= 0.5) == (t == 1))
    assert metrics["samples"] == len(t)
    assert metrics["loss"] == pytest.approx(loss, rel=1e-4)
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_eval_regression_keys_and_values(diabetes_run: Path) -> None:
    metrics = eval_json(diabetes_run / "best.npz")
    assert {"loss", "samples", "mse", "mae", "r2"} <= set(metrics)
    assert "accuracy" not in metrics
    assert metrics["samples"] == 88  # 442 rows, test: 0.2
    ckpt = read_checkpoint(diabetes_run / "best.npz")
    metrics = eval_json(diabetes_run / "best.npz", "--data", str(DIABETES_CSV))
    x = csv_columns(DIABETES_CSV, ckpt.feature_names)
    y = csv_columns(DIABETES_CSV, ["progression"])[:, 0]
    a = forward(ckpt, x)[1][:, 0]
    mse = np.mean((y - a) ** 2)
    assert metrics["samples"] == 442
    assert metrics["mse"] == pytest.approx(mse, rel=1e-4)
    assert metrics["loss"] == pytest.approx(mse, rel=1e-4)  # quadratic, one output: sum_k = the one term
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(y - a)), rel=1e-4)
    r2 = 1 - np.sum((y - a) ** 2) / np.sum((y - y.mean()) ** 2)
    assert metrics["r2"] == pytest.approx(r2, rel=1e-4, abs=1e-6)


def test_eval_human_output(iris_run: Path) -> None:
    outcome = ok(invoke("eval", iris_run / "best.npz"))
    assert "accuracy" in outcome.stdout
    assert "confusion matrix" in outcome.stdout
    for name in IRIS_CLASSES:
        assert name in outcome.stdout


def test_eval_without_test_split_needs_data(xor_run: Path, tmp_path: Path) -> None:
    outcome = invoke("eval", xor_run / "best.npz")
    assert outcome.code == 2
    assert "--data" in error_text(outcome)
    rows = write_csv(tmp_path / "xor.csv", ["x1", "x2", "y"], [[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]])
    assert eval_json(xor_run / "best.npz", "--data", str(rows))["samples"] == 4


def test_eval_unseen_label_exits_2(iris_run: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", [*IRIS_FEATURES, "species"], [[5.0, 3.0, 1.5, 0.2, "tulip"]])
    outcome = invoke("eval", iris_run / "best.npz", "--data", data)
    assert outcome.code == 2
    assert "tulip" in error_text(outcome)


def test_eval_missing_data_file_exits_2(iris_run: Path, tmp_path: Path) -> None:
    outcome = invoke("eval", iris_run / "best.npz", "--data", tmp_path / "nope.csv")
    assert outcome.code == 2
    assert "nope.csv" in error_text(outcome)


# ---------------------------------------------------------------------------------------------
# predict


def test_predict_csv_labels_and_probabilities(iris_run: Path) -> None:
    outcome = ok(invoke("predict", iris_run / "best.npz", IRIS_CSV))
    lines = outcome.stdout.splitlines()
    assert lines[0] == "species,p_setosa,p_versicolor,p_virginica"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 150
    probabilities = np.array([[float(v) for v in row[1:]] for row in rows])
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    labels = [row[0] for row in rows]
    assert set(labels) <= set(IRIS_CLASSES)
    assert labels == [IRIS_CLASSES[i] for i in probabilities.argmax(axis=1)]
    ckpt = read_checkpoint(iris_run / "best.npz")
    _, expected = forward(ckpt, csv_columns(IRIS_CSV, IRIS_FEATURES))
    assert np.allclose(probabilities, expected, atol=2e-5)


def test_predict_output_file_without_target_column(iris_run: Path, tmp_path: Path) -> None:
    header, rows = read_csv(IRIS_CSV)
    # features only, in another column order than the training file
    order = [header.index(name) for name in reversed(IRIS_FEATURES)]
    features = write_csv(
        tmp_path / "x.csv", list(reversed(IRIS_FEATURES)), [[row[i] for i in order] for row in rows[:10]]
    )
    out = tmp_path / "pred.csv"
    outcome = ok(invoke("predict", iris_run / "best.npz", features, "--output", out))
    assert "p_setosa" not in outcome.stdout
    written = out.read_text().splitlines()
    reference = ok(invoke("predict", iris_run / "best.npz", IRIS_CSV)).stdout.splitlines()
    assert written == reference[:11]


def test_predict_regression_values(diabetes_run: Path) -> None:
    outcome = ok(invoke("predict", diabetes_run / "best.npz", DIABETES_CSV))
    lines = outcome.stdout.splitlines()
    assert lines[0] == "progression"
    values = np.array([float(v) for v in lines[1:]])
    ckpt = read_checkpoint(diabetes_run / "best.npz")
    expected = forward(ckpt, csv_columns(DIABETES_CSV, ckpt.feature_names))[1][:, 0]
    assert np.allclose(values, expected, rtol=1e-5, atol=1e-3)


def test_predict_missing_feature_column_exits_2(iris_run: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", ["sepal_length", "sepal_width"], [[5.0, 3.0]])
    outcome = invoke("predict", iris_run / "best.npz", data)
    assert outcome.code == 2
    assert "petal_length" in error_text(outcome)


# ---------------------------------------------------------------------------------------------
# check, gradcheck, explain, init


@pytest.mark.parametrize(
    ("config", "sets", "rule", "task"),
    [
        (IRIS, [], "fused softmax+CCE: s = a sum_k t_k - t, (2.20)", "classification, 3 classes"),
        (BREAST, [], "(2.28)", "positive class: malignant"),
        (IRIS, ["cost=quadratic"], "(2.16)", "classification, 3 classes"),
        (DIABETES, [], "identity", "regression"),
    ],
)
def test_check_prints_layers_rule_and_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: Path, sets: list[str], rule: str, task: str
) -> None:
    monkeypatch.chdir(tmp_path)
    args: list[str] = []
    for assignment in sets:
        args += ["--set", assignment]
    outcome = ok(invoke("check", config, *args))
    text = outcome.stdout
    assert rule in text
    task_line = next(line for line in text.splitlines() if line.startswith("task:"))
    assert task in task_line
    for column in ("layer", "units", "activation", "backprop"):
        assert column in text
    assert list(tmp_path.iterdir()) == []  # check trains nothing, writes nothing


def test_check_layer_table_values() -> None:
    text = ok(invoke("check", IRIS)).stdout
    assert "16x4" in text and "3x16" in text  # W shapes (units_l, units_{l-1})
    assert "tanh" in text and "softmax" in text
    assert "131 parameters" in text  # 16*4+16 + 3*16+3
    assert "(1.23)" in text  # hidden-layer rule


def test_check_warns_cce_with_logistic_output() -> None:
    outcome = ok(invoke("check", IRIS, "--set", "model.layers[1].activation=logistic"))
    assert "warning" in outcome.stdout


def test_check_shows_full_bce_formula() -> None:
    text = ok(invoke("check", BREAST)).stdout
    assert "t_k log a_k + (1 - t_k) log(1 - a_k)" in text


def test_gradcheck_shipped_config() -> None:
    outcome = ok(invoke("gradcheck", IRIS))
    text = outcome.stdout
    assert "passed" in text
    rows = [line for line in text.splitlines() if re.search(r"^\W*[12]\W.*e-\d\d", line)]
    assert len(rows) == 2, text  # one row per layer with its errors
    errors = [float(v) for v in re.findall(r"\d\.\d\de-\d\d", " ".join(rows))]
    assert errors and max(errors) < 1e-6


def test_gradcheck_fails_with_exit_1_on_impossible_tolerance() -> None:
    outcome = invoke("gradcheck", IRIS, "--tolerance", "1e-30")
    assert outcome.code == 1
    assert "FAIL" in outcome.stdout


def test_explain_prints_equations_with_shapes() -> None:
    text = ok(invoke("explain", IRIS)).stdout  # piped: the Markdown source
    assert "`W^1` (16, 4)" in text and "`W^2` (3, 16)" in text
    assert "(2.21)" in text and "(1.32)" in text
    markdown = ok(invoke("explain", IRIS, "--markdown")).stdout
    assert markdown.lstrip().startswith("#")
    assert "(B, 16)" in markdown


def test_init_writes_config_that_check_accepts_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "starter.yaml"
    ok(invoke("init", path, "--template", "xor"))
    text = path.read_text()
    assert "#" in text  # commented
    ok(invoke("check", path))
    outcome = invoke("init", path, "--template", "xor")
    assert outcome.code == 2
    assert "--force" in error_text(outcome)
    assert path.read_text() == text
    ok(invoke("init", path, "--template", "regression", "--force"))
    assert path.read_text() != text


@pytest.mark.parametrize("template", ["classification", "binary", "regression", "xor"])
def test_init_templates_are_valid_next_to_the_datasets(tmp_path: Path, template: str) -> None:
    (tmp_path / "datasets").symlink_to(DATASETS, target_is_directory=True)
    path = tmp_path / f"{template}.yaml"
    ok(invoke("init", path, "--template", template))
    ok(invoke("check", path))


def test_init_default_path_and_unknown_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ok(invoke("init"))
    assert (tmp_path / "nnctl.yaml").is_file()
    outcome = invoke("init", tmp_path / "x.yaml", "--template", "nope")
    assert outcome.code == 2
    assert "nope" in error_text(outcome)


def test_init_default_template_checks_in_an_empty_folder(tmp_path: Path) -> None:
    path = tmp_path / "nnctl.yaml"
    ok(invoke("init", path))
    ok(invoke("check", path))


# ---------------------------------------------------------------------------------------------
# Exit status 2: bad config, data, checkpoint, usage


def write_config(tmp_path: Path, base: Path, edit) -> Path:
    raw = yaml.safe_load(base.read_text())
    raw["data"]["path"] = str((base.parent / raw["data"]["path"]).resolve())
    edit(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _misspelt_key(raw: dict) -> None:
    raw["training"]["learning_rat"] = raw["training"].pop("learning_rate")


def _bad_activation(raw: dict) -> None:
    raw["model"]["layers"][0]["activation"] = "sigmoidal"


def _zero_units(raw: dict) -> None:
    raw["model"]["layers"][1]["units"] = 0


def _missing_data(raw: dict) -> None:
    raw["data"]["path"] = "/nonexistent/nowhere.csv"


def _too_many_outputs(raw: dict) -> None:
    raw["model"]["layers"][1]["units"] = 4


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (_misspelt_key, ["training.learning_rat", "did you mean 'learning_rate'"]),
        (_bad_activation, ["model.layers[0].activation", "sigmoidal", "relu", "elu", "tanh", "identity"]),
        (_zero_units, ["model.layers[1].units", "0"]),
        (_missing_data, ["/nonexistent/nowhere.csv"]),
        (_too_many_outputs, ["3 classes"]),
    ],
    ids=["misspelt-key", "bad-activation", "zero-units", "missing-data", "units-vs-classes"],
)
@pytest.mark.parametrize("command", ["check", "train"])
def test_bad_config_exits_2(tmp_path: Path, edit, needles: list[str], command: str) -> None:
    config = write_config(tmp_path, IRIS, edit)
    extra = ["--out", str(tmp_path / "run")] if command == "train" else []
    outcome = invoke(command, config, *extra)
    assert outcome.code == 2, outcome.output
    text = error_text(outcome)
    for needle in needles:
        assert needle in text, (needle, text)
    assert not (tmp_path / "run" / "last.npz").exists()


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["cost=bce", "model.layers[1].units=1", "model.layers[1].activation=identity"], "bce"),
        (["cost=bce", "model.layers[1].units=1", "model.layers[1].activation={name: logistic, L: 2}"], "bce"),
        (["model.layers[1].activation=relu"], "cce"),
        (["cost=bce"], "bce"),
    ],
    ids=["bce-identity", "bce-logistic-L2", "cce-relu", "bce-softmax"],
)
def test_invalid_cost_output_pairs_exit_2(sets: list[str], needle: str) -> None:
    args: list[str] = []
    for assignment in sets:
        args += ["--set", assignment]
    outcome = invoke("check", IRIS, *args)
    assert outcome.code == 2, outcome.output
    assert needle in error_text(outcome)


@pytest.mark.parametrize(
    "text",
    ["name: [unclosed\n", "just a string\n", "", "training: {epochs: 3}\ntraining: {epochs: 4}\n"],
    ids=["yaml-syntax", "not-a-mapping", "empty", "duplicate-key"],
)
def test_unreadable_config_exits_2(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    outcome = invoke("check", path)
    assert outcome.code == 2
    assert "c.yaml" in error_text(outcome)


def test_missing_config_exits_2(tmp_path: Path) -> None:
    outcome = invoke("train", tmp_path / "absent.yaml", "--out", tmp_path / "run")
    assert outcome.code == 2
    assert "absent.yaml" in error_text(outcome)


@pytest.mark.parametrize("command", ["eval", "predict", "resume"])
@pytest.mark.parametrize("kind", ["random-bytes", "missing", "empty", "foreign-npz"])
def test_bad_checkpoint_exits_2(tmp_path: Path, command: str, kind: str) -> None:
    path = tmp_path / "model.npz"
    if kind == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(2048))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "foreign-npz":
        np.savez(path, W1=np.ones((2, 2)), b1=np.zeros(2))
    args = {
        "eval": ["eval", path],
        "predict": ["predict", path, IRIS_CSV],
        "resume": ["train", "--resume", path, "--out", tmp_path / "run"],
    }[command]
    outcome = invoke(*args)
    assert outcome.code == 2, outcome.output
    assert "model.npz" in error_text(outcome)


def test_random_bytes_checkpoint_message_is_accurate(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(np.random.default_rng(1).bytes(2048))
    outcome = invoke("eval", path)
    assert outcome.code == 2
    text = error_text(outcome)
    assert "pickle" not in text  # random bytes are not a pickle; say what is wrong
    assert "model.npz" in text and "not" in text


@pytest.mark.parametrize(
    "args",
    [
        ["train", str(IRIS), "--no-such-option"],
        ["eval"],
        ["predict", "only-one-argument.npz"],
        ["no-such-command"],
        ["gradcheck", str(IRIS), "--samples", "zero"],
    ],
    ids=["unknown-option", "missing-argument", "missing-input", "unknown-command", "bad-option-value"],
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    outcome = invoke(*args)
    assert outcome.code == 2, outcome.output
    assert "Usage" in outcome.output or "Error" in outcome.output


# ---------------------------------------------------------------------------------------------
# Exit status 1: training fails


def test_divergence_exits_1_with_epoch_and_lower_lr_hint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with np.errstate(all="ignore"):
        outcome = invoke("train", DIABETES, "--out", run, "--quiet", "--set", "training.learning_rate=1e6")
    assert outcome.code == 1, outcome.output
    text = error_text(outcome)
    assert re.search(r"epoch \d+", text)
    assert "learning rate" in text or "learning_rate" in text
    assert "lower" in text
    if (run / "last.npz").exists():
        ckpt = read_checkpoint(run / "last.npz")
        for key, value in ckpt.arrays.items():
            if key[:1] in "Wb" and key[1:].isdigit():
                assert np.all(np.isfinite(value)), key


def test_divergence_after_first_epoch_keeps_last_finite_epoch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with np.errstate(all="ignore"):
        outcome = invoke("train", DIABETES, "--out", run, "--quiet", "--set", "training.learning_rate=0.0045")
    if outcome.code == 0:
        pytest.skip("this machine's arithmetic did not diverge at learning_rate 0.0045")
    assert outcome.code == 1, outcome.output
    epoch = int(re.search(r"epoch (\d+)", error_text(outcome)).group(1))
    if epoch < 2:
        pytest.skip("diverged in the first epoch on this machine")
    ckpt = read_checkpoint(run / "last.npz")
    assert ckpt.meta["epoch"] == epoch - 1
    for key, value in ckpt.arrays.items():
        if key[:1] in "Wb" and key[1:].isdigit():
            assert np.all(np.isfinite(value)), key
    _, rows = history_rows(run)
    assert len(rows) == epoch - 1


def test_python_m_entry_point(tmp_path: Path) -> None:
    """``python -m nnctl`` behaves like the script (same exit status for bad usage)."""
    proc = subprocess.run(
        [sys.executable, "-m", "nnctl", "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0 and "nnctl" in proc.stdout


def test_eval_and_predict_accept_builtin_data(tmp_path: Path) -> None:
    run = train(CONFIGS / "xor.yaml", tmp_path / "xor")
    result = eval_json(run / "best.npz", "--data", "builtin:xor")
    assert result["samples"] == 4 and result["accuracy"] == 1.0
    out = ok(invoke("predict", run / "best.npz", "builtin:xor"))
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "y,p_0,p_1"
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "1", "0"]


def test_predicted_probabilities_round_trip_exactly(tmp_path: Path) -> None:
    run = train(CONFIGS / "iris.yaml", tmp_path / "iris", "training.epochs=3")
    rows = ok(invoke("predict", run / "best.npz", IRIS_CSV)).stdout.strip().splitlines()[1:]
    probabilities = np.array([[float(v) for v in row.split(",")[1:]] for row in rows])
    ckpt = read_checkpoint(run / "best.npz")
    x = csv_columns(IRIS_CSV, IRIS_FEATURES)
    _, expected = forward(ckpt, x)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    assert any(len(row.split(",")[1]) > 9 for row in rows)  # more than 6 significant digits


def test_resolved_config_names_the_target_column(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    raw = yaml.safe_load((CONFIGS / "iris.yaml").read_text())
    raw["data"]["path"] = str(IRIS_CSV)
    raw["data"].pop("target")
    config.write_text(yaml.safe_dump(raw))
    run = train(config, tmp_path / "run", "training.epochs=2")
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["target"] == "species"
    ok(invoke("train", config, "--resume", run / "last.npz", "--set", "training.epochs=3", "--quiet"))


def test_misspelt_choice_gets_a_suggestion(tmp_path: Path) -> None:
    outcome = invoke("check", IRIS, "--set", "data.normalize=minmaxx")
    assert outcome.code == 2
    assert "data.normalize" in outcome.stderr and "did you mean 'minmax'" in outcome.stderr
