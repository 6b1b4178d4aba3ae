"""``nnctl explain``: the seed's equations for one config, with its shapes and numbers filled in."""

from __future__ import annotations

from nnctl.config import Config
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
            f"- derivative: {getattr(act, 'derivative_formula', '')}",
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
