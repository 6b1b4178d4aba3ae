"""What the docs and messages claim is what nnctl does: ``check`` refuses what ``train`` refuses,
help texts and docs name what exists, small defects stay mended, and the math is presented for what
the code computes (the seed's equation numbers on the right formula, the config's own numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CONFIGS, invoke, ok

DIGITS = CONFIGS / "digits.yaml"
IRIS = CONFIGS / "iris.yaml"


def flat(text: str) -> str:
    return " ".join(text.split())  # Rich may wrap long messages


# ---------------------------------------------------------------------------------------------
# check makes every refusal train makes before its first step

TRAIN_TIME_REFUSALS = [
    (["training.schedule={name: reduce_on_plateau, monitor: val_f1}"], "training.schedule.monitor"),
    (["training.early_stopping={monitor: val_f1}"], "training.early_stopping.monitor"),
    (["training.early_stopping={monitor: val_loss}", "data.validation=0"], "training.early_stopping.monitor"),
    (["training.schedule={name: reduce_on_plateau}", "data.validation=0"], "training.schedule.monitor"),
]


@pytest.mark.parametrize(
    ("sets", "key"), TRAIN_TIME_REFUSALS, ids=["plateau", "stop", "stop-noval", "plateau-noval"]
)
def test_check_refuses_what_train_refuses(tmp_path: Path, sets: list[str], key: str) -> None:
    overrides = [arg for assignment in sets for arg in ("--set", assignment)]
    trained = invoke("train", DIGITS, "--out", tmp_path / "run", "--quiet", *overrides)
    checked = invoke("check", DIGITS, *overrides)
    assert trained.code == 2, trained.output
    assert checked.code == 2, checked.output
    assert key in flat(checked.output)
    assert flat(checked.output) == flat(trained.output)  # the same one message
    assert "valid" not in checked.stdout
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# The math as a learner reads it

LOGISTIC_ELU = [
    "--set", "model.layers[1].activation={name: elu, alpha: 0.5}",
    "--set", "model.layers[2].activation={name: logistic, L: 2, k: 3}",
    "--set", "cost=quadratic", "--set", "data.task=classification",
]  # fmt: skip


def test_cce_on_a_logistic_output_with_L_not_1_is_refused_as_bce_is() -> None:
    for L in (2, 0.5):
        outcome = invoke("check", IRIS, "--set", f"model.layers[1].activation={{name: logistic, L: {L}}}")
        assert outcome.code == 2, outcome.output
        assert "cce" in flat(outcome.output) and f"L={L:g}" in flat(outcome.output)
    accepted = ok(invoke("check", IRIS, "--set", "model.layers[1].activation=logistic"))  # L = 1
    assert "warning" in accepted.stdout


def test_fused_softmax_cce_rule_is_labelled_for_what_it_computes() -> None:
    import numpy as np

    from nnctl.engine.activations import Softmax
    from nnctl.engine.costs import CategoricalCrossEntropy, output_rule

    rule = output_rule(CategoricalCrossEntropy(), Softmax())
    assert "(2.20)" in str(rule) and "a sum_k t_k - t" in str(rule)
    assert "one-hot" in str(rule)  # (2.21) named only with its condition
    z = np.array([[0.3, -1.0, 2.0]])
    t = np.array([[0.5, 0.5, 0.5]])  # not one-hot: (2.20) and (2.21) differ
    a = Softmax().forward(z)
    np.testing.assert_allclose(rule.sensitivity(z, a, t), a * 1.5 - t)
    text = flat(ok(invoke("check", IRIS)).stdout)
    assert "s = a - t, (2.21)" not in text and "(2.20)" in text


def test_explain_fills_in_the_configs_numbers() -> None:
    text = ok(invoke("explain", DIGITS, *LOGISTIC_ELU)).stdout
    assert "`3 a (1 - a/2)`" in text  # k = 3, L = 2 in k a (1 - a/L)
    assert "`1 if z >= 0 else a + 0.5`" in text  # alpha = 0.5
    assert "Lk/4 = 1.5" in text  # the generalized logistic's midpoint slope, next to the x4 of (1.35)
    plain = ok(invoke("explain", DIGITS)).stdout
    assert "Lk/4" not in plain  # no logistic, no note


def test_iris_with_bce_gets_one_consistent_hint() -> None:
    hints = []
    for units in (3, 1):
        outcome = invoke(
            "check", IRIS, "--set", "cost=bce", "--set", "model.layers[1].activation=logistic",
            "--set", f"model.layers[1].units={units}",
        )  # fmt: skip
        assert outcome.code == 2
        hints.append(flat(outcome.output))
    for hint in hints:  # both point to the same fix: a softmax output of 3 units with cce
        assert "softmax" in hint and "cce" in hint, hint
    assert "units to 1" not in hints[0]
