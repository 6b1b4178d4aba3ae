"""Where the training loop is: a leaf module, so checkpoint reading can check it without a cycle.

``LoopState`` is the one list of the loop's saved fields: each field's metadata holds the check on
its JSON value, which the checkpoint reader applies (``LoopState.json_problem``), and the
checkpoint's ``train_state.loop`` is ``dataclasses.asdict`` of it, read back by the constructor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_finite_number(value: Any) -> bool:
    """A JSON number (not a bool) that is finite: what every float field of a checkpoint holds."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def valid_generator_state(state: Any) -> bool:
    """Whether ``state`` is a bit-generator state numpy accepts (checked on a scratch generator)."""
    if not isinstance(state, dict):
        return False
    try:
        np.random.default_rng(0).bit_generator.state = state
    except (ValueError, TypeError, KeyError, OverflowError, IndexError):
        return False
    return True


def _check(what: str, valid: Callable[[Any], bool]) -> dict[str, Any]:
    """Field metadata: the check on the field's saved JSON value; ``what`` names the values it accepts."""
    return {"json_check": (what, valid)}


_COUNT = _check("a non-negative integer", _non_negative_int)


@dataclass
class LoopState:
    """Where the loop is; everything here is saved in checkpoints as JSON."""

    epoch: int = field(default=0, metadata=_COUNT)  # completed epochs
    # completed batches of the current epoch (non-zero only mid-epoch)
    batch: int = field(default=0, metadata=_COUNT)
    step: int = field(default=0, metadata=_COUNT)  # optimizer steps taken in total
    # running sum of batch_loss * batch_size in the current epoch
    loss_sum: float = field(default=0.0, metadata=_check("a finite number", is_finite_number))
    # shuffle generator state at epoch start
    epoch_start_shuffle: dict[str, Any] | None = field(
        default=None,
        metadata=_check("a generator state or null", lambda v: v is None or valid_generator_state(v)),
    )
    best_value: float | None = field(
        default=None, metadata=_check("a finite number or null", lambda v: v is None or is_finite_number(v))
    )
    best_epoch: int = field(default=0, metadata=_COUNT)
    wait: int = field(default=0, metadata=_COUNT)  # epochs without improvement (early stopping)
    stopped_early: bool = field(
        default=False, metadata=_check("true or false", lambda v: isinstance(v, bool))
    )
    schedule: dict[str, Any] = field(
        default_factory=dict, metadata=_check("a mapping", lambda v: isinstance(v, dict))
    )

    def to_json(self) -> dict[str, Any]:
        """The checkpoint's ``train_state.loop``: every field, in declaration order (a deep copy)."""
        return asdict(self)

    @classmethod
    def from_json(cls, loop: dict[str, Any]) -> LoopState:
        """Back from ``to_json`` (after ``json_problem`` found nothing); missing keys take defaults."""
        return cls(**loop)

    @classmethod
    def json_problem(cls, loop: dict[str, Any]) -> str | None:
        """What is wrong with a saved ``train_state.loop`` mapping ("loop.<key> must be ..."), or None."""
        checks = {f.name: f.metadata["json_check"] for f in fields(cls)}
        unknown = sorted(set(loop) - set(checks))
        if unknown:
            return f"loop has unknown key '{unknown[0]}'"
        for key, value in loop.items():
            what, valid = checks[key]
            if not valid(value):
                return f"loop.{key} must be {what}, not {value!r}"
        return None
