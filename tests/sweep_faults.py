"""Faults the sweep tests inject into trials through ``sweep_main(trial_callbacks=...)``.

Spawned pool workers and Dask workers unpickle these by module name, so they live in a module of
their own (importable from ``tests/``), not inside a test function.
"""

from __future__ import annotations

import functools
import os
import signal
from typing import Any

from nnctl.sweep.worker import TrialCallbacks, TrialTask
from nnctl.training.loop import Callback, Trainer


class KillOnce(Callback):
    """The first trial to create the marker file kills its own worker process after epoch 1."""

    def __init__(self, marker: str, name: str) -> None:
        self.marker, self.name = marker, name

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        if record["epoch"] != 1:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, self.name.encode())
        os.close(fd)
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        os._exit(137)  # where SIGKILL does not exist


def _kill_once(marker: str, task: TrialTask) -> list[Callback]:
    return [KillOnce(marker, task.name)]


def kill_one_worker(marker: str) -> TrialCallbacks:
    """A hook that kills the worker of whichever trial first finishes an epoch (once per marker)."""
    return functools.partial(_kill_once, marker)
