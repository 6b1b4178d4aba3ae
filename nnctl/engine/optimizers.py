"""Optimizers: rules that move parameters by their batch-mean gradients.

``sgd`` is the seed's gradient descent (1.32), ``W <- W - eta * dc/dW``, applied to the biases too.
The others are the usual extensions. State is explicit (optax-style): ``init(params)`` returns a
flat dict of arrays, ``update(params, grads, state, lr, decay_mask)`` changes params and state in
place. Nothing else carries over between steps, so a checkpoint stores the dict as it is and resume
is bit-exact. The caller may pass a ``Scratch``, arrays it owns that an update writes its
temporaries into instead of allocating them; they hold nothing from one step to the next.

``params`` and ``grads`` are parallel lists of arrays; ``decay_mask[i]`` says whether params[i]
is a weight matrix (decoupled weight decay never touches biases). ``lr`` is used as a Python
float, so a float32 parameter is updated in float32 even when the rate arrives as np.float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat

from nnctl.engine.registry import registry

Array = np.ndarray
State = dict[str, Array]


class Scratch:
    """Reusable arrays for the temporaries of updates, one per parameter index, owned by whoever
    owns the optimizer state (a ``Trainer``). Never saved; nothing in them outlives a step."""

    def __init__(self) -> None:
        self.arrays: dict[int, Array] = {}

    def like(self, i: int, g: Array) -> Array | None:
        """An array shaped and typed like gradient ``g`` of parameter ``i``; None (numpy then
        allocates) when ``g`` is not a floating array."""
        if g.dtype.kind != "f":
            return None
        array = self.arrays.get(i)
        if array is None or array.dtype != g.dtype or array.shape != g.shape:
            array = self.arrays[i] = np.empty_like(g)
        return array


#: What ``update_one`` gets to write its temporaries into (None: numpy allocates them).
Temp = Scratch | None


class Optimizer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    slots: ClassVar[tuple[str, ...]] = ()

    def init(self, params: Sequence[Array]) -> State:
        state: State = {"step": np.zeros((), dtype=np.int64)}
        for slot in self.slots:
            for i, p in enumerate(params):
                state[f"{slot}_{i}"] = np.zeros_like(p)
        return state

    def update(
        self,
        params: Sequence[Array],
        grads: Sequence[Array],
        state: State,
        lr: float,
        decay_mask: Sequence[bool] | None = None,
        scratch: Scratch | None = None,
    ) -> None:
        state["step"] += 1
        lr = float(lr)  # an np.float64 rate would turn float32 arithmetic into float64
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            self.update_one(i, p, g, state, lr, decay_mask is None or decay_mask[i], scratch)

    def update_one(self, i: int, p: Array, g: Array, state: State, lr: float, decay: bool, tmp: Temp) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Plain gradient descent, exactly (1.32): p <- p - lr * g.

    With a ``Scratch``, ``lr * g`` goes into its array for the parameter instead of a new
    temporary each step; the arithmetic, and so every bit of the result, is the same.
    """

    name: Literal["sgd"] = "sgd"

    def update_one(self, i: int, p: Array, g: Array, state: State, lr: float, decay: bool, tmp: Temp) -> None:
        p -= np.multiply(g, lr, out=tmp.like(i, g) if tmp is not None else None)


class Momentum(Optimizer):
    """Heavy-ball momentum: v <- mu v + g; p <- p - lr v (Nesterov: p <- p - lr (g + mu v))."""

    name: Literal["momentum"] = "momentum"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    slots: ClassVar[tuple[str, ...]] = ("velocity",)

    def update_one(self, i: int, p: Array, g: Array, state: State, lr: float, decay: bool, tmp: Temp) -> None:
        v = state[f"velocity_{i}"]
        v *= self.momentum
        v += g
        step = g + self.momentum * v if self.nesterov else v
        p -= lr * step


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba 2015); ``weight_decay`` > 0 makes it AdamW
    (decoupled: p <- p - lr * wd * p, weights only)."""

    name: Literal["adam"] = "adam"
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = 0.0
    slots: ClassVar[tuple[str, ...]] = ("m", "v")

    def update_one(self, i: int, p: Array, g: Array, state: State, lr: float, decay: bool, tmp: Temp) -> None:
        t = int(state["step"])
        m, v = state[f"m_{i}"], state[f"v_{i}"]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)
        m_hat = m / (1.0 - self.beta1**t)
        v_hat = v / (1.0 - self.beta2**t)
        if self.weight_decay and decay:
            p -= (lr * self.weight_decay) * p
        p -= lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay, 0.01 by default (Loshchilov & Hutter 2019)."""

    name: Literal["adamw"] = "adamw"  # type: ignore[assignment]
    weight_decay: NonNegativeFloat = 0.01


class RMSprop(Optimizer):
    """RMSprop: v <- rho v + (1 - rho) g^2; p <- p - lr g / (sqrt(v) + eps)."""

    name: Literal["rmsprop"] = "rmsprop"
    rho: float = Field(0.9, ge=0.0, lt=1.0)
    eps: PositiveFloat = 1e-8
    slots: ClassVar[tuple[str, ...]] = ("square_avg",)

    def update_one(self, i: int, p: Array, g: Array, state: State, lr: float, decay: bool, tmp: Temp) -> None:
        v = state[f"square_avg_{i}"]
        v *= self.rho
        v += (1.0 - self.rho) * (g * g)
        p -= lr * g / (np.sqrt(v) + self.eps)


#: YAML name -> class: the single registry of optimizers.
OPTIMIZERS: dict[str, type[Optimizer]] = registry(SGD, Momentum, Adam, AdamW, RMSprop)
