"""Every shipped config trains from its fixed seed and clears its threshold on its own test split.

Trained through the CLI (``nnctl train --quiet``) and measured with ``nnctl eval --json`` on
``best.npz``. xor has no test split: it is evaluated on the four XOR rows with ``--data``.
A config added to ``configs/`` without an entry in ``THRESHOLDS`` fails ``test_every_config_is_covered``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CONFIGS, eval_json, invoke, ok, train, write_csv

# config stem -> (metric on its own test split, minimum)
THRESHOLDS: dict[str, tuple[str, float]] = {
    "xor": ("accuracy", 1.0),
    "iris": ("accuracy", 0.93),
    "wine": ("accuracy", 0.94),
    "breast_cancer": ("accuracy", 0.95),  # one logistic output, bce
    "breast_cancer_softmax": ("accuracy", 0.95),  # softmax/cce variant
    "digits": ("accuracy", 0.95),
    "digits_adam": ("accuracy", 0.95),  # digits with adam/cosine/early stopping: the digits bar
    "diabetes": ("r2", 0.40),
    "penguins": ("accuracy", 0.95),  # the palmerpenguins table as published: text columns, NA cells
}
REQUIRED = {"xor", "iris", "wine", "breast_cancer", "breast_cancer_softmax", "digits", "diabetes"}
SHIPPED = sorted(path.stem for path in CONFIGS.glob("*.yaml"))


XOR_ROWS = [[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]]


def test_every_config_is_covered() -> None:
    assert set(SHIPPED) >= REQUIRED, f"missing shipped configs: {sorted(REQUIRED - set(SHIPPED))}"
    uncovered = sorted(set(SHIPPED) - set(THRESHOLDS))
    assert not uncovered, f"configs without a threshold test: {uncovered}; add them to THRESHOLDS"


@pytest.mark.parametrize("stem", SHIPPED)
def test_shipped_config_clears_threshold(tmp_path: Path, stem: str) -> None:
    if stem not in THRESHOLDS:
        pytest.fail(f"configs/{stem}.yaml has no threshold in THRESHOLDS")
    metric, minimum = THRESHOLDS[stem]
    run = train(CONFIGS / f"{stem}.yaml", tmp_path / "run")
    if stem == "xor":
        data = write_csv(tmp_path / "xor.csv", ["x1", "x2", "y"], XOR_ROWS)
        result = eval_json(run / "best.npz", "--data", str(data))
        assert result["samples"] == 4
    else:
        result = eval_json(run / "best.npz")
        assert result["data"].startswith("test split"), result["data"]
        assert result["samples"] > 0
    assert result[metric] >= minimum, f"{stem}: {metric} {result[metric]:.4f} < {minimum}"


def test_xor_predictions_are_the_xor_truth_table(tmp_path: Path) -> None:
    """configs/xor.yaml is a classifier (data.task): eval reports accuracy, predict prints labels."""
    run = train(CONFIGS / "xor.yaml", tmp_path / "run")
    data = write_csv(tmp_path / "xor.csv", ["x1", "x2", "y"], XOR_ROWS)
    assert eval_json(run / "best.npz", "--data", str(data))["task"] == "classification"
    lines = ok(invoke("predict", run / "best.npz", data)).stdout.splitlines()
    assert lines[0].split(",")[0] == "y"
    assert [line.split(",")[0] for line in lines[1:]] == [str(row[2]) for row in XOR_ROWS]
