"""The ``nnctl`` command: parse arguments, call ``nnctl.workflows``, render with Rich.

Heavy imports (numpy, pydantic, the engine) happen inside the commands, so ``--help`` and
``--version`` start fast. Bad input of any kind ends in one message and exit status 2, a failed
run in exit 1, an interrupt in 130 (SIGINT) or 143 (SIGTERM); never a traceback.

Two mechanisms serve every command; a new command uses both by doing nothing special:

* Errors: a command lets ``NnctlError`` (from ``nnctl.errors``) propagate. The app's group class,
  ``_Commands``, catches it around every command in one place and renders it (``_fail``): one
  message, exit status ``exc.exit_code``. Add a command with ``@app.command()`` as usual.
* Signals: a command that must react to SIGINT/SIGTERM wraps its work in ``with _Signals(handler)``,
  where ``handler(name)`` is called with "SIGINT" or "SIGTERM" (it may raise KeyboardInterrupt to
  stop at once); the previous handlers come back on exit and ``received`` lists what arrived.
  Exit status: 143 after SIGTERM, 130 after SIGINT (``_Signals.exit_code``).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from nnctl import __version__


class _Commands(TyperGroup):
    """Runs every command with the one ``NnctlError`` handler: a domain error becomes its message
    and exit status (2 for bad input, 1 for a failed run), never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        from nnctl.errors import NnctlError

        try:
            return super().invoke(ctx)
        except NnctlError as exc:
            raise _fail(exc) from None


