"""The training loop: minibatch gradient descent over a prepared dataset, with events.

The loop only computes; it never prints or writes files. Everything else (progress display, run
folder, checkpoints) plugs in as a ``Callback``. One seed drives everything through independent
streams spawned from ``numpy.random.SeedSequence(seed)``: weights, splits, shuffling, dropout.
All loop state (optimizer arrays, generator states, position in the epoch, schedule and
early-stopping state) is captured by ``Trainer.snapshot()``, so a resumed run is bit-identical.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnctl import __version__
from nnctl.checkpoint import Checkpoint
from nnctl.config import Config, check_parameter_budget
from nnctl.data.arrays import release_pages
from nnctl.data.load import load_table
from nnctl.data.normalize import Normalizer
from nnctl.data.splits import split_indices
from nnctl.data.table import Table
from nnctl.data.targets import TargetEncoder, infer_task
from nnctl.engine.metrics import headline_metric, task_metrics
from nnctl.engine.network import LayerSpec, Network
from nnctl.engine.optimizers import Optimizer
from nnctl.errors import ConfigError, TrainingFailed

Array = np.ndarray
STREAMS = ("init", "split", "shuffle", "dropout")


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators for each use of randomness, all from the one config seed."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)}


# ---------------------------------------------------------------------------------------------
# Data preparation


CHUNK_ROWS = 8192  # rows per chunk when normalizing or evaluating, to bound temporary memory


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
    train_idx, val_idx, test_idx = split_indices(
        table.x.shape[0], config.data.validation, config.data.test, rng, strata
    )
    normalizer = fit_normalizer(config.data.normalize, table.x, train_idx)
    dtype = np.dtype(config.dtype)
    targets = encoder.encode(table.y, source=table.source).astype(dtype)
    if isinstance(table.x, np.memmap):  # keep the file on disk: normalize each batch as it is read
        features, per_batch = table.x, normalizer
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


def fit_normalizer(kind: str, x: Array, rows: Array) -> Normalizer:
    """Normalization statistics of the training rows in float64, one pass over chunks, merged
    with Chan et al.'s pairwise update, so neither the training part nor a float64 copy of it is
    ever materialized (and memory-mapped data are read once)."""
    if kind == "none":
        return Normalizer.fit(kind, x[:0])
    width = x.shape[1]
    count, mean, m2 = 0, np.zeros(width), np.zeros(width)
    low, high = np.full(width, np.inf), np.full(width, -np.inf)
    every_row = rows.size == x.shape[0]  # rows are sorted: then they are 0..n-1 and slices do
    for start in range(0, rows.size, CHUNK_ROWS):
        part = x[start : start + CHUNK_ROWS] if every_row else x[rows[start : start + CHUNK_ROWS]]
        chunk = part.astype(np.float64)  # always a copy: it is centred in place below
        release_pages(x)
        np.minimum(low, chunk.min(axis=0), out=low)
        np.maximum(high, chunk.max(axis=0), out=high)
        n = chunk.shape[0]
        chunk_mean = chunk.mean(axis=0)
        chunk -= chunk_mean
        chunk_m2 = np.einsum("ij,ij->j", chunk, chunk)
        delta = chunk_mean - mean
        total = count + n
        mean += delta * (n / total)
        m2 += chunk_m2 + delta * delta * (count * n / total)
        count = total
    if kind == "minmax":
        shift, scale = low, high - low
    else:
        shift, scale = mean, np.sqrt(m2 / count)
    # Constant columns by exact comparison: a rounding-noise spread would blow them up.
    return Normalizer(kind, shift, np.where(high == low, 1.0, scale))


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


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(net: Network, split: Split, task: str, n_classes: int | None) -> dict[str, Any]:
    """Loss (mean cost) and the task's metrics on one split."""
    outputs, losses = predict_with_loss(net, split)
    metrics = task_metrics(task, outputs, split.t, n_classes)
    return {"loss": float(losses.mean()), "samples": split.size, **metrics}


def predict_with_loss(net: Network, split: Split) -> tuple[Array, Array]:
    """Outputs a^L and per-sample costs for every row of the split, a chunk at a time."""
    outputs, losses = [], []
    for x, t in split.chunks():
        trace = net.forward_pass(x)
        outputs.append(trace.a[-1].copy())
        losses.append(net.per_sample_loss(trace, t))
    return np.concatenate(outputs), np.concatenate(losses)


