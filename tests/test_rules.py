"""The small rules that several parts of nnctl share, each defined once (issue 11): which metrics are
maximised, which monitors a run records, which task a cost implies, the 0.5 decision threshold.
Each test drives the real callers (trainer, schedule, sweep plan, target encoder, checkpoint
reader), so a caller that kept a private copy of a rule would be caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from nnctl.config import load_config
from nnctl.data.targets import TargetEncoder, infer_task
from nnctl.engine.metrics import classification_metrics, higher_is_better, tasks_for_cost
from nnctl.engine.schedules import ReduceOnPlateau
from nnctl.errors import ConfigError, did_you_mean
from nnctl.sweep.plan import Plan, build_plan
from nnctl.training.loop import Trainer
from nnctl.training.prepare import build_network, prepare

BASE = {
    "data": {"path": "builtin:spirals", "validation": 0.2, "test": 0.0},
    "model": {"layers": [{"units": 4, "activation": "relu"}, {"units": 3, "activation": "softmax"}]},
    "cost": "cce",
    "training": {"epochs": 1, "learning_rate": 0.1},
}


def write(tmp_path: Path, **training: object) -> Path:
    raw = {**BASE, "training": {**BASE["training"], **training}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def plan(path: Path, grid: list[str], monitor: str | None) -> Plan:
    return build_plan(path, grid=grid, random=None, seed=None, monitor=monitor, overrides=[])


@pytest.mark.parametrize(
    ("metric", "maximised"),
    [
        *[("val_accuracy", True), ("val_r2", True), ("val_f1", True), ("macro_f1", True)],
        *[("val_loss", False), ("train_loss", False), ("mse", False), ("mae", False)],
    ],
)
def test_higher_is_better_knows_every_metric(metric: str, maximised: bool) -> None:
    assert higher_is_better(metric) is maximised


def test_plateau_schedule_maximises_what_the_shared_rule_maximises() -> None:
    for monitor in ("val_f1", "val_accuracy", "val_loss"):
        schedule = ReduceOnPlateau(monitor=monitor, patience=0, factor=0.5)
        state = schedule.initial_state()
        for value in (0.1, 0.2, 0.3):  # rising: an improvement exactly when higher is better
            schedule.observe(state, {monitor: value})
        assert (state["scale"] == 1.0) is higher_is_better(monitor), monitor


def test_trainer_and_sweep_refuse_an_unrecorded_monitor_with_one_message(tmp_path: Path) -> None:
    """The plateau schedule's monitor is checked by the same function in both places; the sweep
    refuses it before any trial starts (it used to let every trial fail)."""
    path = write(tmp_path, schedule={"name": "reduce_on_plateau", "monitor": "val_acuracy"})
    config = load_config(path)
    prepared = prepare(config, path.parent)
    with pytest.raises(ConfigError) as trainer_error:
        Trainer(prepared, build_network(config, prepared.train.n_features))
    with pytest.raises(ConfigError) as sweep_error:
        build_plan(
            path,
            grid=["training.learning_rate=[0.1, 0.2]"],
            random=None,
            seed=None,
            monitor=None,
            overrides=[],
        )
    for error in (trainer_error.value, sweep_error.value):
        assert "training.schedule.monitor: 'val_acuracy' is not recorded in this run" in error.message
        assert "did you mean 'val_accuracy'?" in error.message
        assert error.hint == "it records: train_loss, val_loss, val_accuracy"
    assert sweep_error.value.message.startswith("sweep trial t")


def test_sweep_ranks_a_maximised_monitor_by_the_shared_rule(tmp_path: Path) -> None:
    path = write(tmp_path)
    plan = build_plan(
        path, grid=["training.epochs=[1, 2]"], random=None, seed=None, monitor="val_accuracy", overrides=[]
    )
    assert (plan.monitor, plan.maximize) == ("val_accuracy", True)
    trainer_config = write(tmp_path, early_stopping={"monitor": "val_accuracy", "patience": 3})
    config = load_config(trainer_config)
    prepared = prepare(config, tmp_path)
    trainer = Trainer(prepared, build_network(config, prepared.train.n_features))
    assert (trainer.monitor, trainer.maximize) == ("val_accuracy", True)


@pytest.mark.parametrize("cost", ["cce", "bce", "quadratic"])
@pytest.mark.parametrize("activation", ["softmax", "logistic", "identity"])
@pytest.mark.parametrize("units", [1, 3])
def test_inferred_task_is_one_the_checkpoint_reader_accepts(cost: str, activation: str, units: int) -> None:
    allowed = tasks_for_cost(cost, activation, units)
    for y in (np.array([[0.0], [1.0]]), np.array([["a"], ["b"]])):
        assert infer_task("auto", cost, activation, units, y) in allowed
    text_task = infer_task("auto", cost, activation, units, np.array([["a"], ["b"]]))
    numeric_task = infer_task("auto", cost, activation, units, np.array([[0.5], [1.5]]))
    if cost == "quadratic" and activation != "softmax":
        assert (numeric_task, text_task) == ("regression", "classification")
    else:
        assert numeric_task == text_task


def test_decoding_and_scoring_share_the_threshold() -> None:
    """An output of exactly 0.5 is the positive class for predict and for eval alike."""
    outputs = np.array([[0.5], [0.4999], [0.9]])
    encoder = TargetEncoder(task="classification", classes=["no", "yes"], output_units=1)
    assert encoder.decode(outputs).tolist() == ["yes", "no", "yes"]
    scored = classification_metrics(outputs, np.array([[1.0], [0.0], [1.0]]), 2)
    assert scored["accuracy"] == 1.0
    multilabel = TargetEncoder(task="multilabel", classes=None, output_units=1)
    assert multilabel.decode(outputs).ravel().tolist() == [1, 0, 1]


def test_did_you_mean_is_one_rule_for_config_and_data() -> None:
    assert did_you_mean("learning_rat", ["learning_rate", "epochs"]) == "did you mean 'learning_rate'?"
    assert did_you_mean("zzz", ["learning_rate", "epochs"]) is None
