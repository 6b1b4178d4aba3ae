"""Progress display for ``nnctl train``: a live Rich bar on a terminal, plain lines otherwise.

Both are training callbacks; the loop never prints.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from nnctl.training.loop import Callback, Trainer


def format_record(record: dict[str, Any]) -> str:
    """``epoch 3/30  train_loss 0.4123  val_loss 0.3911  val_accuracy 0.9120  lr 0.1  1.2s``."""
    parts = []
    for key, value in record.items():
        if key in ("epoch", "seconds"):
            continue
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts) + f"  {record.get('seconds', 0.0):.2f}s"


class SamplesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.fields.get("samples_per_second")
        return Text(f"{speed:,.0f} samples/s" if speed else "", style="cyan")


def worth_printing(epoch: int, epochs: int) -> bool:
    """At most ~50 epoch lines per run: every epoch of short runs, a sample of long ones."""
    return epochs <= 50 or epoch % max(epochs // 50, 1) == 0 or epoch in (1, epochs)


class RichProgress(Callback):
    """Bars over epochs and over the batches of the current epoch, with ETA, samples/s and loss."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            SamplesPerSecond(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.epochs_task: Any = None
        self.batch_task: Any = None
        self.samples = 0
        self.loss_sum = 0.0
        self.started = 0.0

    def on_train_start(self, trainer: Trainer) -> None:
        self.progress.start()
        epochs = trainer.config.training.epochs
        self.epochs_task = self.progress.add_task(
            "epochs", total=epochs, completed=trainer.loop.epoch, loss="-", samples_per_second=None
        )
        self.batch_task = self.progress.add_task("batches", total=1, loss="-", samples_per_second=None)

    def on_epoch_start(self, trainer: Trainer, epoch: int, batches: int) -> None:
        self.samples, self.loss_sum, self.started = 0, 0.0, time.perf_counter()
        self.progress.reset(self.batch_task, total=batches, completed=trainer.loop.batch)
        self.progress.update(self.batch_task, description=f"epoch {epoch + 1}")

    def on_batch_end(self, trainer: Trainer, epoch: int, batch: int, loss: float, samples: int) -> None:
        self.samples += samples
        self.loss_sum += loss * samples
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(
            self.batch_task,
            advance=1,
            loss=f"{self.loss_sum / self.samples:.4f}",
            samples_per_second=self.samples / elapsed,
        )

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        self.progress.update(self.epochs_task, advance=1, loss=f"{record['train_loss']:.4f}")
        epochs = trainer.config.training.epochs
        if not worth_printing(record["epoch"], epochs):
            return
        mark = " [green]*[/]" if improved else ""
        self.progress.console.print(f"epoch {record['epoch']}/{epochs}  {format_record(record)}{mark}")

    def on_interrupt(self, trainer: Trainer) -> None:
        self.progress.stop()

    def on_train_end(self, trainer: Trainer) -> None:
        self.progress.stop()


class PlainProgress(Callback):
    """One line per epoch, for logs and pipes (no control characters)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        epochs = trainer.config.training.epochs
        if not worth_printing(record["epoch"], epochs):
            return
        mark = " *" if improved else ""
        self.console.print(
            f"epoch {record['epoch']}/{epochs}  {format_record(record)}{mark}", highlight=False
        )


SPARK_CHARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """A terminal sparkline of a curve (e.g. the training loss per epoch)."""
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    return "".join(SPARK_CHARS[min(int((v - low) / span * (len(SPARK_CHARS) - 1)), 7)] for v in finite)
