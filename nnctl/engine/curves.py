"""Threshold curves and calibration of a classifier's probabilities: ROC and precision-recall curves
with their areas, a threshold table, reliability bins and the expected calibration error.

Pure NumPy functions of labels and scores (the network's outputs a^L), in float64. The conventions
are scikit-learn's (``roc_curve(drop_intermediate=False)``, ``precision_recall_curve``,
``average_precision_score``, ``calibration_curve(strategy="uniform")``), so the tests check these
functions against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray

#: Thresholds of the threshold table: predict the positive class when its probability >= t.
TABLE_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))
RELIABILITY_BINS = 10


def _ranked_counts(y: Array, score: Array) -> tuple[Array, Array, Array]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    score, y = score[order], y[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(score)), y.size - 1]  # ties move together
    tps = np.cumsum(y)[last_of_each].astype(np.float64)
    fps = (last_of_each + 1) - tps
    return tps, fps, score[last_of_each]


def roc_curve(y: Array, score: Array) -> tuple[Array, Array, Array]:
    """(false positive rate, true positive rate, thresholds), starting at (0, 0) with threshold inf."""
    tps, fps, thresholds = _ranked_counts(y, score)
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    positives, negatives = tps[-1], fps[-1]
    if positives == 0 or negatives == 0:
        raise ValueError("a ROC curve needs both classes among the labels")
    return fps / negatives, tps / positives, np.r_[np.inf, thresholds]


def precision_recall_curve(y: Array, score: Array) -> tuple[Array, Array, Array]:
    """(precision, recall, thresholds): thresholds increasing, and a last point (1, 0) without one."""
    tps, fps, thresholds = _ranked_counts(y, score)
    positives = tps[-1]
    if positives == 0:
        raise ValueError("a precision-recall curve needs at least one positive label")
    precision = tps / (tps + fps)
    recall = tps / positives
    keep = slice(None, None, -1)  # from the lowest threshold up
    return np.r_[precision[keep], 1.0], np.r_[recall[keep], 0.0], thresholds[keep]


def threshold_table(y: Array, score: Array, thresholds: tuple[float, ...] = TABLE_THRESHOLDS) -> list[dict]:
    """Precision, recall and F1 of the positive class when rows with score >= t are called positive."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    rows = []
    for t in thresholds:
        called = score >= t
        tp = float(np.sum(called & y))
        precision = tp / called.sum() if called.any() else 0.0
        recall = tp / y.sum() if y.any() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        row = {"threshold": t, "precision": precision, "recall": recall, "f1": f1}
        rows.append({**{k: float(v) for k, v in row.items()}, "positive": int(called.sum())})
    return rows


@dataclass
class Reliability:
    """Equal-width confidence bins over [0, 1]: rows per bin, mean confidence, accuracy (NaN when
    a bin is empty); ``ece`` = sum_b (n_b / n) |accuracy_b - confidence_b|."""

    edges: Array
    counts: Array
    confidence: Array
    accuracy: Array
    ece: float


def top_label(outputs: Array, T: Array) -> tuple[Array, Array]:
    """(confidence, correct) of the predicted class per row (top-label calibration): for one
    logistic output the predicted class is output >= 0.5 with confidence max(p, 1 - p)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    T = np.asarray(T)
    if outputs.shape[1] == 1:
        p = outputs[:, 0]
        predicted = p >= 0.5
        return np.where(predicted, p, 1.0 - p), predicted == (T[:, 0] >= 0.5)
    return outputs.max(axis=1), outputs.argmax(axis=1) == T.argmax(axis=1)


def reliability(confidence: Array, correct: Array, bins: int = RELIABILITY_BINS) -> Reliability:
    """Bin rows by confidence (bin b holds (edge_b, edge_b+1], the first also 0) and compare each
    bin's accuracy with its mean confidence."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], confidence)
    counts = np.bincount(ids, minlength=bins)
    sums = np.bincount(ids, weights=confidence, minlength=bins)
    hits = np.bincount(ids, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(counts > 0, sums / counts, np.nan)
        accuracy = np.where(counts > 0, hits / counts, np.nan)
    filled = counts > 0
    ece = float(np.sum(counts[filled] / counts.sum() * np.abs(accuracy[filled] - mean_confidence[filled])))
    return Reliability(edges, counts, mean_confidence, accuracy, ece)
