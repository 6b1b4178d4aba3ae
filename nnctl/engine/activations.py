"""Activation functions: forward (1.2)/(2.7) and backward as a vector-Jacobian product.

Every activation maps a batch of pre-activations ``z`` (rows are samples) to outputs ``a``.
``backward(z, a, grad_a)`` returns ``grad_z = J^T grad_a`` row by row, which is (1.17)/(1.23)
for the elementwise functions of table 1.1 and (2.8)-(2.12) for softmax. The full Jacobian is
never built on the training path; ``jacobian()`` returns it per sample for inspection and tests.

Each class is registered under its YAML name in ``ACTIVATIONS``; that dict is the only list of
valid names (the config validates against it).
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveFloat

from nnctl.engine.registry import registry

Array = np.ndarray


class Activation(BaseModel):
    """Base class: a frozen, validated component with pure NumPy methods."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: True when a_i depends on z_i only (table 1.1): the Jacobian is diagonal.
    elementwise: ClassVar[bool] = True
    #: Open interval the outputs lie in, used to check cost/output pairs.
    output_range: ClassVar[tuple[float, float]] = (-np.inf, np.inf)

    def bounds(self) -> tuple[float, float]:
        """The interval the outputs lie in (parameters may move it, see Logistic)."""
        return self.output_range

    def forward(self, z: Array, out: Array | None = None) -> Array:
        raise NotImplementedError

    def derivative(self, z: Array, a: Array) -> Array:
        """Elementwise sigma'(z), the diagonal of the Jacobian (table 1.1)."""
        raise NotImplementedError

    def backward(self, z: Array, a: Array, grad_a: Array, out: Array | None = None) -> Array:
        """grad_z = J^T grad_a per row; for elementwise functions sigma'(z) * grad_a (1.23)."""
        return np.multiply(self.derivative(z, a), grad_a, out=out)

    def jacobian(self, z: Array, a: Array | None = None) -> Array:
        """Per-sample Jacobian d a_i / d z_k, shape (batch, I, I). For tests and display only."""
        a = self.forward(z) if a is None else a
        d = self.derivative(z, a)
        return d[:, :, None] * np.eye(z.shape[1], dtype=z.dtype)

    def describe(self) -> str:
        """Short label for tables, e.g. ``elu(alpha=0.5)``."""
        params = self.model_dump(exclude={"name"})
        if not params:
            return self.name  # type: ignore[attr-defined]
        inner = ", ".join(f"{k}={v:g}" for k, v in params.items())
        return f"{self.name}({inner})"  # type: ignore[attr-defined]


class Identity(Activation):
    """a = z, for regression outputs."""

    name: Literal["identity"] = "identity"
    derivative_formula: ClassVar[str] = "1"

    def forward(self, z: Array, out: Array | None = None) -> Array:
        if out is None:
            return z.copy()
        np.copyto(out, z)
        return out

    def derivative(self, z: Array, a: Array) -> Array:
        return np.ones_like(z)

    def backward(self, z: Array, a: Array, grad_a: Array, out: Array | None = None) -> Array:
        if out is None:
            return grad_a.copy()
        np.copyto(out, grad_a)
        return out


class Relu(Activation):
    """relu(z) = max(z, 0) (table 1.1); derivative 1 where a > 0, else 0."""

    name: Literal["relu"] = "relu"
    output_range: ClassVar[tuple[float, float]] = (0.0, np.inf)
    derivative_formula: ClassVar[str] = "1 if z > 0 else 0"

    def forward(self, z: Array, out: Array | None = None) -> Array:
        return np.maximum(z, _zeros_for(z), out=out)

    def derivative(self, z: Array, a: Array) -> Array:
        return (a > 0).astype(a.dtype)

    def backward(self, z: Array, a: Array, grad_a: Array, out: Array | None = None) -> Array:
        # Zero the gradient where the unit was off; one pass, no float mask.
        return np.multiply(grad_a, a > 0, out=out)


class Elu(Activation):
    """elu(z) = z for z >= 0, alpha (e^z - 1) below (table 1.1).

    Derivative from the output where it is cheap: alpha e^z = a + alpha for z < 0.
    """

    name: Literal["elu"] = "elu"
    alpha: PositiveFloat = 1.0
    derivative_formula: ClassVar[str] = "1 if z >= 0 else a + alpha"

    def forward(self, z: Array, out: Array | None = None) -> Array:
        negative = np.expm1(np.minimum(z, 0))  # expm1 keeps precision near 0, min avoids overflow
        negative *= self.alpha
        return np.where(z >= 0, z, negative) if out is None else _where(z >= 0, z, negative, out)

    def derivative(self, z: Array, a: Array) -> Array:
        return np.where(z >= 0, 1, a + self.alpha).astype(a.dtype, copy=False)


