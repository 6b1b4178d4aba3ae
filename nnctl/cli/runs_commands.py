"""Commands over many runs: ``plot`` (one run's figures), ``sweep``, ``cv``, ``compare``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from nnctl.cli.common import (
    ConfigArg,
    DaskLocalOption,
    JobsOption,
    MlflowExperimentOption,
    MlflowOption,
    QuietOption,
    SetOption,
    Signals,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
    make_console,
    stop_now,
)

# ---------------------------------------------------------------------------------------------
# plot / sweep


def plot(
    run_dir: Annotated[Path, typer.Argument(help="Run folder (with history.csv).", show_default=False)],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the figures [default: RUN_DIR].")
    ] = None,
) -> None:
    """Figures of a run: loss and metric per epoch, and the learning rate (PNG and SVG)."""
    from nnctl.cli.plots import plot_run

    written = plot_run(run_dir, out or run_dir)
    for path in written:
        typer.echo(f"wrote {path}")


def sweep(
    config: ConfigArg,
    grid: Annotated[
        list[str] | None, typer.Option("--grid", help="KEY.PATH=[v1, v2, ...] (a YAML list). Repeatable.")
    ] = None,
    random: Annotated[int | None, typer.Option("--random", help="Sample N trials from the space.")] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed for --random sampling [default: the file's, else 0].")
    ] = None,
    monitor: Annotated[str | None, typer.Option(help="Metric that ranks trials [default: val_loss].")] = None,
    jobs: JobsOption = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, tcp://HOST:PORT.")] = None,
    dask_local: DaskLocalOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Sweep folder [default: runs/<name>-sweep].")
    ] = None,
    retries: Annotated[int, typer.Option(help="Retries of a trial whose worker was lost.")] = 1,
    set_: SetOption = None,
    quiet: QuietOption = False,
    folds: Annotated[
        int | None, typer.Option("--folds", help="Cross-validate every trial in K folds; rank by the mean.")
    ] = None,
    tls_ca_file: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    mlflow: MlflowOption = None,
    mlflow_experiment: MlflowExperimentOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace another sweep held by the sweep folder.")
    ] = False,
) -> None:
    """Train many variants of CONFIG (a grid or a random space), locally or on a Dask cluster."""
    from nnctl.cli.sweep import sweep_main

    tls = (tls_ca_file, tls_cert, tls_key)
    _run_until_interrupted(
        "sweep",
        "trials",
        lambda: sweep_main(
            config,
            grid=grid or [],
            random=random,
            seed=seed,
            monitor=monitor,
            folds=folds,
            force=force,
            **_workers(jobs, scheduler, dask_local, tls, retries),
            **_shared_options("sweep", out, set_, quiet, mlflow, mlflow_experiment),
        ),
    )


def _shared_options(
    command: str,
    out: Path | None,
    overrides: list[str] | None,
    quiet: bool,
    mlflow: str | None,
    mlflow_experiment: str | None,
) -> dict[str, Any]:
    """The options sweep and cv take alike: the folder, the --set overrides, output and tracking."""
    from nnctl.cli.tracking import runs_tracker

    return {
        "out": out,
        "overrides": overrides or [],
        "quiet": quiet,
        "console": make_console(),
        "tracker": runs_tracker(mlflow, mlflow_experiment, command),
    }


def _workers(
    jobs: int | None,
    scheduler: str | None,
    dask_local: int | None,
    tls: tuple[Path | None, ...],
    retries: int,
) -> dict[str, Any]:
    """Where sweep and cv run their trials or folds: local processes or a Dask cluster."""
    from nnctl.sweep.executors import tls_security

    security = tls_security(scheduler, *tls)
    return {
        "jobs": jobs,
        "scheduler": scheduler,
        "dask_local": dask_local,
        "security": security,
        "retries": retries,
    }


def _run_until_interrupted(command: str, parts: str, work: Callable[[], int]) -> NoReturn:
    """Exit with ``work()``'s status; SIGINT/SIGTERM stop it at once (exit 130/143), keeping the
    ``parts`` (trials, folds) that finished."""
    signals = Signals(stop_now)
    try:
        with signals:
            code = work()
    except KeyboardInterrupt:
        make_console(stderr=True).print(
            f"[yellow]{command} interrupted[/]: finished {parts} are kept; run again to resume"
        )
        raise typer.Exit(signals.exit_code) from None
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------
# cv


def cv(
    config: ConfigArg,
    folds: Annotated[
        int, typer.Option("--folds", "-k", help="Number of folds (stratified for classes).")
    ] = 5,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder [default: runs/<name>-cv].")] = None,
    refit: Annotated[
        bool, typer.Option("--refit", help="Also train on all non-test rows: the model to use (DIR/refit).")
    ] = False,
    jobs: JobsOption = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, tls://HOST:PORT (or tcp://).")
    ] = None,
    dask_local: DaskLocalOption = None,
    tls_ca_file: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    retries: Annotated[int, typer.Option(help="Retries of a fold whose worker was lost.")] = 1,
    set_: SetOption = None,
    quiet: QuietOption = False,
    mlflow: MlflowOption = None,
    mlflow_experiment: MlflowExperimentOption = None,
) -> None:
    """K-fold cross-validation: every fold a run folder; per-fold metrics, mean and std in cv.csv/cv.json."""
    from nnctl.cli.cv import cv_main

    tls = (tls_ca_file, tls_cert, tls_key)
    _run_until_interrupted(
        "cv",
        "folds",
        lambda: cv_main(
            config,
            folds=folds,
            refit=refit,
            **_workers(jobs, scheduler, dask_local, tls, retries),
            **_shared_options("cv", out, set_, quiet, mlflow, mlflow_experiment),
        )[0],
    )


# ---------------------------------------------------------------------------------------------
# compare


def compare(
    run_dirs: Annotated[
        list[Path], typer.Argument(metavar="RUN_DIR...", help="Run folders (train, sweep trial or cv fold).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write the runs' learning curves, overlaid (PNG/SVG/PDF).")
    ] = None,
) -> None:
    """Compare runs: best and final metrics, the config keys that differ, overlaid learning curves."""
    from nnctl.compare import compare_runs, comparison_json

    comparison = compare_runs(run_dirs)
    if plot is not None:
        from nnctl.cli.plots import plot_comparison

        plot_comparison(comparison, plot)
    if as_json:
        typer.echo(json.dumps(comparison_json(comparison)))
        return
    from nnctl.cli.report import print_comparison

    print_comparison(make_console(), comparison)
    if plot is not None:
        typer.echo(f"wrote {plot}")
