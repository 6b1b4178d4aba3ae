"""Running the trials: submit, collect, retry trials whose worker was lost, record failures."""

from __future__ import annotations

import contextlib
import itertools
import queue
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nnctl.errors import NnctlError
from nnctl.sweep.plan import Plan, Trial
from nnctl.sweep.store import best_of, write_trial
from nnctl.sweep.worker import TrialOutcome, TrialTask, describe_exception


class Observer(Protocol):
    """What the runner reports as trials move; the CLI's live table implements it."""

    def refresh(self) -> None: ...
    def started(self, trial: Trial) -> None: ...
    def retrying(self, trial: Trial, note: str) -> None: ...
    def finished(self, trial: Trial) -> None: ...


@dataclass
class _Running:
    trial: Trial
    future: Any
    generation: int


class Runner:
    """Keeps the executor busy, records outcomes, retries lost trials."""

    def __init__(self, plan: Plan, executor: Any, out: Path, retries: int, display: Observer) -> None:
        self.plan, self.executor, self.out, self.retries, self.display = plan, executor, out, retries, display
        self.pending: deque[Trial] = deque(t for t in plan.trials if t.status != "done")
        self.running: dict[int, _Running] = {}
        self.finished: queue.Queue[int] = queue.Queue()
        self.tokens = itertools.count()
        self.idle_restarts = 0

    def run(self) -> None:
        while self.pending or self.running:
            self._fill()
            try:
                token = self.finished.get(timeout=0.25)
            except queue.Empty:
                self.display.refresh()
                continue
            entry = self.running.pop(token, None)
            if entry is not None:
                self._collect(entry)

    def _fill(self) -> None:
        while self.pending:
            trial = self.pending[0]
            if any(r.trial.isolate for r in self.running.values()):
                return
            if self.running and (trial.isolate or len(self.running) >= self.executor.capacity()):
                return
            config = (trial.stored or trial.config).model_dump(mode="json")
            task = TrialTask(trial.id, trial.name, config, trial.table_key, trial.attempts + 1)
            try:
                future = self.executor.submit(task)
            except Exception as exc:
                if not self.executor.is_lost(exc):
                    self.pending.popleft()
                    self._fail(trial, describe_exception(exc))
                    continue
                if self.running:  # the pool broke: its running futures will say so, then it restarts
                    return
                self.idle_restarts += 1  # broke while idle (a worker died between trials)
                if self.idle_restarts > 3:
                    where = self.executor.describe()
                    raise NnctlError(f"{where}: workers keep dying before any trial starts") from None
                self.executor.restart()
                continue
            self.idle_restarts = 0
            self.pending.popleft()
            trial.attempts += 1
            trial.status, trial.started = "running", time.monotonic()
            token = next(self.tokens)
            self.running[token] = _Running(trial, future, self.executor.generation)
            future.add_done_callback(lambda _f, token=token: self.finished.put(token))
            self.display.started(trial)

    def _collect(self, entry: _Running) -> None:
        trial = entry.trial
        exc = _exception_of(entry.future)
        if exc is None:
            self._record(trial, entry.future.result())
        elif self.executor.is_lost(exc):
            self._lost(entry, exc)
        else:
            self._fail(trial, describe_exception(exc))

    def _lost(self, entry: _Running, exc: BaseException) -> None:
        lost = [entry]
        if self.executor.breaks_all:  # every trial in this pool lost its process too
            doomed = [(t, r) for t, r in self.running.items() if r.generation == entry.generation]
            self.executor.wait([r.future for _, r in doomed], timeout=10)
            for token, running in doomed:
                del self.running[token]
                future = running.future
                if future.done() and _exception_of(future) is None:  # finished just before the break
                    self._record(running.trial, future.result())
                else:  # failed with the pool, or orphaned by it (a submit racing the break)
                    lost.append(running)
            self.executor.restart()
        reason = describe_exception(exc) if not self.executor.breaks_all else "its worker process died"
        if len(lost) > 1:  # cannot tell whose process died: re-run each alone, charging nobody yet
            for running in reversed(lost):
                running.trial.isolate = True
                self._requeue(running.trial, f"{reason} (re-running it alone)")
            return
        trial = entry.trial
        trial.lost += 1
        if trial.lost > self.retries:
            lives = f"{trial.lost} time{'s' * (trial.lost > 1)}"
            self._fail(trial, f"worker lost {lives}: {reason}")
            return
        trial.isolate = self.executor.breaks_all
        self._requeue(trial, f"{reason}; retry {trial.lost} of {self.retries}")

    def _requeue(self, trial: Trial, note: str) -> None:
        trial.status, trial.started = "pending", None
        self.pending.appendleft(trial)
        self.display.retrying(trial, note)

    def _fail(self, trial: Trial, error: str) -> None:
        trial.status, trial.error = "failed", error
        trial.seconds = time.monotonic() - trial.started if trial.started else None
        write_trial(self.out, trial, None, self.plan)
        self.display.finished(trial)

    def _record(self, trial: Trial, outcome: TrialOutcome) -> None:
        trial.status, trial.error, trial.seconds = outcome.status, outcome.error, outcome.seconds
        trial.value, trial.best_epoch = best_of(outcome.rows, self.plan.monitor, self.plan.maximize)
        trial.epochs = len(outcome.rows)
        write_trial(self.out, trial, outcome, self.plan)
        self.display.finished(trial)

    def abort(self) -> None:
        for entry in self.running.values():
            with contextlib.suppress(Exception):
                entry.future.cancel()
            entry.trial.status = "pending"
        self.running.clear()


def _exception_of(future: Any) -> BaseException | None:
    try:
        return future.exception()
    except BaseException as exc:  # cancelled, or the exception could not be fetched
        if isinstance(exc, KeyboardInterrupt):
            raise
        return exc
