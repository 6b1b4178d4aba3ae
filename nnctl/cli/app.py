"""The ``nnctl`` command: parse arguments, call ``nnctl.workflows``, render with Rich.

Heavy imports (numpy, pydantic, the engine) happen inside the commands, so ``--help`` and
``--version`` start fast. Bad input of any kind ends in one message and exit status 2, a failed
run in exit 1, an interrupt in 130 (SIGINT) or 143 (SIGTERM); never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from nnctl import __version__

app = typer.Typer(
    name="nnctl",
    help="Train dense neural networks from a YAML config: train, eval, predict, check, gradcheck.",
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


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


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
) -> None:
    """Train a network; writes last.npz, best.npz, history.csv and config.yaml to the run folder."""
    from rich.markup import escape

    from nnctl.errors import NnctlError
    from nnctl.training.loop import Interrupted
    from nnctl.workflows import blas_threads, finish_training, plan_training, prepare_for_plan, run_training

    console = _console()
    trainer = None
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
            _print_start(console, plan, prepared)
        trainer, writer = run_training(plan, prepared, _progress_callbacks(console, quiet))
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
        with blas_threads(plan.config.training.deterministic), _stop_on_signals(trainer):
            trainer.fit()
        result = finish_training(trainer, writer)
    except Interrupted as stop:
        code = 143 if stop.signal_name == "SIGTERM" else 130
        last = plan.folder.last
        _console(stderr=True).print(
            f"[yellow]stopped by {stop.signal_name}[/]: saved {escape(str(last))}; "
            f"continue with: nnctl train --resume {escape(str(last))}"
        )
        raise typer.Exit(code) from None
    except NnctlError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        started = trainer is not None and trainer.stop_signal is not None
        message = (
            "[red]aborted[/] (second interrupt); files on disk are whole"
            if started
            else "[yellow]interrupted[/] before training started; nothing was written"
        )
        _console(stderr=True).print(message)
        raise typer.Exit(130) from None
    if not quiet:
        _print_summary(console, result)


def _progress_callbacks(console: Any, quiet: bool) -> list[Any]:
    from nnctl.cli.progress import PlainProgress, RichProgress

    if quiet:
        return []
    return [RichProgress(console) if console.is_terminal else PlainProgress(console)]


class _stop_on_signals:
    """First SIGINT/SIGTERM: finish the step, save, exit 130/143. Second SIGINT: abort at once."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.trainer.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.trainer.request_stop(name)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _print_start(console: Any, plan: Any, prepared: Any) -> None:
    from rich.markup import escape

    from nnctl.data.targets import describe_targets

    config = plan.config
    what = "resuming" if plan.resume is not None else "training"
    sizes = f"train {prepared.train.size}"
    if prepared.validation is not None:
        sizes += f", validation {prepared.validation.size}"
    if prepared.test is not None:
        sizes += f", test {prepared.test.size}"
    console.print(f"[bold]{what} {escape(config.name or '')}[/] -> {escape(str(plan.folder.path))}")
    task = escape(describe_targets(prepared.encoder))
    console.print(f"task: {task}; rows: {sizes}; features: {prepared.train.n_features}")
    _print_notes(console, prepared.notes, [*plan.warnings, *prepared.warnings])


def _print_notes(console: Any, notes: list[str], warnings: list[str]) -> None:
    """What was done to the table (rows dropped, index column) and what looks wrong with it."""
    from rich.markup import escape

    for note in notes:
        console.print(f"note: {escape(note)}")
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def _print_summary(console: Any, result: Any) -> None:
    from rich.table import Table

    from nnctl.cli.progress import sparkline

    table = Table(title="training summary", show_header=False)
    table.add_row("epochs", str(len(result.history)) + (" (stopped early)" if result.stopped_early else ""))
    if result.best_value is not None:
        table.add_row("best epoch", f"{result.best_epoch} ({result.monitor} {result.best_value:.4g})")
    losses = [float(row["train_loss"]) for row in result.history]
    if losses:
        table.add_row("train loss", f"{losses[-1]:.4g}  {sparkline(losses)}")
    if result.test_metrics:
        for key in ("loss", "accuracy", "macro_f1", "roc_auc", "mse", "mae", "r2"):
            if key in result.test_metrics:
                table.add_row(f"test {key}", f"{result.test_metrics[key]:.4f}")
    table.add_row("written", "\n".join(str(p) for p in result.written))
    console.print(table)


# ---------------------------------------------------------------------------------------------
# eval / predict


@app.command("eval")
def eval_(
    checkpoint: CheckpointArg,
    data: Annotated[
        Path | None, typer.Option(help="Rows to evaluate [default: the checkpoint's test split].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a confusion-matrix figure (PNG/SVG).")] = None,
) -> None:
    """Metrics of a checkpoint on FILE's rows or on its own test split."""
    from nnctl.errors import NnctlError
    from nnctl.workflows import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(checkpoint, data)
        if plot is not None:
            from nnctl.cli.plots import plot_confusion_matrix

            plot_confusion_matrix(result, plot)
    except NnctlError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(result))
        return
    _print_metrics(_console(), result)


