"""``nnctl cv`` on the terminal: the folds run on the sweep's executors with its live display, then a
table of every fold's metrics with mean ± standard deviation."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnctl.cli.sweep import Display, Observers, _escape, print_data_notes
from nnctl.errors import NnctlError
from nnctl.sweep.cv import CvPlan, CvSummary, build_cv_plan, check_folds, summarize, write_cv
from nnctl.sweep.executors import check_executor_options, one_blas_thread_env, open_executor
from nnctl.sweep.runner import Runner
from nnctl.sweep.store import find_finished


def cv_main(
    config_path: Path,
    *,
    folds: int,
    out: Path | None,
    refit: bool,
    jobs: int | None,
    scheduler: str | None,
    dask_local: int | None,
    security: Any,
    retries: int,
    overrides: Sequence[str],
    quiet: bool,
    console: Any,
    tracker: Any = None,
) -> tuple[int, CvPlan, CvSummary, Path]:
    """Cross-validate a config; exit status 0 when every fold (and the refit) finished, else 1."""
    check_executor_options(jobs, scheduler, dask_local)
    check_folds(folds)
    if retries < 0:
        raise NnctlError(f"--retries {retries}: must be 0 or more")
    cv = build_cv_plan(config_path, folds, overrides, refit)
    plan = cv.plan
    out = out if out is not None else Path("runs") / f"{plan.base.name}-cv"
    if out.exists() and not out.is_dir():
        raise NnctlError(f"{out}: exists and is not a folder", hint="choose another --out")
    earlier = find_finished(out, plan)
    to_run = [t for t in plan.trials if t.status != "done"]
    display = Display(console, quiet, plan)
    tracker = tracker(plan) if tracker is not None else None  # the parent MLflow run
    executor: Any = None
    try:
        if to_run:
            executor = open_executor(
                plan.tables,
                len(to_run),
                jobs=jobs,
                scheduler=scheduler,
                dask_local=dask_local,
                security=security,
            )
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NnctlError(f"cannot create the cv folder {out}: {exc.strerror}") from None
        where = f"on {executor.describe()}" if executor is not None else "nothing left to run"
        done = f" ({earlier} done earlier)" if earlier else ""
        refit_note = " + a refit on all non-test rows" if refit else ""
        display.print(
            f"[bold]cv {_escape(plan.base.name or '')}[/]: {folds} folds{refit_note}{done}, "
            f"{_escape(where)} -> {_escape(str(out))}"
        )
        print_data_notes(display, plan)
        if executor is not None:
            runner = Runner(
                plan, executor, out, retries, display if tracker is None else Observers(display, tracker)
            )
            display.start()
            try:
                with one_blas_thread_env():
                    runner.run()
            except BaseException:
                runner.abort()
                raise
    except BaseException:
        display.stop()
        if executor is not None:
            executor.close(abort=True)
            executor = None
        raise
    finally:
        display.stop()
        if executor is not None:
            executor.close()
    summary = summarize(cv.folds, folds)
    refit_info = refit_result(cv)
    written = write_cv(out, summary, refit_info)
    ok = summary.complete and (cv.refit is None or cv.refit.status == "done")
    if tracker is not None:
        metrics = [(f"cv_mean_{k}", v, 0) for k, v in summary.mean.items()]
        metrics += [(f"cv_std_{k}", v, 0) for k, v in summary.std.items()]
        test = (refit_info or {}).get("test") or {}
        metrics += [(f"refit_test_{k}", float(v), 0) for k, v in test.items()]
        tracker.close(metrics, written, ok=ok)
        for error in tracker.store.errors:
            display.print(f"[yellow]warning:[/] {_escape(error)}")
    if not quiet:
        print_cv(console, summary, refit_info, out)
    return (0 if ok else 1), cv, summary, out


def refit_result(cv: CvPlan) -> dict[str, Any] | None:
    """The refit's folder, training rows and test-split metrics (when it finished)."""
    trial = cv.refit
    if trial is None or trial.folder is None:
        return None
    info: dict[str, Any] = {"folder": trial.folder.name, "status": trial.status}
    if trial.status != "done":
        info["error"] = trial.error
        return info
    from nnctl.evaluation import evaluation_report

    with contextlib.suppress(NnctlError):  # no test split (data.test = 0): nothing to report
        result = evaluation_report(trial.folder / "best.npz").result
        info["test"] = {k: v for k, v in result.items() if isinstance(v, float)}
        info["test"]["samples"] = result["samples"]
    return info


def print_cv(console: Any, summary: CvSummary, refit: dict[str, Any] | None, out: Path) -> None:
    from nnctl.cli.tables import Table

    table = Table(title=f"{summary.k}-fold cross-validation (each fold's last epoch)", title_justify="left")
    table.add_column("fold", justify="right")
    table.add_column("epoch", justify="right")
    for column in summary.columns:
        table.add_column(column, justify="right")
    for record in summary.folds:
        table.add_row(
            str(record["fold"]), str(record["epoch"]), *(f"{record[c]:.4f}" for c in summary.columns)
        )
    if summary.complete:
        table.add_section()
        table.add_row(
            "mean ± std", "", *(f"{summary.mean[c]:.4f} ± {summary.std[c]:.4f}" for c in summary.columns)
        )
    console.print(table)
    for failure in summary.failed:
        console.print(f"[red]failed[/] {_escape(failure)}")
    if refit is not None:
        if refit.get("status") == "done":
            test = refit.get("test") or {}
            shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if k != "samples")
            where = _escape(str(out / refit["folder"] / "best.npz"))
            console.print(
                f"refit on all non-test rows: {where}" + (f"; test split: {shown}" if shown else "")
            )
        else:
            console.print(f"[red]refit failed[/]: {_escape(str(refit.get('error', '')))}")
    console.print(f"written: {_escape(str(out / 'cv.csv'))}, {_escape(str(out / 'cv.json'))}")
