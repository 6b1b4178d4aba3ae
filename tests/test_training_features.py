"""Training features end to end (issue 7): optimizers, schedules, regularization, early stopping,
fine-tuning, per-class metrics and the digits_adam example.

Unit tests of each piece live beside it (test_optimizers.py, test_network.py); here every
feature is driven the way a user drives it: a config key set through ``--set`` or in-process
through ``nnctl.workflows``/``nnctl.training``, and the result compared with an independent
computation written out in the test (same operation order where the claim is "to the last bit").
"""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import cce_loss_and_accuracy, csv_column, csv_columns, read_checkpoint, split_of
from typer.testing import CliRunner

from nnctl.checkpoint import load_checkpoint
from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.engine.transforms import clip_global_norm
from nnctl.training.evaluate import evaluate
from nnctl.training.loop import Trainer
from nnctl.training.prepare import build_network, prepare
from nnctl.workflows import plan_training, prepare_for_plan, run_training

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
IRIS = CONFIGS / "iris.yaml"
IRIS_CSV = REPO / "datasets" / "iris.csv"
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


# ---------------------------------------------------------------------------------------------
# helpers


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner(env=ENV).invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"nnctl {args} raised {result.exception!r}\n{result.output}")
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return result.exit_code, output


def train(out: Path, *sets: str, config: Path = IRIS, extra: tuple[str, ...] = ()) -> Path:
    args: list[object] = ["train", config, "--out", out, "--quiet", *extra]
    for assignment in sets:
        args += ["--set", assignment]
    code, output = cli(*args)
    assert code == 0, output
    return out


def eval_json(checkpoint: Path, *more: object) -> dict[str, Any]:
    code, output = cli("eval", checkpoint, "--json", *more)
    assert code == 0, output
    return json.loads(output)


def history(run: Path) -> list[dict[str, str]]:
    with (run / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def meta(path: Path) -> dict[str, Any]:
    return json.loads(str(npz(path)["meta"][()]))


def train_state(path: Path) -> dict[str, Any]:
    return json.loads(str(npz(path)["train_state"][()]))


def parameter_keys(arrays: dict[str, np.ndarray]) -> list[str]:
    return sorted(k for k in arrays if k[:1] in "Wb" and k[1:].isdigit())


def in_process(*overrides: str, config: Path = IRIS) -> tuple[Any, Any, Any]:
    """(config, prepared data, freshly initialized network) without the CLI."""
    cfg = load_config(config, list(overrides))
    prepared = prepare(cfg, config.parent)
    return cfg, prepared, build_network(cfg, prepared.train.x.shape[1])


# ---------------------------------------------------------------------------------------------
# Optimizers: the first steps through the Trainer, against a re-implementation to the last bit

#: Each rule written out again, from the formulas in docs/training.md, on copies (out of place),
#: in the same operation order as nnctl.engine.optimizers, with the documented defaults.
MU, BETA1, BETA2, EPS, RHO, ADAMW_DECAY = 0.9, 0.9, 0.999, 1e-8, 0.9, 0.01


def reference_step(
    name: str, p: np.ndarray, g: np.ndarray, slot: dict[str, np.ndarray], lr: float, t: int, weight: bool
) -> np.ndarray:
    if name == "sgd":
        return p - lr * g
    if name in ("momentum", "nesterov"):
        slot["v"] = MU * slot["v"] + g
        step = g + MU * slot["v"] if name == "nesterov" else slot["v"]
        return p - lr * step
    if name in ("adam", "adamw"):
        slot["m"] = BETA1 * slot["m"] + (1.0 - BETA1) * g
        slot["v"] = BETA2 * slot["v"] + (1.0 - BETA2) * (g * g)
        m_hat = slot["m"] / (1.0 - BETA1**t)
        v_hat = slot["v"] / (1.0 - BETA2**t)
        if name == "adamw" and weight:
            p = p - (lr * ADAMW_DECAY) * p  # decoupled decay, weights only
        return p - lr * m_hat / (np.sqrt(v_hat) + EPS)
    if name == "rmsprop":
        slot["v"] = RHO * slot["v"] + (1.0 - RHO) * (g * g)
        return p - lr * g / (np.sqrt(slot["v"]) + EPS)
    raise AssertionError(name)


OPTIMIZER_SETS = {
    "sgd": "training.optimizer=sgd",
    "momentum": "training.optimizer=momentum",
    "nesterov": "training.optimizer={name: momentum, nesterov: true}",
    "adam": "training.optimizer=adam",
    "adamw": "training.optimizer=adamw",
    "rmsprop": "training.optimizer=rmsprop",
}
#: optimizer state slot names in the checkpoint/Trainer (velocity_i, m_i/v_i, square_avg_i)
STATE_SLOTS = {
    "momentum": {"v": "velocity"},
    "nesterov": {"v": "velocity"},
    "adam": {"m": "m", "v": "v"},
    "adamw": {"m": "m", "v": "v"},
    "rmsprop": {"v": "square_avg"},
    "sgd": {},
}


@pytest.mark.parametrize("name", list(OPTIMIZER_SETS))
def test_optimizer_first_steps_through_the_trainer_are_bit_exact(name: str) -> None:
    """Three minibatch steps of real training (float32, iris) equal the written-out rule bit for
    bit, parameters and optimizer state; biases are made non-zero so a decay on them would show."""
    lr, batch = 0.01, 30
    _cfg, prepared, net = in_process(
        OPTIMIZER_SETS[name],
        f"training.learning_rate={lr}",
        f"training.batch_size={batch}",
        "training.epochs=1",
        "data.shuffle=false",  # batches in file order, so the test can take the same rows
    )
    for layer in net.layers:
        layer.b[...] = np.linspace(-0.5, 0.5, layer.b.size, dtype=layer.b.dtype)
    reference = copy.deepcopy(net)
    trainer = Trainer(prepared, net)
    trainer.fit()
    assert trainer.loop.step == math.ceil(prepared.train.size / batch) == 3

    params = reference.parameters()
    slots = [{key: np.zeros_like(p) for key in ("m", "v")} for p in params]
    x, t = prepared.train.x, prepared.train.t
    for step in range(1, 4):
        # the same rows, gathered into fresh arrays as the training loop gathers its batches
        rows = np.arange((step - 1) * batch, step * batch)
        xb, tb = np.take(x, rows, axis=0), np.take(t, rows, axis=0)
        _, grads = reference.gradients(xb, tb)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            p[...] = reference_step(name, p, g, slots[i], lr, step, weight=i % 2 == 0)

    assert int(trainer.optimizer_state["step"]) == 3
    for i, (got, want) in enumerate(zip(net.parameters(), params, strict=True)):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want, err_msg=f"{name}: parameter {i}")
        for ours, theirs in STATE_SLOTS[name].items():
            np.testing.assert_array_equal(
                trainer.optimizer_state[f"{theirs}_{i}"], slots[i][ours], err_msg=f"{name}: {theirs}_{i}"
            )


