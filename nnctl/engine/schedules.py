"""Learning-rate schedules: the rate used in each epoch (0-based), from the base rate.

The seed's gradient descent keeps eta constant (1.32); that is the default. Every schedule can
start with ``warmup_epochs`` of linear warmup (eta * (epoch + 1) / warmup_epochs). State is a
dict of plain numbers (only ``reduce_on_plateau`` has any), saved in checkpoints for exact resume.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from nnctl.engine.metrics import higher_is_better
from nnctl.engine.registry import registry

ScheduleState = dict[str, Any]


class Schedule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    warmup_epochs: NonNegativeInt = 0

    def learning_rate(self, base: float, epoch: int, epochs: int, state: ScheduleState) -> float:
        """The rate for ``epoch`` (0-based) of ``epochs``."""
        if epoch < self.warmup_epochs:
            return base * (epoch + 1) / self.warmup_epochs
        return self.after_warmup(base, epoch - self.warmup_epochs, max(epochs - self.warmup_epochs, 1), state)

    def after_warmup(self, base: float, epoch: int, epochs: int, state: ScheduleState) -> float:
        raise NotImplementedError

    def initial_state(self) -> ScheduleState:
        return {}

    def observe(self, state: ScheduleState, metrics: dict[str, float]) -> None:
        """Called after each epoch with its metrics (only plateau schedules react)."""


class Constant(Schedule):
    name: Literal["constant"] = "constant"

    def after_warmup(self, base: float, epoch: int, epochs: int, state: ScheduleState) -> float:
        return base


class Step(Schedule):
    """base * gamma^(epoch // step_size)."""

    name: Literal["step"] = "step"
    step_size: PositiveInt = 10
    gamma: float = Field(0.1, gt=0.0, le=1.0)

    def after_warmup(self, base: float, epoch: int, epochs: int, state: ScheduleState) -> float:
        return base * self.gamma ** (epoch // self.step_size)


class Exponential(Schedule):
    """base * gamma^epoch."""

    name: Literal["exponential"] = "exponential"
    gamma: float = Field(0.95, gt=0.0, le=1.0)

    def after_warmup(self, base: float, epoch: int, epochs: int, state: ScheduleState) -> float:
        return base * self.gamma**epoch


class Cosine(Schedule):
    """min_lr + (base - min_lr) (1 + cos(pi epoch / epochs)) / 2, over the epochs after warmup."""

    name: Literal["cosine"] = "cosine"
    min_lr: NonNegativeFloat = 0.0

    def after_warmup(self, base: float, epoch: int, epochs: int, state: ScheduleState) -> float:
        return self.min_lr + (base - self.min_lr) * (1.0 + math.cos(math.pi * epoch / epochs)) / 2.0


class ReduceOnPlateau(Schedule):
    """Multiply the rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs."""

    name: Literal["reduce_on_plateau"] = "reduce_on_plateau"
    monitor: str = "val_loss"
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    patience: NonNegativeInt = 5
    min_delta: NonNegativeFloat = 0.0
    min_lr: NonNegativeFloat = 0.0

    def after_warmup(self, base: float, epoch: int, epochs: int, state: ScheduleState) -> float:
        return max(base * state["scale"], self.min_lr)

    def initial_state(self) -> ScheduleState:
        return {"scale": 1.0, "best": None, "wait": 0}

    def observe(self, state: ScheduleState, metrics: dict[str, float]) -> None:
        value = metrics.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        sign = -1.0 if higher_is_better(self.monitor) else 1.0
        if state["best"] is None or sign * value < sign * state["best"] - self.min_delta:
            state["best"], state["wait"] = value, 0
            return
        state["wait"] += 1
        if state["wait"] > self.patience:
            state["scale"] *= self.factor
            state["wait"] = 0


#: YAML name -> class: the single registry of schedules.
SCHEDULES: dict[str, type[Schedule]] = registry(Constant, Step, Exponential, Cosine, ReduceOnPlateau)