app = typer.Typer(
    name="nnctl",
    cls=_Commands,
    help="Train dense neural networks from a YAML config.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
CheckpointArg = Annotated[
    Path, typer.Argument(help="Checkpoint (.npz) written by nnctl train.", show_default=False)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: KEY.PATH=VALUE (VALUE is YAML). Repeatable."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
MlflowOption = Annotated[
    str | None,
    typer.Option("--mlflow", help="Track in MLflow: sqlite:///FILE.db or http://HOST:PORT (nnctl[mlflow])."),
]
MlflowExperimentOption = Annotated[
    str | None, typer.Option("--mlflow-experiment", help="MLflow experiment [default: the config's name].")
]
TlsCaOption = Annotated[
    Path | None, typer.Option("--tls-ca-file", help="tls:// scheduler: the CA certificate (PEM).")
]
TlsCertOption = Annotated[
    Path | None, typer.Option("--tls-cert", help="tls:// scheduler: this client's certificate.")
]
TlsKeyOption = Annotated[
    Path | None, typer.Option("--tls-key", help="tls:// scheduler: this client's private key.")
]


UNWRAPPED_WIDTH = 10_000  # piped or logged output: lines as long as they need to be


def _console(stderr: bool = False) -> Any:
    """A terminal's width on a terminal; elsewhere (pipes, logs) no width limit at all, so Rich never
    crops or wraps what it prints to 80 columns. Tables fold long cells rather than cut them."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = UNWRAPPED_WIDTH
    return console


def _fail(exc: BaseException) -> typer.Exit:
    """Render a domain error (one message, no traceback) and pick its exit status."""
    from rich.markup import escape

    code = getattr(exc, "exit_code", 2)
    label = "training failed" if code == 1 else "error"
    _console(stderr=True).print(f"[bold red]{label}:[/] {escape(str(exc))}")
    return typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"nnctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Train dense neural networks from a YAML config."""


# ---------------------------------------------------------------------------------------------
# train


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Argument(help="YAML config file (optional with --resume).", show_default=False)
    ] = None,
    set_: SetOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder [default: runs/<name>].")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue from this checkpoint, bit-exactly.")] = None,
    init_from: Annotated[
        Path | None, typer.Option(help="Start from this checkpoint's weights (fine-tune).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a run folder that holds a checkpoint.")
    ] = False,
    deterministic: Annotated[
        bool, typer.Option(help="Pin BLAS to one thread: identical results across thread counts.")
    ] = False,
    trace: Annotated[bool, typer.Option("--trace", help="Per-layer diagnostics in history.csv.")] = False,
    quiet: QuietOption = False,
    mlflow: MlflowOption = None,
    mlflow_experiment: MlflowExperimentOption = None,
) -> None:
    """Train a network; writes last.npz, best.npz, history.csv and config.yaml to the run folder."""
    from rich.markup import escape

    from nnctl.cli.render import print_start, print_summary, progress_callbacks
    from nnctl.cli.tracking import finish_tracking, training_tracker
    from nnctl.training.loop import Interrupted
    from nnctl.workflows import blas_threads, finish_training, plan_training, prepare_for_plan, run_training

    console = _console()
    trainer = plan = None
    try:
        plan = plan_training(
            config,
            [*(set_ or []), *(["training.trace=true"] if trace else [])],
            out=out,
            resume=resume,
            force=force,
            init_from=init_from,
            deterministic=deterministic,
        )
        prepared = prepare_for_plan(plan)
        if not quiet:
            print_start(console, plan, prepared)
        tracker = training_tracker(mlflow, mlflow_experiment, plan.config.name)
        extra = [tracker] if tracker is not None else []
        trainer, writer = run_training(plan, prepared, [*progress_callbacks(console, quiet), *extra])
        if trainer.loop.stopped_early:
            console.print(
                f"nothing to do: this run stopped early at epoch {trainer.loop.epoch} "
                f"(best epoch {trainer.loop.best_epoch}); to train on from its best weights, start a new run "
                f"with --init-from {Path(resume or '').parent / 'best.npz'}"
            )
            return
        if trainer.loop.epoch >= plan.config.training.epochs:
            console.print(
                f"nothing to do: the checkpoint has completed {trainer.loop.epoch} of "
                f"{plan.config.training.epochs} epochs; extend with --set training.epochs=N"
            )
            return
        with blas_threads(plan.config.training.deterministic), _Signals(_finish_step_then_stop(trainer)):
            trainer.fit()
        result = finish_training(trainer, writer)
        if tracker is not None:
            finish_tracking(tracker, result, console)
    except Interrupted as stop:
        code = 143 if stop.signal_name == "SIGTERM" else 130
        last = plan.folder.last
        _console(stderr=True).print(
            f"[yellow]stopped by {stop.signal_name}[/]: saved {escape(str(last))}; "
            f"continue with: nnctl train --resume {escape(str(last))}"
        )
        raise typer.Exit(code) from None
    except KeyboardInterrupt:
        started = trainer is not None and trainer.stop_signal is not None
        message = (
            "[red]aborted[/] (second interrupt); files on disk are whole"
            if started
            else "[yellow]interrupted[/] before training started; nothing was written"
        )
        _console(stderr=True).print(message)
        raise typer.Exit(130) from None
    finally:
        if plan is not None:
            plan.release()  # the run folder's lock
    if not quiet:
        print_summary(console, result)


class _Signals:
    """The one signal mechanism: while active, SIGINT and SIGTERM call ``handler(name)``."""

    def __init__(self, handler: Callable[[str], None]) -> None:
        self.handler = handler
        self.received: list[str] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        self.handler(name)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        return 143 if "SIGTERM" in self.received else 130


def _finish_step_then_stop(trainer: Any) -> Callable[[str], None]:
    """First SIGINT/SIGTERM: finish the step, save, exit 130/143. Second SIGINT: abort at once."""

    def handler(name: str) -> None:
        if trainer.stop_signal is not None and name == "SIGINT":
            raise KeyboardInterrupt
        trainer.request_stop(name)

    return handler


def _stop_now(name: str) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C


# ---------------------------------------------------------------------------------------------
# eval / predict


