"""Dense networks: forward pass (1.3)-(1.4) and generalized backpropagation (2.12), (2.16).

Shape convention (stated once): arrays are batch-major, rows are samples.

* ``x``, ``a^l``, ``z^l``, ``s^l``: shape (B, units_l)
* ``W^l``: shape (units_l, units_{l-1}) = (I, J), the seed's w_ij (section 1.1)
* ``b^l``: shape (units_l,)

so the seed's column-vector ``z = W a + b`` (1.3) becomes ``Z = A W^T + b`` for a batch, and
the per-sample outer product ``s a^T`` of (1.32) becomes ``S^T A`` summed over the batch.
Gradients are of the *mean* cost over the batch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnctl.activations import Activation, Relu, Softmax
from nnctl.costs import Cost, OutputRule, output_rule
from nnctl.initializers import Auto, Initializer

Array = np.ndarray
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class DenseLayer:
    """One layer l: z = a^{l-1} W^T + b, a = sigma(z); optional inverted dropout on its output."""

    W: Array
    b: Array
    activation: Activation
    initializer: Initializer = field(default_factory=Auto)
    dropout: float = 0.0

    @property
    def units(self) -> int:
        return self.W.shape[0]

    @property
    def fan_in(self) -> int:
        return self.W.shape[1]

    @property
    def parameter_count(self) -> int:
        return self.W.size + self.b.size

    def hidden_rule(self) -> str:
        """How s^l is obtained from the layer above, for ``check``/``explain``."""
        if isinstance(self.activation, Softmax):
            return "generalized J W^T s via a * (g - a.g), (2.12)"
        return "s = sigma'(z) * (W^T s), (1.23)"


@dataclass
class LayerSpec:
    """What a layer should be before it has weights (built by ``Network.build``)."""

    units: int
    activation: Activation
    initializer: Initializer | None = None
    dropout: float = 0.0


@dataclass
class Trace:
    """What the forward pass keeps for backprop: z^l, a^l and the input each layer saw."""

    z: list[Array]
    a: list[Array]
    inputs: list[Array]  # inputs[l] feeds layer l: x for l = 0, else a^{l-1} after dropout
    masks: list[Array | None]  # inverted-dropout masks on each layer's output, None when off


class Network:
    """A stack of dense layers with a cost; computes losses and gradients of the mean cost."""

    def __init__(self, layers: Sequence[DenseLayer], cost: Cost, *, fused: bool = True) -> None:
        if not layers:
            raise ValueError("a network needs at least one layer")
        self.layers = list(layers)
        self.cost = cost
        self.rule: OutputRule = output_rule(cost, self.layers[-1].activation, allow_fused=fused)

    @classmethod
    def build(
        cls,
        input_units: int,
        specs: Sequence[LayerSpec],
        cost: Cost,
        rng: np.random.Generator,
        *,
        dtype: np.dtype | type = np.float32,
        initializer: Initializer | None = None,
        fused: bool = True,
    ) -> Network:
        """Initialize weights per section 1.6 from ``rng``; biases start at zero."""
        dtype = np.dtype(dtype)
        if dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, not {dtype}")
        default = initializer or Auto()
        layers, fan_in = [], input_units
        for spec in specs:
            init = (spec.initializer or default).resolve(spec.activation)
            W = init.weights(rng, fan_in, spec.units, spec.activation, dtype)
            b = np.zeros(spec.units, dtype=dtype)
            layers.append(DenseLayer(W, b, spec.activation, init, spec.dropout))
            fan_in = spec.units
        return cls(layers, cost, fused=fused)

    # -- properties -------------------------------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        return self.layers[0].W.dtype

    @property
    def input_units(self) -> int:
        return self.layers[0].fan_in

    @property
    def output_units(self) -> int:
        return self.layers[-1].units

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self.layers)

    def parameters(self) -> list[Array]:
        """[W1, b1, ..., WL, bL]: the arrays an optimizer moves, in checkpoint order."""
        return [p for layer in self.layers for p in (layer.W, layer.b)]

    def weight_mask(self) -> list[bool]:
        """Parallel to ``parameters()``: True for weight matrices, False for biases."""
        return [True, False] * len(self.layers)

    def astype(self, dtype: np.dtype | type) -> Network:
        """A copy with parameters in ``dtype``."""
        clone = copy.deepcopy(self)
        for layer in clone.layers:
            layer.W = layer.W.astype(dtype)
            layer.b = layer.b.astype(dtype)
        return clone

    # -- forward ----------------------------------------------------------------------------
    def forward(self, x: Array, *, batch_size: int = 4096) -> Array:
        """Outputs a^L for every row of x (inference: no dropout), in chunks to bound memory."""
        x = np.asarray(x, dtype=self.dtype)
        if x.shape[0] <= batch_size:
            return self._forward_chunk(x)
        return np.concatenate(
            [self._forward_chunk(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        )

    def _forward_chunk(self, x: Array) -> Array:
        a = x
        for layer in self.layers:
            z = a @ layer.W.T  # (1.3), batch-major
            z += layer.b
            a = layer.activation.forward(z, out=z if _can_overwrite(layer.activation) else None)
        return a

    def forward_pass(self, x: Array, rng: np.random.Generator | None = None) -> Trace:
        """Forward pass keeping z, a for backprop; dropout is applied only when ``rng`` is given."""
        trace = Trace(z=[], a=[], inputs=[], masks=[])
        inp = x
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            z = inp @ layer.W.T  # (1.3)
            z += layer.b
            a = layer.activation.forward(z)  # (1.4) / (2.7)
            trace.inputs.append(inp)
            trace.z.append(z)
            trace.a.append(a)
            mask = None
            if rng is not None and layer.dropout > 0.0 and index < last:
                mask = dropout_mask(rng, a.shape, layer.dropout, a.dtype)
                inp = a * mask
            else:
                inp = a
            trace.masks.append(mask)
        return trace

    # -- cost -------------------------------------------------------------------------------
    def per_sample_loss(self, trace: Trace, t: Array) -> Array:
        """c for each sample, from z^L where that is stabler (log-softmax, softplus)."""
        return self.cost.per_sample_from_logits(trace.z[-1], trace.a[-1], t, self.layers[-1].activation)

    def loss(self, x: Array, t: Array) -> float:
        """Mean cost over the rows of x (no dropout)."""
        x = np.asarray(x, dtype=self.dtype)
        return float(self.per_sample_loss(self.forward_pass(x), t).mean())

    # -- backward ---------------------------------------------------------------------------
    def backward(self, trace: Trace, t: Array) -> list[Array]:
        """Gradients of the mean cost, parallel to ``parameters()``.

        s^L from the output rule ((2.21), (2.28) or J^L lambda' (2.16)); then for each layer
        dC/dW = s^T a^{l-1} (1.29)/(1.32), dC/db = sum of s, and s^{l-1} = J^{l-1} W^T s (2.12).
        """
        batch = trace.z[-1].shape[0]
        s = self.rule.sensitivity(trace.z[-1], trace.a[-1], t)
        s *= 1.0 / batch  # gradient of the mean: scale once, at the top
        grads: list[Array] = [None] * (2 * len(self.layers))  # type: ignore[list-item]
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            grads[2 * index] = s.T @ trace.inputs[index]  # (1.29), summed over the batch
            grads[2 * index + 1] = s.sum(axis=0)
            if index == 0:
                break
            g = s @ layer.W  # dC/da^{l-1} = W^T s (1.21), batch-major
            below = index - 1
            if trace.masks[below] is not None:
                g *= trace.masks[below]
            s = self.layers[below].activation.backward(
                trace.z[below], trace.a[below], g, out=g
            )  # (1.23) / (2.12)
        return grads

    def gradients(
        self, x: Array, t: Array, rng: np.random.Generator | None = None
    ) -> tuple[float, list[Array]]:
        """(mean loss, gradients) for one batch."""
        trace = self.forward_pass(x, rng)
        loss = float(self.per_sample_loss(trace, t).mean())
        return loss, self.backward(trace, t)

    # -- display ----------------------------------------------------------------------------
    def describe_layers(self) -> list[dict[str, object]]:
        """One row per layer for tables: shapes, activation, initializer, backprop rule."""
        rows = []
        for index, layer in enumerate(self.layers):
            is_output = index == len(self.layers) - 1
            rows.append(
                {
                    "layer": index + 1,
                    "units": layer.units,
                    "W": f"{layer.units}x{layer.fan_in}",
                    "activation": layer.activation.describe(),
                    "initializer": layer.initializer.name,  # type: ignore[attr-defined]
                    "bound": layer.initializer.bound(layer.fan_in, layer.units, layer.activation),
                    "parameters": layer.parameter_count,
                    "dropout": layer.dropout,
                    "backprop": str(self.rule) if is_output else layer.hidden_rule(),
                }
            )
        return rows


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], rate: float, dtype: np.dtype) -> Array:
    """Inverted dropout: keep each unit with probability 1 - rate and scale by 1/(1 - rate)."""
    keep = 1.0 - rate
    mask = rng.random(shape, dtype=np.float64) < keep
    return mask.astype(dtype) * (1.0 / keep)


def _can_overwrite(activation: Activation) -> bool:
    """Activations whose forward may write its result over z (inference only)."""
    return isinstance(activation, (Relu, Softmax))
