"""``nnctl cv`` and ``nnctl sweep --folds`` (issue 14), through the real CLI on iris (4 epochs).

The cv run is made once per module; every test reads its files and checks them against runs trained
alone, the data's own split and numpy's statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import CONFIGS, invoke, read_rows, weights

from nnctl.config import load_config
from nnctl.data.splits import fold_split, split_indices
from nnctl.training.prepare import prepare

IRIS = CONFIGS / "iris.yaml"
K = 3
EPOCHS = "training.epochs=4"


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cv") / "iris-cv"
    outcome = invoke("cv", IRIS, "--folds", K, "--refit", "--set", EPOCHS, "--jobs", 2, "--out", out)
    assert outcome.code == 0, outcome.output
    assert "mean ± std" in outcome.stdout
    return out


def test_cv_files_hold_each_folds_last_epoch_and_their_mean_and_std(cv_run: Path) -> None:
    document = json.loads((cv_run / "cv.json").read_text())
    rows = read_rows(cv_run / "cv.csv")
    assert [row["fold"] for row in rows] == ["1", "2", "3", "mean", "std"]
    metrics = ["train_loss", "val_loss", "val_accuracy"]  # named as in history.csv
    assert list(rows[0]) == ["fold", "epoch", *metrics]
    for index, (row, record) in enumerate(zip(rows[:K], document["folds"], strict=True), start=1):
        history = read_rows(cv_run / f"fold{index}" / "history.csv")
        assert record["fold"] == index and record["epoch"] == len(history) == 4
        for metric in metrics:
            assert float(row[metric]) == record[metric] == float(history[-1][metric])
    for metric in metrics:
        values = np.array([record[metric] for record in document["folds"]])
        assert document["mean"][metric] == pytest.approx(values.mean(), rel=1e-12)
        assert document["std"][metric] == pytest.approx(values.std(ddof=1), rel=1e-12)
        assert float(rows[K][metric]) == document["mean"][metric]
        assert float(rows[K + 1][metric]) == document["std"][metric]
    # iris has 150 rows, 30 test: 120 rows dealt into 3 folds of 40; accuracy is a count over 40
    for record in document["folds"]:
        assert round(record["val_accuracy"] * 40, 9) == round(record["val_accuracy"] * 40)


def test_a_fold_trained_alone_is_bit_identical(cv_run: Path, tmp_path: Path) -> None:
    fold = cv_run / "fold2"
    stored = yaml.safe_load((fold / "config.yaml").read_text())
    assert stored["data"]["folds"] == {"k": K, "index": 2}
    outcome = invoke("train", fold / "config.yaml", "--deterministic", "--out", tmp_path / "alone", "--quiet")
    assert outcome.code == 0, outcome.output
    assert weights(tmp_path / "alone" / "last.npz") == weights(fold / "last.npz")
    alone = read_rows(tmp_path / "alone" / "history.csv")[-1]
    document = json.loads((cv_run / "cv.json").read_text())
    for metric in ("train_loss", "val_loss", "val_accuracy"):
        assert float(alone[metric]) == document["folds"][1][metric]


def test_folds_partition_the_non_test_rows_stratified(cv_run: Path) -> None:
    plain = prepare(load_config(IRIS), IRIS.parent)
    test_rows = set(plain.test.rows.tolist())
    held_out: list[set[int]] = []
    for index in range(1, K + 1):
        config = load_config(cv_run / f"fold{index}" / "config.yaml")
        prepared = prepare(config, cv_run / f"fold{index}")
        train, val = set(prepared.train.rows.tolist()), set(prepared.validation.rows.tolist())
        assert set(prepared.test.rows.tolist()) == test_rows  # the same test split as plain training
        assert not train & val and not (train | val) & test_rows
        assert len(train | val) == 150 - len(test_rows)
        counts = np.bincount(prepared.validation.t.argmax(axis=1), minlength=3)
        assert counts.sum() == 40 and np.ptp(counts) <= 1  # 40 held-out rows, classes balanced
        held_out.append(val)
    assert set().union(*held_out) == set(range(150)) - test_rows
    assert sum(map(len, held_out)) == 150 - len(test_rows)  # disjoint


def test_refit_trains_on_every_non_test_row_and_reports_its_test_metrics(
    cv_run: Path, tmp_path: Path
) -> None:
    refit = cv_run / "refit"
    config = load_config(refit / "config.yaml")
    assert config.data.validation == 0 and config.data.folds is None
    prepared = prepare(config, refit)
    plain = prepare(load_config(IRIS), IRIS.parent)
    assert prepared.validation is None
    assert prepared.train.size == 150 - plain.test.size == 120
    assert prepared.test.rows.tolist() == plain.test.rows.tolist()
    outcome = invoke(
        "train", refit / "config.yaml", "--deterministic", "--out", tmp_path / "alone", "--quiet"
    )
    assert outcome.code == 0, outcome.output
    assert weights(tmp_path / "alone" / "last.npz") == weights(refit / "best.npz")
    evaluated = json.loads(invoke("eval", refit / "best.npz", "--json").stdout)
    reported = json.loads((cv_run / "cv.json").read_text())["refit"]
    assert reported["test"]["accuracy"] == evaluated["accuracy"]
    assert reported["test"]["loss"] == evaluated["loss"]
    assert reported["test"]["samples"] == evaluated["samples"] == 30


def test_rerun_skips_finished_folds(cv_run: Path) -> None:
    before = weights(cv_run / "fold1" / "last.npz")
    outcome = invoke("cv", IRIS, "--folds", K, "--refit", "--set", EPOCHS, "--jobs", 1, "--out", cv_run)
    assert outcome.code == 0, outcome.output
    assert "nothing left to run" in outcome.stdout and "4 done earlier" in outcome.stdout
    assert weights(cv_run / "fold1" / "last.npz") == before


def test_fold_split_is_seeded_and_balanced() -> None:
    strata = np.repeat([0, 1, 2], [50, 30, 20])
    parts = [fold_split(100, 0.2, 4, i, np.random.default_rng(7), strata) for i in range(1, 5)]
    again = fold_split(100, 0.2, 4, 3, np.random.default_rng(7), strata)
    assert all(np.array_equal(a, b) for a, b in zip(parts[2], again, strict=True))
    _, _, test = split_indices(100, 0.0, 0.2, np.random.default_rng(7), strata)
    assert all(np.array_equal(p[2], test) for p in parts)
    sizes = [p[1].size for p in parts]
    assert sum(sizes) == 80 and max(sizes) - min(sizes) <= 1
    for value in range(3):
        counts = [int(np.sum(strata[p[1]] == value)) for p in parts]
        assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--folds", 1], "between 2 and"),
        (["--folds", 200], "too few for 200 folds"),
        (["--folds", 3, "--jobs", 1, "--dask-local", 1], "exclude each other"),
        (["--folds", 3, "--tls-cert", "x.pem"], "tls:// --scheduler"),
    ],
)
def test_bad_cv_options_are_one_clear_error(args: list[Any], expected: str, tmp_path: Path) -> None:
    outcome = invoke("cv", IRIS, *args, "--out", tmp_path / "cv")
    assert outcome.code == 2
    assert expected in outcome.stderr


def test_sweep_with_folds_ranks_trials_by_their_cv_mean(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    grid = "training.learning_rate=[0.01, 0.2]"
    outcome = invoke("sweep", IRIS, "--grid", grid, "--folds", K, "--set", EPOCHS, "--jobs", 2, "--out", out)
    assert outcome.code == 0, outcome.output
    summary = read_rows(out / "summary.csv")
    means = {}
    for row in summary:
        document = json.loads((out / row["name"] / "cv.json").read_text())
        assert len(document["folds"]) == K
        assert float(row["value"]) == document["mean"]["val_loss"]
        means[row["name"]] = document["mean"]["val_loss"]
        for index in range(1, K + 1):  # every fold a run folder naming its fold
            stored = yaml.safe_load((out / row["name"] / f"fold{index}" / "config.yaml").read_text())
            assert stored["data"]["folds"] == {"k": K, "index": index}
    ranked = sorted(summary, key=lambda row: int(row["rank"]))
    assert [row["name"] for row in ranked] == sorted(means, key=means.get)
    best = yaml.safe_load((out / "best.yaml").read_text())
    winner = ranked[0]["overrides"]
    assert f"training.learning_rate={best['training']['learning_rate']}" == winner
    assert "folds" not in best["data"] or best["data"]["folds"] is None  # the recipe, not one fold
