"""Per-layer diagnostics for ``--trace``: activation statistics, gradient sizes and update ratios."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnctl.engine.network import Network

Array = np.ndarray


class LayerDiagnostics:
    """Per-layer health over one epoch (``training.trace``): mean |gradient|, update/weight ratio,
    the fraction of dead relu units and of saturated logistic/tanh units."""

    def __init__(self, layers: int) -> None:
        self.layers = layers
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.grad = np.zeros(self.layers)
        self.ratio = np.zeros(self.layers)
        self.inactive = np.zeros(self.layers)

    def observe_forward(self, net: Network, trace: Any) -> None:
        for index, (layer, a) in enumerate(zip(net.layers, trace.a, strict=True)):
            name = layer.activation.name  # type: ignore[attr-defined]
            if name == "relu":  # a unit is dead on this batch when it is 0 for every row
                self.inactive[index] += float(np.mean(np.all(a <= 0, axis=0)))
            elif name in ("logistic", "tanh"):
                low, high = layer.activation.bounds()
                edge = 0.01 * (high - low)
                self.inactive[index] += float(np.mean((a < low + edge) | (a > high - edge)))

    def observe_update(self, net: Network, grads: list[Array], before: list[Array]) -> None:
        self.steps += 1
        for index, layer in enumerate(net.layers):
            self.grad[index] += float(np.mean(np.abs(grads[2 * index])))
            norm = float(np.linalg.norm(before[index])) or 1.0
            self.ratio[index] += float(np.linalg.norm(layer.W - before[index])) / norm

    def summary(self, net: Network) -> dict[str, float]:
        steps = max(self.steps, 1)
        record: dict[str, float] = {}
        for index, layer in enumerate(net.layers):
            prefix = f"l{index + 1}_"
            record[prefix + "grad"] = self.grad[index] / steps
            record[prefix + "update_ratio"] = self.ratio[index] / steps
            name = layer.activation.name  # type: ignore[attr-defined]
            if name == "relu":
                record[prefix + "dead"] = self.inactive[index] / steps
            elif name in ("logistic", "tanh"):
                record[prefix + "saturated"] = self.inactive[index] / steps
        self.reset()
        return record