class Logistic(Activation):
    """Generalized logistic L / (1 + e^{k (x0 - z)}) (1.7); plain sigmoid (1.8) by default.

    Derivative from the output, the generalization of (1.10): k a (1 - a / L).
    Evaluated without overflow: e^{-|u|} never exceeds 1.
    """

    name: Literal["logistic"] = "logistic"
    L: PositiveFloat = 1.0
    k: PositiveFloat = 1.0
    x0: float = 0.0
    derivative_formula: ClassVar[str] = "k a (1 - a/L)   (1.10)"

    def bounds(self) -> tuple[float, float]:
        return (0.0, self.L)

    def scaled_input(self, z: Array) -> Array:
        """u = k (z - x0), so that a = L sigmoid(u)."""
        if self.k == 1.0 and self.x0 == 0.0:
            return z
        return (z - self.x0) * self.k

    def forward(self, z: Array, out: Array | None = None) -> Array:
        u = self.scaled_input(z)
        e = np.exp(-np.abs(u))  # in (0, 1]: no overflow for any finite u
        a = np.where(u >= 0, 1.0, e).astype(z.dtype, copy=False) / (1.0 + e)
        if self.L != 1.0:
            a *= self.L
        if out is None:
            return a
        np.copyto(out, a)
        return out

    def derivative(self, z: Array, a: Array) -> Array:
        d = 1.0 - a / self.L if self.L != 1.0 else 1.0 - a
        d *= a
        if self.k != 1.0:
            d *= self.k
        return d


class Tanh(Activation):
    """tanh(z) (table 1.1); derivative from the output, 1 - a^2."""

    name: Literal["tanh"] = "tanh"
    output_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    derivative_formula: ClassVar[str] = "1 - a^2"

    def forward(self, z: Array, out: Array | None = None) -> Array:
        return np.tanh(z, out=out)

    def derivative(self, z: Array, a: Array) -> Array:
        return 1.0 - a * a

    def backward(self, z: Array, a: Array, grad_a: Array, out: Array | None = None) -> Array:
        d = np.multiply(a, a)
        np.subtract(1.0, d, out=d)
        return np.multiply(d, grad_a, out=out)


class Softmax(Activation):
    """softmax(z)_i = e^{z_i} / sum_p e^{z_p} (2.1), shifted by the row max so e^x <= 1.

    Backward is the Jacobian-vector product of (2.4): grad_z = a * (g - sum_p a_p g_p), which
    equals J g for the symmetric Jacobian (2.5) in O(I) per sample instead of O(I^2).
    Valid in any layer (2.1.3), not only the output.
    """

    name: Literal["softmax"] = "softmax"
    elementwise: ClassVar[bool] = False
    output_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    derivative_formula: ClassVar[str] = "J = diag(a) - a a^T   (2.5)"

    def forward(self, z: Array, out: Array | None = None) -> Array:
        out = np.subtract(z, z.max(axis=1, keepdims=True), out=out)
        np.exp(out, out=out)
        out /= out.sum(axis=1, keepdims=True)
        return out

    def derivative(self, z: Array, a: Array) -> Array:
        """Diagonal of (2.5), a_i (1 - a_i); the off-diagonal terms are in ``jacobian``."""
        return a * (1.0 - a)

    def backward(self, z: Array, a: Array, grad_a: Array, out: Array | None = None) -> Array:
        dot = np.einsum("bi,bi->b", a, grad_a)[:, None]  # sum_p a_p g_p, per sample
        out = np.subtract(grad_a, dot, out=out)
        out *= a
        return out

    def jacobian(self, z: Array, a: Array | None = None) -> Array:
        """(2.5) per sample: J_ik = a_i (delta_ik - a_k), symmetric (docs/math.md, correction 3)."""
        a = self.forward(z) if a is None else a
        return a[:, :, None] * np.eye(a.shape[1], dtype=a.dtype) - a[:, :, None] * a[:, None, :]


def _zeros_for(z: Array) -> Array | int:
    """0 to compare z with: as a row of zeros for a float array, which NumPy's vectorized
    maximum takes 3x faster than the scalar 0 (the values are the same)."""
    if isinstance(z, np.ndarray) and z.ndim >= 1 and z.dtype.kind == "f":
        return _zero_row(z.shape[-1], z.dtype)
    return 0


@lru_cache(maxsize=64)
def _zero_row(units: int, dtype: np.dtype) -> Array:
    row = np.zeros(units, dtype=dtype)
    row.flags.writeable = False
    return row


def _where(condition: Array, x: Array, y: Array, out: Array) -> Array:
    """np.where into ``out``, correct even when ``out`` is ``x`` or ``y`` itself."""
    np.copyto(out, x, where=condition)
    np.copyto(out, y, where=~condition)
    return out


#: YAML name -> class: the single registry of activations.
ACTIVATIONS: dict[str, type[Activation]] = registry(Relu, Elu, Logistic, Tanh, Softmax, Identity)
