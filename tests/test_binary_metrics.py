"""ROC AUC and average precision (pure NumPy, nnctl.engine.metrics) against scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from nnctl.engine.metrics import average_precision, binary_metrics, roc_auc


@pytest.mark.parametrize("seed", range(40))
def test_auc_and_average_precision_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 200))
    positive = rng.random(n) < rng.uniform(0.05, 0.95)
    if positive.all() or not positive.any():
        positive[0] = not positive[0]
    scores = np.round(rng.random(n) + 0.3 * positive, int(rng.integers(0, 4)))  # ties at low precision
    assert roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert average_precision(scores, positive) == pytest.approx(
        average_precision_score(positive, scores), abs=1e-12
    )


def test_one_class_gives_no_binary_metrics() -> None:
    assert roc_auc(np.array([0.2, 0.9]), np.array([True, True])) is None
    assert binary_metrics(np.array([[0.2], [0.9]]), np.array([[1.0], [1.0]])) == {}


def test_perfect_and_reversed_ranking() -> None:
    positive = np.array([False, False, True, True])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), positive) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), positive) == 0.0
    assert average_precision(np.array([0.1, 0.2, 0.8, 0.9]), positive) == 1.0
    metrics = binary_metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert metrics == {"roc_auc": 1.0, "average_precision": 1.0}
