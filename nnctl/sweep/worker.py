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
from nnctl.config import validate_config
from nnctl.data.table import Table
from nnctl.data.tabular import TabularData
from nnctl.errors import NnctlError
from nnctl.runs import RunWriter
from nnctl.training.loop import Callback, Trainer
from nnctl.training.prepare import build_network, prepare_loaded

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


class MemoryStorage:
    """A ``RunStorage`` for a trial on a worker: the last and best checkpoints kept in memory (the
    writer's rows are the history), sent back to the client, which writes the trial's folder."""

    def __init__(self) -> None:
        self.last: Checkpoint | None = None
        self.best: Checkpoint | None = None

    def save_checkpoint(self, which: str, checkpoint: Checkpoint) -> None:
        if which == "last":
            self.last = checkpoint
        else:
            self.best = checkpoint

    def save_history(self, rows: list[dict[str, Any]]) -> None:
        pass  # RunWriter.rows is the history

    def save_config(self, text: str) -> None:
        pass  # the client writes the trial's config.yaml


_BLAS_PINNED = False


def _pin_blas() -> None:
    """One BLAS thread in this worker process, for good (restoring would race other threads)."""
    global _BLAS_PINNED
    if _BLAS_PINNED:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    _BLAS_PINNED = True


def run_trial(
    task: TrialTask, data: Table | TabularData, trial_callbacks: TrialCallbacks | None = None
) -> TrialOutcome:
    """Train one trial in this process on ``data`` (as ``load_data`` read it, never changed here),
    prepared and built exactly as ``nnctl train`` does; never raises for a failing trial (the outcome
    says so)."""
    _pin_blas()
    started = time.perf_counter()
    storage = MemoryStorage()
    writer = RunWriter(storage=storage, flush_seconds=math.inf)
    status, error = "done", ""
    try:
        config = validate_config(task.config, task.name)
        prepared = prepare_loaded(config, data)
        net = build_network(config, prepared.train.n_features, class_weights=prepared.class_weights)
        callbacks = [writer, *(trial_callbacks(task) if trial_callbacks is not None else ())]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a diverging trial's
            Trainer(prepared, net, callbacks=callbacks).fit()  # error message says it all
    except Exception as exc:
        status, error = "failed", describe_exception(exc)
    return TrialOutcome(
        status,
        error,
        writer.rows,
        storage.last,
        storage.best,
        time.perf_counter() - started,
        f"{socket.gethostname()}:{os.getpid()}",
    )


def describe_exception(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, NnctlError) else f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split())


_WORKER_TABLES: dict[str, Table | TabularData] = {}


def init_pool_worker(tables: dict[str, Table | TabularData]) -> None:
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