# ---------------------------------------------------------------------------------------------
# Callbacks


class Callback:
    """Hooks the loop calls; every method is optional."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int, batches: int) -> None: ...
    def on_batch_end(self, trainer: Trainer, epoch: int, batch: int, loss: float, samples: int) -> None: ...
    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None: ...
    def on_interrupt(self, trainer: Trainer) -> None: ...
    def on_failure(self, trainer: Trainer) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


class Interrupted(Exception):
    """Training stopped at a signal after finishing the current step; state is consistent."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class LoopState:
    """Where the loop is; everything here is saved in checkpoints as JSON."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # completed batches of the current epoch (non-zero only mid-epoch)
    step: int = 0  # optimizer steps taken in total
    loss_sum: float = 0.0  # running sum of batch_loss * batch_size in the current epoch
    epoch_start_shuffle: dict[str, Any] | None = None  # shuffle generator state at epoch start
    best_value: float | None = None
    best_epoch: int = 0
    wait: int = 0  # epochs without improvement (early stopping)
    stopped_early: bool = False
    schedule: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Runs epochs of minibatch training on ``prepared.train``; evaluates on validation."""

    def __init__(
        self,
        prepared: Prepared,
        net: Network,
        *,
        callbacks: Sequence[Callback] = (),
        optimizer_state: dict[str, Array] | None = None,
        loop: LoopState | None = None,
        generator_states: dict[str, Any] | None = None,
        best_parameters: list[Array] | None = None,
    ) -> None:
        self.prepared = prepared
        self.config = prepared.config
        self.net = net
        self.callbacks = list(callbacks)
        self.optimizer: Optimizer = self.config.training.optimizer
        self.params = net.parameters()
        self.optimizer_state = optimizer_state or self.optimizer.init(self.params)
        self.loop = loop or LoopState(schedule=self.config.training.schedule.initial_state())
        streams = random_streams(self.config.seed)
        self.shuffle_rng, self.dropout_rng = streams["shuffle"], streams["dropout"]
        if generator_states:
            self.shuffle_rng.bit_generator.state = generator_states["shuffle"]
            self.dropout_rng.bit_generator.state = generator_states["dropout"]
        self.history: list[dict[str, Any]] = []
        self.stop_signal: str | None = None
        self.best_parameters = best_parameters
        self.monitor, self.maximize = self._monitor()
        self.diagnostics = LayerDiagnostics(len(net.layers)) if self.config.training.trace else None

    # -- public ------------------------------------------------------------------------------
    @property
    def n_classes(self) -> int | None:
        classes = self.prepared.encoder.classes
        return len(classes) if classes else None

    def request_stop(self, signal_name: str) -> None:
        """Ask the loop to stop after the current step (from a signal handler)."""
        self.stop_signal = signal_name

    def fit(self) -> list[dict[str, Any]]:
        """Train until ``training.epochs`` (or early stopping); returns the epoch records."""
        self._emit("on_train_start")
        epochs = self.config.training.epochs
        # Overflow on the way to a diverging loss is reported once, as TrainingFailed, not as warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while self.loop.epoch < epochs and not self.loop.stopped_early:
                self._run_epoch()
        if self.best_parameters is not None and self.config.training.early_stopping is not None:
            for param, best in zip(self.params, self.best_parameters, strict=True):
                param[...] = best  # restore the best epoch's weights, whatever stopped training
        self._emit("on_train_end")
        return self.history

    def learning_rate(self, epoch: int) -> float:
        training = self.config.training
        return training.schedule.learning_rate(
            training.learning_rate, epoch, training.epochs, self.loop.schedule
        )

    def snapshot(self) -> tuple[dict[str, Any], dict[str, Array]]:
        """(train_state JSON, optimizer arrays): all that resume needs besides the weights."""
        loop = self.loop
        state = {
            "loop": {
                "epoch": loop.epoch,
                "batch": loop.batch,
                "step": loop.step,
                "loss_sum": loop.loss_sum,
                "epoch_start_shuffle": loop.epoch_start_shuffle,
                "best_value": loop.best_value,
                "best_epoch": loop.best_epoch,
                "wait": loop.wait,
                "stopped_early": loop.stopped_early,
                "schedule": loop.schedule,
            },
            "generators": {
                "shuffle": self.shuffle_rng.bit_generator.state,
                "dropout": self.dropout_rng.bit_generator.state,
            },
        }
        return state, {key: value.copy() for key, value in self.optimizer_state.items()}

    # -- one epoch ---------------------------------------------------------------------------
    def _run_epoch(self) -> None:
        train = self.prepared.train
        batch_size = min(self.config.training.batch_size, train.size)
        batches = math.ceil(train.size / batch_size)
        order = self._epoch_order()
        lr = self.learning_rate(self.loop.epoch)
        x_buffer = np.empty((batch_size, train.n_features), dtype=train.dtype)
        t_buffer = np.empty((batch_size, train.targets.shape[1]), dtype=train.dtype)
        self._emit("on_epoch_start", self.loop.epoch, batches)
        started = time.perf_counter()
        decay_mask = self.net.weight_mask()
        for batch in range(self.loop.batch, batches):
            rows = order[batch * batch_size : (batch + 1) * batch_size]
            xb, tb = train.gather(rows, x_buffer, t_buffer)
            release_pages(train.features)  # memory-mapped data: keep resident memory flat
            loss = self._step(xb, tb, lr, decay_mask, batch)
            self.loop.batch = batch + 1
            self.loop.step += 1
            self.loop.loss_sum += loss * rows.size
            self._emit("on_batch_end", self.loop.epoch, batch, loss, rows.size)
            if self.stop_signal is not None and self.loop.batch < batches:
                self._emit("on_interrupt")
                raise Interrupted(self.stop_signal)
        self._finish_epoch(lr, time.perf_counter() - started)
        if self.stop_signal is not None:
            self._emit("on_interrupt")
            raise Interrupted(self.stop_signal)

    def _epoch_order(self) -> Array:
        """Row order for this epoch; the generator state at its start is kept for mid-epoch resume."""
        n = self.prepared.train.size
        if self.loop.batch == 0:
            self.loop.epoch_start_shuffle = self.shuffle_rng.bit_generator.state
        if not self.config.data.shuffle:
            return np.arange(n)
        if self.loop.batch > 0:  # resuming mid-epoch: replay this epoch's permutation
            replay = np.random.default_rng()
            replay.bit_generator.state = self.loop.epoch_start_shuffle
            order = replay.permutation(n)
            # the live generator is already past this permutation (its state was saved after it)
            return order
        return self.shuffle_rng.permutation(n)

    def _step(self, xb: Array, tb: Array, lr: float, decay_mask: list[bool], batch: int) -> float:
        dropout_rng = self.dropout_rng if self._uses_dropout else None
        if self.diagnostics is not None:
            trace = self.net.forward_pass(xb, dropout_rng)
            loss = float(self.net.per_sample_loss(trace, tb).mean())
            grads = self.net.backward(trace, tb)
            self.diagnostics.observe_forward(self.net, trace)
            before = [layer.W.copy() for layer in self.net.layers]
        else:
            loss, grads = self.net.gradients(xb, tb, dropout_rng)
        if not math.isfinite(loss):
            self._diverged(batch, loss)
        training = self.config.training
        if training.weight_decay:
            for grad, param, decays in zip(grads, self.params, decay_mask, strict=True):
                if decays:
                    grad += training.weight_decay * param  # L2: d/dW of (wd/2) ||W||^2
        if training.clip_norm is not None:
            clip_global_norm(grads, training.clip_norm)
        self.optimizer.update(self.params, grads, self.optimizer_state, lr, decay_mask)
        if self.diagnostics is not None:
            self.diagnostics.observe_update(self.net, grads, before)
        return loss

    @property
    def _uses_dropout(self) -> bool:
        return any(layer.dropout > 0 for layer in self.net.layers)

    def _finish_epoch(self, lr: float, seconds: float) -> None:
        train = self.prepared.train
        record: dict[str, Any] = {"epoch": self.loop.epoch + 1, "train_loss": self.loop.loss_sum / train.size}
        if self.prepared.validation is not None:
            metrics = evaluate(self.net, self.prepared.validation, self.prepared.task, self.n_classes)
            record["val_loss"] = metrics["loss"]
            key = headline_metric(self.prepared.task)
            record[f"val_{key}"] = metrics[key]
        record["lr"] = lr
        if self.diagnostics is not None:
            record.update(self.diagnostics.summary(self.net))
        record["seconds"] = seconds
        if not (math.isfinite(record["train_loss"]) and all(np.all(np.isfinite(p)) for p in self.params)):
            self._diverged(None, record["train_loss"])
        self.loop.epoch += 1
        self.loop.batch = 0
        self.loop.loss_sum = 0.0
        self.config.training.schedule.observe(self.loop.schedule, record)
        improved = self._track_best(record)
        self.history.append(record)
        self._emit("on_epoch_end", record, improved)

    # -- best epoch and early stopping --------------------------------------------------------
    def _recorded_metrics(self) -> set[str]:
        """History columns a monitor (early stopping, plateau schedule) may watch."""
        if self.prepared.validation is None:
            return {"train_loss"}
        return {"train_loss", "val_loss", f"val_{headline_metric(self.prepared.task)}"}

    def _check_monitor(self, key: str, monitor: str) -> None:
        known = self._recorded_metrics()
        if monitor not in known:
            has_validation = self.prepared.validation is not None
            raise ConfigError(
                f"{key}: {monitor!r} is not recorded in this run; choose one of: {', '.join(sorted(known))}",
                hint=None if has_validation else "set data.validation > 0 to monitor validation metrics",
            )

    def _monitor(self) -> tuple[str, bool]:
        training = self.config.training
        plateau_monitor = getattr(training.schedule, "monitor", None)
        if plateau_monitor is not None:
            self._check_monitor("training.schedule.monitor", plateau_monitor)
        stopping = training.early_stopping
        monitor = stopping.monitor if stopping else ("val_loss" if self.prepared.validation else "train_loss")
        self._check_monitor("training.early_stopping.monitor", monitor)
        mode = stopping.mode if stopping else "auto"
        maximize = mode == "max" or (mode == "auto" and monitor.endswith(("accuracy", "r2")))
        return monitor, maximize

    def _track_best(self, record: dict[str, Any]) -> bool:
        """Update the best epoch and the early-stopping counter; True when this epoch is the best."""
        value = record[self.monitor]
        loop = self.loop
        stopping = self.config.training.early_stopping
        min_delta = stopping.min_delta if stopping else 0.0
        sign = -1.0 if self.maximize else 1.0
        improved = loop.best_value is None or sign * value < sign * loop.best_value - min_delta
        if improved:
            loop.best_value, loop.best_epoch, loop.wait = value, loop.epoch, 0
            if stopping is not None:
                self.best_parameters = [p.copy() for p in self.params]
        else:
            loop.wait += 1
            if stopping is not None and loop.wait >= stopping.patience:
                loop.stopped_early = True
        return improved

    # -- failures ------------------------------------------------------------------------------
    def _diverged(self, batch: int | None, loss: float) -> None:
        where = f"epoch {self.loop.epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
        sample, _ = next(self.prepared.train.chunks(256))
        layer = first_nonfinite_layer(self.net, sample)
        detail = f"; the first non-finite values appear in layer {layer}" if layer else ""
        lr = self.config.training.learning_rate
        self._emit("on_failure")
        kept = (
            f"last.npz keeps epoch {self.loop.epoch}, the last with finite weights"
            if self.loop.epoch
            else "no epoch finished, so no checkpoint was written"
        )
        raise TrainingFailed(
            f"training diverged: the loss became {loss} at {where}{detail}",
            hint=f"lower the learning rate (now {lr:g}), "
            f"e.g. --set training.learning_rate={lr / 10:g}; {kept}",
        )

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)


