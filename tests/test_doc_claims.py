"""What the docs and messages claim is what nnctl does: ``check`` refuses what ``train`` refuses,
help texts and docs name what exists, small defects stay mended, and the math is presented for what
the code computes (the seed's equation numbers on the right formula, the config's own numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CONFIGS, invoke

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
