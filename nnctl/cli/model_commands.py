"""Commands that use a trained checkpoint: ``eval``, ``predict``, ``export``, ``serve``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from nnctl.cli.common import CheckpointArg, make_console

# ---------------------------------------------------------------------------------------------
# eval / predict


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
        print_metrics(make_console(), result)
    for path in written:  # as `nnctl plot` says it; on stderr under --json, which keeps stdout JSON
        typer.echo(f"wrote {path}", err=as_json)


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