@app.command("eval")
def eval_(
    checkpoint: CheckpointArg,
    data: Annotated[
        Path | None, typer.Option(help="Rows to evaluate [default: the checkpoint's test split].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write the report's figures (PNG/SVG/PDF): FILE is the confusion matrix (or predicted vs "
            "true); ROC, precision-recall, reliability or residual plots go beside it as FILE-NAME."
        ),
    ] = None,
) -> None:
    """Metrics of a checkpoint on FILE's rows or on its own test split (ECE, ROC/PR AUC when binary)."""
    from nnctl.cli.render import print_metrics
    from nnctl.evaluation import evaluation_report

    report = evaluation_report(checkpoint, data)
    result = report.result
    written: list[Path] = []
    if plot is not None:
        from nnctl.cli.plots import write_eval_plots

        written = write_eval_plots(report, plot)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        print_metrics(_console(), result)
    for path in written:  # as `nnctl plot` says it; on stderr under --json, which keeps stdout JSON
        typer.echo(f"wrote {path}", err=as_json)


@app.command()
def predict(
    checkpoint: CheckpointArg,
    input_file: Annotated[
        Path, typer.Argument(metavar="INPUT", help="CSV/.npz rows to predict (target optional).")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV file [default: standard output].")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="One-output binary models: positive when p >= T [default: 0.5]."),
    ] = None,
) -> None:
    """Predictions for INPUT's rows as CSV: label (or values) and per-class probabilities.
    INPUT holds raw rows: the training table's columns in any order; others are ignored."""
    import csv
    import io

    from nnctl.files import atomic_write_text
    from nnctl.workflows import predict_table

    header, rows = predict_table(checkpoint, input_file, threshold)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        atomic_write_text(output, buffer.getvalue())


# ---------------------------------------------------------------------------------------------
# export / serve


@app.command()
def export(
    checkpoint: CheckpointArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="The ONNX file to write.")] = Path(
        "model.onnx"
    ),
) -> None:
    """Write the checkpoint as one ONNX graph: raw columns in, probabilities/label or values out."""
    from nnctl.export.onnx import export_onnx

    summary = export_onnx(checkpoint, output)
    inputs = ", ".join(f"{name} ({kind})" for name, kind in summary.inputs[:8])
    more = f" and {len(summary.inputs) - 8} more" if len(summary.inputs) > 8 else ""
    typer.echo(
        f"wrote {summary.path}: {summary.nodes} nodes, "
        f"opset {summary.opset} (ai.onnx.ml {summary.ml_opset})\n"
        f"  inputs [N, 1]: {inputs}{more}\n  outputs: {', '.join(summary.outputs)}"
    )


@app.command()
def serve(
    checkpoint: CheckpointArg,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free port).")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes sharing the port.")] = 1,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", min=0.001, help="Largest request body; larger ones get 413.")
    ] = 16.0,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    blas_threads: Annotated[
        int, typer.Option(min=1, help="BLAS threads per worker (small requests: 1 is fastest).")
    ] = 1,
) -> None:
    """Answer predictions over HTTP: GET /health, GET /info, POST /predict, docs at /docs."""
    from nnctl.serve.server import ServeOptions, serve_checkpoint

    options = ServeOptions(host, port, workers, int(max_body_mb * 1024 * 1024), access_log, blas_threads)
    serve_checkpoint(checkpoint, options, announce=lambda line: typer.echo(line))


# ---------------------------------------------------------------------------------------------
# check / gradcheck / explain / init


@app.command()
def check(config: ConfigArg, set_: SetOption = None) -> None:
    """Validate a config against its data and show the network it compiles to (no training)."""
    from rich.markup import escape

    from nnctl.cli.render import column_table, count, layer_table, print_notes
    from nnctl.data.targets import describe_targets
    from nnctl.workflows import check_summary

    console = _console()
    resolved, prepared, net = check_summary(config, set_ or [])

    console.print(f"[green]valid[/]: {escape(str(config))}  ({escape(resolved.name or '')})")
    console.print(f"task: {escape(describe_targets(prepared.encoder))}")
    features, rows = prepared.train.n_features, prepared.train.size
    console.print(
        f"data: {escape(prepared.source)}: {count(features, 'feature')}; train {count(rows, 'row')}"
    )
    if prepared.columns:
        console.print(column_table(prepared.columns))
    print_notes(console, prepared.notes, [*resolved.warnings(), *prepared.warnings])
    console.print(layer_table(net, features))
    training = resolved.training
    console.print(
        escape(
            f"cost {resolved.cost.name}: {resolved.cost.formula}; optimizer {training.optimizer.name}, "
            f"learning rate {training.learning_rate:g}, {training.epochs} epochs, batch {training.batch_size}"
        )
    )


