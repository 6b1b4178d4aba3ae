"""LoopState is the one list of the loop's saved fields: the checkpoint writes exactly its fields, the
reader checks each against the field's own metadata, and resume rebuilds it from the saved JSON."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnctl.checkpoint import load_checkpoint, save_checkpoint
from nnctl.config import Config
from nnctl.errors import CheckpointError
from nnctl.training.loop import Trainer
from nnctl.training.prepare import build_network, prepare
from nnctl.training.resume import make_checkpoint, trainer_from_checkpoint
from nnctl.training.state import LoopState

#: The train_state.loop keys every nnctl since checkpoint format 1 has written, in this order:
#: checkpoints stay readable by older and newer nnctl only while this list holds.
WRITTEN_KEYS = [
    "epoch",
    "batch",
    "step",
    "loss_sum",
    "epoch_start_shuffle",
    "best_value",
    "best_epoch",
    "wait",
    "stopped_early",
    "schedule",
]

#: One value per field that the field's check must refuse.
INVALID = {
    "epoch": -1,
    "batch": 1.5,
    "step": True,
    "loss_sum": "12.0",
    "epoch_start_shuffle": {"bit_generator": "PCG64"},
    "best_value": float("inf"),
    "best_epoch": None,
    "wait": -3,
    "stopped_early": 0,
    "schedule": [],
}


def _config(early_stopping: bool) -> Config:
    training: dict[str, Any] = {"epochs": 3, "batch_size": 8, "learning_rate": 0.1, "optimizer": "adam"}
    if early_stopping:
        training["early_stopping"] = {"patience": 5}
    return Config.model_validate(
        {
            "name": "loop-state",
            "seed": 3,
            "data": {"path": "builtin:circles", "validation": 0.25},
            "model": {"layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "logistic"}]},
            "cost": "bce",
            "training": training,
        }
    )


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint after 3 epochs with early stopping (so best_value and best_epoch are set)."""
    config = _config(early_stopping=True)
    prepared = prepare(config, None)
    trainer = Trainer(prepared, build_network(config, prepared.train.x.shape[1]))
    trainer.fit()
    path = tmp_path_factory.mktemp("loop") / "last.npz"
    save_checkpoint(path, make_checkpoint(trainer))
    return path


def _train_state(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(str(archive["train_state"]))


def _with_train_state(src: Path, dst: Path, state: dict[str, Any]) -> Path:
    with np.load(src, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["train_state"] = np.array(json.dumps(state))
    np.savez(dst, **arrays)
    return dst


def test_checkpoint_writes_exactly_the_historical_keys(checkpoint_path: Path) -> None:
    loop = _train_state(checkpoint_path)["loop"]
    assert list(loop) == WRITTEN_KEYS == [f.name for f in fields(LoopState)]
    train_rows = prepare(_config(early_stopping=True), None).train.size
    assert loop["epoch"] == 3 and loop["batch"] == 0 and loop["step"] == 3 * math.ceil(train_rows / 8)
    assert loop["best_value"] is not None and 1 <= loop["best_epoch"] <= 3


def test_saved_loop_reads_back_equal(checkpoint_path: Path) -> None:
    checkpoint = load_checkpoint(checkpoint_path)
    saved = checkpoint.train_state["loop"]
    restored = LoopState.from_json(saved)
    assert restored.to_json() == saved
    config = checkpoint.config
    trainer = trainer_from_checkpoint(checkpoint, prepare(config, None))
    assert trainer.loop == restored
    assert trainer.snapshot()[0] == checkpoint.train_state


def test_every_field_has_a_check_that_refuses_a_wrong_value() -> None:
    assert set(INVALID) == {f.name for f in fields(LoopState)}  # a new field needs its refusal here
    valid = LoopState().to_json()
    assert LoopState.json_problem(valid) is None
    for name, value in INVALID.items():
        problem = LoopState.json_problem({**valid, name: value})
        assert problem is not None and problem.startswith(f"loop.{name} must be "), (name, problem)
        assert problem.endswith(f"not {value!r}")


@pytest.mark.parametrize("name", list(INVALID))
def test_loader_refuses_each_wrong_field(checkpoint_path: Path, tmp_path: Path, name: str) -> None:
    state = _train_state(checkpoint_path)
    state["loop"][name] = INVALID[name]
    bad = _with_train_state(checkpoint_path, tmp_path / "bad.npz", state)
    with pytest.raises(CheckpointError, match=rf"bad\.npz: train_state\.loop\.{name} must be ") as caught:
        load_checkpoint(bad)
    assert str(bad) in caught.value.message


def test_loader_refuses_an_unknown_loop_key(checkpoint_path: Path, tmp_path: Path) -> None:
    state = _train_state(checkpoint_path)
    state["loop"]["momentum"] = 0.9
    bad = _with_train_state(checkpoint_path, tmp_path / "bad.npz", state)
    with pytest.raises(CheckpointError, match=r"train_state\.loop has unknown key 'momentum'"):
        load_checkpoint(bad)
