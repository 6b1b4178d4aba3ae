"""``nnctl eval --plot`` reports (issue 14): ROC/PR curves with their areas and a threshold table for
binary tasks, ECE and a reliability diagram for classification, predicted-vs-true and residual plots
for regression. The curve functions are checked against scikit-learn; the figures' line data against
the metrics ``eval --json`` prints and against predictions made by ``nnctl predict``."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import CONFIGS, DATASETS, csv_column, eval_json, invoke, ok, train

sklearn_metrics = pytest.importorskip("sklearn.metrics")
from sklearn.calibration import calibration_curve  # noqa: E402

from nnctl.cli.plots import report_figures  # noqa: E402
from nnctl.engine import curves, metrics  # noqa: E402
from nnctl.evaluation import evaluation_report  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# The NumPy functions against scikit-learn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curves_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    score = np.round(np.clip(0.35 * y + 0.65 * rng.random(300), 0, 1), 2)  # rounded: many ties
    fpr, tpr, thresholds = curves.roc_curve(y, score)
    FPR, TPR, THRESHOLDS = sklearn_metrics.roc_curve(y, score, drop_intermediate=False)
    assert np.allclose(fpr, FPR) and np.allclose(tpr, TPR) and np.array_equal(thresholds[1:], THRESHOLDS[1:])
    assert metrics.roc_auc(score, y == 1) == pytest.approx(sklearn_metrics.roc_auc_score(y, score), abs=1e-12)
    precision, recall, cut = curves.precision_recall_curve(y, score)
    P, R, CUT = sklearn_metrics.precision_recall_curve(y, score)
    assert np.allclose(precision, P) and np.allclose(recall, R) and np.array_equal(cut, CUT)
    ap = sklearn_metrics.average_precision_score(y, score)
    assert metrics.average_precision(score, y == 1) == pytest.approx(ap, abs=1e-12)
    for row in curves.threshold_table(y, score):
        called = score >= row["threshold"]
        assert row["precision"] == pytest.approx(sklearn_metrics.precision_score(y, called, zero_division=0))
        assert row["recall"] == pytest.approx(sklearn_metrics.recall_score(y, called))
        assert row["f1"] == pytest.approx(sklearn_metrics.f1_score(y, called, zero_division=0))


@pytest.mark.parametrize("seed", [0, 1])
def test_reliability_matches_scikit_learn_calibration_curve(seed: int) -> None:
    rng = np.random.default_rng(seed)
    confidence = rng.random(500) ** 0.5
    correct = rng.random(500) < confidence * 0.9
    bins = curves.reliability(confidence, correct)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    filled = bins.counts > 0
    assert np.allclose(bins.accuracy[filled], prob_true) and np.allclose(bins.confidence[filled], prob_pred)
    weights = bins.counts[filled] / 500
    assert bins.ece == pytest.approx(float(np.sum(weights * np.abs(prob_true - prob_pred))), abs=1e-12)


def test_top_label_of_one_logistic_output() -> None:
    outputs = np.array([[0.9], [0.2], [0.6], [0.4]])
    targets = np.array([[1.0], [1.0], [0.0], [0.0]])
    confidence, correct = curves.top_label(outputs, targets)
    assert np.allclose(confidence, [0.9, 0.8, 0.6, 0.6])
    assert correct.tolist() == [True, False, False, True]


# ---------------------------------------------------------------------------------------------
# Through the CLI


@pytest.fixture(scope="module", params=["breast_cancer", "breast_cancer_softmax"])
def binary_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One logistic output (bce) and a two-class softmax (cce): both are binary tasks."""
    config = CONFIGS / f"{request.param}.yaml"
    return train(config, tmp_path_factory.mktemp(request.param) / "run", "training.epochs=5")