@app.command()
def gradcheck(
    config: ConfigArg,
    set_: SetOption = None,
    samples: Annotated[int, typer.Option(min=1, help="Rows of the config's data to check on.")] = 8,
    tolerance: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
    max_entries: Annotated[
        int, typer.Option(min=1, help="Check at most this many entries per parameter array (sampled).")
    ] = 2000,
) -> None:
    """Prove backprop right: analytic gradients vs central finite differences, per layer."""
    from nnctl.cli.tables import Table
    from nnctl.engine.gradcheck import gradient_check
    from nnctl.workflows import check_summary

    console = _console()
    _, prepared, net = check_summary(config, set_ or [])
    x, t = next(prepared.train.chunks(samples))
    result = gradient_check(net, x, t, tolerance=tolerance, max_entries=max_entries)
    table = Table(title=f"gradient check on {x.shape[0]} rows, float64 (output: {result.rule})")
    for column in ("layer", "W rel. error", "b rel. error", "max |diff|", "status"):
        table.add_column(column)
    for layer in result.layers:
        ok = layer.error < tolerance
        table.add_row(
            str(layer.layer),
            f"{layer.weight_error:.2e}",
            f"{layer.bias_error:.2e}",
            f"{layer.max_abs_diff:.2e}",
            "[green]ok[/]" if ok else "[red]FAIL[/]",
        )
    console.print(table)
    if not result.passed:
        console.print(
            f"[red]gradient check failed[/]: max relative error {result.max_error:.2e} >= {tolerance:g}"
        )
        raise typer.Exit(1)
    console.print(f"[green]passed[/]: max relative error {result.max_error:.2e} < {tolerance:g}")


