"""Cost functions lambda(a, t): values, gradients lambda' and the output-layer sensitivity rule.

Per sample, with K output neurons (the seed's definitions):

* ``quadratic``  c = sum_k (t_k - a_k)^2  (1.14);  lambda' = 2 (a - t)  (1.15)
* ``cce``        c = -sum_k t_k log a_k  (2.18);  lambda' = -t / a  (2.19)
* ``bce``        c = -sum_k [t_k log a_k + (1 - t_k) log(1 - a_k)]  (2.23);
                 lambda' = (a - t) / (a (1 - a))  (2.27)

The reported loss is the mean of c over the batch. ``output_rule`` decides, once, how the output
sensitivity s^L is computed: a fused closed form where the seed derives one ((2.20)/(2.21) for
softmax+CCE, (2.28) for logistic+BCE), otherwise the generalized s^L = J^L lambda' (2.16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from nnctl.engine.activations import Activation, Logistic, Softmax
from nnctl.engine.registry import registry

Array = np.ndarray


def softplus(u: Array) -> Array:
    """log(1 + e^u) without overflow: max(u, 0) + log1p(e^{-|u|})."""
    return np.maximum(u, 0) + np.log1p(np.exp(-np.abs(u)))


def log_softmax(z: Array) -> Array:
    """log softmax(z) row-wise, via the max-shifted log-sum-exp: finite for any finite z."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _safe_log(a: Array) -> Array:
    """log(a) with a clipped to the dtype's smallest normal: never -inf, so 0 * log(0) = 0."""
    return np.log(np.maximum(a, np.finfo(a.dtype).tiny))


class Cost(BaseModel):
    """Base class: a frozen component; subclasses register under their YAML ``name``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    formula: ClassVar[str] = ""

    def per_sample(self, a: Array, t: Array) -> Array:
        """Cost of each sample, shape (batch,), from the outputs a."""
        raise NotImplementedError

    def per_sample_from_logits(self, z: Array, a: Array, t: Array, activation: Activation) -> Array:
        """Cost of each sample computed from the pre-activations where that is more stable."""
        return self.per_sample(a, t)

    def value(self, a: Array, t: Array) -> float:
        """Mean cost over the batch."""
        return float(self.per_sample(a, t).mean())

    def gradient(self, a: Array, t: Array) -> Array:
        """lambda' = d c / d a per sample, shape (batch, K)."""
        raise NotImplementedError

    def check_output(self, activation: Activation) -> PairCheck:
        """Whether this cost gives a finite loss on the outputs of ``activation``."""
        return PairCheck()

    def fused_rule(self, activation: Activation) -> OutputRule | None:
        """A closed-form s^L for this pair, or None to use the generalized path (2.16)."""
        return None


@dataclass(frozen=True)
class PairCheck:
    """Verdict on a cost/output-activation pair: an error makes the config invalid."""

    error: str | None = None
    warning: str | None = None


@dataclass(frozen=True)
class OutputRule:
    """How s^L = d c / d z^L is computed for one cost/activation pair (per sample).

    ``head``, where the pair has one, computes the outputs a^L (into ``out``), the mean loss and
    s^L in one pass over z^L: ``(z, t, out) -> (loss, s)``, bit for bit the values of the
    activation's forward, the cost and ``sensitivity``. ``Network.gradients`` takes it when set.
    """

    label: str
    equation: str
    fused: bool
    sensitivity: Callable[[Array, Array, Array], Array]  # (z, a, t) -> s
    head: Callable[[Array, Array, Array], tuple[float, Array]] | None = None

    def __str__(self) -> str:
        return f"{self.label}, {self.equation}"


class Quadratic(Cost):
    name: Literal["quadratic"] = "quadratic"
    formula: ClassVar[str] = "c = sum_k (t_k - a_k)^2   (1.14)"

    def per_sample(self, a: Array, t: Array) -> Array:
        diff = a - t
        return np.einsum("bk,bk->b", diff, diff)

    def gradient(self, a: Array, t: Array) -> Array:
        g = a - t
        g *= 2.0
        return g