def test_sgd_step_is_1_32_with_hand_backprop() -> None:
    """One full-batch sgd step on iris (float64) is W - eta * mean dc/dW, (1.32), with the gradient
    from an independent backprop: tanh hidden layer, softmax + CCE output (s^L = a - t, (2.21))."""
    lr = 0.1
    _cfg, prepared, net = in_process(
        "dtype=float64", f"training.learning_rate={lr}", "training.batch_size=1000", "training.epochs=1"
    )
    W1, b1, W2, b2 = (p.copy() for p in net.parameters())
    x, t = prepared.train.x, prepared.train.t
    Trainer(prepared, net).fit()

    n = x.shape[0]
    a1 = np.tanh(x @ W1.T + b1)
    z2 = a1 @ W2.T + b2
    a2 = np.exp(z2 - z2.max(axis=1, keepdims=True))
    a2 /= a2.sum(axis=1, keepdims=True)
    s2 = (a2 - t) / n  # gradient of the mean cost
    s1 = (s2 @ W2) * (1.0 - a1**2)
    expected = [W1 - lr * (s1.T @ x), b1 - lr * s1.sum(0), W2 - lr * (s2.T @ a1), b2 - lr * s2.sum(0)]
    for got, want in zip(net.parameters(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


# order of magnitude learning rates per optimizer; each must reach 0.9 on iris from the seed
CONVERGENCE = {
    "momentum": 0.01,
    "nesterov": 0.01,
    "adam": 0.01,
    "adamw": 0.01,
    "rmsprop": 0.005,
}


@pytest.mark.parametrize("name", list(CONVERGENCE))
def test_each_optimizer_converges_on_iris(tmp_path: Path, name: str) -> None:
    run = train(
        tmp_path / name,
        OPTIMIZER_SETS[name],
        f"training.learning_rate={CONVERGENCE[name]}",
        "training.epochs=60",
    )
    rows = history(run)
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])
    assert max(float(r["val_accuracy"]) for r in rows) >= 0.9
    assert eval_json(run / "best.npz")["accuracy"] >= 0.9
    config = json.loads(str(npz(run / "best.npz")["config"][()]))
    assert config["training"]["optimizer"]["name"] == ("momentum" if name == "nesterov" else name)


# ---------------------------------------------------------------------------------------------
# Resume keeps the optimizer state bit-exactly


