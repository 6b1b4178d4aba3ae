"""Paths the shipped configs do not take, end to end through the CLI: multi-label classification and
multi-output regression (train, eval on the test split, predict), resume refused on changed data,
a plateau schedule on a maximized metric, and warmup in front of each other schedule.

Results are recomputed independently: the split rebuilt from the stored seed, the forward pass in
NumPy from the checkpoint's arrays (``helpers.forward``), schedules replayed from their formulas in
docs/training.md on the recorded metrics.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    CONFIGS,
    DATASETS,
    eval_json,
    forward,
    history_rows,
    invoke,
    ok,
    read_checkpoint,
    read_csv,
    split_of,
    train,
)

ROWS = 400


def synthetic(path: Path, kind: str) -> Path:
    """Three Gaussian features; two 0/1 labels (``multilabel``) or two linear targets (``regression``)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(ROWS, 3))
    if kind == "multilabel":
        targets = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0], axis=1).astype(int)
    else:
        targets = np.stack([2 * x[:, 0] - x[:, 1], 0.5 * x[:, 2] + 3], axis=1)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["a", "b", "c", "left", "right"])
        writer.writerows([*map(float, row), *t] for row, t in zip(x, targets.tolist(), strict=True))
    return path


def config_file(folder: Path, data: Path, output: str, cost: str, lr: float) -> Path:
    path = folder / f"{cost}.yaml"
    path.write_text(
        f"""\
name: two-outputs
seed: 4
data: {{path: {data.name}, target: [left, right], validation: 0.2, test: 0.2}}
model:
  layers:
    - {{units: 12, activation: tanh}}
    - {{units: 2, activation: {output}}}
cost: {cost}
training: {{epochs: 40, batch_size: 16, learning_rate: {lr}}}
""",
        encoding="utf-8",
    )
    return path


def test_split_rows(data: Path, run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw features, targets, the checkpoint) of the run's test split, rebuilt independently."""
    ckpt = read_checkpoint(run / "best.npz")
    header, rows = read_csv(data)
    table = np.array([[float(v) for v in row] for row in rows])
    rows_test = split_of(ckpt, len(rows), None)["test"]
    features = [header.index(name) for name in ckpt.feature_names]
    targets = [header.index(name) for name in ("left", "right")]
    return table[rows_test][:, features], table[rows_test][:, targets], ckpt


test_split_rows.__test__ = False  # a helper, not a test


def test_multilabel_end_to_end(tmp_path: Path) -> None:
    data = synthetic(tmp_path / "labels.csv", "multilabel")
    run = train(config_file(tmp_path, data, "logistic", "bce", 0.5), tmp_path / "run")
    result = eval_json(run / "best.npz")
    assert result["task"] == "multilabel" and result["classes"] is None

    x, t, ckpt = test_split_rows(data, run)
    assert ckpt.meta["task"] == "multilabel" and "classes" not in ckpt.arrays
    _, p = forward(ckpt, x)
    # bce (2.23), summed over the outputs, averaged over the rows
    loss = -np.mean(np.sum(t * np.log(p) + (1 - t) * np.log(1 - p), axis=1))
    per_label = np.mean((p >= 0.5) == (t == 1), axis=0)
    assert result["samples"] == len(t) == 80
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["label_accuracy"] == pytest.approx(per_label.tolist(), abs=1e-12)
    assert result["accuracy"] == pytest.approx(per_label.mean(), abs=1e-12)
    assert min(per_label) > 0.85  # it learned both labels

    lines = ok(invoke("predict", run / "best.npz", data)).stdout.splitlines()
    assert lines[0] == "left,right,p_left,p_right"
    _, p_all = forward(ckpt, np.array([[float(v) for v in row[:3]] for row in read_csv(data)[1]]))
    got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    np.testing.assert_allclose(got[:, 2:], p_all, rtol=1e-5)
    np.testing.assert_array_equal(got[:, :2], (p_all >= 0.5).astype(float))


