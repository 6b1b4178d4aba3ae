"""Evaluation metrics: accuracy, confusion matrix, precision/recall/F1; MSE, MAE, R^2. And the small
rules about tasks and metrics that training, schedules, sweeps, data and checkpoints share: the task
names, which task a cost implies, the 0.5 decision threshold, which metrics are maximised.

Pure functions of predictions and targets; the encoded targets ``T`` are the network's (0/1
one-hot, 0/1 per label, or raw values for regression).
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray

TASKS = ("classification", "multilabel", "regression")
#: Metric names (with or without a ``val_``/``test_`` prefix) where a larger value is better;
#: every other recorded metric (the losses, mse, mae) is minimised.
MAXIMIZED = ("accuracy", "r2", "f1", "precision", "recall")
#: An output (or target) at or above this is the positive class / a set label.
THRESHOLD = 0.5


def higher_is_better(metric: str) -> bool:
    """Whether ``metric`` (a history column such as ``val_accuracy`` or ``val_loss``) is maximised."""
    return metric.endswith(MAXIMIZED)


def tasks_for_cost(cost: str, output_activation: str, output_units: int) -> tuple[str, ...]:
    """The tasks ``data.task: auto`` may infer for a cost and output layer; where there are two,
    the first is for numeric targets. cce -> classification; bce -> classification with one
    output unit, multilabel with more; quadratic -> regression (not with a softmax output) or
    classification."""
    if cost == "cce":
        return ("classification",)
    if cost == "bce":
        return ("classification",) if output_units == 1 else ("multilabel",)
    if cost == "quadratic":
        return ("classification",) if output_activation == "softmax" else ("regression", "classification")
    raise ValueError(f"unknown cost {cost!r}; expected cce, bce or quadratic")


def positive(outputs: Array) -> Array:
    """The 0/1 decision on each output: at or above ``THRESHOLD``."""
    return outputs >= THRESHOLD


def predicted_classes(outputs: Array) -> Array:
    """Class index per row: argmax over one-hot columns, or the decision on one binary unit.
    Applied to encoded targets it gives their true classes."""
    if outputs.shape[1] == 1:
        return positive(outputs[:, 0]).astype(np.int64)
    return outputs.argmax(axis=1)


def confusion_matrix(true: Array, pred: Array, n_classes: int) -> Array:
    """Counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def precision_recall_f1(matrix: Array) -> dict[str, Array]:
    """Per class, from a confusion matrix; 0 where a class was never predicted/present."""
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return {"precision": precision, "recall": recall, "f1": f1}


def positive_scores(outputs: Array) -> Array:
    """P(positive class) of a binary classifier: its one output, or the second softmax output."""
    return outputs[:, 0] if outputs.shape[1] == 1 else outputs[:, 1]


def _average_ranks(scores: Array) -> Array:
    """1-based ranks of the scores, ties sharing the average of their ranks."""
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def roc_auc(scores: Array, positive: Array) -> float | None:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counting half (Mann-Whitney U / (n_pos n_neg)); None without both classes."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores: Array, positive: Array) -> float | None:
    """sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, highest first (precision at
    each recall step, no interpolation); None without a positive row."""
    positive = np.asarray(positive, dtype=bool)
    if not positive.any():
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    ordered = np.asarray(scores, dtype=np.float64)[order]
    hits = positive[order].astype(np.float64)
    last = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1]  # end of each tie group
    tp = np.cumsum(hits)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_metrics(outputs: Array, T: Array) -> dict[str, float]:
    """ROC AUC and average precision of a binary classifier (empty when a class is absent)."""
    scores, positive = positive_scores(outputs), predicted_classes(T) == 1
    auc, ap = roc_auc(scores, positive), average_precision(scores, positive)
    if auc is None or ap is None:
        return {}
    return {"roc_auc": auc, "average_precision": ap}


def classification_metrics(outputs: Array, T: Array, n_classes: int) -> dict[str, object]:
    true, pred = predicted_classes(T), predicted_classes(outputs)
    matrix = confusion_matrix(true, pred, n_classes)
    scores = precision_recall_f1(matrix)
    binary = binary_metrics(outputs, T) if n_classes == 2 else {}
    return {
        **binary,
        "accuracy": float(np.mean(true == pred)),
        "confusion_matrix": matrix.tolist(),
        "precision": scores["precision"].tolist(),
        "recall": scores["recall"].tolist(),
        "f1": scores["f1"].tolist(),
        "macro_precision": float(scores["precision"].mean()),
        "macro_recall": float(scores["recall"].mean()),
        "macro_f1": float(scores["f1"].mean()),
    }


def multilabel_metrics(outputs: Array, T: Array) -> dict[str, object]:
    per_label = np.mean(positive(outputs) == positive(T), axis=0)
    return {"accuracy": float(per_label.mean()), "label_accuracy": per_label.tolist()}


def regression_metrics(outputs: Array, T: Array) -> dict[str, object]:
    """MSE and MAE over all outputs; R^2 per output, averaged uniformly."""
    outputs, T = outputs.astype(np.float64), T.astype(np.float64)
    error = outputs - T
    ss_res = np.sum(error**2, axis=0)
    ss_tot = np.sum((T - T.mean(axis=0)) ** 2, axis=0)
    # A constant target is predicted perfectly (R^2 = 1) or not at all (0), as scikit-learn does.
    r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), (ss_res == 0).astype(float))
    return {
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "r2": float(np.mean(r2)),
        "r2_per_output": r2.tolist(),
    }


def task_metrics(task: str, outputs: Array, T: Array, n_classes: int | None) -> dict[str, object]:
    if task == "classification":
        return classification_metrics(outputs, T, n_classes or max(outputs.shape[1], 2))
    if task == "multilabel":
        return multilabel_metrics(outputs, T)
    return regression_metrics(outputs, T)


def headline_metric(task: str) -> str:
    """The one number shown per epoch beside the loss."""
    return "r2" if task == "regression" else "accuracy"


def recorded_metrics(task: str, has_validation: bool) -> list[str]:
    """The history columns a monitor (early stopping, a plateau schedule, a sweep's ranking) may watch."""
    if not has_validation:
        return ["train_loss"]
    return ["train_loss", "val_loss", f"val_{headline_metric(task)}"]