@pytest.mark.parametrize(
    "sets",
    [
        # adam with dropout on: the dropout generator must resume too
        ("training.optimizer=adam", "training.learning_rate=0.01", "model.layers[0].dropout=0.2"),
        ("training.optimizer={name: momentum, nesterov: true}", "training.learning_rate=0.01"),
    ],
    ids=["adam+dropout", "nesterov"],
)
def test_optimizer_state_survives_resume_bit_exactly(tmp_path: Path, sets: tuple[str, ...]) -> None:
    straight = train(tmp_path / "straight", *sets, "training.epochs=6")
    split = train(tmp_path / "split", *sets, "training.epochs=3")
    assert meta(split / "last.npz")["epoch"] == 3
    code, output = cli("train", "--resume", split / "last.npz", "--set", "training.epochs=6", "--quiet")
    assert code == 0, output

    a, b = npz(straight / "last.npz"), npz(split / "last.npz")
    assert meta(split / "last.npz")["epoch"] == 6
    opt_keys = sorted(k for k in a if k.startswith("opt_"))
    assert "opt_step" in opt_keys and len(opt_keys) > 1, opt_keys  # the slots are saved
    assert opt_keys == sorted(k for k in b if k.startswith("opt_"))
    assert int(a["opt_step"]) == 6 * math.ceil(90 / 8)  # iris: 90 training rows, batch 8
    for key in parameter_keys(a) + opt_keys:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert any(np.any(a[k] != 0) for k in opt_keys if k != "opt_step")
    # the history of the resumed run continues the first half and equals the straight one
    drop = ("seconds",)
    rows_a = [{k: v for k, v in r.items() if k not in drop} for r in history(straight)]
    rows_b = [{k: v for k, v in r.items() if k not in drop} for r in history(split)]
    assert rows_a == rows_b and len(rows_a) == 6


# ---------------------------------------------------------------------------------------------
# Early stopping

EARLY = (
    "training.optimizer=adam",
    "training.learning_rate=0.05",
    "training.epochs=200",
)


def test_early_stopping_restores_the_best_epoch(tmp_path: Path) -> None:
    patience = 2
    out = tmp_path / "es"
    plan = plan_training(IRIS, [*EARLY, f"training.early_stopping={{patience: {patience}}}"], out=out)
    trainer, _writer = run_training(plan, prepare_for_plan(plan))
    records = trainer.fit()

    epochs = [r["epoch"] for r in records]
    assert trainer.loop.stopped_early and len(records) < 200
    losses = [r["val_loss"] for r in records]
    best_index = int(np.argmin(losses))  # first minimum: later ties do not count as improvement
    best_epoch = epochs[best_index]
    assert epochs[-1] == best_epoch + patience  # stopped after `patience` epochs without improvement
    assert trainer.loop.best_epoch == best_epoch and trainer.loop.best_value == losses[best_index]

    best, last = load_checkpoint(out / "best.npz"), load_checkpoint(out / "last.npz")
    assert best.epoch == best_epoch and last.epoch == epochs[-1]
    assert best.meta["metrics"]["val_loss"] == losses[best_index]
    for layer, W, b in zip(trainer.net.layers, best.weights, best.biases, strict=True):
        np.testing.assert_array_equal(layer.W, W)  # the model in hand is the best epoch's
        np.testing.assert_array_equal(layer.b, b)
    assert not np.array_equal(last.weights[0], best.weights[0])  # ... not the last epoch's
    # the same best epoch, from the history file the user reads
    rows = history(out)
    assert int(min(rows, key=lambda r: float(r["val_loss"]))["epoch"]) == best_epoch
    # and the test metrics reported are those of the best weights
    restored = evaluate(trainer.net, trainer.prepared.test, trainer.prepared.task, 3)
    assert restored["loss"] == eval_json(out / "best.npz")["loss"]


def test_early_stopping_on_a_maximized_metric_with_min_delta(tmp_path: Path) -> None:
    stopping = "training.early_stopping={monitor: val_accuracy, patience: 3, min_delta: 0.01}"
    out = train(tmp_path / "acc", *EARLY, stopping)
    rows = history(out)
    assert len(rows) < 200
    accuracy = [float(r["val_accuracy"]) for r in rows]
    # walk the rule: an epoch improves when it beats the best by more than min_delta
    best, best_epoch, wait = None, 0, 0
    for epoch, value in enumerate(accuracy, start=1):
        if best is None or value > best + 0.01:
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
    assert wait == 3 and meta(out / "best.npz")["epoch"] == best_epoch


