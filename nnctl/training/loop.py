"""The training loop: minibatch gradient descent over a prepared dataset, with events.

The loop only computes; it never prints or writes files. Everything else (progress display, run
folder, checkpoints) plugs in as a ``Callback``. One seed drives everything through independent
streams spawned from ``numpy.random.SeedSequence(seed)``: weights, splits, shuffling, dropout.
All loop state (optimizer arrays, generator states, position in the epoch, schedule and
early-stopping state) is captured by ``Trainer.snapshot()``, so a resumed run is bit-identical.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from nnctl.data.arrays import release_pages
from nnctl.engine.metrics import headline_metric
from nnctl.engine.network import Network
from nnctl.engine.optimizers import Optimizer, Scratch
from nnctl.engine.transforms import gradient_transforms
from nnctl.errors import TrainingFailed
from nnctl.training.diagnostics import LayerDiagnostics
from nnctl.training.evaluate import evaluate
from nnctl.training.monitor import best_epoch_monitor
from nnctl.training.prepare import Prepared, random_streams
from nnctl.training.state import LoopState

Array = np.ndarray


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
        self.scratch = Scratch()  # this trainer's temporaries for the optimizer's updates
        training = self.config.training
        self.transforms = gradient_transforms(training.weight_decay, training.clip_norm)
        self.transform_state = self.transforms.init(self.params)  # stateless transforms: nothing to save
        self.loop = loop or LoopState(schedule=self.config.training.schedule.initial_state())
        streams = random_streams(self.config.seed)
        self.shuffle_rng, self.dropout_rng = streams["shuffle"], streams["dropout"]
        if generator_states:
            self.shuffle_rng.bit_generator.state = generator_states["shuffle"]
            self.dropout_rng.bit_generator.state = generator_states["dropout"]
        self.history: list[dict[str, Any]] = []
        self.stop_signal: str | None = None
        self.best_parameters = best_parameters
        self.monitor, self.maximize = best_epoch_monitor(
            self.config, prepared.task, prepared.validation is not None
        )
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
        state = {
            "loop": self.loop.to_json(),
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
        self.transforms.update(grads, self.transform_state, self.params, decay_mask)
        self.optimizer.update(self.params, grads, self.optimizer_state, lr, decay_mask, self.scratch)
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


def first_nonfinite_layer(net: Network, x: Array) -> int | None:
    """1-based index of the first layer whose weights or outputs are not finite."""
    trace = net.forward_pass(x)
    for index, layer in enumerate(net.layers):
        if not (np.all(np.isfinite(layer.W)) and np.all(np.isfinite(layer.b))):
            return index + 1
        if not np.all(np.isfinite(trace.a[index])):
            return index + 1
    return None