@app.command()
def explain(
    config: ConfigArg,
    set_: SetOption = None,
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown", help="Print the Markdown source on a terminal too (piped output always is)."
        ),
    ] = False,
) -> None:
    """The seed's equations for this config: forward, backward rule and initializer per layer."""
    from nnctl.cli.explain import explain_network
    from nnctl.workflows import check_summary

    resolved, _prepared, net = check_summary(config, set_ or [])
    text = explain_network(resolved, net)
    console = _console()
    if markdown or not console.is_terminal:  # piped: the Markdown source, every character of it
        typer.echo(text)
        return
    from rich.markdown import Markdown

    console.soft_wrap = False  # wrap paragraphs at the terminal's width rather than crop them
    console.print(Markdown(text))


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path("nnctl.yaml"),
    template: Annotated[
        str, typer.Option(help="Starter: classification, regression, binary or xor.")
    ] = "classification",
    from_data: Annotated[
        Path | None, typer.Option("--from-data", help="Write a config for this CSV/Parquet table.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="With --from-data: the target column [default: the last].")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config (from a template, or inferred from a table)."""
    from nnctl.cli.templates import TEMPLATES
    from nnctl.errors import NnctlError
    from nnctl.files import atomic_write_text

    if template not in TEMPLATES:
        raise NnctlError(f"--template: unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    if target is not None and from_data is None:
        raise NnctlError("--target needs --from-data FILE")
    if path.exists() and not force:
        raise NnctlError(f"{path} already exists", hint="pass --force to overwrite it")
    if from_data is not None:
        from nnctl.cli.templates import config_from_data

        text = config_from_data(from_data, target, path)
    else:
        text = TEMPLATES[template]
    atomic_write_text(path, text)
    typer.echo(f"wrote {path}; check it with: nnctl check {path}")


@app.command()
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


@app.command()
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
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Local worker processes [default: cores].")
    ] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, tcp://HOST:PORT.")] = None,
    dask_local: Annotated[
        int | None, typer.Option("--dask-local", help="Start a local Dask cluster of N workers.")
    ] = None,
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
    from nnctl.cli.tracking import runs_tracker
    from nnctl.sweep.executors import tls_security

    signals = _Signals(_stop_now)
    try:
        with signals:
            code = sweep_main(
                config,
                grid=grid or [],
                random=random,
                seed=seed,
                monitor=monitor,
                jobs=jobs,
                scheduler=scheduler,
                dask_local=dask_local,
                out=out,
                retries=retries,
                overrides=set_ or [],
                quiet=quiet,
                console=_console(),
                folds=folds,
                security=tls_security(scheduler, tls_ca_file, tls_cert, tls_key),
                tracker=runs_tracker(mlflow, mlflow_experiment, "sweep"),
                force=force,
            )
    except KeyboardInterrupt:
        _console(stderr=True).print(
            "[yellow]sweep interrupted[/]: finished trials are kept; run again to resume"
        )
        raise typer.Exit(signals.exit_code) from None
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------
# cv


@app.command()
def cv(
    config: ConfigArg,
    folds: Annotated[
        int, typer.Option("--folds", "-k", help="Number of folds (stratified for classes).")
    ] = 5,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder [default: runs/<name>-cv].")] = None,
    refit: Annotated[
        bool, typer.Option("--refit", help="Also train on all non-test rows: the model to use (DIR/refit).")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Local worker processes [default: cores].")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, tls://HOST:PORT (or tcp://).")
    ] = None,
    dask_local: Annotated[
        int | None, typer.Option("--dask-local", help="Start a local Dask cluster of N workers.")
    ] = None,
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
    from nnctl.cli.tracking import runs_tracker
    from nnctl.sweep.executors import tls_security

    signals = _Signals(_stop_now)
    try:
        with signals:
            code, *_ = cv_main(
                config,
                folds=folds,
                out=out,
                refit=refit,
                jobs=jobs,
                scheduler=scheduler,
                dask_local=dask_local,
                security=tls_security(scheduler, tls_ca_file, tls_cert, tls_key),
                retries=retries,
                overrides=set_ or [],
                quiet=quiet,
                console=_console(),
                tracker=runs_tracker(mlflow, mlflow_experiment, "cv"),
            )
    except KeyboardInterrupt:
        _console(stderr=True).print("[yellow]cv interrupted[/]: finished folds are kept; run again to resume")
        raise typer.Exit(signals.exit_code) from None
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------
# compare


@app.command()
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

    print_comparison(_console(), comparison)
    if plot is not None:
        typer.echo(f"wrote {plot}")


# ---------------------------------------------------------------------------------------------
# config / schema


@app.command("config")
def config_(
    config: ConfigArg,
    set_: SetOption = None,
    diff: Annotated[
        bool, typer.Option("--diff", help="Only the keys that differ from the defaults.")
    ] = False,
) -> None:
    """Print the fully resolved config (base: files merged, --set applied, every default filled in)."""
    import yaml

    from nnctl.config import load_config
    from nnctl.schema import non_default_mapping, resolved_mapping

    resolved = load_config(config, set_ or [])
    mapping = non_default_mapping(resolved) if diff else resolved_mapping(resolved)
    typer.echo(yaml.safe_dump(mapping, sort_keys=False), nl=False)


@app.command()
def schema() -> None:
    """Print the config's JSON Schema (for editor completion: docs/nnctl.schema.json holds a copy)."""
    from nnctl.schema import schema_json

    typer.echo(schema_json(), nl=False)


def main() -> None:
    """Console-script entry point: usage errors exit 2 (click's convention)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
