"""Figures of a run (``nnctl plot``) and of a confusion matrix (``nnctl eval --plot``).

matplotlib is an optional extra (``pip install matplotlib``, or ``pip install -e '.[plot]'`` in a
checkout) and is imported only here, inside the functions, so every other command works without it.
Figures are drawn on matplotlib's Agg canvas through the object API (``matplotlib.figure.Figure``),
never through pyplot: no display, no global figure state, nothing that depends on the user's backend
settings. Every file is written to a temporary file and renamed into place
(``nnctl.files.atomic_writer``), so an interrupted or failed plot never leaves half a PNG behind.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnctl.errors import NnctlError
from nnctl.files import atomic_writer

#: Formats ``plot_confusion_matrix`` writes, by file suffix.
FIGURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
#: Validation metric columns of history.csv drawn in metric.png, when present.
METRIC_COLUMNS = ("val_accuracy", "val_r2")
DPI = 120


def _figure_class() -> Any:
    """``matplotlib.figure.Figure``, or a clear NnctlError when matplotlib is not installed."""
    try:
        import matplotlib

        if "matplotlib.pyplot" not in sys.modules:  # never switch a backend pyplot already uses
            matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError as exc:
        # a broken install (e.g. a compiled part missing) says why; an absent one needs no detail
        detail = "" if isinstance(exc, ModuleNotFoundError) else f" ({exc})"
        raise NnctlError(
            f"matplotlib is not installed{detail}; plots need it",
            hint="pip install matplotlib (the plot extra; in nnctl's checkout: pip install -e '.[plot]')",
        ) from None
    return Figure


# ---------------------------------------------------------------------------------------------
# history.csv


def read_history(path: Path) -> dict[str, list[float]]:
    """The numeric columns of a history.csv, one list per column (missing cells are NaN).

    A missing, empty or malformed file is one ``NnctlError`` naming the file.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise NnctlError(
            f"{path}: no such file; is this a run folder?",
            hint="pass the folder `nnctl train` wrote (it holds history.csv, last.npz and best.npz)",
        ) from None
    except IsADirectoryError:
        raise NnctlError(f"{path}: is a directory, not a history file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NnctlError(f"{path}: cannot read the training history ({exc})") from None
    missing = [column for column in ("epoch", "train_loss") if column not in header]
    if missing:
        raise NnctlError(
            f"{path}: not an nnctl history file (no {' or '.join(missing)} column)",
            hint="history.csv is written by `nnctl train`; its header starts epoch,train_loss",
        )
    if not rows:
        raise NnctlError(f"{path}: holds no epochs yet", hint="train at least one epoch, then plot")
    columns: dict[str, list[float]] = {name: [] for name in header if name}
    for line, row in enumerate(rows, start=2):
        for name in columns:
            cell = row.get(name)
            if cell is None or cell == "":
                columns[name].append(math.nan)
                continue
            try:
                columns[name].append(float(cell))
            except (TypeError, ValueError):
                if name in ("epoch", "train_loss", "val_loss", "lr", *METRIC_COLUMNS):
                    raise NnctlError(
                        f"{path}:{line}: {name} = {cell!r} is not a number; the file is damaged"
                    ) from None
                columns[name].append(math.nan)  # a column we do not plot: ignore its text
    if any(math.isnan(epoch) for epoch in columns["epoch"]):
        raise NnctlError(f"{path}: some rows have no epoch number; the file is damaged")
    return columns


# ---------------------------------------------------------------------------------------------
# nnctl plot RUN_DIR


def plot_run(run_dir: Path | str, out_dir: Path | str | None = None) -> list[Path]:
    """Write loss, metric (when the run has one) and learning-rate figures, PNG and SVG.

    ``loss``: train and validation loss per epoch; ``metric``: the validation metric columns
    (``val_accuracy``, ``val_r2``); ``lr``: the learning rate each epoch used. Returns the paths
    written, in that order.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    if not run_dir.is_dir():
        raise NnctlError(
            f"{run_dir}: no such run folder" if not run_dir.exists() else f"{run_dir}: is not a folder",
            hint="pass the folder `nnctl train` wrote (--out, default runs/<name>)",
        )
    history = read_history(run_dir / "history.csv")
    Figure = _figure_class()
    epochs = history["epoch"]
    title = run_dir.resolve().name
    written: list[Path] = []

    loss_series = [("train", history["train_loss"])]
    if "val_loss" in history:
        loss_series.append(("validation", history["val_loss"]))
    figure = _line_figure(Figure, epochs, loss_series, f"{title}: loss per epoch", "loss (mean cost)")
    _log_scale_if_wide(figure.axes[0], [v for _, values in loss_series for v in values])
    written += _save_both(figure, out / "loss")

    metrics = [(name.removeprefix("val_"), history[name]) for name in METRIC_COLUMNS if name in history]
    if metrics:
        label = ", ".join(name for name, _ in metrics)
        figure = _line_figure(
            Figure,
            epochs,
            [(f"validation {name}", values) for name, values in metrics],
            f"{title}: validation {label} per epoch",
            label,
        )
        written += _save_both(figure, out / "metric")

    if "lr" in history:
        figure = _line_figure(
            Figure, epochs, [("learning rate", history["lr"])], f"{title}: learning rate", "learning rate"
        )
        _log_scale_if_wide(figure.axes[0], history["lr"])
        written += _save_both(figure, out / "lr")
    return written


def _line_figure(
    Figure: Any, epochs: list[float], series: Sequence[tuple[str, list[float]]], title: str, ylabel: str
) -> Any:
    figure = Figure(figsize=(6.4, 4.2), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    marker = "o" if len(epochs) <= 40 else None
    for label, values in series:
        axes.plot(epochs, values, label=label, marker=marker, markersize=3, linewidth=1.5)
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.xaxis.get_major_locator().set_params(integer=True)
    if len(series) > 1:
        axes.legend()
    return figure


def _log_scale_if_wide(axes: Any, values: Sequence[float]) -> None:
    """Log y axis when positive values span more than two orders of magnitude."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
        axes.set_yscale("log")


def _save_both(figure: Any, stem: Path) -> list[Path]:
    return [_save(figure, stem.with_suffix(".png"), "png"), _save(figure, stem.with_suffix(".svg"), "svg")]


def _save(figure: Any, path: Path, fmt: str) -> Path:
    """Render to a temporary file beside ``path`` and rename it into place."""
    # No timestamps in the files: the same history gives the same SVG/PDF bytes.
    metadata = {"Date": None} if fmt == "svg" else ({"CreationDate": None} if fmt == "pdf" else {})
    try:
        with atomic_writer(path, "wb") as handle:
            figure.savefig(handle, format=fmt, dpi=DPI, metadata=metadata)
    except (ValueError, RuntimeError) as exc:  # matplotlib's own failures (e.g. an absurd size)
        raise NnctlError(f"cannot draw {path}: {exc}") from None
    return path


# ---------------------------------------------------------------------------------------------
# nnctl eval --plot FILE


def plot_confusion_matrix(result: dict[str, Any], path: Path | str) -> Path:
    """A heatmap of the confusion matrix with the count in every cell (rows: true class).

    ``result`` is ``nnctl eval``'s dict (``task``, ``confusion_matrix``, ``classes``). The format
    comes from the suffix of ``path``: .png, .svg or .pdf.
    """
    path = Path(path)
    task = result.get("task")
    matrix = result.get("confusion_matrix")
    if task != "classification" or matrix is None:
        raise NnctlError(
            f"--plot draws a confusion matrix, which only classification has (this checkpoint's task "
            f"is {task})",
            hint="drop --plot; for the run's curves use `nnctl plot RUN_DIR`",
        )
    fmt = FIGURE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise NnctlError(
            f"--plot {path}: unknown figure format {path.suffix or '(no suffix)'!r}",
            hint=f"end the file name with one of {', '.join(FIGURE_FORMATS)}",
        )
    n = len(matrix)
    if n == 0 or any(len(row) != n for row in matrix):
        raise NnctlError("the confusion matrix is not square; cannot draw it")
    classes = [str(c) for c in (result.get("classes") or range(n))]
    if len(classes) != n:
        raise NnctlError(f"{len(classes)} class names for a {n}x{n} confusion matrix; cannot draw it")
    Figure = _figure_class()

    size = min(max(4.5, 0.55 * n + 2.5), 24.0)
    figure = Figure(figsize=(size + 1.0, size), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues", interpolation="nearest", vmin=0)
    figure.colorbar(image, ax=axes, label="count")
    rotate = max(map(len, classes)) > 3
    axes.set_xticks(
        range(n), labels=classes, rotation=45 if rotate else 0, ha="right" if rotate else "center"
    )
    axes.set_yticks(range(n), labels=classes)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    accuracy = result.get("accuracy")
    samples = sum(map(sum, matrix))
    title = f"confusion matrix ({samples} rows"
    title += f", accuracy {accuracy:.3f})" if isinstance(accuracy, float) else ")"
    axes.set_title(title)
    peak = max(max(row) for row in matrix) or 1
    fontsize = max(5.0, min(11.0, 120.0 / n))
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axes.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if count > peak / 2 else "black",
            )
    return _save(figure, path, fmt)
