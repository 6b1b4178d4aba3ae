"""``--mlflow URI`` on train, cv and sweep (issue 14), against the real MLflow client and a real
``sqlite:///`` store in a temporary folder: everything is read back through ``MlflowClient``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CONFIGS, invoke, ok

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient

from nnctl.tracking import flatten_params

IRIS = CONFIGS / "iris.yaml"
EPOCHS = "training.epochs=3"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, MlflowClient, Path]:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return uri, MlflowClient(tracking_uri=uri), root


def history(folder: Path) -> list[dict[str, str]]:
    with (folder / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def metric_series(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def artifact_names(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    names = set()
    for item in client.list_artifacts(run_id, path):
        names |= artifact_names(client, run_id, item.path) if item.is_dir else {item.path}
    return names


def runs_of(client: MlflowClient, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client.search_runs([found.experiment_id], max_results=100)


def test_train_logs_config_epochs_final_metrics_and_artifacts(store: Any, tmp_path: Path) -> None:
    uri, client, _ = store
    out = tmp_path / "run"
    ok(
        invoke(
            "train",
            IRIS,
            "--set",
            EPOCHS,
            "--out",
            out,
            "--quiet",
            "--mlflow",
            uri,
            "--mlflow-experiment",
            "t",
        )
    )
    (run,) = runs_of(client, "t")
    assert run.info.status == "FINISHED" and run.info.run_name == "iris"
    stored = yaml.safe_load((out / "config.yaml").read_text())
    # the whole resolved config as flattened params
    params = run.data.params
    assert params["training.learning_rate"] == "0.05" and params["model.layers.0.units"] == "16"
    assert params["model.layers.0.activation"] == "tanh" and params["data.normalize"] == "standard"
    expected = flatten_params(stored)
    expected.pop("data.path")  # stored relative to the run folder; the tracked one is the config's own
    assert {k: v for k, v in params.items() if k != "data.path"} == expected
    # per-epoch metrics with their step, equal to history.csv
    rows = history(out)
    for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
        assert metric_series(client, run.info.run_id, key) == [(int(r["epoch"]), float(r[key])) for r in rows]
    # final metrics: the test split of best.npz, as nnctl eval reports it
    evaluated = json.loads(ok(invoke("eval", out / "best.npz", "--json")).stdout)
    assert run.data.metrics["test_accuracy"] == evaluated["accuracy"]
    assert run.data.metrics["test_loss"] == pytest.approx(evaluated["loss"], rel=1e-12)
    assert run.data.metrics["final_val_loss"] == float(rows[-1]["val_loss"])
    # artifacts: config, checkpoints, history, plots; a checkpoint downloads byte for byte
    names = artifact_names(client, run.info.run_id)
    assert {"config.yaml", "run/best.npz", "run/last.npz", "run/history.csv", "plots/loss.png"} <= names
    downloaded = client.download_artifacts(run.info.run_id, "run/best.npz", str(tmp_path))
    assert Path(downloaded).read_bytes() == (out / "best.npz").read_bytes()
    tracked = yaml.safe_load(
        Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))).read_text()
    )
    assert tracked["training"] == stored["training"] and tracked["model"] == stored["model"]


def test_cv_is_a_parent_run_with_a_nested_run_per_fold(store: Any, tmp_path: Path) -> None:
    uri, client, _ = store
    out = tmp_path / "cv"
    args = ["cv", IRIS, "--folds", 2, "--refit", "--set", EPOCHS, "--jobs", 1, "--out", out]
    ok(invoke(*args, "--quiet", "--mlflow", uri, "--mlflow-experiment", "cv"))
    runs = runs_of(client, "cv")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "cv iris"
    parent = parents[0]
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == {"fold1", "fold2", "refit"}
    document = json.loads((out / "cv.json").read_text())
    assert parent.data.metrics["cv_mean_val_loss"] == document["mean"]["val_loss"]
    assert parent.data.metrics["cv_std_val_accuracy"] == document["std"]["val_accuracy"]
    assert parent.data.metrics["refit_test_accuracy"] == document["refit"]["test"]["accuracy"]
    assert {"cv.csv", "cv.json", "config.yaml"} <= artifact_names(client, parent.info.run_id)
    for index in (1, 2):
        child = children[f"fold{index}"]
        assert child.data.params["data.folds.k"] == "2" and child.data.params["data.folds.index"] == str(
            index
        )
        rows = history(out / f"fold{index}")
        assert metric_series(client, child.info.run_id, "val_loss") == [
            (int(r["epoch"]), float(r["val_loss"])) for r in rows
        ]
        assert "run/last.npz" in artifact_names(client, child.info.run_id)
    assert children["refit"].data.params["data.validation"] == "0.0"


def test_sweep_trials_are_nested_runs(store: Any, tmp_path: Path) -> None:
    uri, client, _ = store
    grid = "training.learning_rate=[0.01, 0.1]"
    args = ["sweep", IRIS, "--grid", grid, "--set", EPOCHS, "--jobs", 1, "--out", tmp_path / "s", "--quiet"]
    ok(invoke(*args, "--mlflow", uri, "--mlflow-experiment", "sweep"))
    runs = runs_of(client, "sweep")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.data.params["training.learning_rate"] for c in children) == ["0.01", "0.1"]
    with (tmp_path / "s" / "summary.csv").open(newline="") as handle:
        best = min(float(row["value"]) for row in csv.DictReader(handle))
    assert parent.data.metrics["best_val_loss"] == best
    assert {"summary.csv", "best.yaml"} <= artifact_names(client, parent.info.run_id)


def test_unusable_tracking_uri_is_one_clear_error(tmp_path: Path) -> None:
    outcome = invoke("train", IRIS, "--set", EPOCHS, "--out", tmp_path / "r", "--mlflow", "bogus://nowhere")
    assert outcome.code == 2
    assert "--mlflow bogus://nowhere: cannot use this tracking store" in outcome.stderr
    assert not (tmp_path / "r" / "last.npz").exists()