class LayerDiagnostics:
    """Per-layer health over one epoch (``training.trace``): mean |gradient|, update/weight ratio,
    the fraction of dead relu units and of saturated logistic/tanh units."""

    def __init__(self, layers: int) -> None:
        self.layers = layers
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.grad = np.zeros(self.layers)
        self.ratio = np.zeros(self.layers)
        self.inactive = np.zeros(self.layers)

    def observe_forward(self, net: Network, trace: Any) -> None:
        for index, (layer, a) in enumerate(zip(net.layers, trace.a, strict=True)):
            name = layer.activation.name  # type: ignore[attr-defined]
            if name == "relu":  # a unit is dead on this batch when it is 0 for every row
                self.inactive[index] += float(np.mean(np.all(a <= 0, axis=0)))
            elif name in ("logistic", "tanh"):
                low, high = layer.activation.bounds()
                edge = 0.01 * (high - low)
                self.inactive[index] += float(np.mean((a < low + edge) | (a > high - edge)))

    def observe_update(self, net: Network, grads: list[Array], before: list[Array]) -> None:
        self.steps += 1
        for index, layer in enumerate(net.layers):
            self.grad[index] += float(np.mean(np.abs(grads[2 * index])))
            norm = float(np.linalg.norm(before[index])) or 1.0
            self.ratio[index] += float(np.linalg.norm(layer.W - before[index])) / norm

    def summary(self, net: Network) -> dict[str, float]:
        steps = max(self.steps, 1)
        record: dict[str, float] = {}
        for index, layer in enumerate(net.layers):
            prefix = f"l{index + 1}_"
            record[prefix + "grad"] = self.grad[index] / steps
            record[prefix + "update_ratio"] = self.ratio[index] / steps
            name = layer.activation.name  # type: ignore[attr-defined]
            if name == "relu":
                record[prefix + "dead"] = self.inactive[index] / steps
            elif name in ("logistic", "tanh"):
                record[prefix + "saturated"] = self.inactive[index] / steps
        self.reset()
        return record


