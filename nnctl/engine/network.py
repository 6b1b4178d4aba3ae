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
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from nnctl.engine.activations import Activation, Relu, Softmax
from nnctl.engine.costs import Cost, OutputRule, output_rule
from nnctl.engine.initializers import Auto, Initializer

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


class ForwardBuffers:
    """The arrays a forward pass over B rows writes: z^l and a^l of every layer and, under
    dropout, the mask on a^l, the next layer's input a^l * mask and the mask's uniform draws.

    ``Network.forward_pass`` fills a new set (its trace is the caller's to keep);
    ``Network.gradients`` and ``Network.loss`` reuse the network's set for the batch size.
    """

    def __init__(self, layers: Sequence[DenseLayer], batch: int, dtype: np.dtype) -> None:
        self.shapes = tuple(layer.W.shape for layer in layers)
        self.z = [np.empty((batch, layer.units), dtype=dtype) for layer in layers]
        self.a = [np.empty((batch, layer.units), dtype=dtype) for layer in layers]
        self.dropout: dict[int, tuple[Array, Array, Array]] = {}

    def dropout_buffers(self, index: int) -> tuple[Array, Array, Array]:
        """(mask, a * mask, float64 uniform draws) for layer ``index``, made on first use."""
        if index not in self.dropout:
            a = self.a[index]
            self.dropout[index] = (np.empty_like(a), np.empty_like(a), np.empty(a.shape, dtype=np.float64))
        return self.dropout[index]


class BackwardBuffers:
    """What backprop over B rows writes besides the gradients it returns: s^l of each hidden
    layer (holding dC/da^l (1.21) until sigma' is applied) and B ones, which make the bias
    gradient, the sum of s over the batch, one matrix-vector product."""

    def __init__(self, layers: Sequence[DenseLayer], batch: int, dtype: np.dtype) -> None:
        self.shapes = tuple(layer.W.shape for layer in layers)
        self.s = [np.empty((batch, layer.units), dtype=dtype) for layer in layers[:-1]]
        self.ones = np.ones(batch, dtype=dtype)


Buffers = TypeVar("Buffers", ForwardBuffers, BackwardBuffers)


