"""Folder datasets (x.npy, y.npy) and ``data.mmap``: the features stay on disk and train the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import validate_config
from nnctl.data.load import load_table
from nnctl.errors import DataError
from nnctl.training.prepare import prepare

RUNNER = CliRunner()


def write_folder(folder: Path, rows: int = 3000, features: int = 12, dtype: type = np.float32) -> Path:
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(rows, features)).astype(dtype)
    y = (x[:, :3] @ np.array([1.0, -2.0, 0.5])).round().astype(np.int64) % 3
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    return folder


def config_raw(folder: Path, mmap: bool) -> dict:
    return {
        "name": "mm",
        "data": {"path": str(folder), "mmap": mmap, "validation": 0.1, "test": 0.1},
        "model": {"layers": [{"units": 16, "activation": "relu"}, {"units": 3, "activation": "softmax"}]},
        "cost": "cce",
        "training": {"epochs": 3, "batch_size": 64, "learning_rate": 0.1},
    }


def test_mmap_table_is_a_memory_map_not_a_loaded_array(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d")
    table = load_table(folder, mmap=True)
    assert isinstance(table.x, np.memmap)
    assert table.x.shape == (3000, 12) and table.y is not None and table.y.shape == (3000, 1)
    loaded = load_table(folder)
    assert not isinstance(loaded.x, np.memmap)
    np.testing.assert_array_equal(np.asarray(table.x), loaded.x)


def test_prepared_mmap_splits_read_the_file_per_batch(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d")
    prepared = prepare(validate_config(config_raw(folder, True), "test"), None)
    for split in (prepared.train, prepared.validation, prepared.test):
        assert split is not None
        assert isinstance(split.features, np.memmap)  # never copied into memory
        assert split.normalizer is prepared.normalizer  # normalized batch by batch
    in_memory = prepare(validate_config(config_raw(folder, False), "test"), None)
    rows = np.arange(50)
    buffers = (np.empty((50, 12), np.float32), np.empty((50, 3), np.float32))
    a = prepared.train.gather(rows, *buffers)[0].copy()
    b = in_memory.train.gather(rows, np.empty((50, 12), np.float32), np.empty((50, 3), np.float32))[0]
    np.testing.assert_array_equal(a, b)


def test_mmap_training_gives_the_same_weights_as_in_memory(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d")
    results = []
    for mmap in (True, False):
        config = tmp_path / f"c{mmap}.yaml"
        raw = config_raw(folder, mmap)
        config.write_text(yaml.safe_dump(raw))
        out = tmp_path / f"run{mmap}"
        outcome = RUNNER.invoke(app, ["train", str(config), "--out", str(out), "-q"])
        assert outcome.exit_code == 0, outcome.output
        with np.load(out / "last.npz", allow_pickle=False) as npz:
            results.append({k: npz[k] for k in npz.files if k[0] in "Wb"})
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        np.testing.assert_array_equal(results[0][key], results[1][key])


def test_mmap_refuses_integer_features_and_nan(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ints", dtype=np.int32)
    with pytest.raises(DataError, match="float32 or float64"):
        load_table(folder, mmap=True)
    folder = write_folder(tmp_path / "nan")
    x = np.load(folder / "x.npy")
    x[7, 4] = np.nan
    np.save(folder / "x.npy", x)
    with pytest.raises(DataError, match=r"x\[7, 4\]"):
        load_table(folder, mmap=True)


def test_folder_without_targets_is_a_clear_error(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d")
    (folder / "y.npy").unlink()
    with pytest.raises(DataError, match=r"y\.npy"):
        load_table(folder, mmap=True)
    assert load_table(folder, mmap=True, require_target=False).y is None
