"""What the commands print: the run's start line and summary, evaluation metrics, the layer table.

Rich is imported inside each function (``nnctl --help`` stays fast); every text from the user's
files goes through ``escape`` so that brackets in names are never read as markup.
"""

from __future__ import annotations

from typing import Any


def count(n: int, noun: str) -> str:
    """``1 feature``, ``2 features``."""
    return f"{n} {noun}{'s' * (n != 1)}"


def progress_callbacks(console: Any, quiet: bool) -> list[Any]:
    """The training progress display: bars on a terminal, one line per epoch otherwise."""
    from nnctl.cli.progress import PlainProgress, RichProgress

    if quiet:
        return []
    return [RichProgress(console) if console.is_terminal else PlainProgress(console)]


def print_start(console: Any, plan: Any, prepared: Any) -> None:
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
    print_notes(console, prepared.notes, [*plan.warnings, *prepared.warnings])


def print_notes(console: Any, notes: list[str], warnings: list[str]) -> None:
    """What was done to the table (rows dropped, index column) and what looks wrong with it."""
    from rich.markup import escape

    for note in notes:
        console.print(f"note: {escape(note)}")
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def print_summary(console: Any, result: Any) -> None:
    from nnctl.cli.progress import sparkline
    from nnctl.cli.tables import Table

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


def print_metrics(console: Any, result: dict[str, Any]) -> None:
    from rich.markup import escape

    from nnctl.cli.tables import Table

    console.print(
        f"[bold]{escape(result['checkpoint'])}[/] on {escape(result['data'])} ({result['samples']} rows)"
    )
    print_notes(console, result.get("notes", []), [])
    table = Table(show_header=False)
    for key in ("loss", "accuracy", "macro_precision", "macro_recall", "macro_f1", "mse", "mae", "r2"):
        if key in result:
            table.add_row(key, f"{result[key]:.4f}")
    for key in ("ece", "roc_auc", "average_precision"):  # from the outputs (nnctl.evaluation)
        if key in result:
            table.add_row(key, f"{result[key]:.4f}")
    console.print(table)
    if result.get("threshold_table"):
        from nnctl.cli.report import threshold_table

        console.print(threshold_table(result["threshold_table"], (result.get("classes") or ["", ""])[1]))
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


def layer_table(net: Any, input_units: int) -> Any:
    from nnctl.cli.tables import Table

    table = Table(title=f"network: {count(input_units, 'input')}, {net.parameter_count:,} parameters")
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


def column_table(columns: list[dict[str, Any]]) -> Any:
    """``nnctl check``'s table of the data's columns: type, missing cells, categories, encoded width."""
    from rich.markup import escape

    from nnctl.cli.tables import Table
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