def test_early_stopping_state_survives_resume(tmp_path: Path) -> None:
    patience = 3
    stopping = f"training.early_stopping={{patience: {patience}}}"
    straight = train(tmp_path / "straight", *EARLY, stopping)
    stop_epoch = meta(straight / "last.npz")["epoch"]
    best_epoch = meta(straight / "best.npz")["epoch"]
    assert stop_epoch == best_epoch + patience < 200

    # stop one epoch short of the early stop: wait = patience - 1 must be carried over
    part = train(tmp_path / "part", *EARLY[:-1], stopping, f"training.epochs={stop_epoch - 1}")
    state = train_state(part / "last.npz")["loop"]
    assert state["wait"] == patience - 1 and state["best_epoch"] == best_epoch
    assert state["best_value"] == float(history(straight)[best_epoch - 1]["val_loss"])

    plan = plan_training(None, ["training.epochs=200"], resume=part / "last.npz")
    trainer, _ = run_training(plan, prepare_for_plan(plan))
    trainer.fit()
    assert trainer.loop.stopped_early and trainer.loop.epoch == stop_epoch  # one more epoch, not 3
    for key in ("last.npz", "best.npz"):
        a, b = npz(straight / key), npz(part / key)
        for name in parameter_keys(a):
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{key} {name}")
    best = load_checkpoint(straight / "best.npz")
    for layer, W in zip(trainer.net.layers, best.weights, strict=True):
        np.testing.assert_array_equal(layer.W, W)  # restored from best.npz after resuming


def test_best_weights_are_restored_when_epochs_run_out_first(tmp_path: Path) -> None:
    """ "whatever stopped training": with patience never reached, the model is still the best's."""
    out = tmp_path / "es"
    sets = [*EARLY[:-1], "training.epochs=25", "training.early_stopping={patience: 100}"]
    plan = plan_training(IRIS, sets, out=out)
    trainer, _ = run_training(plan, prepare_for_plan(plan))
    records = trainer.fit()
    assert not trainer.loop.stopped_early and len(records) == 25
    best = load_checkpoint(out / "best.npz")
    assert best.epoch < 25  # the last epoch is not the best one in this setup
    for layer, W, b in zip(trainer.net.layers, best.weights, best.biases, strict=True):
        np.testing.assert_array_equal(layer.W, W)
        np.testing.assert_array_equal(layer.b, b)


def test_resume_into_another_folder_keeps_a_best_checkpoint(tmp_path: Path) -> None:
    stopping = "training.early_stopping={patience: 3}"
    straight = train(tmp_path / "straight", *EARLY, stopping)
    stop_epoch = meta(straight / "last.npz")["epoch"]
    part = train(tmp_path / "part", *EARLY[:-1], stopping, f"training.epochs={stop_epoch - 1}")
    new = tmp_path / "new"
    code, output = cli(
        "train", "--resume", part / "last.npz", "--out", new, "--set", "training.epochs=200", "--quiet"
    )
    assert code == 0, output
    assert meta(new / "last.npz")["epoch"] == stop_epoch
    assert (new / "best.npz").exists(), sorted(p.name for p in new.iterdir())
    a, b = npz(straight / "best.npz"), npz(new / "best.npz")
    for key in parameter_keys(a):
        np.testing.assert_array_equal(a[key], b[key])


def test_resuming_an_early_stopped_run_says_so(tmp_path: Path) -> None:
    run = train(tmp_path / "es", *EARLY, "training.early_stopping={patience: 2}")
    code, output = cli("train", "--resume", run / "last.npz", "--set", "training.epochs=300")
    assert code == 0, output
    assert "stopped early" in output, output
    assert "extend with --set training.epochs" not in output


def test_early_stopping_monitor_must_be_recorded(tmp_path: Path) -> None:
    code, output = cli(
        "train", IRIS, "--out", tmp_path / "x", "--quiet",
        "--set", "training.early_stopping={monitor: val_los}",
    )  # fmt: skip
    assert code == 2
    assert "val_los" in output and "val_loss" in output


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules: history.csv's lr column against the formula

BASE = 0.05
SCHEDULE_EPOCHS = 12