def test_multi_output_regression_end_to_end(tmp_path: Path) -> None:
    data = synthetic(tmp_path / "values.csv", "regression")
    run = train(config_file(tmp_path, data, "identity", "quadratic", 0.02), tmp_path / "run")
    result = eval_json(run / "best.npz")
    assert result["task"] == "regression"

    x, y, ckpt = test_split_rows(data, run)
    _, a = forward(ckpt, x)
    error = a - y
    r2 = 1 - np.sum(error**2, axis=0) / np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    assert result["samples"] == len(y) == 80
    assert result["loss"] == pytest.approx(np.mean(np.sum(error**2, axis=1)), rel=1e-4)  # (1.14) per row
    assert result["mse"] == pytest.approx(np.mean(error**2), rel=1e-4)
    assert result["mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-4)
    assert result["r2_per_output"] == pytest.approx(r2.tolist(), rel=1e-4)
    assert result["r2"] == pytest.approx(r2.mean(), rel=1e-4)
    assert min(r2) > 0.9  # both outputs learned; targets are never normalized

    lines = ok(invoke("predict", run / "best.npz", data)).stdout.splitlines()
    assert lines[0] == "left,right"
    _, a_all = forward(ckpt, np.array([[float(v) for v in row[:3]] for row in read_csv(data)[1]]))
    got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    np.testing.assert_allclose(got, a_all, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Resume on data that changed since the checkpoint


@pytest.mark.parametrize("change", ["value", "column"])
def test_resume_refuses_changed_data(tmp_path: Path, change: str) -> None:
    data = tmp_path / "iris.csv"
    shutil.copy(DATASETS / "iris.csv", data)
    config = tmp_path / "iris.yaml"
    config.write_text(
        (CONFIGS / "iris.yaml").read_text().replace("../datasets/iris.csv", "iris.csv"), encoding="utf-8"
    )
    run = train(config, tmp_path / "run", "training.epochs=4")
    ok(
        invoke("train", "--resume", run / "last.npz", "--set", "training.epochs=5", "--quiet")
    )  # unchanged: fine
    header, rows = read_csv(data)
    if change == "value":  # every row's sepal_length +1: the training rows' mean moves
        rows = [[f"{float(row[0]) + 1.0:g}", *row[1:]] for row in rows]
    else:
        header = ["sepal_len", *header[1:]]
    with data.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *rows])
    before = (run / "last.npz").read_bytes()
    outcome = invoke("train", "--resume", run / "last.npz", "--set", "training.epochs=8", "--quiet")
    assert outcome.code == 2, outcome.output
    text = " ".join(outcome.output.split())
    assert str(data) in text
    assert "differ from those the checkpoint was trained on" in text
    assert (run / "last.npz").read_bytes() == before
    assert [int(r["epoch"]) for r in history_rows(run)[1]] == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------
# Schedules: plateau on a maximized metric, warmup in front of every schedule


def replay_plateau(
    values: list[float], base: float, factor: float, patience: int, maximize: bool
) -> list[float]:
    """The rate of each epoch under reduce_on_plateau, from the monitor's recorded values."""
    sign = -1.0 if maximize else 1.0
    scale, best, wait, rates = 1.0, None, 0, []
    for value in values:
        rates.append(base * scale)
        if best is None or sign * value < sign * best:
            best, wait = value, 0
        else:
            wait += 1
            if wait > patience:
                scale, wait = scale * factor, 0
    return rates


def test_reduce_on_plateau_maximizes_accuracy(tmp_path: Path) -> None:
    base, factor, patience = 0.3, 0.5, 1
    run = train(
        CONFIGS / "iris.yaml",
        tmp_path / "run",
        f"training.schedule={{name: reduce_on_plateau, monitor: val_accuracy, factor: {factor}, "
        f"patience: {patience}}}",
        f"training.learning_rate={base}",
        "training.epochs=25",
    )
    rows = history_rows(run)[1]
    got = [float(r["lr"]) for r in rows]
    accuracy = [float(r["val_accuracy"]) for r in rows]
    want = replay_plateau(accuracy, base, factor, patience, maximize=True)
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    assert len(set(got)) >= 2  # the rule fired
    # the control: had accuracy been minimized, the rates would differ, so the check can fail
    assert replay_plateau(accuracy, base, factor, patience, maximize=False) != want


def warmup(e: int, base: float, w: int) -> float:
    return base * (e + 1) / w


@pytest.mark.parametrize(
    ("schedule", "after"),
    [
        ("{name: step, step_size: 2, gamma: 0.5, warmup_epochs: 3}", lambda b, e, n: b * 0.5 ** (e // 2)),
        ("{name: exponential, gamma: 0.7, warmup_epochs: 3}", lambda b, e, n: b * 0.7**e),
        ("{name: constant, warmup_epochs: 3}", lambda b, e, n: b),
        (
            "{name: cosine, min_lr: 0.01, warmup_epochs: 3}",
            lambda b, e, n: 0.01 + (b - 0.01) * (1 + math.cos(math.pi * e / n)) / 2,
        ),
    ],
    ids=["step", "exponential", "constant", "cosine"],
)
def test_warmup_then_each_schedule(tmp_path: Path, schedule: str, after) -> None:
    base, epochs, w = 0.08, 10, 3
    run = train(
        CONFIGS / "iris.yaml",
        tmp_path / "run",
        f"training.schedule={schedule}",
        f"training.learning_rate={base}",
        f"training.epochs={epochs}",
    )
    got = [float(r["lr"]) for r in history_rows(run)[1]]
    want = [warmup(e, base, w) if e < w else after(base, e - w, epochs - w) for e in range(epochs)]
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    assert got[:w] == sorted(got[:w]) and got[w - 1] == pytest.approx(base)


def test_warmup_then_plateau(tmp_path: Path) -> None:
    """The plateau rule keeps observing during the warmup; after it the rate is base x scale."""
    base, factor, patience, w, epochs = 0.3, 0.5, 1, 2, 20
    run = train(
        CONFIGS / "iris.yaml",
        tmp_path / "run",
        f"training.schedule={{name: reduce_on_plateau, factor: {factor}, patience: {patience}, "
        f"warmup_epochs: {w}}}",
        f"training.learning_rate={base}",
        f"training.epochs={epochs}",
    )
    rows = history_rows(run)[1]
    got = [float(r["lr"]) for r in rows]
    plateau = replay_plateau([float(r["val_loss"]) for r in rows], base, factor, patience, maximize=False)
    want = [warmup(e, base, w) if e < w else plateau[e] for e in range(epochs)]
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    assert got[0] == base / 2 and min(got[w:]) < base
