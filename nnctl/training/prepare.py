"""Data preparation: read the table, split its rows, fit normalization and encode targets on the
training rows only, and build the network the config describes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.checkpoint import Checkpoint
from nnctl.config import Config, check_parameter_budget
from nnctl.data.arrays import release_pages
from nnctl.data.load import load_table
from nnctl.data.normalize import CHUNK_ROWS, Normalizer
from nnctl.data.splits import fold_split, split_indices
from nnctl.data.table import Table
from nnctl.data.targets import TargetEncoder, infer_task
from nnctl.engine.network import LayerSpec, Network

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


def resolve_data_path(config: Config, config_dir: Path | None) -> str:
    """Data paths are relative to the config file (builtin names pass through)."""
    path = config.data.path
    if path.startswith("builtin:") or config_dir is None or Path(path).is_absolute():
        return path
    return str(config_dir / path)


def prepare(config: Config, config_dir: Path | None) -> Prepared:
    """Load, check against the config, split (seeded, stratified) and normalize the data."""
    table = load_table(resolve_data_path(config, config_dir), config.data.target, mmap=config.data.mmap)
    return prepare_table(config, table, consume=True)


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
    folds = config.data.folds
    if folds is None:
        train_idx, val_idx, test_idx = split_indices(
            table.x.shape[0], config.data.validation, config.data.test, rng, strata
        )
    else:  # one fold of k-fold cross-validation (nnctl cv)
        train_idx, val_idx, test_idx = fold_split(
            table.x.shape[0], config.data.test, folds.k, folds.index, rng, strata
        )
    normalizer = Normalizer.fit(config.data.normalize, table.x, train_idx)
    dtype = np.dtype(config.dtype)
    targets = encoder.encode(table.y, source=table.source).astype(dtype)
    if isinstance(table.x, np.memmap):  # keep the file on disk: normalize each batch as it is read
        features, per_batch = table.x, normalizer
    elif config.data.normalize == "none":  # nothing to compute: no float64 pass over the data
        features, per_batch = table.x.astype(dtype, copy=False), None
    else:
        features, per_batch = normalize_features(table.x, normalizer, dtype, in_place=consume), None

    def part(indices: Array) -> Split | None:
        return Split(features, targets, indices, per_batch) if indices.size else None

    train = part(train_idx)
    assert train is not None  # split_indices never returns an empty training part
    return Prepared(
        config,
        task,
        encoder,
        normalizer,
        list(table.feature_names),
        list(table.target_names),
        table.source,
        train,
        part(val_idx),
        part(test_idx),
    )


def normalize_features(x: Array, normalizer: Normalizer, dtype: np.dtype, *, in_place: bool) -> Array:
    """(x - shift) / scale for every row, in float64 then cast, a chunk at a time; written over
    ``x`` itself when allowed and the dtype already matches (no second copy of the data)."""
    out = x if in_place and x.dtype == dtype and x.flags.writeable and x.flags.c_contiguous else None
    if out is None:
        out = np.empty(x.shape, dtype=dtype)
    for start in range(0, x.shape[0], CHUNK_ROWS):
        out[start : start + CHUNK_ROWS] = normalizer.apply(x[start : start + CHUNK_ROWS], dtype)
    return out


def build_network(config: Config, input_units: int, rng: np.random.Generator | None = None) -> Network:
    """The network the config describes, initialized from the config seed's ``init`` stream."""
    rng = rng if rng is not None else random_streams(config.seed)["init"]
    specs = [
        LayerSpec(layer.units, layer.activation, layer.initializer, layer.dropout)
        for layer in config.model.layers
    ]
    return Network.build(
        input_units,
        specs,
        config.cost,
        rng,
        dtype=np.dtype(config.dtype),
        initializer=config.model.initializer,
    )


def network_from_checkpoint(checkpoint: Checkpoint) -> Network:
    net = build_network(checkpoint.config, len(checkpoint.feature_names), np.random.default_rng(0))
    for layer, W, b in zip(net.layers, checkpoint.weights, checkpoint.biases, strict=True):
        layer.W, layer.b = np.ascontiguousarray(W), np.ascontiguousarray(b)
    return net