def step_lr(e: int, n: int) -> float:
    return BASE * 0.5 ** (e // 3)


def exponential_lr(e: int, n: int) -> float:
    return BASE * 0.8**e


def cosine_lr(e: int, n: int, min_lr: float = 0.001) -> float:
    return min_lr + (BASE - min_lr) * (1 + math.cos(math.pi * e / n)) / 2


def warmup_cosine_lr(e: int, n: int, warmup: int = 3) -> float:
    if e < warmup:
        return BASE * (e + 1) / warmup  # linear warmup up to the base rate
    return cosine_lr(e - warmup, n - warmup)


def constant_lr(e: int, n: int) -> float:
    return BASE


@pytest.mark.parametrize(
    ("schedule", "formula"),
    [
        ("constant", constant_lr),
        ("{name: step, step_size: 3, gamma: 0.5}", step_lr),
        ("{name: exponential, gamma: 0.8}", exponential_lr),
        ("{name: cosine, min_lr: 0.001}", cosine_lr),
        ("{name: cosine, min_lr: 0.001, warmup_epochs: 3}", warmup_cosine_lr),
    ],
    ids=["constant", "step", "exponential", "cosine", "warmup+cosine"],
)
def test_schedule_learning_rates_match_their_formula(tmp_path: Path, schedule: str, formula: Any) -> None:
    run = train(
        tmp_path / "run",
        f"training.schedule={schedule}",
        f"training.learning_rate={BASE}",
        f"training.epochs={SCHEDULE_EPOCHS}",
    )
    got = [float(r["lr"]) for r in history(run)]
    want = [formula(e, SCHEDULE_EPOCHS) for e in range(SCHEDULE_EPOCHS)]
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    assert [int(r["epoch"]) for r in history(run)] == list(range(1, SCHEDULE_EPOCHS + 1))


def test_reduce_on_plateau_follows_the_validation_loss(tmp_path: Path) -> None:
    factor, patience, min_lr, base = 0.5, 1, 0.002, 0.3
    run = train(
        tmp_path / "plateau",
        f"training.schedule={{name: reduce_on_plateau, factor: {factor}, patience: {patience}, "
        f"min_lr: {min_lr}}}",
        f"training.learning_rate={base}",
        "training.epochs=30",
    )
    rows = history(run)
    got = [float(r["lr"]) for r in rows]
    # the rule, replayed on the recorded val_loss: multiply by factor once the loss has not
    # improved for more than `patience` epochs; the rate of epoch e uses epochs before e
    scale, best, wait, want = 1.0, None, 0, []
    for row in rows:
        want.append(max(base * scale, min_lr))
        value = float(row["val_loss"])
        if best is None or value < best:
            best, wait = value, 0
        else:
            wait += 1
            if wait > patience:
                scale, wait = scale * factor, 0
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    assert len(set(got)) >= 3, got  # the plateau rule actually fired (more than once)


@pytest.mark.parametrize(
    "sets",
    [
        ("training.schedule={name: reduce_on_plateau, monitor: val_los}",),
        ("training.schedule={name: reduce_on_plateau}", "data.validation=0"),
    ],
    ids=["misspelt", "no-validation"],
)
def test_reduce_on_plateau_monitor_must_be_recorded(tmp_path: Path, sets: tuple[str, ...]) -> None:
    args: list[object] = ["train", IRIS, "--out", tmp_path / "x", "--quiet", "--set", "training.epochs=2"]
    for assignment in sets:
        args += ["--set", assignment]
    code, output = cli(*args)
    assert code == 2, output
    assert "monitor" in output


# ---------------------------------------------------------------------------------------------
# Regularization: L2 weight decay, gradient clipping, dropout


def one_full_batch_step(*overrides: str, nonzero_biases: bool = True) -> tuple[Any, list, list, list]:
    """One sgd step on all of iris's training rows: (trainer, params before, after, gradients)."""
    lr = 0.1
    _cfg, prepared, net = in_process(
        "training.optimizer=sgd",
        f"training.learning_rate={lr}",
        "training.batch_size=1000",
        "training.epochs=1",
        "data.shuffle=false",  # rows in file order: the same sums, in the same order, as below
        *overrides,
    )
    if nonzero_biases:
        for layer in net.layers:
            layer.b[...] = np.linspace(-1.0, 1.0, layer.b.size, dtype=layer.b.dtype)
    before = [p.copy() for p in net.parameters()]
    _, grads = copy.deepcopy(net).gradients(prepared.train.x, prepared.train.t)
    trainer = Trainer(prepared, net)
    trainer.fit()
    assert trainer.loop.step == 1
    return trainer, before, net.parameters(), grads


def test_l2_weight_decay_adds_wd_w_to_weight_gradients_only() -> None:
    lr, wd = 0.1, 0.05
    _, before, after, grads = one_full_batch_step(f"training.weight_decay={wd}")
    for i, (p0, p1, g) in enumerate(zip(before, after, grads, strict=True)):
        if i % 2 == 0:  # weights: the gradient of mean cost + (wd/2) ||W||^2
            np.testing.assert_array_equal(p1, p0 - lr * (g + wd * p0), err_msg=f"W{i // 2 + 1}")
        else:  # biases: untouched by the decay
            np.testing.assert_array_equal(p1, p0 - lr * g, err_msg=f"b{i // 2 + 1}")
            assert not np.array_equal(p1, p0 - lr * (g + wd * p0))  # a decay would have shown


def test_clip_norm_bounds_the_global_gradient_norm() -> None:
    lr, clip = 0.1, 0.05
    _, before, after, grads = one_full_batch_step("dtype=float64", f"training.clip_norm={clip}")
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    assert norm > 4 * clip  # clipping is active in this setup
    applied = [(p0 - p1) / lr for p0, p1 in zip(before, after, strict=True)]
    applied_norm = math.sqrt(sum(float(np.sum(a * a)) for a in applied))
    assert applied_norm <= clip * (1 + 1e-9)
    assert applied_norm == pytest.approx(clip, rel=1e-9)
    for a, g in zip(applied, grads, strict=True):  # one common scale: the direction is kept
        np.testing.assert_allclose(a, g * (clip / norm), rtol=1e-9, atol=1e-15)


def test_clip_norm_above_the_norm_changes_nothing() -> None:
    lr = 0.1
    _, before, after, grads = one_full_batch_step("training.clip_norm=1000")
    for p0, p1, g in zip(before, after, grads, strict=True):
        np.testing.assert_array_equal(p1, p0 - lr * g)


def test_clip_global_norm_function() -> None:
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(4, 3)), rng.normal(size=4)]
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    kept = [g.copy() for g in grads]
    assert clip_global_norm(grads, norm * 2) == pytest.approx(norm)
    for g, k in zip(grads, kept, strict=True):
        np.testing.assert_array_equal(g, k)
    assert clip_global_norm(grads, 1.0) == pytest.approx(norm)
    assert math.sqrt(sum(float(np.sum(g * g)) for g in grads)) == pytest.approx(1.0, rel=1e-12)


