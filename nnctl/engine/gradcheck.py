"""Numerical proof that backprop is right: analytic gradients vs central finite differences.

For every parameter p of every layer, the numerical derivative is
``(C(p + eps) - C(p - eps)) / (2 eps)`` of the mean cost C, in float64. The error per
parameter array is relative in norm, ``||analytic - numeric|| / (||analytic|| + ||numeric||)``,
which stays meaningful when single entries are tiny; a layer's error is the larger of its W and b.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.engine.network import Network

Array = np.ndarray


@dataclass(frozen=True)
class LayerCheck:
    layer: int
    weight_error: float
    bias_error: float
    max_abs_diff: float

    @property
    def error(self) -> float:
        return max(self.weight_error, self.bias_error)


@dataclass(frozen=True)
class GradCheckResult:
    layers: list[LayerCheck]
    tolerance: float
    rule: str

    @property
    def max_error(self) -> float:
        return max(layer.error for layer in self.layers)

    @property
    def passed(self) -> bool:
        return self.max_error < self.tolerance


def relative_error(analytic: Array, numeric: Array) -> float:
    """||a - n|| / (||a|| + ||n||), 0 when both are exactly zero."""
    denominator = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    if denominator == 0.0:
        return 0.0
    return float(np.linalg.norm(analytic - numeric) / denominator)


def numerical_gradient(
    net: Network, x: Array, t: Array, param: Array, eps: float, entries: Array | None = None
) -> Array:
    """Central differences of the mean cost w.r.t. each entry of ``param`` (changed in place, restored).

    With ``entries`` (flat indices) only those are computed; the rest stay 0.
    """
    grad = np.zeros_like(param)
    flat, flat_grad = param.reshape(-1), grad.reshape(-1)
    for i in range(flat.size) if entries is None else entries:
        original = flat[i]
        flat[i] = original + eps
        plus = net.loss(x, t)
        flat[i] = original - eps
        minus = net.loss(x, t)
        flat[i] = original
        flat_grad[i] = (plus - minus) / (2.0 * eps)
    return grad


def gradient_check(
    net: Network,
    x: Array,
    t: Array,
    *,
    eps: float = 1e-6,
    tolerance: float = 1e-6,
    max_entries: int | None = None,
    seed: int = 0,
) -> GradCheckResult:
    """Compare backprop's gradients with finite differences on (x, t), in float64.

    ``max_entries`` bounds the cost on large layers: at most that many entries of each parameter
    array, drawn with ``seed``, are checked (the analytic gradient is compared on the same entries).
    """
    net64 = net.astype(np.float64)
    x64 = np.asarray(x, dtype=np.float64)
    t64 = np.asarray(t, dtype=np.float64)
    _, analytic = net64.gradients(x64, t64)
    analytic = [g.copy() for g in analytic]  # the network may reuse its gradient buffers
    params = net64.parameters()
    rng = np.random.default_rng(seed)
    checks = []
    for index in range(len(net64.layers)):
        errors, max_abs = [], 0.0
        for j in (2 * index, 2 * index + 1):
            entries = _sample_entries(params[j].size, max_entries, rng)
            numeric = numerical_gradient(net64, x64, t64, params[j], eps, entries)
            expected = analytic[j].reshape(-1)
            got = numeric.reshape(-1)
            if entries is not None:
                expected, got = expected[entries], got[entries]
            errors.append(relative_error(expected, got))
            max_abs = max(max_abs, float(np.max(np.abs(expected - got))))
        checks.append(LayerCheck(index + 1, errors[0], errors[1], max_abs))
    return GradCheckResult(checks, tolerance, str(net64.rule))


def _sample_entries(size: int, max_entries: int | None, rng: np.random.Generator) -> Array | None:
    if max_entries is None or size <= max_entries:
        return None
    return np.sort(rng.choice(size, size=max_entries, replace=False))