class CategoricalCrossEntropy(Cost):
    name: Literal["cce"] = "cce"
    formula: ClassVar[str] = "c = -sum_k t_k log a_k   (2.18)"

    def per_sample(self, a: Array, t: Array) -> Array:
        return -np.einsum("bk,bk->b", t, _safe_log(a))

    def per_sample_from_logits(self, z: Array, a: Array, t: Array, activation: Activation) -> Array:
        if isinstance(activation, Softmax):
            return -np.einsum("bk,bk->b", t, log_softmax(z))
        if isinstance(activation, Logistic):
            log_a = np.log(activation.L) - softplus(-activation.scaled_input(z))
            return -np.einsum("bk,bk->b", t, log_a)
        return self.per_sample(a, t)

    def gradient(self, a: Array, t: Array) -> Array:
        return -t / np.maximum(a, np.finfo(a.dtype).tiny)

    def check_output(self, activation: Activation) -> PairCheck:
        if isinstance(activation, Softmax):
            return PairCheck()
        if isinstance(activation, Logistic) and activation.L != 1.0:
            # a in (0, L): with L > 1, -log a < 0 for a > 1 and the loss can go negative (c = -log 2
            # at saturation for L = 2); with L < 1 it can never reach 0. Refused, as bce refuses it.
            return PairCheck(
                error=f"cce needs outputs in (0, 1), but the output layer is logistic with "
                f"L={activation.L:g}, whose outputs reach {activation.L:g} and make -log a meaningless "
                "as a loss; use a softmax output (or a logistic output with L=1)"
            )
        if isinstance(activation, Logistic):
            return PairCheck(
                warning="cce with a logistic output: the outputs need not sum to 1; "
                "softmax is the usual output for cce (or use bce for independent labels)"
            )
        return PairCheck(
            error=f"cce needs outputs in (0, 1) to take their log, but a {activation.name} "
            "output can be zero or negative; use a softmax output layer"
        )

    def fused_rule(self, activation: Activation) -> OutputRule | None:
        if not isinstance(activation, Softmax):
            return None

        def sensitivity(z: Array, a: Array, t: Array) -> Array:
            # (2.20): s = a * sum_p t_p - t; with one-hot t this is (2.21), s = a - t.
            return a * t.sum(axis=1, keepdims=True) - t

        # Labelled for what it computes: (2.20), which is (2.21) only when each row of t sums to 1.
        return OutputRule(
            "fused softmax+CCE: s = a sum_k t_k - t",
            "(2.20); = a - t (2.21) for one-hot t",
            True,
            sensitivity,
            head=softmax_cce,
        )


def softmax_cce(z: Array, t: Array, out: Array) -> tuple[float, Array]:
    """Softmax outputs a (2.1) into ``out``, the mean CCE loss (2.18) and s^L (2.20) of each
    sample, in one pass over the output layer's z.

    The operations and their order are those of ``Softmax.forward``, the log-softmax loss of
    ``CategoricalCrossEntropy`` and its fused rule, so every value is bit-identical to theirs;
    only the shifted logits and their exponentials are computed once instead of twice.
    """
    shifted = z - z.max(axis=1, keepdims=True)  # every exponential is at most 1
    a = np.exp(shifted, out=out)
    total = a.sum(axis=1, keepdims=True)
    a /= total  # (2.1)
    shifted -= np.log(total)  # log a, by log-sum-exp
    t_log_a = np.einsum("bk,bk->b", t, shifted)  # sum_k t_k log a_k = -c per sample (2.18)
    loss = -float(t_log_a.sum() / len(t_log_a))  # the batch mean, as np.mean computes it
    s = a * t.sum(axis=1, keepdims=True)
    s -= t  # (2.20); for one-hot targets, s = a - t (2.21)
    return loss, s


class BinaryCrossEntropy(Cost):
    name: Literal["bce"] = "bce"
    formula: ClassVar[str] = "c = -sum_k [t_k log a_k + (1 - t_k) log(1 - a_k)]   (2.23)"

    def per_sample(self, a: Array, t: Array) -> Array:
        return -(np.einsum("bk,bk->b", t, _safe_log(a)) + np.einsum("bk,bk->b", 1.0 - t, _safe_log(1.0 - a)))

    def per_sample_from_logits(self, z: Array, a: Array, t: Array, activation: Activation) -> Array:
        if isinstance(activation, Logistic) and activation.L == 1.0:
            # With a = sigmoid(u): -t log a - (1 - t) log(1 - a) = softplus(u) - t u.
            u = activation.scaled_input(z)
            return (softplus(u) - t * u).sum(axis=1)
        return self.per_sample(a, t)

    def gradient(self, a: Array, t: Array) -> Array:
        tiny = np.finfo(a.dtype).tiny
        return (a - t) / np.maximum(a * (1.0 - a), tiny)  # (2.27)

    def check_output(self, activation: Activation) -> PairCheck:
        if isinstance(activation, Logistic) and activation.L == 1.0:
            return PairCheck()
        what = f"logistic with L={activation.L:g}" if isinstance(activation, Logistic) else activation.name
        return PairCheck(
            error=f"bce needs outputs in (0, 1), but the output layer is {what}; "
            "use a logistic output with L=1 (any k, x0)"
        )

    def fused_rule(self, activation: Activation) -> OutputRule | None:
        if not (isinstance(activation, Logistic) and activation.L == 1.0):
            return None
        k = activation.k

        def sensitivity(z: Array, a: Array, t: Array) -> Array:
            # (2.28), generalized to the growth rate k: da/dz = k a (1 - a) cancels (2.27).
            s = a - t
            if k != 1.0:
                s *= k
            return s

        label = "fused logistic+BCE: s = a - t" if k == 1.0 else f"fused logistic+BCE: s = {k:g} (a - t)"
        return OutputRule(label, "(2.28)", True, sensitivity)