def _print_metrics(console: Any, result: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(
        f"[bold]{escape(result['checkpoint'])}[/] on {escape(result['data'])} ({result['samples']} rows)"
    )
    _print_notes(console, result.get("notes", []), [])
    table = Table(show_header=False)
    keys = ("loss", "accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc", "average_precision")
    for key in (*keys, "mse", "mae", "r2"):
        if key in result:
            table.add_row(key, f"{result[key]:.4f}")
    console.print(table)
    classes = result.get("classes")
    if "confusion_matrix" in result and classes:
        matrix = Table(title="confusion matrix (rows: true, columns: predicted)")
        matrix.add_column("")
        for name in classes:
            matrix.add_column(escape(name), justify="right")
        for name, row in zip(classes, result["confusion_matrix"], strict=True):
            matrix.add_row(escape(name), *map(str, row))
        console.print(matrix)
        scores = Table(title="per class")
        for column in ("class", "precision", "recall", "f1"):
            scores.add_column(column, justify="right")
        for i, name in enumerate(classes):
            scores.add_row(escape(name), *(f"{result[k][i]:.3f}" for k in ("precision", "recall", "f1")))
        console.print(scores)
    if "label_accuracy" in result:
        console.print("per-label accuracy: " + ", ".join(f"{v:.3f}" for v in result["label_accuracy"]))


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

    from nnctl.errors import NnctlError
    from nnctl.files import atomic_write_text
    from nnctl.workflows import predict_table

    try:
        header, rows = predict_table(checkpoint, input_file, threshold)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        if output is None:
            sys.stdout.write(buffer.getvalue())
        else:
            atomic_write_text(output, buffer.getvalue())
    except NnctlError as exc:
        raise _fail(exc) from None


# ---------------------------------------------------------------------------------------------
# check / gradcheck / explain / init


@app.command()
def check(config: ConfigArg, set_: SetOption = None) -> None:
    """Validate a config against its data and show the network it compiles to (no training)."""
    from nnctl.data.targets import describe_targets
    from nnctl.errors import NnctlError
    from nnctl.workflows import check_summary

    console = _console()
    try:
        resolved, prepared, net = check_summary(config, set_ or [])
    except NnctlError as exc:
        raise _fail(exc) from None
    from rich.markup import escape

    console.print(f"[green]valid[/]: {escape(str(config))}  ({escape(resolved.name or '')})")
    console.print(f"task: {escape(describe_targets(prepared.encoder))}")
    features, rows = prepared.train.n_features, prepared.train.size
    console.print(f"data: {escape(prepared.source)}: {features} features; train {rows} rows")
    if prepared.columns:
        console.print(_column_table(prepared.columns))
    _print_notes(console, prepared.notes, [*resolved.warnings(), *prepared.warnings])
    console.print(_layer_table(net, features))
    training = resolved.training
    console.print(
        escape(
            f"cost {resolved.cost.name}: {resolved.cost.formula}; optimizer {training.optimizer.name}, "
            f"learning rate {training.learning_rate:g}, {training.epochs} epochs, batch {training.batch_size}"
        )
    )


def _column_table(columns: list[dict[str, Any]]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    from nnctl.data.table import preview

    table = Table(
        title=f"columns: {len(columns)} in, {sum(c['width'] for c in columns)} inputs after encoding"
    )
    for column in ("column", "type", "missing", "categories", "handling", "inputs"):
        table.add_column(column, justify="right" if column in ("missing", "inputs") else "left")
    for row in columns:
        table.add_row(
            escape(row["column"]),
            row["type"],
            str(row["missing"]),
            escape(preview(row["categories"], 6)),
            escape(row["handling"]),
            str(row["width"]),
        )
    return table


def _layer_table(net: Any, input_units: int) -> Any:
    from rich.table import Table

    table = Table(title=f"network: {input_units} inputs, {net.parameter_count:,} parameters")
    for column in ("layer", "units", "W shape", "activation", "init (bound)", "params", "backprop"):
        table.add_column(column)
    for row in net.describe_layers():
        table.add_row(
            str(row["layer"]),
            str(row["units"]),
            str(row["W"]),
            str(row["activation"]) + (f" +dropout {row['dropout']:g}" if row["dropout"] else ""),
            f"{row['initializer']} (±{row['bound']:.3g})",
            f"{row['parameters']:,}",
            str(row["backprop"]),
        )
    return table


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
    from rich.table import Table

    from nnctl.engine.gradcheck import gradient_check
    from nnctl.errors import NnctlError
    from nnctl.workflows import check_summary

    console = _console()
    try:
        _, prepared, net = check_summary(config, set_ or [])
    except NnctlError as exc:
        raise _fail(exc) from None
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
        bool, typer.Option("--markdown", help="Print Markdown instead of rich text.")
    ] = False,
) -> None:
    """The seed's equations for this config: forward, backward rule and initializer per layer."""
    from nnctl.cli.explain import explain_network
    from nnctl.errors import NnctlError
    from nnctl.workflows import check_summary

    try:
        resolved, _prepared, net = check_summary(config, set_ or [])
    except NnctlError as exc:
        raise _fail(exc) from None
    text = explain_network(resolved, net)
    if markdown:
        typer.echo(text)
        return
    from rich.markdown import Markdown

    _console().print(Markdown(text))


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

    try:
        if template not in TEMPLATES:
            raise NnctlError(
                f"--template: unknown template {template!r}; choose one of {', '.join(TEMPLATES)}"
            )
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
    except NnctlError as exc:
        raise _fail(exc) from None
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
    from nnctl.errors import NnctlError

    try:
        written = plot_run(run_dir, out or run_dir)
    except NnctlError as exc:
        raise _fail(exc) from None
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
) -> None:
    """Train many variants of CONFIG (a grid or a random space), locally or on a Dask cluster."""
    from nnctl.cli.sweep import sweep_main
    from nnctl.errors import NnctlError

    terminated = []

    def stop_on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt  # the same clean stop as Ctrl-C

    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
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
        )
    except NnctlError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        _console(stderr=True).print(
            "[yellow]sweep interrupted[/]: finished trials are kept; run again to resume"
        )
        raise typer.Exit(143 if terminated else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point: usage errors exit 2 (click's convention)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