def test_dropout_training_is_seeded_and_actually_drops(tmp_path: Path) -> None:
    sets = ("model.layers[0].dropout=0.3", "training.epochs=5")
    a = train(tmp_path / "a", *sets)
    b = train(tmp_path / "b", *sets)
    plain = train(tmp_path / "plain", "training.epochs=5")
    wa, wb, wp = npz(a / "last.npz"), npz(b / "last.npz"), npz(plain / "last.npz")
    for key in parameter_keys(wa):
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)
    assert not np.array_equal(wa["W1"], wp["W1"])
    ha, hb = history(a), history(b)
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]
    # Validation is evaluated without dropout: the loss recomputed in NumPy from the saved weights
    # on the validation rows (rebuilt from the seed) is the recorded one. With a mask applied at
    # evaluation the recorded loss would be that of a random sub-network, far from this.
    ckpt = read_checkpoint(a / "last.npz")
    labels = csv_column(IRIS_CSV, "species")
    strata = np.array([ckpt.classes.index(label) for label in labels])
    rows = split_of(ckpt, len(labels), strata)["validation"]
    x = csv_columns(IRIS_CSV, ckpt.feature_names)[rows]
    loss, accuracy = cce_loss_and_accuracy(ckpt, x, [labels[i] for i in rows])
    assert float(ha[-1]["val_loss"]) == pytest.approx(loss, rel=1e-5)
    assert float(ha[-1]["val_accuracy"]) == pytest.approx(accuracy, abs=1e-12)


def test_dropout_mask_and_evaluation() -> None:
    rate = 0.3
    _cfg, prepared, net = in_process(f"model.layers[0].dropout={rate}", "dtype=float64")
    x = prepared.train.x

    # evaluation: Network.forward is the plain recurrence, no mask, the same every call
    a1 = np.tanh(x @ net.layers[0].W.T + net.layers[0].b)
    z2 = a1 @ net.layers[1].W.T + net.layers[1].b
    expected = np.exp(z2 - z2.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12)
    np.testing.assert_array_equal(net.forward(x), net.forward(x))
    assert all(m is None for m in net.forward_pass(x).masks)

    # training: kept units scaled by 1/(1 - rate), dropped ones zero, the output layer never
    trace = net.forward_pass(x, np.random.default_rng(1))
    mask = trace.masks[0]
    assert trace.masks[-1] is None
    assert set(np.unique(mask)) == {0.0, 1.0 / (1.0 - rate)}
    kept = mask > 0
    np.testing.assert_array_equal(trace.inputs[1][kept], trace.a[0][kept] * (1.0 / (1.0 - rate)))
    assert np.all(trace.inputs[1][~kept] == 0)
    assert abs(kept.mean() - (1 - rate)) < 0.05  # 90 x 16 draws
    assert abs(mask.mean() - 1.0) < 0.07  # inverted dropout keeps the expected activation

    # the same generator state gives the same mask (seeded), in the network's dtype
    m1 = net.forward_pass(x, np.random.default_rng(7)).masks[0]
    m2 = net.forward_pass(x, np.random.default_rng(7)).masks[0]
    np.testing.assert_array_equal(m1, m2)
    assert m1.dtype == net.layers[0].W.dtype
    assert not np.array_equal(m1, net.forward_pass(x, np.random.default_rng(8)).masks[0])

    # backprop through the mask: a unit dropped for the only sample gets no weight gradient
    rng = np.random.default_rng(3)
    trace = net.forward_pass(x[:1], rng)
    grads = net.backward(trace, prepared.train.t[:1])
    dropped = trace.masks[0][0] == 0
    assert dropped.any() and (~dropped).any()
    assert np.all(grads[0][dropped] == 0) and np.all(grads[1][dropped] == 0)
    assert np.any(grads[0][~dropped] != 0)


