"""Data preparation: read the table, split its rows, fit the column preprocessing and the
normalization and encode targets on the training rows only, and build the network the config
describes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.checkpoint import Checkpoint
from nnctl.config import Config, check_parameter_budget
from nnctl.data.arrays import release_pages
from nnctl.data.columns import Preprocessing
from nnctl.data.load import load_table
from nnctl.data.normalize import CHUNK_ROWS, Normalizer
from nnctl.data.splits import fold_split, split_indices
from nnctl.data.table import Table, canonical_label, preview
from nnctl.data.tabular import (
    TabularData,
    describe_columns,
    fit_preprocessing,
    is_tabular,
    load_tabular,
    unseen_category_warnings,
)
from nnctl.data.targets import TargetEncoder, infer_task
from nnctl.engine.costs import class_weighted
from nnctl.engine.network import LayerSpec, Network
from nnctl.errors import ConfigError

Array = np.ndarray
STREAMS = ("init", "split", "shuffle", "dropout")


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators for each use of randomness, all from the one config seed."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)}


@dataclass
class Split:
    """Rows of a dataset as the network sees them: features normalized, targets encoded.

    All splits share one ``features``/``targets`` array and select their part by ``rows``, so
    splitting never copies the dataset. When ``normalizer`` is set, ``features`` are raw (e.g. a
    memory-mapped file) and each gathered batch is normalized on the fly.
    """

    features: Array
    targets: Array
    rows: Array | None = None  # None: every row, in order
    normalizer: Normalizer | None = None

    @property
    def size(self) -> int:
        return self.features.shape[0] if self.rows is None else self.rows.size

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.targets.dtype

    def gather(self, positions: Array, x_out: Array, t_out: Array) -> tuple[Array, Array]:
        """Rows ``positions`` of this split into the front of reusable buffers (no allocation
        for in-memory data)."""
        rows = positions if self.rows is None else self.rows[positions]
        xb, tb = x_out[: rows.size], t_out[: rows.size]
        if self.normalizer is None:
            np.take(self.features, rows, axis=0, out=xb, mode="clip")
        else:
            xb[...] = self.normalizer.apply(self.features[rows], xb.dtype)
        np.take(self.targets, rows, axis=0, out=tb, mode="clip")
        return xb, tb

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[tuple[Array, Array]]:
        """The split in order, ``size`` rows at a time (for evaluation)."""
        x_out = np.empty((min(size, self.size), self.n_features), dtype=self.dtype)
        t_out = np.empty((min(size, self.size), self.targets.shape[1]), dtype=self.dtype)
        for start in range(0, self.size, size):
            yield self.gather(np.arange(start, min(start + size, self.size)), x_out, t_out)
            release_pages(self.features)

    @property
    def x(self) -> Array:
        """All features of the split as one array (a copy unless the split is the whole array)."""
        if self.rows is None and self.normalizer is None:
            return self.features
        return np.concatenate([x.copy() for x, _ in self.chunks()])

    @property
    def t(self) -> Array:
        return self.targets if self.rows is None else self.targets[self.rows]


@dataclass
class Prepared:
    config: Config
    task: str
    encoder: TargetEncoder
    normalizer: Normalizer
    feature_names: list[str]
    target_names: list[str]
    source: str
    train: Split
    validation: Split | None
    test: Split | None
    preprocessing: Preprocessing | None = None  # None: numeric columns named feature_names
    class_weights: list[float] | None = None  # training.class_weight resolved, in class order
    notes: list[str] = field(default_factory=list)  # what was done to the table (rows dropped, ...)
    warnings: list[str] = field(default_factory=list)  # what looks wrong with it (ID columns, ...)
    columns: list[dict[str, Any]] = field(default_factory=list)  # per raw column, for `nnctl check`

    def __post_init__(self) -> None:
        if self.preprocessing is None:
            self.preprocessing = Preprocessing.numeric_only(self.feature_names)


def resolve_data_path(config: Config, config_dir: Path | None) -> str:
    """Data paths are relative to the config file (builtin names pass through)."""
    path = config.data.path
    if path.startswith("builtin:") or config_dir is None or Path(path).is_absolute():
        return path
    return str(config_dir / path)


def prepare(config: Config, config_dir: Path | None, *, numeric_only: bool = False) -> Prepared:
    """Load, check against the config, split (seeded, stratified) and normalize the data.
    ``numeric_only``: every feature a number, as a format-version-1 checkpoint was trained."""
    return prepare_loaded(config, load_data(config, config_dir, numeric_only=numeric_only), consume=True)


def load_data(
    config: Config, config_dir: Path | None, *, numeric_only: bool = False, mmap: bool | None = None
) -> Table | TabularData:
    """The config's data as read, before any split: a raw table (CSV, Parquet) or numeric arrays.
    ``mmap`` overrides ``data.mmap`` (a sweep ships the data to its workers, so it reads them whole)."""
    path = resolve_data_path(config, config_dir)
    if is_tabular(path) and not numeric_only:
        return load_tabular(Path(path), config.data)
    _refuse_table_settings(config)
    return load_table(path, config.data.target, mmap=config.data.mmap if mmap is None else mmap)


def prepare_loaded(config: Config, data: Table | TabularData, *, consume: bool = False) -> Prepared:
    """``prepare`` from data already read by ``load_data`` (a sweep reads once, prepares per trial);
    ``consume`` as in ``prepare_table`` (a raw table is never changed)."""
    if isinstance(data, TabularData):
        return prepare_tabular(config, data)
    return prepare_table(config, data, consume=consume)


def _refuse_table_settings(config: Config) -> None:
    data = config.data
    for key, value in (("features", data.features), ("drop", data.drop), ("columns", data.columns)):
        if value:
            raise ConfigError(
                f"data.{key}: applies to CSV and Parquet tables, not to {data.path}",
                hint=f"remove data.{key}, or give the data as a .csv or .parquet file",
            )


def prepare_tabular(config: Config, data: TabularData) -> Prepared:
    """Split the table's rows, fit the column preprocessing and the normalization on the training
    rows, and encode every row."""
    output = config.model.layers[-1]
    task = infer_task(config.data.task, config.cost.name, output.activation.name, output.units, data.y)
    encoder = TargetEncoder.fit(
        data.y, task, output.units, target_names=data.target_names, source=data.source
    )
    strata = encoder.class_indices(data.y) if task == "classification" else None
    rng = random_streams(config.seed)["split"]
    train_idx, val_idx, test_idx = split_rows(config, data.n_rows, rng, strata)
    preprocessing = fit_preprocessing(data, train_idx, config.data.columns, config.data.missing_values)
    check_parameter_budget(config, len(preprocessing.feature_names))
    x = preprocessing.encode_columns(data.columns, data.locate)
    warnings = data.warnings + unseen_category_warnings(
        preprocessing, data, {"validation": val_idx, "test": test_idx}
    )
    normalizer = Normalizer.fit(config.data.normalize, x, train_idx)
    fixed = ~preprocessing.scaled_inputs()  # one-hot and indicator inputs stay 0/1
    normalizer.shift[fixed], normalizer.scale[fixed] = 0.0, 1.0
    dtype = np.dtype(config.dtype)
    features = normalize_features(x, normalizer, dtype, in_place=True)
    targets = encoder.encode(data.y, source=data.source).astype(dtype)
    weights = resolve_class_weights(config, task, encoder, strata, train_idx)
    return Prepared(
        config,
        task,
        encoder,
        normalizer,
        preprocessing.feature_names,
        list(data.target_names),
        data.source,
        *_splits(features, targets, (train_idx, val_idx, test_idx)),
        preprocessing=preprocessing,
        class_weights=weights,
        notes=list(data.notes),
        warnings=warnings,
        columns=describe_columns(preprocessing, data),
    )


def resolve_class_weights(
    config: Config, task: str, encoder: TargetEncoder, strata: Array | None, train_idx: Array
) -> list[float] | None:
    """``training.class_weight`` as one weight per class (class order), scaled so the weights
    average 1 over the training rows: ``balanced`` gives class k the weight n / (K n_k)."""
    wanted = config.training.class_weight
    if wanted is None:
        return None
    if task != "classification" or strata is None or encoder.classes is None:
        raise ConfigError(f"training.class_weight: applies to classification, not to {task}")
    if config.cost.name not in ("cce", "bce"):
        raise ConfigError(f"training.class_weight: applies to the cce and bce costs, not {config.cost.name}")
    classes = encoder.classes
    counts = np.bincount(strata[train_idx], minlength=len(classes)).astype(np.float64)
    if wanted == "balanced":
        raw = np.where(counts > 0, counts.sum() / (len(classes) * np.maximum(counts, 1)), 1.0)
    else:
        given = {canonical_label(str(label)): float(w) for label, w in wanted.items()}
        unknown = [label for label in given if label not in classes]
        if unknown:
            raise ConfigError(
                f"training.class_weight: no class {unknown[0]!r}; the classes are {preview(classes)}"
            )
        raw = np.array([given.get(c, 1.0) for c in classes])
    mean = float((raw * counts).sum() / counts.sum())
    return [float(w) for w in raw / mean]


def split_rows(
    config: Config, n: int, rng: np.random.Generator, strata: Array | None
) -> tuple[Array, Array, Array]:
    """Train/validation/test row indices: the seeded split, or one fold of k-fold cross-validation
    (``data.folds``, written by ``nnctl cv``) over the same non-test rows."""
    folds = config.data.folds
    if folds is None:
        return split_indices(n, config.data.validation, config.data.test, rng, strata)
    return fold_split(n, config.data.test, folds.k, folds.index, rng, strata)


def prepare_table(config: Config, table: Table, *, consume: bool = False) -> Prepared:
    """Split and normalize ``table`` for ``config``; ``consume=True`` lets it normalize the
    table's feature array in place (the caller will not use the table again)."""
    output = config.model.layers[-1]
    task = infer_task(config.data.task, config.cost.name, output.activation.name, output.units, table.y)
    encoder = TargetEncoder.fit(
        table.y, task, output.units, target_names=table.target_names, source=table.source
    )
    check_parameter_budget(config, table.x.shape[1])
    strata = encoder.class_indices(table.y) if task == "classification" else None
    rng = random_streams(config.seed)["split"]
    train_idx, val_idx, test_idx = split_rows(config, table.x.shape[0], rng, strata)
    normalizer = Normalizer.fit(config.data.normalize, table.x, train_idx)
    dtype = np.dtype(config.dtype)
    targets = encoder.encode(table.y, source=table.source).astype(dtype)
    if isinstance(table.x, np.memmap):  # keep the file on disk: normalize each batch as it is read
        features, per_batch = table.x, normalizer
    elif config.data.normalize == "none":  # nothing to compute: no float64 pass over the data
        features, per_batch = table.x.astype(dtype, copy=False), None
    else:
        features, per_batch = normalize_features(table.x, normalizer, dtype, in_place=consume), None
    return Prepared(
        config,
        task,
        encoder,
        normalizer,
        list(table.feature_names),
        list(table.target_names),
        table.source,
        *_splits(features, targets, (train_idx, val_idx, test_idx), per_batch),
        class_weights=resolve_class_weights(config, task, encoder, strata, train_idx),
    )


