"""``nnctl sweep`` and ``nnctl cv`` on a raw table (penguins: text columns, ``NA`` cells), through the
real CLI and the real local process pool: every trial is read and prepared as ``nnctl train`` reads
and prepares it, so its weights are bit-identical to the trial's config trained alone, and its
checkpoints carry the column preprocessing ``nnctl predict`` needs for raw rows."""

from __future__ import annotations

import csv
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import CONFIGS, DATASETS, invoke, read_rows, weights

from nnctl.checkpoint import load_checkpoint
from nnctl.config import load_config
from nnctl.runs import FolderStorage, RunFolder, RunWriter
from nnctl.sweep.plan import build_plan
from nnctl.sweep.worker import MemoryStorage
from nnctl.training.loop import Trainer
from nnctl.training.prepare import build_network, prepare

PENGUINS = CONFIGS / "penguins.yaml"
PENGUINS_CSV = DATASETS / "penguins.csv"
EPOCHS = "training.epochs=4"
WEIGHTED = "training.class_weight=balanced"
LRS = [0.01, 0.05]
K = 3


@pytest.fixture(scope="module")
def weighted_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "penguins"
    grid = f"training.learning_rate={LRS}"
    outcome = invoke(
        "sweep", PENGUINS, "--set", EPOCHS, "--set", WEIGHTED, "--grid", grid, "--jobs", 2, "--out", out
    )
    assert outcome.code == 0, outcome.output
    return out


@pytest.fixture(scope="module")
def trained_alone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each grid point trained by ``nnctl train --deterministic``: the run folders to match."""
    root = tmp_path_factory.mktemp("alone")
    folders = {}
    for lr in LRS:
        out = root / str(lr)
        outcome = invoke(
            "train", PENGUINS, "--deterministic", "--quiet", "--out", out,
            "--set", EPOCHS, "--set", WEIGHTED, "--set", f"training.learning_rate={lr}",
        )  # fmt: skip
        assert outcome.code == 0, outcome.output
        folders[f"training.learning_rate={lr}"] = out
    return folders


def history(folder: Path) -> list[dict[str, str]]:
    """history.csv without its timings."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_rows(folder / "history.csv")]


def trial_folders(out: Path) -> dict[str, Path]:
    return {row["overrides"]: out / row["name"] for row in read_rows(out / "summary.csv")}


def test_class_weighted_trials_are_bit_identical_to_nnctl_train(weighted_sweep, trained_alone) -> None:
    folders = trial_folders(weighted_sweep)
    assert set(folders) == set(trained_alone)
    for overrides, folder in folders.items():
        alone = trained_alone[overrides]
        for name in ("last.npz", "best.npz"):
            assert weights(folder / name) == weights(alone / name), f"{folder.name}/{name}"
        assert history(folder) == history(alone)
        trial, reference = load_checkpoint(folder / "best.npz"), load_checkpoint(alone / "best.npz")
        weights_by_class = trial.meta["class_weights"]
        assert weights_by_class == reference.meta["class_weights"]
        assert len(set(weights_by_class)) == 3  # penguins' species are imbalanced: weights differ
        assert trial.preprocessing == reference.preprocessing
        assert trial.feature_names == reference.feature_names


def test_predict_reads_raw_rows_with_a_trials_checkpoint(weighted_sweep, trained_alone, tmp_path) -> None:
    folder = trial_folders(weighted_sweep)["training.learning_rate=0.05"]
    predictions = {}
    for label, checkpoint in (("trial", folder / "best.npz"), ("alone", trained_alone[
        "training.learning_rate=0.05"] / "best.npz")):  # fmt: skip
        outcome = invoke("predict", checkpoint, PENGUINS_CSV, "--output", tmp_path / f"{label}.csv")
        assert outcome.code == 0, outcome.output
        predictions[label] = (tmp_path / f"{label}.csv").read_text()
    rows = list(csv.DictReader(predictions["trial"].splitlines()))
    assert len(rows) == 344  # every raw row, NA cells and text columns included
    assert {row["species"] for row in rows} <= {"Adelie", "Chinstrap", "Gentoo"}
    assert predictions["trial"] == predictions["alone"]


def test_trials_with_other_column_settings_read_the_table_their_own_way(tmp_path) -> None:
    out = tmp_path / "drop"
    outcome = invoke(
        "sweep", PENGUINS, "--set", "training.epochs=1", "--grid", 'data.drop=[[], ["island", "sex"]]',
        "--jobs", 1, "--out", out,
    )  # fmt: skip
    assert outcome.code == 0, outcome.output
    inputs = {}
    for overrides, folder in trial_folders(out).items():
        checkpoint = load_checkpoint(folder / "last.npz")
        inputs[overrides] = checkpoint.feature_names
        assert checkpoint.weights[0].shape[1] == len(checkpoint.feature_names)  # W is (out, in)
    kept = inputs['data.drop=["island", "sex"]']
    assert kept and not any(name.startswith(("island", "sex")) for name in kept)
    assert any(name.startswith("island=") for name in inputs["data.drop=[]"])


def test_a_class_weight_naming_no_class_is_refused_before_any_trial(tmp_path) -> None:
    out = tmp_path / "bad"
    grid = 'training.class_weight=[null, {"Emperor": 2.0}]'
    outcome = invoke("sweep", PENGUINS, "--set", "training.epochs=1", "--grid", grid, "--out", out)
    assert outcome.code == 2, outcome.output
    assert "sweep trial t002" in outcome.output and "no class 'Emperor'" in outcome.output
    assert not out.exists()


