"""The metric a run watches: one check, made before training starts, for early stopping, the plateau
schedule and a sweep's ranking; and whether that metric is maximised."""

from __future__ import annotations

from nnctl.config import Config
from nnctl.engine.metrics import higher_is_better, recorded_metrics
from nnctl.errors import ConfigError, did_you_mean


def check_monitor(where: str, monitor: str, task: str, has_validation: bool) -> None:
    """ConfigError naming ``where`` unless the run's history records ``monitor``."""
    known = recorded_metrics(task, has_validation)
    if monitor in known:
        return
    suggestion = did_you_mean(monitor, known)
    hint = f"it records: {', '.join(known)}"
    if not has_validation:
        hint += "; set data.validation > 0 to monitor validation metrics"
    raise ConfigError(
        f"{where}: {monitor!r} is not recorded in this run" + (f"; {suggestion}" if suggestion else ""),
        hint=hint,
    )


def best_epoch_monitor(config: Config, task: str, has_validation: bool) -> tuple[str, bool]:
    """(the metric that picks the best epoch, whether it is maximised), after checking every
    monitor the config names: early stopping's (else val_loss, or train_loss without validation)
    and a plateau schedule's."""
    training = config.training
    plateau = getattr(training.schedule, "monitor", None)
    if plateau is not None:
        check_monitor("training.schedule.monitor", plateau, task, has_validation)
    stopping = training.early_stopping
    monitor = stopping.monitor if stopping else ("val_loss" if has_validation else "train_loss")
    check_monitor("training.early_stopping.monitor", monitor, task, has_validation)
    mode = stopping.mode if stopping else "auto"
    return monitor, mode == "max" or (mode == "auto" and higher_is_better(monitor))
