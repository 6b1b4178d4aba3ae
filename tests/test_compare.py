"""``nnctl compare RUN_DIR...`` (issue 14): the table against the runs' own files, the overlaid
learning curves' line data, bad folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import CONFIGS, invoke

IRIS = CONFIGS / "iris.yaml"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("compare")
    settings = {
        "slow": ["training.learning_rate=0.01", "training.epochs=4"],
        "fast": ["training.learning_rate=0.2", "training.epochs=6"],
    }
    folders = []
    for name, overrides in settings.items():
        out = root / name
        args = [a for o in overrides for a in ("--set", o)]
        assert invoke("train", IRIS, *args, "--out", out, "--quiet").code == 0
        folders.append(out)
    return folders


def history(folder: Path) -> dict[str, np.ndarray]:
    with (folder / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def test_compare_table_matches_the_runs_files(runs: list[Path]) -> None:
    outcome = invoke("compare", *runs, "--json")
    assert outcome.code == 0, outcome.output
    result = json.loads(outcome.stdout)
    assert result["metrics"] == ["train_loss", "val_loss", "val_accuracy"]
    # the configs differ in exactly these keys (names come from the config, the same here)
    assert result["differing"] == ["training.epochs", "training.learning_rate"]
    for run, folder in zip(result["runs"], runs, strict=True):
        h = history(folder)
        assert run["name"] == folder.name and run["epochs"] == len(h["epoch"])
        for metric, pick in (("train_loss", np.argmin), ("val_loss", np.argmin), ("val_accuracy", np.argmax)):
            at = int(pick(h[metric]))
            assert run["best"][metric] == {"value": h[metric][at], "epoch": int(h["epoch"][at])}
            assert run["final"][metric] == h[metric][-1]
    assert [r["config"]["training.learning_rate"] for r in result["runs"]] == [0.01, 0.2]
    assert [r["config"]["training.epochs"] for r in result["runs"]] == [4, 6]


def test_compare_prints_both_tables(runs: list[Path]) -> None:
    outcome = invoke("compare", *runs)
    assert outcome.code == 0, outcome.output
    assert "config keys that differ" in outcome.stdout
    line = next(line for line in outcome.stdout.splitlines() if "training.learning_rate" in line)
    assert "0.01" in line and "0.2" in line
    h = history(runs[1])
    best = h["val_loss"].min()
    assert f"{best:.4g} ({int(h['epoch'][h['val_loss'].argmin()])})" in outcome.stdout


def test_overlaid_learning_curves_hold_the_runs_histories(runs: list[Path], tmp_path: Path) -> None:
    from nnctl.cli.plots import comparison_figure
    from nnctl.compare import compare_runs

    figure = comparison_figure(compare_runs(runs))
    lines = {line.get_label(): line for axes in figure.axes for line in axes.get_lines()}
    for folder in runs:
        h = history(folder)
        for metric in ("train_loss", "val_loss", "val_accuracy"):
            line = lines[f"{folder.name} {metric}"]
            assert np.array_equal(np.asarray(line.get_xdata(), float), h["epoch"])
            assert np.array_equal(np.asarray(line.get_ydata(), float), h[metric])
    target = tmp_path / "curves.png"
    outcome = invoke("compare", *runs, "--plot", target)
    assert outcome.code == 0, outcome.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp, runs: [runs[0]], "at least two run folders"),
        (lambda tmp, runs: [runs[0], tmp / "missing"], "no such run folder"),
        (lambda tmp, runs: [runs[0], tmp], "history.csv: no such file"),
    ],
)
def test_bad_folders_are_one_clear_error(runs: list[Path], tmp_path: Path, make, expected: str) -> None:
    outcome = invoke("compare", *make(tmp_path, runs))
    assert outcome.code == 2
    assert expected in outcome.stderr


def test_one_flattener_names_list_items_for_compare_and_for_mlflow() -> None:
    """compare's keys (``[0]``) and MLflow's params (``.0``, text) come from the one flattener: a
    component ``{name: relu}`` stays one value, nested list items are named at every depth."""
    from nnctl.compare import flatten
    from nnctl.tracking import flatten_params

    node = {
        "model": {"layers": [{"units": 4, "activation": {"name": "relu"}}, {"units": 1}]},
        "training": {"schedule": {"name": "constant"}, "epochs": 3},
        "data": {"drop": ["a", "b"], "target": None, "grid": [[{"k": 1}]]},
    }
    assert flatten(node) == {
        "model.layers[0].units": 4,
        "model.layers[0].activation": "relu",
        "model.layers[1].units": 1,
        "training.schedule": "constant",
        "training.epochs": 3,
        "data.drop": ["a", "b"],
        "data.target": None,
        "data.grid[0][0].k": 1,
    }
    assert flatten_params(node) == {
        "model.layers.0.units": "4",
        "model.layers.0.activation": "relu",
        "model.layers.1.units": "1",
        "training.schedule": "constant",
        "training.epochs": "3",
        "data.drop": "['a', 'b']",
        "data.target": "null",
        "data.grid.0.0.k": "1",
    }
