"""``nnctl explain``: the seed's equations for one config, with its shapes and numbers filled in."""

from __future__ import annotations

from nnctl.config import Config
from nnctl.engine.activations import Activation, Elu, Logistic
from nnctl.engine.initializers import Initializer, Xavier
from nnctl.engine.network import Network


def explain_network(config: Config, net: Network) -> str:
    """Markdown: per layer the forward equation, the backward rule and the initializer's bound."""
    batch = config.training.batch_size
    lines = [
        f"# {config.name}: {net.input_units} inputs -> "
        + " -> ".join(str(layer.units) for layer in net.layers),
        "",
        f"Batch-major: a batch of B = {batch} rows; `W^l` has shape (units_l, units_(l-1)), "
        "the seed's w_ij (1.1).",
        "",
    ]
    last = len(net.layers)
    for index, layer in enumerate(net.layers, start=1):
        previous = "x" if index == 1 else f"a^{index - 1}"
        act = layer.activation
        lines += [
            f"## Layer {index}: {layer.units} units, {act.describe()}",
            "",
            f"- forward (1.3)-(1.4): `z^{index} = {previous} W^{index}T + b^{index}` "
            f"with `{previous}` (B, {layer.fan_in}), `W^{index}` ({layer.units}, {layer.fan_in}), "
            f"`b^{index}` ({layer.units},); `a^{index} = {act.name}(z^{index})` (B, {layer.units})",
            f"- derivative: {derivative_text(act)}",
        ]
        if index == last:
            lines.append(f"- output sensitivity: {net.rule.label}, {net.rule.equation}")
        else:
            lines.append(f"- backward: {layer.hidden_rule()}")
        bound = layer.initializer.bound(layer.fan_in, layer.units, act)
        lines += [
            f"- gradient (1.29)/(1.32): `dC/dW^{index} = s^{index}T {previous} / B`, "
            f"`dC/db^{index} = mean of s^{index}`",
            f"- initializer {layer.initializer.name}: U(-r, r), r = {layer.initializer.formula(act)}"  # type: ignore[attr-defined]
            f" = {bound:.4g} (fan_in {layer.fan_in}, fan_out {layer.units}); biases 0",
            *xavier_logistic_note(layer.initializer.resolve(act), act),
            "",
        ]
    training = config.training
    lines += [
        f"## Cost: {config.cost.name}",
        "",
        f"- {config.cost.formula}, averaged over the batch",
        f"- update: {training.optimizer.name}, learning rate {training.learning_rate:g}"
        + (" — `W <- W - eta dC/dW` (1.32)" if training.optimizer.name == "sgd" else ""),
    ]
    return "\n".join(lines)


def derivative_text(act: Activation) -> str:
    """The activation's derivative (table 1.1), with this config's parameters filled in."""
    if isinstance(act, Logistic):
        k = "" if act.k == 1 else f"{act.k:g} "
        over_L = "" if act.L == 1 else f"/{act.L:g}"
        return f"k a (1 - a/L) = `{k}a (1 - a{over_L})` (k = {act.k:g}, L = {act.L:g})   (1.10)"
    if isinstance(act, Elu):
        return f"1 if z >= 0 else a + alpha = `1 if z >= 0 else a + {act.alpha:g}` (alpha = {act.alpha:g})"
    return getattr(act, "derivative_formula", "")


def xavier_logistic_note(initializer: Initializer, act: Activation) -> list[str]:
    """What the x4 of (1.35) means for a generalized logistic: it is 1/sigma'(0) of the plain
    sigmoid, whose midpoint slope is 1/4; a logistic's midpoint slope is Lk/4."""
    if not (isinstance(initializer, Xavier) and isinstance(act, Logistic)):
        return []
    slope = act.L * act.k / 4
    if slope == 0.25:
        return ["  - the 4 of (1.35) is 1/sigma'(0): the plain sigmoid's slope at its midpoint is 1/4"]
    return [
        f"  - the 4 of (1.35) is 1/sigma'(0) of the plain sigmoid (L = k = 1); this logistic's slope at "
        f"its midpoint is Lk/4 = {slope:g}, so 1/slope would be {1 / slope:.3g}; nnctl keeps the seed's 4"
    ]
