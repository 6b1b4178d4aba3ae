"""``nnctl sweep`` on the terminal: a live Rich table while trials run, the ranking at the end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnctl.errors import NnctlError
from nnctl.runs import FolderLock
from nnctl.sweep.cv import check_folds, expand_folds, score_trials
from nnctl.sweep.executors import check_executor_options, one_blas_thread_env, open_executor
from nnctl.sweep.plan import Plan, Trial, build_plan
from nnctl.sweep.runner import Runner
from nnctl.sweep.store import claim_folder, find_finished, ranked, write_best, write_space, write_summary
from nnctl.sweep.worker import TrialCallbacks


class Display:
    def __init__(self, console: Any, quiet: bool, plan: Plan) -> None:
        self.console, self.quiet, self.plan = console, quiet, plan
        self.live: Any = None
        self.to_run = sum(t.status != "done" for t in plan.trials)
        self.count = 0

    def print(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False)

    def start(self) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        from rich.live import Live

        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
        self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def started(self, trial: Trial) -> None:
        self.refresh()

    def retrying(self, trial: Trial, note: str) -> None:
        self._line(f"[yellow]lost[/]   {trial.name}: {_escape(note)}")

    def finished(self, trial: Trial) -> None:
        self.count += 1
        progress = f"[{self.count}/{self.to_run}]"
        if trial.status == "done":
            value = "n/a" if trial.value is None else f"{trial.value:.4g}"
            text = (
                f"[green]done[/]   {trial.name}  {self.plan.monitor} {value} "
                f"(epoch {trial.best_epoch})  {trial.seconds or 0:.1f}s  {progress}"
            )
        else:
            text = f"[red]failed[/] {trial.name}: {_escape(trial.error)}  {progress}"
        self._line(text)

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.live is not None:
            self.live.console.print(text, highlight=False)
            self.refresh()
        else:
            self.console.print(text, highlight=False)

    def _render(self) -> Any:
        from nnctl.cli.tables import Table as RichTable

        trials = self.plan.trials
        counts = {s: sum(t.status == s for t in trials) for s in ("running", "done", "failed", "pending")}
        title = (
            f"sweep: {counts['done']} done, {counts['failed']} failed, "
            f"{counts['running']} running, {counts['pending']} waiting"
        )
        table = RichTable(title=title, title_justify="left")
        table.add_column("trial", overflow="fold")
        table.add_column("status", no_wrap=True)
        for column in (self.plan.monitor, "best epoch", "time"):
            table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
        limit = max(8, (self.console.height or 30) - 8)
        shown = trials
        if len(trials) > limit:
            running = [t for t in trials if t.status == "running"]
            recent = [t for t in trials if t.status in ("done", "failed") and not t.earlier]
            shown = sorted(running + recent[-max(0, limit - len(running)) :], key=lambda t: t.index)
        now = time.monotonic()
        styles = {"done": "green", "failed": "red", "running": "cyan", "pending": "dim"}
        for t in shown:
            elapsed = t.seconds if t.status in ("done", "failed") else None
            if t.status == "running" and t.started is not None:
                elapsed = now - t.started
            status = "done (earlier)" if t.earlier else ("waiting" if t.status == "pending" else t.status)
            table.add_row(
                t.name,
                f"[{styles[t.status]}]{status}[/]",
                "" if t.value is None else f"{t.value:.4g}",
                "" if t.best_epoch is None else str(t.best_epoch),
                "" if elapsed is None else f"{elapsed:.1f}s",
            )
        return table


class Observers:
    """Several observers of one runner (the live display, a tracker), told in order."""

    def __init__(self, *observers: Any) -> None:
        self.observers = observers

    def refresh(self) -> None:
        for observer in self.observers:
            getattr(observer, "refresh", lambda: None)()

    def started(self, trial: Trial) -> None:
        for observer in self.observers:
            getattr(observer, "started", lambda _t: None)(trial)

    def retrying(self, trial: Trial, note: str) -> None:
        for observer in self.observers:
            getattr(observer, "retrying", lambda _t, _n: None)(trial, note)

    def finished(self, trial: Trial) -> None:
        for observer in self.observers:
            getattr(observer, "finished", lambda _t: None)(trial)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def print_ranking(console: Any, plan: Plan, out: Path, best: Path | None, top: int = 10) -> None:
    from nnctl.cli.tables import Table as RichTable

    order = ranked(plan)
    direction = "higher" if plan.maximize else "lower"
    table = RichTable(title=f"sweep results: ranked by {plan.monitor} ({direction} is better)")
    table.add_column("rank", justify="right", no_wrap=True, min_width=4)
    table.add_column("trial", overflow="fold")  # never cut a trial's name: fold it
    for column in (plan.monitor, "best epoch", "time"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    for rank, t in enumerate(order[:top], start=1):
        seconds = "" if t.seconds is None else f"{t.seconds:.1f}s"
        table.add_row(str(rank), t.name, f"{t.value:.4g}", str(t.best_epoch), seconds)
    console.print(table)
    if len(order) > top:
        console.print(f"... and {len(order) - top} more in {_escape(str(out / 'summary.csv'))}")
    failed = [t for t in plan.trials if t.status == "failed"]
    if failed:
        console.print(f"[red]{len(failed)} failed[/]: " + ", ".join(t.name for t in failed))
    unscored = [t for t in plan.trials if t.status == "done" and t.value is None]
    if unscored:
        console.print(f"[yellow]no {plan.monitor} recorded[/]: " + ", ".join(t.name for t in unscored))
    console.print(f"summary: {_escape(str(out / 'summary.csv'))}")
    if best is not None:
        console.print(f"best config: {_escape(str(best))}  (train it with: nnctl train {_escape(str(best))})")


def sweep_main(
    config_path: Path,
    *,
    grid: Sequence[str],
    random: int | None,
    seed: int | None,
    monitor: str | None,
    jobs: int | None,
    scheduler: str | None,
    dask_local: int | None,
    out: Path | None,
    retries: int,
    overrides: Sequence[str],
    quiet: bool,
    console: Any,
    trial_callbacks: TrialCallbacks | None = None,
    folds: int | None = None,
    security: Any = None,
    tracker: Any = None,
    force: bool = False,
) -> int:
    """Run a sweep; 0 when at least one trial finished, 1 when none did. Bad input: ``NnctlError``.

    ``trial_callbacks`` adds training callbacks to every trial, on its worker (see ``TrialCallbacks``);
    ``folds``: every trial is cross-validated in K folds and ranked by the folds' mean (nnctl.sweep.cv);
    ``security``: TLS for a tls:// scheduler; ``tracker``: called with the plan, returns an observer told of
    each finished trial and closed at the end (nnctl.tracking.RunsTracker). The sweep folder is locked for
    the whole sweep (a second sweep into it is refused at once) and records which sweep it holds:
    another sweep is refused unless ``force``."""
    check_executor_options(jobs, scheduler, dask_local)
    if folds is not None:
        check_folds(folds)
    if retries < 0:
        raise NnctlError(f"--retries {retries}: must be 0 or more")
    if random is not None and random < 1:
        raise NnctlError(f"--random {random}: need at least one trial")

    plan = build_plan(config_path, grid=grid, random=random, seed=seed, monitor=monitor, overrides=overrides)
    out = out if out is not None else Path("runs") / f"{plan.base.name}-sweep"
    with FolderLock(out, "sweep"):
        groups: dict[str, list[Trial]] = {}
        run_plan = plan
        if folds is not None:
            run_plan, groups = expand_folds(plan, folds, out)
        claim_folder(out, run_plan, force)
        earlier = (
            find_finished(out, plan) if folds is None else sum(t.status == "done" for t in run_plan.trials)
        )
        tracker = tracker(plan) if tracker is not None else None  # the parent MLflow run
        display = _run_sweep(
            plan,
            run_plan,
            out,
            earlier=earlier,
            folds=folds,
            open_pool=lambda tasks: open_executor(
                plan.tables,
                tasks,
                jobs=jobs,
                scheduler=scheduler,
                dask_local=dask_local,
                security=security,
                trial_callbacks=trial_callbacks,
            ),
            retries=retries,
            quiet=quiet,
            console=console,
            tracker=tracker,
        )
        if folds is not None:
            score_trials(plan, groups, out)
        return _finish_sweep(plan, out, quiet, console, display, tracker)


def _run_sweep(
    plan: Plan,
    run_plan: Plan,
    out: Path,
    *,
    earlier: int,
    folds: int | None,
    open_pool: Any,
    retries: int,
    quiet: bool,
    console: Any,
    tracker: Any,
) -> Display:
    """Train ``run_plan``'s unfinished trials; returns the display, for the closing lines."""
    to_run = [t for t in run_plan.trials if t.status != "done"]
    display = Display(console, quiet, run_plan)
    executor: Any = None
    runner: Runner | None = None
    try:
        if to_run:
            executor = open_pool(len(to_run))
        write_space(out, run_plan)
        where = f"on {executor.describe()}" if executor is not None else "nothing left to run"
        notes = [f"{earlier} done earlier"] if earlier else []
        if plan.duplicates:
            notes.append(f"{plan.duplicates} duplicate{'s' * (plan.duplicates > 1)} dropped")
        direction = "higher" if plan.maximize else "lower"
        display.print(
            f"[bold]sweep {_escape(plan.base.name or '')}[/]: {len(plan.trials)} trials"
            + (f" x {folds} folds (ranked by the folds' mean)" if folds else "")
            + (f" ({', '.join(notes)})" if notes else "")
            + f", {_escape(where)} -> {_escape(str(out))}; ranking by {plan.monitor} ({direction} is better)"
        )
        print_data_notes(display, plan)
        if executor is not None:
            observer = display if tracker is None else Observers(display, tracker)
            runner = Runner(run_plan, executor, out, retries, observer)
            display.start()
            with one_blas_thread_env():
                runner.run()
    except BaseException:
        display.stop()
        if runner is not None:
            runner.abort()
        if executor is not None:
            executor.close(abort=True)
            executor = None
        with contextlib.suppress(Exception):
            if runner is not None:  # trials ran: keep what they finished summarised
                write_summary(out, plan)
        raise
    finally:
        display.stop()
        if executor is not None:
            executor.close()
    return display