class ClassWeighted(Cost):
    """A class-weighted cce or bce: sample i's cost is multiplied by the weight of its class,
    c_w = w_{y_i} c (2.18)/(2.23), so the batch loss is (1/B) sum_i w_{y_i} c_i. Every
    derivative with respect to a carries the same factor: lambda'_w = w lambda' (2.19)/(2.27) and
    the fused rules become s = w (a - t) ((2.21), (2.28)). Not a YAML component: nnctl builds it
    from ``training.class_weight`` (weights in class order, scaled to average 1 over the training
    rows, so an epoch's loss is the weighted mean sum w c / sum w).
    """

    name: Literal["cce", "bce"]
    base: CategoricalCrossEntropy | BinaryCrossEntropy
    weights: tuple[float, ...]

    @property
    def formula(self) -> str:  # type: ignore[override]
        return f"{self.base.formula}, times the class weight w_y"

    def sample_weights(self, t: Array) -> Array:
        """w_{y_i} for every row: t @ w for one-hot targets; w0 + (w1 - w0) t for one binary unit."""
        w = np.asarray(self.weights, dtype=t.dtype)
        if t.shape[1] == 1:
            return w[0] + (w[1] - w[0]) * t[:, 0]
        return t @ w

    def per_sample(self, a: Array, t: Array) -> Array:
        return self.base.per_sample(a, t) * self.sample_weights(t)

    def per_sample_from_logits(self, z: Array, a: Array, t: Array, activation: Activation) -> Array:
        return self.base.per_sample_from_logits(z, a, t, activation) * self.sample_weights(t)

    def gradient(self, a: Array, t: Array) -> Array:
        return self.base.gradient(a, t) * self.sample_weights(t)[:, None]

    def check_output(self, activation: Activation) -> PairCheck:
        return self.base.check_output(activation)

    def fused_rule(self, activation: Activation) -> OutputRule | None:
        rule = self.base.fused_rule(activation)
        if rule is None:
            return None

        def sensitivity(z: Array, a: Array, t: Array) -> Array:
            s = rule.sensitivity(z, a, t)
            s *= self.sample_weights(t)[:, None]
            return s

        return OutputRule(f"{rule.label}, times the class weight", rule.equation, True, sensitivity)


def class_weighted(cost: Cost, weights: list[float] | tuple[float, ...] | None) -> Cost:
    """``cost`` with per-class weights (cce and bce only), or ``cost`` itself without weights."""
    if not weights:
        return cost
    if not isinstance(cost, CategoricalCrossEntropy | BinaryCrossEntropy):
        raise ValueError(f"class weights apply to cce and bce, not {cost.name}")
    return ClassWeighted(name=cost.name, base=cost, weights=tuple(float(w) for w in weights))


def generalized_rule(cost: Cost, activation: Activation) -> OutputRule:
    """s^L = J^L lambda' (2.16), as a vector-Jacobian product: valid for every pair."""

    def sensitivity(z: Array, a: Array, t: Array) -> Array:
        return activation.backward(z, a, cost.gradient(a, t))

    if activation.elementwise:
        label = f"{cost.name} through {activation.name}: s = sigma'(z) * lambda'"
        return OutputRule(label, "(1.17)/(2.16)", False, sensitivity)
    return OutputRule(f"generalized J lambda' ({cost.name}, {activation.name})", "(2.16)", False, sensitivity)


def output_rule(cost: Cost, activation: Activation, *, allow_fused: bool = True) -> OutputRule:
    """The output sensitivity rule for this pair: fused where the seed derives one."""
    fused = cost.fused_rule(activation) if allow_fused else None
    return fused if fused is not None else generalized_rule(cost, activation)


#: YAML name -> class: the single registry of costs.
COSTS: dict[str, type[Cost]] = registry(Quadratic, CategoricalCrossEntropy, BinaryCrossEntropy)
