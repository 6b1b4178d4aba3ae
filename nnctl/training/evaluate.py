"""Metrics and predictions of a network on a prepared split, chunk by chunk."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnctl.engine.metrics import task_metrics
from nnctl.engine.network import Network
from nnctl.training.prepare import Split

Array = np.ndarray


def evaluate(net: Network, split: Split, task: str, n_classes: int | None) -> dict[str, Any]:
    """Loss (mean cost) and the task's metrics on one split."""
    outputs, losses = predict_with_loss(net, split)
    metrics = task_metrics(task, outputs, split.t, n_classes)
    return {"loss": float(losses.mean()), "samples": split.size, **metrics}


def predict_with_loss(net: Network, split: Split) -> tuple[Array, Array]:
    """Outputs a^L and per-sample costs for every row of the split, a chunk at a time."""
    outputs, losses = [], []
    for x, t in split.chunks():
        trace = net.forward_pass(x)
        outputs.append(trace.a[-1].copy())
        losses.append(net.per_sample_loss(trace, t))
    return np.concatenate(outputs), np.concatenate(losses)