def print_data_notes(display: Display, plan: Plan) -> None:
    """What reading did to the data and what looks wrong with them, as ``nnctl train`` says it."""
    for note in plan.notes:
        display.print(f"note: {_escape(note)}")
    for warning in plan.warnings:
        display.print(f"[yellow]warning:[/] {_escape(warning)}")


def _finish_sweep(plan: Plan, out: Path, quiet: bool, console: Any, display: Display, tracker: Any) -> int:
    """summary.csv, best.yaml, the tracker's parent run, the ranking; the exit status."""
    write_summary(out, plan)
    order = ranked(plan)
    best = write_best(out, plan, order[0]) if order else None
    if best is None:
        (out / "best.yaml").unlink(missing_ok=True)  # never leave an earlier winner behind
    if tracker is not None:
        value = [(f"best_{plan.monitor}", order[0].value, 0)] if order and order[0].value is not None else []
        tracker.close(value, [out / "summary.csv", *([best] if best else [])], ok=bool(order))
        for error in tracker.store.errors:
            display.print(f"[yellow]warning:[/] {_escape(error)}")
    if not quiet:
        print_ranking(console, plan, out, best)
    if any(t.status == "done" for t in plan.trials):
        return 0
    _error_console().print(  # even under --quiet: the exit status alone does not say why
        f"[bold red]sweep failed:[/] no trial finished ({len(plan.trials)} failed); "
        f"their errors are in {_escape(str(out / 'summary.csv'))}"
    )
    return 1


def _error_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)