def predicted(checkpoint: Path, data: Path, tmp: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Labels and per-class probabilities as ``nnctl predict`` writes them (full precision)."""
    out = tmp / "predictions.csv"
    ok(invoke("predict", checkpoint, data, "--output", out))
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r for r in rows[0]], {
        k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k.startswith("p_")
    }


def test_binary_metrics_equal_scikit_learn_on_nnctl_predict(binary_run: Path, tmp_path: Path) -> None:
    data = DATASETS / "breast_cancer.csv"
    result = eval_json(binary_run / "best.npz", "--data", data)
    _, probabilities = predicted(binary_run / "best.npz", data, tmp_path)
    y = np.array([label == "malignant" for label in csv_column(data, "diagnosis")])
    score = probabilities["p_malignant"]
    assert result["roc_auc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, score), abs=1e-6)
    assert result["average_precision"] == pytest.approx(
        sklearn_metrics.average_precision_score(y, score), abs=1e-6
    )
    correct = (score >= 0.5) == y
    confidence = np.maximum(score, 1 - score)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], confidence), minlength=10)
    ece = float(np.sum(counts[counts > 0] / y.size * np.abs(prob_true - prob_pred)))
    assert result["ece"] == pytest.approx(ece, abs=1e-6)
    at_half = next(row for row in result["threshold_table"] if row["threshold"] == 0.5)
    assert at_half["recall"] == pytest.approx(sklearn_metrics.recall_score(y, score >= 0.5))
    assert at_half["precision"] == pytest.approx(sklearn_metrics.precision_score(y, score >= 0.5))


def test_binary_plots_hold_the_curves_and_areas_eval_reports(binary_run: Path, tmp_path: Path) -> None:
    checkpoint = binary_run / "best.npz"
    result = eval_json(checkpoint)
    report = evaluation_report(checkpoint)
    assert {k: v for k, v in report.result.items()} == result
    figures = report_figures(report)
    assert set(figures) == {"reliability", "roc", "pr"}
    y = report.targets.argmax(axis=1) == 1 if report.targets.shape[1] == 2 else report.targets[:, 0] >= 0.5
    score = report.outputs[:, -1]  # the positive (second) class: the one unit, or softmax column 1
    roc = _line(figures["roc"], "ROC")
    FPR, TPR, _ = sklearn_metrics.roc_curve(y, score, drop_intermediate=False)
    assert np.allclose(roc.get_xdata(), FPR) and np.allclose(roc.get_ydata(), TPR)
    assert _number_in(roc.get_label()) == pytest.approx(result["roc_auc"], abs=5e-5)
    assert sklearn_metrics.auc(roc.get_xdata(), roc.get_ydata()) == pytest.approx(
        result["roc_auc"], abs=1e-12
    )
    pr = _line(figures["pr"], "PR")
    P, R, _ = sklearn_metrics.precision_recall_curve(y, score)
    assert np.allclose(pr.get_xdata(), R) and np.allclose(pr.get_ydata(), P)
    assert _number_in(pr.get_label()) == pytest.approx(result["average_precision"], abs=5e-5)
    model = _line(figures["reliability"], "model")
    confidence = np.maximum(score, 1 - score)
    prob_true, prob_pred = calibration_curve((score >= 0.5) == y, confidence, n_bins=10)
    assert np.allclose(model.get_xdata(), prob_pred) and np.allclose(model.get_ydata(), prob_true)
    assert _number_in(model.get_label()) == pytest.approx(result["ece"], abs=5e-5)
    # and the CLI writes them all, with the threshold table as CSV
    target = tmp_path / "report.png"
    ok(invoke("eval", checkpoint, "--plot", target))
    for name in ("report.png", "report-roc.png", "report-pr.png", "report-reliability.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG, name
    with (tmp_path / "report-thresholds.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["threshold"]) for r in rows] == [r["threshold"] for r in result["threshold_table"]]
    assert [float(r["f1"]) for r in rows] == [r["f1"] for r in result["threshold_table"]]


def test_multiclass_report_has_ece_and_a_reliability_diagram(tmp_path: Path) -> None:
    run = train(CONFIGS / "iris.yaml", tmp_path / "iris", "training.epochs=5")
    result = eval_json(run / "best.npz")
    assert "roc_auc" not in result and "threshold_table" not in result
    report = evaluation_report(run / "best.npz")
    confidence, correct = report.outputs.max(axis=1), report.outputs.argmax(1) == report.targets.argmax(1)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10)
    model = _line(report_figures(report)["reliability"], "model")
    assert np.allclose(model.get_xdata(), prob_pred) and np.allclose(model.get_ydata(), prob_true)
    assert _number_in(model.get_label()) == pytest.approx(result["ece"], abs=5e-5)
    ok(invoke("eval", run / "best.npz", "--plot", tmp_path / "m.svg"))
    assert sorted(p.name for p in tmp_path.glob("m*")) == ["m-reliability.svg", "m.svg"]


def test_regression_report_plots_predictions_and_residuals(tmp_path: Path) -> None:
    run = train(CONFIGS / "diabetes.yaml", tmp_path / "diabetes", "training.epochs=5")
    result = eval_json(run / "best.npz")
    report = evaluation_report(run / "best.npz")
    figures = report_figures(report)
    assert set(figures) == {"predicted", "residuals"}
    points = figures["predicted"].axes[0].collections[0].get_offsets()
    true, predicted_values = report.targets[:, 0], report.outputs[:, 0]
    assert np.allclose(points[:, 0], true) and np.allclose(points[:, 1], predicted_values)
    assert sklearn_metrics.r2_score(points[:, 0], points[:, 1]) == pytest.approx(result["r2"], abs=1e-6)
    assert _number_in(figures["predicted"].axes[0].get_title()) == pytest.approx(result["r2"], abs=5e-5)
    residuals = figures["residuals"].axes[0].collections[0].get_offsets()
    assert np.allclose(residuals[:, 1], true - predicted_values)
    assert np.mean(np.abs(residuals[:, 1])) == pytest.approx(result["mae"], rel=1e-5)
    ok(invoke("eval", run / "best.npz", "--plot", tmp_path / "r.png"))
    assert sorted(p.name for p in tmp_path.glob("r*.png")) == ["r-residuals.png", "r.png"]


def _line(figure, prefix: str):
    return next(line for line in figure.axes[0].get_lines() if line.get_label().startswith(prefix))


def _number_in(text: str) -> float:
    return float(re.findall(r"[-+]?\d*\.\d+", text)[-1])