def test_dropout_on_the_output_layer_is_a_config_error(tmp_path: Path) -> None:
    code, output = cli(
        "train", IRIS, "--out", tmp_path / "x", "--quiet", "--set", "model.layers[1].dropout=0.5"
    )
    assert code == 2
    assert "model.layers[1].dropout" in output


# ---------------------------------------------------------------------------------------------
# --init-from: weights only, fresh optimizer and counters, shapes checked


def test_init_from_takes_weights_only(tmp_path: Path) -> None:
    sets = ("training.optimizer=adam", "training.learning_rate=0.01")
    source = train(tmp_path / "source", *sets, "training.epochs=5")
    source_ckpt = load_checkpoint(source / "last.npz")

    # in process: the new run starts from the weights, with a fresh optimizer and loop
    plan = plan_training(
        IRIS, [*sets, "training.epochs=2"], out=tmp_path / "inproc", init_from=source / "last.npz"
    )
    trainer, _ = run_training(plan, prepare_for_plan(plan))
    for layer, W, b in zip(trainer.net.layers, source_ckpt.weights, source_ckpt.biases, strict=True):
        np.testing.assert_array_equal(layer.W, W)
        np.testing.assert_array_equal(layer.b, b)
    assert int(trainer.optimizer_state["step"]) == 0
    assert all(not np.any(v) for v in trainer.optimizer_state.values())
    assert trainer.loop.epoch == 0 and trainer.loop.best_value is None

    # through the CLI: history starts at epoch 1, the optimizer's step count restarts
    tuned = train(
        tmp_path / "tuned", *sets, "training.epochs=2", extra=("--init-from", str(source / "last.npz"))
    )
    rows = history(tuned)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    steps_per_epoch = math.ceil(90 / 8)
    assert int(npz(source / "last.npz")["opt_step"]) == 5 * steps_per_epoch
    assert int(npz(tuned / "last.npz")["opt_step"]) == 2 * steps_per_epoch
    assert meta(tuned / "last.npz")["epoch"] == 2
    # it did start from trained weights: its first epoch beats a fresh run's first epoch
    assert float(rows[0]["train_loss"]) < 0.5 * float(history(source)[0]["train_loss"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("model.layers[0].units=8", "W1 has shape (16, 4)"),
        ("model.layers=[{units: 16, activation: tanh}, {units: 8, activation: tanh}, "
         "{units: 3, activation: softmax}]", "has 2 layers, the config builds 3"),
    ],
    ids=["units", "depth"],
)  # fmt: skip
def test_init_from_refuses_shapes_that_do_not_fit(tmp_path: Path, change: str, message: str) -> None:
    source = train(tmp_path / "source", "training.epochs=1")
    code, output = cli(
        "train", IRIS, "--out", tmp_path / "new", "--quiet",
        "--init-from", source / "last.npz", "--set", change,
    )  # fmt: skip
    assert code == 2, output
    assert message in output and "--init-from" in output, output
    assert not (tmp_path / "new" / "last.npz").exists()


def test_init_from_and_resume_exclude_each_other(tmp_path: Path) -> None:
    source = train(tmp_path / "source", "training.epochs=1")
    code, output = cli(
        "train", "--resume", source / "last.npz", "--init-from", source / "last.npz", "--quiet"
    )
    assert code == 2
    assert "exclude each other" in output


# ---------------------------------------------------------------------------------------------
# eval: precision / recall / F1 per class and macro