def _splits(
    features: Array, targets: Array, rows: tuple[Array, Array, Array], per_batch: Normalizer | None = None
) -> tuple[Split, Split | None, Split | None]:
    """(train, validation, test) views of the one features/targets pair; an empty part is None."""
    train, validation, test = (
        Split(features, targets, part, per_batch) if part.size else None for part in rows
    )
    assert train is not None  # split_indices never returns an empty training part
    return train, validation, test


def normalize_features(x: Array, normalizer: Normalizer, dtype: np.dtype, *, in_place: bool) -> Array:
    """(x - shift) / scale for every row, in float64 then cast, a chunk at a time; written over
    ``x`` itself when allowed and the dtype already matches (no second copy of the data)."""
    out = x if in_place and x.dtype == dtype and x.flags.writeable and x.flags.c_contiguous else None
    if out is None:
        out = np.empty(x.shape, dtype=dtype)
    for start in range(0, x.shape[0], CHUNK_ROWS):
        out[start : start + CHUNK_ROWS] = normalizer.apply(x[start : start + CHUNK_ROWS], dtype)
    return out


def build_network(
    config: Config,
    input_units: int,
    rng: np.random.Generator | None = None,
    class_weights: list[float] | None = None,
) -> Network:
    """The network the config describes, initialized from the config seed's ``init`` stream;
    ``class_weights`` (``Prepared.class_weights``) weight its cost by class."""
    rng = rng if rng is not None else random_streams(config.seed)["init"]
    specs = [
        LayerSpec(layer.units, layer.activation, layer.initializer, layer.dropout)
        for layer in config.model.layers
    ]
    return Network.build(
        input_units,
        specs,
        class_weighted(config.cost, class_weights),
        rng,
        dtype=np.dtype(config.dtype),
        initializer=config.model.initializer,
    )


def network_from_checkpoint(checkpoint: Checkpoint) -> Network:
    weights = checkpoint.meta.get("class_weights")
    net = build_network(checkpoint.config, len(checkpoint.feature_names), np.random.default_rng(0), weights)
    for layer, W, b in zip(net.layers, checkpoint.weights, checkpoint.biases, strict=True):
        layer.W, layer.b = np.ascontiguousarray(W), np.ascontiguousarray(b)
    return net