def clip_global_norm(grads: list[Array], max_norm: float) -> float:
    """Scale all gradients together so their joint L2 norm is at most ``max_norm``."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads:
            g *= scale
    return norm


def first_nonfinite_layer(net: Network, x: Array) -> int | None:
    """1-based index of the first layer whose weights or outputs are not finite."""
    trace = net.forward_pass(x)
    for index, layer in enumerate(net.layers):
        if not (np.all(np.isfinite(layer.W)) and np.all(np.isfinite(layer.b))):
            return index + 1
        if not np.all(np.isfinite(trace.a[index])):
            return index + 1
    return None


# ---------------------------------------------------------------------------------------------
# Checkpoint assembly


def library_versions() -> dict[str, Any]:
    """numpy and BLAS versions and threads, recorded in meta for reproducibility."""
    info: dict[str, Any] = {"numpy": np.__version__}
    with contextlib.suppress(ImportError, AttributeError):  # numpy's SIMD level changes float rounding
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

        info["numpy_simd"] = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: pool.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for pool in threadpool_info()
        ]
    except ImportError:  # optional: without threadpoolctl we record numpy's version only
        pass
    return info


def data_location(source: str) -> str:
    """Absolute path of a data file (so eval/resume find it from any folder); builtins as they are."""
    return source if source.startswith("builtin:") else str(Path(source).resolve())


def make_checkpoint(trainer: Trainer, metrics: dict[str, Any] | None = None) -> Checkpoint:
    prepared = trainer.prepared
    state, optimizer_state = trainer.snapshot()
    meta = {
        "epoch": trainer.loop.epoch,
        "batch": trainer.loop.batch,
        "nnctl_version": __version__,
        "task": prepared.task,
        "data_source": prepared.source,
        "data_path": data_location(prepared.source),
        "metrics": metrics or {},
        "libraries": library_versions(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return Checkpoint(
        weights=[layer.W.copy() for layer in trainer.net.layers],
        biases=[layer.b.copy() for layer in trainer.net.layers],
        config=prepared.config,
        meta=meta,
        feature_names=prepared.feature_names,
        target_names=prepared.target_names,
        classes=prepared.encoder.classes,
        norm_shift=prepared.normalizer.shift,
        norm_scale=prepared.normalizer.scale,
        train_state=state,
        optimizer_state=optimizer_state,
    )


def trainer_from_checkpoint(
    checkpoint: Checkpoint,
    prepared: Prepared,
    callbacks: Sequence[Callback] = (),
    best: Checkpoint | None = None,
) -> Trainer:
    """Continue exactly where ``checkpoint`` stopped (same config, same data).

    ``best`` (the run's best.npz) restores the early-stopping candidate weights.
    """
    net = network_from_checkpoint(checkpoint)
    saved = checkpoint.train_state
    loop = LoopState(**saved["loop"])
    optimizer_state = {key: value.copy() for key, value in checkpoint.optimizer_state.items()}
    return Trainer(
        prepared,
        net,
        callbacks=callbacks,
        optimizer_state=optimizer_state,
        loop=loop,
        generator_states=saved["generators"],
        best_parameters=None
        if best is None
        else [p for pair in zip(best.weights, best.biases, strict=False) for p in pair],
    )
