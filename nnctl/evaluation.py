"""``nnctl eval`` with its report: the metrics of ``engine.metrics.task_metrics`` plus what the
outputs themselves show — expected calibration error for classification, and for a binary task the
ROC and precision-recall areas and a threshold table — with the outputs kept for the figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.checkpoint import load_checkpoint
from nnctl.engine.curves import reliability, threshold_table, top_label
from nnctl.engine.metrics import positive_scores, predicted_classes, task_metrics
from nnctl.training.evaluate import predict_with_loss
from nnctl.training.prepare import network_from_checkpoint
from nnctl.workflows import checkpoint_split

Array = np.ndarray


@dataclass
class EvaluationReport:
    result: dict[str, Any]  # what `nnctl eval --json` prints
    outputs: Array  # a^L per row, float64
    targets: Array  # the encoded targets per row
    task: str
    classes: list[str] | None

    @property
    def binary(self) -> bool:
        return self.task == "classification" and len(self.classes or ()) == 2


def evaluation_report(path: Path, data: Path | None = None) -> EvaluationReport:
    """Evaluate a checkpoint on FILE's rows or its own test split, keeping the outputs."""
    checkpoint = load_checkpoint(path)
    split, source, notes = checkpoint_split(checkpoint, data)
    net = network_from_checkpoint(checkpoint)
    task = checkpoint.meta["task"]
    n_classes = len(checkpoint.classes) if checkpoint.classes else None
    outputs, losses = predict_with_loss(net, split)
    targets = split.t
    metrics = task_metrics(task, outputs, targets, n_classes)
    result = {
        "checkpoint": str(path),
        "data": source,
        "task": task,
        "classes": checkpoint.classes,
        "loss": float(losses.mean()),
        "samples": split.size,
        **metrics,
    }
    result.update(output_metrics(task, outputs, targets, n_classes))
    if notes:
        result["notes"] = notes
    return EvaluationReport(result, outputs.astype(np.float64), targets, task, checkpoint.classes)


def output_metrics(task: str, outputs: Array, targets: Array, n_classes: int | None) -> dict[str, Any]:
    """ECE for classification; the threshold table when binary (ROC AUC and average precision are
    among ``task_metrics``)."""
    if task != "classification":
        return {}
    confidence, correct = top_label(outputs, targets)
    found: dict[str, Any] = {"ece": reliability(confidence, correct).ece}
    if n_classes == 2:
        y, score = predicted_classes(targets), positive_scores(outputs)
        found["threshold_table"] = threshold_table(y, score)
    return found
