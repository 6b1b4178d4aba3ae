"""Weight initializers of section 1.6: presets of one uniform variance-scaling core.

Fan-in and fan-out are the weight matrix's own shape (J = units of layer l-1, I = units of
layer l), as Glorot & Bengio (2010) define them; the seed's I^{l+1} does not exist for the
output layer (docs/math.md, correction 2). Biases always start at zero. Every draw comes from the
``numpy.random.Generator`` passed in, never the global RNG.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from nnctl.engine.activations import Activation, Elu, Logistic, Relu
from nnctl.engine.registry import registry


def uniform_weights(
    rng: np.random.Generator, fan_in: int, fan_out: int, bound: float, dtype: np.dtype
) -> np.ndarray:
    """W ~ U(-bound, bound), shape (fan_out, fan_in) = (I, J), the seed's w_ij (section 1.1).

    Drawn in float64 and then cast, so float32 and float64 runs start from the same values.
    """
    return rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype, copy=False)


class Initializer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    equation: ClassVar[str] = ""

    def bound(self, fan_in: int, fan_out: int, activation: Activation) -> float:
        raise NotImplementedError

    def formula(self, activation: Activation) -> str:
        """The bound's formula, for ``check``/``explain`` output."""
        raise NotImplementedError

    def weights(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        activation: Activation,
        dtype: np.dtype = np.float32,
    ) -> np.ndarray:
        return uniform_weights(rng, fan_in, fan_out, self.bound(fan_in, fan_out, activation), dtype)

    def resolve(self, activation: Activation) -> Initializer:
        """The concrete initializer used for this activation (``auto`` picks one)."""
        return self


class He(Initializer):
    """U(-sqrt(6/fan_in), sqrt(6/fan_in)): (1.33) corrected (the text prints 6/sqrt; docs/math.md,
    correction 1)."""

    name: Literal["he"] = "he"
    equation: ClassVar[str] = "(1.33)"

    def bound(self, fan_in: int, fan_out: int, activation: Activation) -> float:
        return math.sqrt(6.0 / fan_in)

    def formula(self, activation: Activation) -> str:
        return "sqrt(6 / fan_in)"


class Xavier(Initializer):
    """U(-r, r), r = sqrt(6/(fan_in+fan_out)) (1.34); four times that for logistic layers (1.35)."""

    name: Literal["xavier"] = "xavier"
    equation: ClassVar[str] = "(1.34)"

    def bound(self, fan_in: int, fan_out: int, activation: Activation) -> float:
        r = math.sqrt(6.0 / (fan_in + fan_out))
        return 4.0 * r if isinstance(activation, Logistic) else r

    def formula(self, activation: Activation) -> str:
        if isinstance(activation, Logistic):
            return "4 sqrt(6 / (fan_in + fan_out))   (1.35)"
        return "sqrt(6 / (fan_in + fan_out))   (1.34)"


class Auto(Initializer):
    """The seed's rule of section 1.6: He for relu/elu, Xavier for everything else."""

    name: Literal["auto"] = "auto"

    def resolve(self, activation: Activation) -> Initializer:
        return He() if isinstance(activation, (Relu, Elu)) else Xavier()

    def bound(self, fan_in: int, fan_out: int, activation: Activation) -> float:
        return self.resolve(activation).bound(fan_in, fan_out, activation)

    def formula(self, activation: Activation) -> str:
        return self.resolve(activation).formula(activation)


#: YAML name -> class: the single registry of initializers.
INITIALIZERS: dict[str, type[Initializer]] = registry(Auto, He, Xavier)