class Network:
    """A stack of dense layers with a cost; computes losses and gradients of the mean cost.

    The network keeps scratch buffers (``ForwardBuffers``, ``BackwardBuffers``) for the few
    batch sizes it last trained on, per thread, so that a training step allocates nothing but
    the gradients it returns (those are new arrays on every call). The buffers carry nothing
    from one call to the next; copies, pickles and ``astype`` start without them.

    Where the output rule has a one-pass head (softmax with CCE: ``costs.softmax_cce``),
    ``gradients`` computes the outputs, the loss and s^L with it, bit for bit what the general
    path (``activation.forward``, ``per_sample_loss``, ``rule.sensitivity``) gives.
    """

    #: Buffer sets kept per kind, least recently used dropped first. A trainer needs two: its
    #: batch size and the shorter last batch of an epoch.
    cached_buffer_sets: int = 4

    def __init__(self, layers: Sequence[DenseLayer], cost: Cost, *, fused: bool = True) -> None:
        if not layers:
            raise ValueError("a network needs at least one layer")
        self.layers = list(layers)
        self.cost = cost
        self.rule: OutputRule = output_rule(cost, self.layers[-1].activation, allow_fused=fused)
        self._buffers: dict[tuple, ForwardBuffers | BackwardBuffers] = {}

    def __getstate__(self) -> dict[str, object]:
        """Copies and pickles leave the scratch buffers behind."""
        state = self.__dict__.copy()
        state["_buffers"] = {}
        return state

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
        """Forward pass keeping z, a for backprop; dropout is applied only when ``rng`` is given.

        The trace's arrays are new ones, the caller's to keep. Inputs are cast to the network's
        dtype, so a float32 network computes in float32 whatever it is given.
        """
        x = np.asarray(x, dtype=self.dtype)
        return self._forward(x, rng, ForwardBuffers(self.layers, x.shape[0], self.dtype))

    def _forward(
        self,
        x: Array,
        rng: np.random.Generator | None,
        buffers: ForwardBuffers,
        *,
        output_activation: bool = True,
    ) -> Trace:
        """(1.3)-(1.4) layer by layer, written into ``buffers``; the trace refers to them.
        With ``output_activation=False`` a^L is left for the caller to write."""
        inputs: list[Array] = [x]
        masks: list[Array | None] = []
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            z, a = buffers.z[index], buffers.a[index]
            np.matmul(inputs[index], layer.W.T, out=z)  # (1.3), batch-major: z = a^{l-1} W^T + b
            z += layer.b
            if index < last or output_activation:
                layer.activation.forward(z, out=a)  # (1.4) / (2.7)
            mask = None
            if index < last and rng is not None and layer.dropout > 0.0:
                mask, dropped, uniform = buffers.dropout_buffers(index)
                _draw_dropout_mask(rng, layer.dropout, mask, uniform)
                inputs.append(np.multiply(a, mask, out=dropped))
            elif index < last:
                inputs.append(a)
            masks.append(mask)
        return Trace(z=list(buffers.z), a=list(buffers.a), inputs=inputs, masks=masks)

    # -- cost -------------------------------------------------------------------------------
    def per_sample_loss(self, trace: Trace, t: Array) -> Array:
        """c for each sample, from z^L where that is stabler (log-softmax, softplus)."""
        return self.cost.per_sample_from_logits(trace.z[-1], trace.a[-1], t, self.layers[-1].activation)

    def loss(self, x: Array, t: Array) -> float:
        """Mean cost over the rows of x (no dropout)."""
        x = np.asarray(x, dtype=self.dtype)
        trace = self._forward(x, None, self._cached(ForwardBuffers, x.shape[0], self.dtype))
        return float(self.per_sample_loss(trace, t).mean())

    # -- backward ---------------------------------------------------------------------------
    def backward(self, trace: Trace, t: Array) -> list[Array]:
        """Gradients of the mean cost, parallel to ``parameters()``: new arrays on every call.

        s^L from the output rule ((2.20), (2.28) or J^L lambda' (2.16)); then for each layer
        dC/dW = s^T a^{l-1} (1.29)/(1.32), dC/db = sum of s, and s^{l-1} = J^{l-1} W^T s (2.12).
        Arithmetic runs in the dtype of s^L (that of z^L and t together).
        """
        return self._backprop(trace, self.rule.sensitivity(trace.z[-1], trace.a[-1], t))

    def _backprop(self, trace: Trace, s: Array) -> list[Array]:
        """``backward`` from s^L, the output sensitivity of each sample (a new array)."""
        batch = s.shape[0]
        s *= 1.0 / batch  # gradient of the mean: scale once, at the top
        buffers = self._cached(BackwardBuffers, batch, s.dtype)
        grads: list[Array] = [None] * (2 * len(self.layers))  # type: ignore[list-item]
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            dW = grads[2 * index] = np.empty(layer.W.shape, dtype=s.dtype)
            np.matmul(s.T, trace.inputs[index], out=dW)  # (1.29), summed over the batch
            db = grads[2 * index + 1] = np.empty(layer.b.shape, dtype=s.dtype)
            np.matmul(buffers.ones, s, out=db)  # the sum of s over the batch, as ones^T s
            if index == 0:
                break
            below = index - 1
            g = np.matmul(s, layer.W, out=buffers.s[below])  # dC/da^{l-1} = W^T s (1.21), batch-major
            if trace.masks[below] is not None:
                g *= trace.masks[below]
            s = self.layers[below].activation.backward(
                trace.z[below], trace.a[below], g, out=g
            )  # (1.23) / (2.12)
        return grads

    def gradients(
        self, x: Array, t: Array, rng: np.random.Generator | None = None
    ) -> tuple[float, list[Array]]:
        """(mean loss, gradients) for one batch: ``forward_pass``, the mean cost, ``backward``.

        The forward pass writes into the buffers this network keeps for the batch size, so a
        step allocates only the gradients it returns (new arrays, the caller's to keep). For a
        softmax output with CCE (the fused rule (2.20)) the outputs, the loss and s^L come from
        one pass over z^L (the output rule's ``head``), with the same values as the general path.
        """
        x, t = np.asarray(x, dtype=self.dtype), np.asarray(t, dtype=self.dtype)  # no silent upcasts
        buffers = self._cached(ForwardBuffers, x.shape[0], self.dtype)
        if self.rule.head is not None:
            trace = self._forward(x, rng, buffers, output_activation=False)
            loss, s = self.rule.head(trace.z[-1], t, trace.a[-1])
        else:
            trace = self._forward(x, rng, buffers)
            loss = float(self.per_sample_loss(trace, t).mean())
            s = self.rule.sensitivity(trace.z[-1], trace.a[-1], t)
        return loss, self._backprop(trace, s)

    def _cached(self, kind: type[Buffers], batch: int, dtype: np.dtype) -> Buffers:
        """This network's ``kind`` buffers for the batch size, dtype and calling thread."""
        cache = self.__dict__.setdefault("_buffers", {})
        key = (kind, batch, dtype, threading.get_ident())
        buffers = cache.pop(key, None)
        if buffers is None or buffers.shapes != tuple(layer.W.shape for layer in self.layers):
            buffers = kind(self.layers, batch, dtype)
        cache[key] = buffers  # most recently used last
        while len(cache) > 2 * self.cached_buffer_sets:
            del cache[next(iter(cache))]
        return buffers

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


def _draw_dropout_mask(rng: np.random.Generator, rate: float, mask: Array, uniform: Array) -> None:
    """Inverted dropout written into ``mask``: each unit kept with probability 1 - rate and scaled
    by 1/(1 - rate), dropped ones 0; the draws go into the float64 scratch ``uniform``."""
    keep = 1.0 - rate
    rng.random(out=uniform)  # the draws of rng.random(shape, dtype=np.float64)
    np.less(uniform, keep, out=mask)  # 1 for a kept unit, 0 for a dropped one
    mask *= 1.0 / keep


def _can_overwrite(activation: Activation) -> bool:
    """Activations whose forward may write its result over z (inference only)."""
    return isinstance(activation, (Relu, Softmax))
