"""Validation of a checkpoint's JSON parts: ``meta`` (format marker and version, task, epoch), the
target names and classes against the stored config, and ``train_state`` (the loop position, the
generator states, the schedule state). Each problem is one ``CheckpointError`` naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnctl.config import Config
from nnctl.engine.metrics import TASKS, tasks_for_cost
from nnctl.errors import CheckpointError
from nnctl.training.state import LoopState, is_finite_number, valid_generator_state

FORMAT = "nnctl-checkpoint"
FORMAT_VERSION = 2


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_meta(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: format marker is {meta.get('format')!r}, not {FORMAT!r}; not an nnctl checkpoint"
        )
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"{path}: format_version {version!r} is not a version nnctl ever wrote")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer nnctl (checkpoint format {version}); "
            f"this nnctl reads format {FORMAT_VERSION}",
            hint="upgrade nnctl (pip install -U nnctl)",
        )
    for key in ("epoch", "batch"):
        if key in meta or key == "epoch":
            value = meta.get(key)
            if not _is_int(value) or value < 0:
                raise CheckpointError(f"{path}: meta.{key} must be a non-negative integer, not {value!r}")
    if meta.get("task") not in TASKS:
        raise CheckpointError(
            f"{path}: meta.task is {meta.get('task')!r}; expected one of: {', '.join(TASKS)}"
        )
    for key in ("nnctl_version", "data_source", "data_path", "saved_at"):
        if key in meta and not isinstance(meta[key], str):
            raise CheckpointError(f"{path}: meta.{key} must be a string, not {meta[key]!r}")
    if "data_path" in meta and "\x00" in meta["data_path"]:
        raise CheckpointError(f"{path}: meta.data_path is not a usable path")
    if "metrics" in meta and not isinstance(meta["metrics"], dict):
        raise CheckpointError(f"{path}: meta.metrics must be a mapping")
    return meta


def check_class_weights(path: Path, meta: dict[str, Any], classes: list[str] | None) -> None:
    """meta.class_weights (training.class_weight resolved): one positive weight per class."""
    weights = meta.get("class_weights")
    if weights is None:
        return
    if (
        classes is None
        or not isinstance(weights, list)
        or len(weights) != len(classes)
        or not all(is_finite_number(w) and w > 0 for w in weights)
    ):
        raise CheckpointError(f"{path}: meta.class_weights must hold one positive number per class")


def check_targets(
    path: Path, config: Config, task: str, target_names: list[str], classes: list[str] | None
) -> None:
    """The task, the target columns and the class list must fit the stored config's output layer."""
    units = config.model.layers[-1].units
    requested = config.data.task
    if requested != "auto" and requested != task:
        raise CheckpointError(f"{path}: meta.task is {task!r} but the stored config says {requested!r}")
    cost = config.cost.name
    inferable = tasks_for_cost(cost, config.model.layers[-1].activation.name, units)
    if requested == "auto" and task not in inferable:
        raise CheckpointError(f"{path}: meta.task {task!r} does not fit the stored cost {cost!r}")
    if task == "classification":
        if len(target_names) != 1:
            raise CheckpointError(f"{path}: classification needs one target name, found {len(target_names)}")
        if classes is None:
            raise CheckpointError(f"{path}: missing array 'classes' (a classifier needs its class labels)")
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise CheckpointError(f"{path}: 'classes' must hold 2 or more distinct labels, not {classes!r}")
        if units != len(classes) and not (units == 1 and len(classes) == 2):
            raise CheckpointError(
                f"{path}: {len(classes)} classes do not fit the output layer's {units} units"
            )
        return
    if classes is not None:
        raise CheckpointError(f"{path}: holds 'classes', but its task is {task}")
    if len(target_names) != units:
        raise CheckpointError(
            f"{path}: {len(target_names)} target names do not fit the output layer's {units} units"
        )


def check_train_state(
    path: Path, state: dict[str, Any], meta: dict[str, Any], config: Config
) -> dict[str, Any]:
    """What resume needs: the loop position, the generator states and the schedule state."""
    loop, generators = state.get("loop"), state.get("generators")
    if not isinstance(loop, dict) or not isinstance(generators, dict):
        raise CheckpointError(f"{path}: train_state needs 'loop' and 'generators' mappings")
    problem = LoopState.json_problem(loop)
    if problem is not None:
        raise CheckpointError(f"{path}: train_state.{problem}")
    for key in ("epoch", "batch"):
        if key in loop and key in meta and loop[key] != meta[key]:
            raise CheckpointError(
                f"{path}: train_state.loop.{key} ({loop[key]}) differs from meta.{key} ({meta[key]})"
            )
    mid_epoch = loop.get("batch", 0) > 0
    if mid_epoch and config.data.shuffle and loop.get("epoch_start_shuffle") is None:
        raise CheckpointError(f"{path}: saved mid-epoch without the epoch's shuffle state")
    schedule = loop.get("schedule", {})
    expected = config.training.schedule.initial_state()
    if set(schedule) != set(expected) or not all(v is None or is_finite_number(v) for v in schedule.values()):
        raise CheckpointError(
            f"{path}: train_state.loop.schedule {schedule!r} does not fit the stored schedule "
            f"({config.training.schedule.name}: keys {sorted(expected)})"
        )
    for name in ("shuffle", "dropout"):
        if not valid_generator_state(generators.get(name)):
            raise CheckpointError(f"{path}: train_state.generators.{name} is not a valid generator state")
    return state