def test_eval_precision_recall_f1_from_the_confusion_matrix(tmp_path: Path) -> None:
    # an undertrained model, so the matrix has errors off the diagonal
    run = train(tmp_path / "weak", "training.epochs=1", "training.learning_rate=0.002")
    data = REPO / "datasets" / "iris.csv"
    result = eval_json(run / "best.npz", "--data", data)

    # the confusion matrix, rebuilt from `nnctl predict` and the file's labels
    code, output = cli("predict", run / "best.npz", data)
    assert code == 0, output
    predicted = [row[0] for row in csv.reader(output.splitlines()[1:])]
    with data.open(newline="") as handle:
        truth = [row["species"] for row in csv.DictReader(handle)]
    classes = result["classes"]
    assert classes == sorted(set(truth))
    matrix = np.zeros((3, 3), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        matrix[classes.index(t), classes.index(p)] += 1
    assert result["confusion_matrix"] == matrix.tolist()
    assert np.trace(matrix) < matrix.sum()  # not a trivial diagonal

    for k in range(3):
        tp, predicted_k, actual_k = matrix[k, k], matrix[:, k].sum(), matrix[k, :].sum()
        precision = tp / predicted_k if predicted_k else 0.0
        recall = tp / actual_k if actual_k else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert result["precision"][k] == pytest.approx(precision, rel=1e-12)
        assert result["recall"][k] == pytest.approx(recall, rel=1e-12)
        assert result["f1"][k] == pytest.approx(f1, rel=1e-12)
    for key in ("precision", "recall", "f1"):
        assert result[f"macro_{key}"] == pytest.approx(sum(result[key]) / 3, rel=1e-12)
    assert result["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert result["samples"] == 150

    code, output = cli("eval", run / "best.npz", "--data", data)
    assert code == 0
    for label in ("macro_precision", "macro_recall", "macro_f1", "per class", *classes):
        assert label in output


# ---------------------------------------------------------------------------------------------
# Per-layer diagnostics (training.trace)


def test_trace_adds_per_layer_columns(tmp_path: Path) -> None:
    plain = train(tmp_path / "plain", "training.epochs=2")
    traced = train(tmp_path / "traced", "training.epochs=2", "training.trace=true")
    plain_rows, traced_rows = history(plain), history(traced)
    extra = [c for c in traced_rows[0] if c not in plain_rows[0]]
    assert {"l1_grad", "l1_update_ratio", "l1_saturated", "l2_grad", "l2_update_ratio"} <= set(extra)
    # tracing observes; it does not change the training
    a, b = npz(plain / "last.npz"), npz(traced / "last.npz")
    for key in parameter_keys(a):
        np.testing.assert_array_equal(a[key], b[key])


def expected_trace(net: Any, x: np.ndarray, t: np.ndarray, lr: float, epochs: int) -> list[dict[str, float]]:
    """The trace columns written out from their definitions, replaying full-batch SGD (1.32) on a
    copy: mean |dC/dW| per layer, ||W_after - W_before|| / ||W_before||, the fraction of relu units
    that are 0 on every row, the fraction of tanh outputs within 1% of the range from +-1."""
    net = copy.deepcopy(net)
    records = []
    for _ in range(epochs):
        activations = net.forward_pass(x).a
        _, grads = net.gradients(x, t)
        record: dict[str, float] = {}
        for index, layer in enumerate(net.layers):
            name, before = layer.activation.name, layer.W.copy()
            record[f"l{index + 1}_grad"] = float(np.mean(np.abs(grads[2 * index])))
            layer.W -= lr * grads[2 * index]
            layer.b -= lr * grads[2 * index + 1]
            change = np.sqrt(np.sum((layer.W - before) ** 2)) / np.sqrt(np.sum(before**2))
            record[f"l{index + 1}_update_ratio"] = float(change)
            a = activations[index]
            if name == "relu":
                record[f"l{index + 1}_dead"] = float(np.mean(np.all(a == 0, axis=0)))
            elif name == "tanh":
                record[f"l{index + 1}_saturated"] = float(np.mean(np.abs(a) > 1 - 0.02))
        records.append(record)
    return records


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_trace_columns_follow_their_formulas_on_full_batch_sgd(activation: str) -> None:
    lr, epochs = 0.5, 3
    _cfg, prepared, net = in_process(
        "dtype=float64",
        "training.optimizer=sgd",
        f"training.learning_rate={lr}",
        "training.batch_size=1000",  # one step per epoch: each record is one step's values
        f"training.epochs={epochs}",
        "training.trace=true",
        f"model.layers[0].activation={activation}",
        "model.layers[0].units=6",
    )
    hidden = net.layers[0]
    if activation == "relu":  # unit 2 is dead on every row (zero weights, negative bias), and stays so
        hidden.W[2], hidden.b[2] = 0.0, -1.0
    else:  # large weights on unit 0: saturated tanh on most rows
        hidden.W[0] *= 40.0
    want = expected_trace(net, prepared.train.x, prepared.train.t, lr, epochs)
    trainer = Trainer(prepared, net)
    trainer.fit()
    assert trainer.loop.step == epochs
    for got, expected in zip(trainer.history, want, strict=True):
        assert {k: got[k] for k in expected} == pytest.approx(expected, rel=1e-9, abs=1e-15)
    if activation == "relu":
        assert [r["l1_dead"] for r in trainer.history] == [1 / 6] * epochs
    else:
        assert all(r["l1_saturated"] > 0.05 for r in trainer.history)


# ---------------------------------------------------------------------------------------------
# The shipped example: configs/digits_adam.yaml


def test_digits_adam_example_reaches_its_threshold(tmp_path: Path) -> None:
    config = CONFIGS / "digits_adam.yaml"
    cfg = load_config(config)
    training = cfg.training
    assert training.optimizer.name == "adam"
    assert training.schedule.name == "cosine" and training.schedule.warmup_epochs > 0
    assert training.early_stopping is not None
    assert cfg.data.path == "../datasets/digits.csv"

    run = train(tmp_path / "digits", config=config)
    result = eval_json(run / "best.npz")
    assert result["accuracy"] >= 0.95, result["accuracy"]
    rows = history(run)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] < lrs[training.schedule.warmup_epochs - 1] == training.learning_rate  # warmup
    assert lrs[-1] < training.learning_rate  # cosine decay
