"""``nnctl eval`` with its report: the metrics of ``workflows.evaluate_checkpoint`` plus what the
outputs themselves show — expected calibration error for classification, and for a binary task the
ROC and precision-recall areas and a threshold table — with the outputs kept for the figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.checkpoint import load_checkpoint
from nnctl.engine.curves import (
    area_under,
    average_precision,
    positive_scores,
    reliability,
    roc_curve,
    threshold_table,
    top_label,
)
from nnctl.engine.metrics import predicted_classes, task_metrics
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
    split, source = checkpoint_split(checkpoint, data)
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
    return EvaluationReport(result, outputs.astype(np.float64), targets, task, checkpoint.classes)


def output_metrics(task: str, outputs: Array, targets: Array, n_classes: int | None) -> dict[str, Any]:
    """ECE for classification; ROC AUC, average precision and the threshold table when binary."""
    if task != "classification":
        return {}
    confidence, correct = top_label(outputs, targets)
    found: dict[str, Any] = {"ece": reliability(confidence, correct).ece}
    if n_classes == 2:
        y, score = predicted_classes(targets), positive_scores(outputs)
        if 0 < y.sum() < y.size:  # both classes present: the curves exist
            fpr, tpr, _ = roc_curve(y, score)
            found["roc_auc"] = area_under(fpr, tpr)
            found["average_precision"] = average_precision(y, score)
        found["threshold_table"] = threshold_table(y, score)
    return found
