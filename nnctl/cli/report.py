"""Rich tables for ``nnctl compare`` and the ``nnctl eval --plot`` report."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from nnctl.cli.tables import Table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def print_comparison(console: Any, comparison: Any) -> None:
    """Two tables: the runs' best (with its epoch) and final metrics; the config keys that differ."""
    table = Table(title="runs: best (epoch) and final value of each metric", title_justify="left")
    table.add_column("run", no_wrap=True)
    table.add_column("epochs", justify="right")
    for metric in comparison.metrics:
        arrow = "↑" if metric.endswith(("accuracy", "r2", "f1")) else "↓"
        table.add_column(f"best {metric} {arrow}", justify="right")
        table.add_column(f"final {metric}", justify="right")
    for run in comparison.runs:
        cells = [escape(run.name), str(len(run.epochs))]
        for metric in comparison.metrics:
            best = comparison.best(run, metric)
            cells.append("-" if best is None else f"{best[0]:.4g} ({best[1]})")
            cells.append(_cell(comparison.final(run, metric)))
        table.add_row(*cells)
    console.print(table)
    if not comparison.differing:
        console.print("the runs' configs are identical")
        return
    keys = Table(title="config keys that differ", title_justify="left")
    keys.add_column("key", no_wrap=True)
    for run in comparison.runs:
        keys.add_column(escape(run.name))
    for key in comparison.differing:
        keys.add_row(escape(key), *(_cell(run.config.get(key)) for run in comparison.runs))
    console.print(keys)


def threshold_table(rows: list[dict[str, Any]], positive: str) -> Table:
    table = Table(title=f"thresholds (call {escape(str(positive))} when its probability >= t)")
    for column in ("t", "precision", "recall", "f1", "called positive"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['threshold']:.1f}", f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
            str(row["positive"]),
        )  # fmt: skip
    return table
