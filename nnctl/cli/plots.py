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
    written: list[Path] = []
    for stem, figure in run_figures(run_dir).items():
        written += _save_both(figure, out / stem)
    return written


def run_figures(run_dir: Path | str) -> dict[str, Any]:
    """The figures ``plot_run`` writes, by file stem (``loss``, ``metric``, ``lr``), unsaved."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NnctlError(
            f"{run_dir}: no such run folder" if not run_dir.exists() else f"{run_dir}: is not a folder",
            hint="pass the folder `nnctl train` wrote (--out, default runs/<name>)",
        )
    history = read_history(run_dir / "history.csv")
    Figure = _figure_class()
    epochs = history["epoch"]
    title = run_dir.resolve().name
    figures: dict[str, Any] = {}

    loss_series = [("train", history["train_loss"])]
    if "val_loss" in history:
        loss_series.append(("validation", history["val_loss"]))
    figure = _line_figure(Figure, epochs, loss_series, f"{title}: loss per epoch", "loss (mean cost)")
    _log_scale_if_wide(figure.axes[0], [v for _, values in loss_series for v in values])
    figures["loss"] = figure

    metrics = [(name.removeprefix("val_"), history[name]) for name in METRIC_COLUMNS if name in history]
    if metrics:
        label = ", ".join(name for name, _ in metrics)
        figures["metric"] = _line_figure(
            Figure,
            epochs,
            [(f"validation {name}", values) for name, values in metrics],
            f"{title}: validation {label} per epoch",
            label,
        )

    if "lr" in history:
        figure = _line_figure(
            Figure, epochs, [("learning rate", history["lr"])], f"{title}: learning rate", "learning rate"
        )
        _log_scale_if_wide(figure.axes[0], history["lr"])
        figures["lr"] = figure
    return figures


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


# ---------------------------------------------------------------------------------------------
# nnctl compare RUN_DIR... --plot FILE


def comparison_figure(comparison: Any) -> Any:
    """Learning curves of several runs overlaid: loss (validation solid, training dashed, one colour
    per run) and, when the runs record one, the validation metric. Lines are labelled
    ``RUN train_loss`` / ``RUN val_loss`` / ``RUN val_accuracy``."""
    Figure = _figure_class()
    extra = [m for m in comparison.metrics if m.startswith("val_") and m != "val_loss"][:1]
    panels = [["train_loss", "val_loss"], *([m] for m in extra)]
    figure = Figure(figsize=(6.4 * len(panels), 4.4), dpi=DPI, layout="constrained")
    colours = [f"C{i % 10}" for i in range(len(comparison.runs))]
    for position, columns in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), position)
        for run, colour in zip(comparison.runs, colours, strict=True):
            for column in columns:
                values = run.history.get(column)
                if not values:
                    continue
                style = "--" if column == "train_loss" else "-"
                axes.plot(
                    run.epochs, values, style, color=colour, linewidth=1.5, label=f"{run.name} {column}"
                )
        axes.set_title("loss per epoch" if position == 1 else f"{columns[0]} per epoch")
        axes.set_xlabel("epoch")
        axes.set_ylabel("loss (mean cost)" if position == 1 else columns[0])
        axes.grid(True, alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(fontsize="small")
    return figure


def plot_comparison(comparison: Any, path: Path | str) -> Path:
    path = Path(path)
    fmt = _figure_format(path)
    return _save(comparison_figure(comparison), path, fmt)


def _figure_format(path: Path) -> str:
    fmt = FIGURE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise NnctlError(
            f"--plot {path}: unknown figure format {path.suffix or '(no suffix)'!r}",
            hint=f"end the file name with one of {', '.join(FIGURE_FORMATS)}",
        )
    return fmt


# ---------------------------------------------------------------------------------------------
# nnctl eval --plot FILE: the evaluation report's figures


def report_figures(report: Any) -> dict[str, Any]:
    """The figures of an evaluation report (``nnctl.evaluation.EvaluationReport``), by name:
    classification: ``reliability`` (accuracy against mean confidence per bin, with the ECE); binary
    tasks also ``roc`` and ``pr`` (the curves, their areas in the legend); regression: ``predicted``
    (predicted against true values) and ``residuals`` (residual against predicted value)."""
    from nnctl.engine import curves
    from nnctl.engine.metrics import positive_scores, predicted_classes

    Figure = _figure_class()
    figures: dict[str, Any] = {}
    result = report.result
    if report.task == "classification":
        confidence, correct = curves.top_label(report.outputs, report.targets)
        bins = curves.reliability(confidence, correct)
        filled = bins.counts > 0
        figure, axes = _square(Figure)
        axes.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
        axes.plot(bins.confidence[filled], bins.accuracy[filled], "o-", label=f"model (ECE {bins.ece:.4f})")
        for x, y, n in zip(bins.confidence[filled], bins.accuracy[filled], bins.counts[filled], strict=True):
            axes.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        _label(axes, "reliability diagram (top-label; rows per bin)", "mean confidence", "accuracy")
        figures["reliability"] = figure
        if report.binary and "roc_auc" in result:
            y, score = predicted_classes(report.targets), positive_scores(report.outputs)
            fpr, tpr, _ = curves.roc_curve(y, score)
            figure, axes = _square(Figure)
            axes.plot([0, 1], [0, 1], ":", color="grey", label="chance")
            axes.plot(fpr, tpr, "-", label=f"ROC (AUC {result['roc_auc']:.4f})")
            _label(
                axes,
                f"ROC curve (positive class: {report.classes[1]})",
                "false positive rate",
                "true positive rate",
            )
            figures["roc"] = figure
            precision, recall, _ = curves.precision_recall_curve(y, score)
            figure, axes = _square(Figure)
            axes.plot(
                recall,
                precision,
                "-",
                drawstyle="steps-post",
                label=f"PR (AP {result['average_precision']:.4f})",
            )
            axes.axhline(y.mean(), linestyle=":", color="grey", label=f"chance ({y.mean():.3f})")
            _label(
                axes, f"precision-recall curve (positive class: {report.classes[1]})", "recall", "precision"
            )
            figures["pr"] = figure
    elif report.task == "regression":
        true, predicted = report.targets.astype(float), report.outputs.astype(float)
        figure, axes = _square(Figure)
        low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
        axes.plot([low, high], [low, high], ":", color="grey", label="perfect")
        for j in range(true.shape[1]):
            axes.scatter(true[:, j], predicted[:, j], s=10, alpha=0.7, label=f"output {j + 1}")
        _label(axes, f"predicted vs true (R² {result['r2']:.4f})", "true value", "predicted value")
        figures["predicted"] = figure
        figure = Figure(figsize=(6.4, 4.2), dpi=DPI, layout="constrained")
        axes = figure.add_subplot()
        axes.axhline(0.0, linestyle=":", color="grey")
        for j in range(true.shape[1]):
            axes.scatter(
                predicted[:, j], true[:, j] - predicted[:, j], s=10, alpha=0.7, label=f"output {j + 1}"
            )
        _label(axes, f"residuals (MAE {result['mae']:.4g})", "predicted value", "true − predicted")
        figures["residuals"] = figure
    return figures


def _square(Figure: Any) -> tuple[Any, Any]:
    figure = Figure(figsize=(5.2, 5.0), dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _label(axes: Any, title: str, xlabel: str, ylabel: str) -> None:
    axes.set_title(title, fontsize="medium")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")


def write_eval_plots(report: Any, path: Path | str) -> list[Path]:
    """``eval --plot FILE``: FILE is the confusion matrix (classification) or predicted-vs-true
    (regression); the other figures go beside it as ``STEM-NAME.SUFFIX``, and a binary task's
    threshold table as ``STEM-thresholds.csv``."""
    path = Path(path)
    fmt = _figure_format(path)
    if report.task == "multilabel":
        plot_confusion_matrix(report.result, path)  # refuses with its message: no plot for multilabel
    figures = report_figures(report)
    written: list[Path] = []
    if report.task == "classification":
        written.append(plot_confusion_matrix(report.result, path))
    for name, figure in figures.items():
        target = path if name == "predicted" else path.with_name(f"{path.stem}-{name}{path.suffix}")
        written.append(_save(figure, target, fmt))
    table = report.result.get("threshold_table")
    if table:
        target = path.with_name(f"{path.stem}-thresholds.csv")
        lines = ["threshold,precision,recall,f1,positive"]
        lines += [
            f"{r['threshold']},{r['precision']!r},{r['recall']!r},{r['f1']!r},{r['positive']}" for r in table
        ]
        with atomic_writer(target, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        written.append(target)
    return written
