"""Feature normalization as training does it: fitted on the training rows only, in chunks.

Everything goes through ``prepare_table`` (what ``nnctl train`` calls) or the CLI, never through a
normalizer class directly, so the tests hold whatever fits the statistics inside. Tables are big
enough that the chunked fit merges more than two chunks, and the training rows are a sparse,
seeded subset of the file (validation and test rows taken out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import CONFIGS, DATASETS, csv_column, csv_columns, read_checkpoint, split_of, train

from nnctl.config import validate_config
from nnctl.data.table import Table
from nnctl.errors import ConfigError
from nnctl.training.prepare import CHUNK_ROWS, prepare_table

#: Enough rows that half of them still fill three chunks and part of a fourth.
ROWS = 7 * CHUNK_ROWS + 1234


def regression_config(normalize: str, validation: float, test: float, dtype: str = "float64") -> Any:
    return validate_config(
        {
            "name": "norm",
            "seed": 3,
            "dtype": dtype,
            "data": {"path": "unused.csv", "validation": validation, "test": test, "normalize": normalize},
            "model": {"layers": [{"units": 1, "activation": "identity"}]},
            "cost": "quadratic",
            "training": {"epochs": 1, "learning_rate": 0.1},
        },
        "test config",
    )


def awkward_table(rows: int = ROWS) -> Table:
    """Columns that are hard to summarize in chunks: a large offset with a small spread (a naive
    sum of squares loses it), a constant, a skewed one, and one whose extremes sit in one chunk."""
    rng = np.random.default_rng(11)
    x = np.empty((rows, 4))
    x[:, 0] = 1e7 + rng.normal(0.0, 0.5, rows)
    x[:, 1] = 0.1
    x[:, 2] = rng.exponential(3.0, rows)
    x[:, 3] = rng.normal(0.0, 1.0, rows)
    x[rows // 2, 3], x[rows // 2 + 1, 3] = -50.0, 80.0
    y = rng.normal(size=(rows, 1))
    return Table(x, y, ["a", "b", "c", "d"], ["y"], "memory")


@pytest.mark.parametrize(
    ("validation", "test"), [(0.0, 0.0), (0.3, 0.2), (0.0, 0.9)], ids=["every-row", "sparse", "very-sparse"]
)
def test_standard_statistics_are_numpys_over_the_training_rows(validation: float, test: float) -> None:
    table = awkward_table()
    x = table.x.copy()
    prepared = prepare_table(regression_config("standard", validation, test), table)
    rows = prepared.train.rows
    assert rows is not None
    if validation + test <= 0.5:
        assert rows.size > 3 * CHUNK_ROWS  # the fit merges more than three chunks
    train_x = x[rows]
    if validation + test > 0:
        assert rows.size < x.shape[0] and np.any(np.diff(rows) > 1)  # a sparse subset of the file
    expected_std = train_x.std(axis=0)
    expected_std[1] = 1.0  # a constant column is left unscaled
    np.testing.assert_allclose(prepared.normalizer.shift, train_x.mean(axis=0), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(prepared.normalizer.scale, expected_std, rtol=1e-9)
    # the network sees (x - mean) / std of the training rows
    seen = prepared.train.x
    np.testing.assert_allclose(seen, (train_x - prepared.normalizer.shift) / expected_std, atol=1e-9)
    np.testing.assert_allclose(seen[:, [0, 2, 3]].mean(axis=0), 0.0, atol=1e-7)  # 1e7 offset: ulp 2e-9
    np.testing.assert_allclose(seen[:, [0, 2, 3]].std(axis=0), 1.0, rtol=1e-9)


@pytest.mark.parametrize(("validation", "test"), [(0.0, 0.0), (0.3, 0.2)], ids=["every-row", "sparse"])
def test_minmax_statistics_are_numpys_over_the_training_rows(validation: float, test: float) -> None:
    table = awkward_table()
    x = table.x.copy()
    prepared = prepare_table(regression_config("minmax", validation, test), table)
    train_x = x[prepared.train.rows]
    low, high = train_x.min(axis=0), train_x.max(axis=0)
    np.testing.assert_array_equal(prepared.normalizer.shift, low)
    np.testing.assert_array_equal(prepared.normalizer.scale, np.where(high == low, 1.0, high - low))
    seen = prepared.train.x
    assert seen[:, [0, 2, 3]].min() == 0.0 and seen[:, [0, 2, 3]].max() == 1.0


def test_extremes_outside_the_training_rows_do_not_count() -> None:
    table = awkward_table()
    x = table.x.copy()
    config = regression_config("minmax", 0.3, 0.2)
    rows = prepare_table(config, awkward_table()).train.rows
    held_out = np.setdiff1d(np.arange(x.shape[0]), rows)
    table.x[held_out[0], 3] = 1e6  # an outlier in a validation/test row
    prepared = prepare_table(config, table)
    assert prepared.normalizer.scale[3] == x[rows, 3].max() - x[rows, 3].min()


def test_normalize_none_uses_the_tables_own_array() -> None:
    """No float64 pass over the data when there is nothing to normalize."""
    table = awkward_table(1000)
    before = table.x.copy()
    prepared = prepare_table(regression_config("none", 0.2, 0.2), table)
    assert prepared.train.features is table.x  # the same array: no copy, no pass
    np.testing.assert_array_equal(table.x, before)
    np.testing.assert_array_equal(prepared.train.x, before[prepared.train.rows])
    assert prepared.normalizer.shift.tolist() == [0.0] * 4 and prepared.normalizer.scale.tolist() == [1.0] * 4

    # float32 training on float64 data: one cast, to exactly the rounded values
    prepared = prepare_table(regression_config("none", 0.2, 0.2, dtype="float32"), awkward_table(1000))
    assert prepared.train.features.dtype == np.float32
    np.testing.assert_array_equal(prepared.train.features, before.astype(np.float32))


def test_checkpoint_norm_shift_is_the_training_rows_mean(tmp_path: Path) -> None:
    """Through the CLI: the stored statistics come from the training rows, not the whole file."""
    run = train(CONFIGS / "iris.yaml", tmp_path / "run", "training.epochs=1")
    ckpt = read_checkpoint(run / "best.npz")
    csv = DATASETS / "iris.csv"
    x = csv_columns(csv, ckpt.feature_names)
    labels = csv_column(csv, "species")
    strata = np.array([ckpt.classes.index(label) for label in labels])
    rows = split_of(ckpt, len(labels), strata)["train"]
    assert 0 < rows.size < len(labels)
    np.testing.assert_allclose(ckpt.arrays["norm_shift"], x[rows].mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(ckpt.arrays["norm_scale"], x[rows].std(axis=0), rtol=1e-12)
    # the control: the whole file's statistics differ, so the check above can tell them apart
    assert np.abs(ckpt.arrays["norm_shift"] - x.mean(axis=0)).max() > 1e-3


def test_float32_features_are_the_float64_ones_rounded() -> None:
    """Normalization is computed in float64 and then cast, so float32 and float64 runs see the same
    numbers up to the final rounding."""
    wide = prepare_table(regression_config("standard", 0.2, 0.2), awkward_table(3000))
    narrow = prepare_table(regression_config("standard", 0.2, 0.2, dtype="float32"), awkward_table(3000))
    assert narrow.train.x.dtype == np.float32
    np.testing.assert_array_equal(narrow.train.x, wide.train.x.astype(np.float32))


def test_unknown_normalization_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.normalize"):
        regression_config("robust", 0.2, 0.2)