def test_shipped_tables_pickle_and_name_the_data_row(tmp_path) -> None:
    plan = build_plan(
        PENGUINS,
        grid=[f"training.learning_rate={LRS}"],
        random=None,
        seed=None,
        monitor=None,
        overrides=[EPOCHS],
    )
    (data,) = plan.tables.values()
    copy = pickle.loads(pickle.dumps(data))  # the local pool's workers get the data this way
    assert Path(copy.source).is_absolute() and Path(copy.source) == PENGUINS_CSV.resolve()
    island = copy.columns["island"]
    assert copy.locate(3, island) == f"{PENGUINS_CSV.resolve()}: data row 4, column 'island'"
    for shipped, kept in zip(copy.features, data.features, strict=True):
        np.testing.assert_array_equal(shipped.values, kept.values)  # NaN cells compare equal here
        np.testing.assert_array_equal(shipped.missing, kept.missing)


# ---------------------------------------------------------------------------------------------
# nnctl cv on the raw table


@pytest.fixture(scope="module")
def penguins_cv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cv") / "penguins-cv"
    outcome = invoke("cv", PENGUINS, "--folds", K, "--set", EPOCHS, "--jobs", 2, "--out", out)
    assert outcome.code == 0, outcome.output
    assert "mean ± std" in outcome.stdout
    return out


def test_cv_fold_metrics_equal_the_fold_trained_alone(penguins_cv: Path, tmp_path: Path) -> None:
    document = json.loads((penguins_cv / "cv.json").read_text())
    assert [record["fold"] for record in document["folds"]] == [1, 2, 3]
    for index, record in enumerate(document["folds"], start=1):
        fold = penguins_cv / f"fold{index}"
        assert yaml.safe_load((fold / "config.yaml").read_text())["data"]["folds"] == {"k": K, "index": index}
        alone = tmp_path / f"alone{index}"
        outcome = invoke("train", fold / "config.yaml", "--deterministic", "--quiet", "--out", alone)
        assert outcome.code == 0, outcome.output
        assert weights(alone / "last.npz") == weights(fold / "last.npz")
        last = read_rows(alone / "history.csv")[-1]
        assert record["epoch"] == int(last["epoch"]) == 4
        for metric in ("train_loss", "val_loss", "val_accuracy"):
            assert record[metric] == float(last[metric]), (index, metric)
    accuracies = [record["val_accuracy"] for record in document["folds"]]
    assert document["mean"]["val_accuracy"] == pytest.approx(math.fsum(accuracies) / K, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# RunWriter's storage seam


def test_run_writer_stores_the_same_run_in_a_folder_and_in_memory(tmp_path: Path) -> None:
    config = load_config(PENGUINS, [EPOCHS, WEIGHTED, "training.deterministic=true"])
    folder = RunFolder(tmp_path / "run")
    folder.ensure_writable()
    memory = MemoryStorage()
    writers = [RunWriter(folder), RunWriter(storage=memory, flush_seconds=math.inf)]
    for writer in writers:
        prepared = prepare(config, PENGUINS.parent)
        net = build_network(config, prepared.train.n_features, class_weights=prepared.class_weights)
        Trainer(prepared, net, callbacks=[writer]).fit()
    on_disk, in_memory = writers
    assert isinstance(on_disk.storage, FolderStorage)
    assert set(on_disk.written) == {folder.last, folder.best, folder.history, folder.config}
    assert in_memory.written == []
    assert memory.last is not None and memory.best is not None
    for name, kept in (("last", memory.last), ("best", memory.best)):
        stored = load_checkpoint(folder.path / f"{name}.npz")
        assert kept.meta["epoch"] == stored.meta["epoch"]
        for a, b in zip(kept.weights + kept.biases, stored.weights + stored.biases, strict=True):
            assert a.tobytes() == b.tobytes()
    assert [row["val_loss"] for row in in_memory.rows] == [row["val_loss"] for row in on_disk.rows]


def test_run_writer_needs_a_folder_or_a_storage() -> None:
    with pytest.raises(TypeError, match="folder or a storage"):
        RunWriter()


def test_sweep_and_cv_say_what_reading_did_to_the_table(tmp_path: Path) -> None:
    lines = PENGUINS_CSV.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    species = header.index("species")
    first = lines[1].split(",")
    first[species] = "NA"  # one row without a target
    rows = [",".join(first), *lines[2:]]
    table = tmp_path / "indexed.csv"  # as pandas' to_csv writes it: an unnamed row-index column first
    table.write_text("\n".join(["," + lines[0], *(f"{i},{row}" for i, row in enumerate(rows))]) + "\n")
    config = yaml.safe_load(PENGUINS.read_text())
    config["data"]["path"] = str(table)
    config["training"]["epochs"] = 1
    path = tmp_path / "indexed.yaml"
    path.write_text(yaml.safe_dump(config))
    grid = f"training.learning_rate={LRS}"
    for args in (("sweep", path, "--grid", grid), ("cv", path, "--folds", 2)):
        outcome = invoke(*args, "--jobs", 1, "--out", tmp_path / args[0])
        assert outcome.code == 0, outcome.output
        assert outcome.stdout.count("note: ") == 2, outcome.stdout
        assert "the first column has no name" in outcome.stdout
        assert "dropped 1 row whose target is missing (species)" in outcome.stdout
