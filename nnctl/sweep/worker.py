"""The worker side: one trial trained in memory; the history and checkpoints go back to the client.

Workers pin BLAS to one thread (as ``nnctl train --deterministic`` does), so a trial's weights are
bit-identical to the same config trained alone, whichever executor ran it."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnctl import __version__
from nnctl.checkpoint import Checkpoint
from nnctl.config import (
    validate_config,
)
from nnctl.data.table import Table
from nnctl.errors import NnctlError
from nnctl.runs import RunFolder, RunWriter
from nnctl.training.loop import Callback, Trainer
from nnctl.training.prepare import build_network, prepare_table

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

#: Extra training callbacks for one trial, made on the worker from its task: the hook through which
#: a caller (a test injecting a fault, say) plugs into every trial. It travels to the workers with
#: each task, so it must pickle: a module-level function, or a functools.partial of one.
TrialCallbacks = Callable[["TrialTask"], Sequence[Callback]]


@dataclass
class TrialTask:
    id: str
    name: str
    config: dict[str, Any]  # the resolved config as JSON-able data
    table_key: str
    attempt: int = 1


@dataclass
class TrialOutcome:
    status: str  # done | failed
    error: str
    rows: list[dict[str, Any]]
    last: Checkpoint | None
    best: Checkpoint | None
    seconds: float
    worker: str


class _MemoryWriter(RunWriter):
    """``RunWriter``'s choice of last/best checkpoints and history rows, kept in memory."""

    def __init__(self) -> None:
        super().__init__(RunFolder("."), flush_seconds=math.inf)
        self.last: Checkpoint | None = None
        self.best: Checkpoint | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        pass

    def on_interrupt(self, trainer: Trainer) -> None:
        self.flush()

    def flush(self) -> None:
        if self.pending_best is not None:
            self.best = self.pending_best
        if self.pending_last is not None:
            self.last = self.pending_last
        self.pending_last = self.pending_best = None


_BLAS_PINNED = False


def _pin_blas() -> None:
    """One BLAS thread in this worker process, for good (restoring would race other threads)."""
    global _BLAS_PINNED
    if _BLAS_PINNED:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    _BLAS_PINNED = True


def run_trial(task: TrialTask, table: Table, trial_callbacks: TrialCallbacks | None = None) -> TrialOutcome:
    """Train one trial in this process; never raises for a failing trial (the outcome says so)."""
    _pin_blas()
    started = time.perf_counter()
    writer = _MemoryWriter()
    status, error = "done", ""
    try:
        config = validate_config(task.config, task.name)
        prepared = prepare_table(config, table)
        net = build_network(config, prepared.train.n_features)
        callbacks = [writer, *(trial_callbacks(task) if trial_callbacks is not None else ())]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a diverging trial's
            Trainer(prepared, net, callbacks=callbacks).fit()  # error message says it all
    except Exception as exc:
        status, error = "failed", describe_exception(exc)
    return TrialOutcome(
        status,
        error,
        writer.rows,
        writer.last,
        writer.best,
        time.perf_counter() - started,
        f"{socket.gethostname()}:{os.getpid()}",
    )


def describe_exception(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, NnctlError) else f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split())


_WORKER_TABLES: dict[str, Table] = {}


def init_pool_worker(tables: dict[str, Table]) -> None:
    """Local pool worker: Ctrl-C is the client's business; one BLAS thread; the data, once."""
    with contextlib.suppress(ValueError):  # not the main thread (cannot happen in a pool worker)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in BLAS_ENV:
        os.environ[name] = "1"
    _pin_blas()
    _WORKER_TABLES.update(tables)


def run_pooled(task: TrialTask, trial_callbacks: TrialCallbacks | None = None) -> TrialOutcome:
    return run_trial(task, _WORKER_TABLES[task.table_key], trial_callbacks)


def worker_version() -> str:
    return __version__
