"""Whole-network gradient checks: backprop (2.12)/(2.16)/(1.29) against central differences, for
every hidden activation crossed with every valid (output activation, cost) pair."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine.activations import ACTIVATIONS, Activation, Elu, Logistic, Relu, Softmax, Tanh
from nnctl.engine.costs import (
    COSTS,
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Cost,
    Quadratic,
    output_rule,
)
from nnctl.engine.gradcheck import gradient_check, numerical_gradient, relative_error
from nnctl.engine.network import LayerSpec, Network

TOL = 1e-6
ACTS: dict[str, Activation] = {
    **{name: cls() for name, cls in ACTIVATIONS.items()},
    "elu(alpha=0.5)": Elu(alpha=0.5),
    "logistic(L=2,k=0.5,x0=1)": Logistic(L=2.0, k=0.5, x0=1.0),
    "logistic(k=0.5,x0=1)": Logistic(k=0.5, x0=1.0),
}
HIDDEN = [pytest.param(act, id=name) for name, act in ACTS.items()]
HEADS = [
    (name, act, COSTS[c]())
    for c in COSTS
    for name, act in ACTS.items()
    if COSTS[c]().check_output(act).error is None
]
VALID = [pytest.param(act, cost, id=f"{name}+{cost.name}") for name, act, cost in HEADS]
FUSABLE = [
    pytest.param(act, cost, id=f"{name}+{cost.name}")
    for name, act, cost in HEADS
    if cost.fused_rule(act) is not None
]


def targets(cost: Cost, out: Activation, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    if isinstance(cost, CategoricalCrossEntropy):
        return np.eye(k)[rng.integers(0, k, n)]
    t = rng.uniform(0.0, 1.0, size=(n, k))
    return t * out.L if isinstance(out, Logistic) else t


def kink_free(
    hidden: list[Activation], out: Activation, cost: Cost, *, fused: bool = True, dropout: float = 0.0
):
    """A float64 net and data whose relu/elu pre-activations all have |z| > 1e-3 (first such seed)."""
    widths = [5, 4, 6][: len(hidden)]
    for seed in range(50):
        rng = np.random.default_rng(seed)
        specs = [LayerSpec(w, act, dropout=dropout) for w, act in zip(widths, hidden, strict=True)]
        specs.append(LayerSpec(3, out))
        net = Network.build(3, specs, cost, rng, dtype=np.float64, fused=fused)
        for layer in net.layers:  # nonzero biases, so they are checked at a generic point
            layer.b[:] = rng.normal(0.0, 0.3, size=layer.b.shape)
        x = rng.normal(size=(5, 3))
        t = targets(cost, out, rng, 5, 3)
        trace = net.forward_pass(x)
        if all(
            np.abs(z).min() > 1e-3
            for z, layer in zip(trace.z, net.layers, strict=True)
            if isinstance(layer.activation, (Relu, Elu))
        ):
            return net, x, t
    raise AssertionError("no kink-free seed")


def assert_passes(net: Network, x: np.ndarray, t: np.ndarray) -> None:
    result = gradient_check(net, x, t)
    assert len(result.layers) == len(net.layers)
    assert result.tolerance == TOL
    assert result.max_error < TOL, [(c.layer, c.weight_error, c.bias_error) for c in result.layers]
    assert result.passed
    _, grads = net.gradients(x, t)
    assert np.linalg.norm(grads[-2]) > 1e-6  # the check compared something, not zeros


@pytest.mark.parametrize(("out", "cost"), VALID)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_every_hidden_activation_with_every_valid_head(
    hidden: Activation, out: Activation, cost: Cost
) -> None:
    net, x, t = kink_free([hidden], out, cost)
    assert net.layers[0].dropout == 0.0
    assert_passes(net, x, t)


@pytest.mark.parametrize(("out", "cost"), FUSABLE)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_generalized_output_path(hidden: Activation, out: Activation, cost: Cost) -> None:
    """fused=False: the same pairs through s^L = J^L lambda' (2.16)."""
    net, x, t = kink_free([hidden], out, cost, fused=False)
    assert not net.rule.fused
    assert_passes(net, x, t)


def test_fusable_pairs_are_the_ones_the_seed_derives() -> None:
    assert {(type(a).__name__, type(c).__name__) for a, c in (p.values for p in FUSABLE)} == {
        ("Softmax", "CategoricalCrossEntropy"),
        ("Logistic", "BinaryCrossEntropy"),
    }
    assert any(isinstance(a, Softmax) and isinstance(c, Quadratic) for a, c in (p.values for p in VALID))


DEEP = [
    pytest.param([Relu(), Softmax()], Softmax(), CategoricalCrossEntropy(), id="relu-softmax-softmax+cce"),
    pytest.param(
        [Tanh(), Elu(alpha=0.5)], Logistic(k=0.5, x0=1.0), BinaryCrossEntropy(), id="tanh-elu-logistic+bce"
    ),
    pytest.param(
        [Logistic(L=2.0, k=0.5, x0=1.0), Softmax(), Relu()],
        Softmax(),
        Quadratic(),
        id="logistic-softmax-relu-sm+quad",
    ),
    pytest.param(
        [Elu(), Tanh(), Logistic()], Logistic(), CategoricalCrossEntropy(), id="elu-tanh-logistic-log+cce"
    ),
    pytest.param(
        [Softmax(), Softmax(), Tanh()], ACTS["identity"], Quadratic(), id="sm-sm-tanh-identity+quad"
    ),
]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generalized"])
@pytest.mark.parametrize(("hidden", "out", "cost"), DEEP)
def test_three_and_four_layer_networks(
    hidden: list[Activation], out: Activation, cost: Cost, fused: bool
) -> None:
    net, x, t = kink_free(hidden, out, cost, fused=fused)
    assert len(net.layers) in (3, 4)
    assert_passes(net, x, t)


def test_configured_dropout_does_not_affect_the_check() -> None:
    """gradient_check runs the deterministic path (no rng): dropout is a training-time mask."""
    net, x, t = kink_free([Tanh(), Relu()], Softmax(), CategoricalCrossEntropy(), dropout=0.5)
    assert_passes(net, x, t)


def test_float32_network_is_checked_in_float64_and_left_alone() -> None:
    net64, x, t = kink_free([Tanh()], Softmax(), CategoricalCrossEntropy())
    net = net64.astype(np.float32)
    before = [p.copy() for p in net.parameters()]
    assert_passes(net, x.astype(np.float32), t.astype(np.float32))
    assert net.dtype == np.float32
    for p, p0 in zip(net.parameters(), before, strict=True):
        assert np.array_equal(p, p0)


# -- the check detects wrong gradients ----------------------------------------------------------


class WrongTanh(Tanh):
    """tanh with the derivative 1 - a instead of 1 - a^2."""

    def backward(self, z, a, grad_a, out=None):
        return np.multiply(1.0 - a, grad_a, out=out)


def test_detects_a_wrong_activation_derivative() -> None:
    net, x, t = kink_free([WrongTanh()], Logistic(), Quadratic())
    result = gradient_check(net, x, t)
    assert not result.passed
    assert result.layers[0].error > 1e-3  # the layer below the wrong derivative
    assert result.layers[-1].error < TOL  # the output layer is still right


def test_detects_a_fused_rule_used_outside_its_pair() -> None:
    """softmax + quadratic with the CCE shortcut s = a - t is wrong; the check must say so."""
    net, x, t = kink_free([Tanh()], Softmax(), Quadratic())
    net.rule = output_rule(CategoricalCrossEntropy(), Softmax())
    assert not gradient_check(net, x, t).passed


def test_detects_a_missing_growth_rate() -> None:
    """(2.28) taken literally (s = a - t) is wrong for k != 1."""
    net, x, t = kink_free([Tanh()], Logistic(k=0.5, x0=1.0), BinaryCrossEntropy())
    net.rule = output_rule(BinaryCrossEntropy(), Logistic())
    assert not gradient_check(net, x, t).passed


# -- the error measure ------------------------------------------------------------------------


def test_relative_error_is_norm_relative() -> None:
    """||a - n|| / (||a|| + ||n||), 0 when both are zero."""
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([3.0, 4.0]), np.zeros(2)) == 1.0
    assert relative_error(np.array([1.0, -2.0]), np.array([1.0, -2.0])) == 0.0
    a = np.array([[3.0, 0.0], [0.0, 4.0]])
    n = np.array([[3.0, 0.0], [0.0, 4.0 + 1e-3]])
    assert relative_error(a, n) == pytest.approx(1e-3 / (5.0 + np.sqrt(9.0 + (4.0 + 1e-3) ** 2)), rel=1e-9)
    # a tiny entry with a large relative error does not dominate, as it would elementwise
    assert relative_error(np.array([1.0, 1e-12]), np.array([1.0, 2e-12])) < 1e-12


# -- sampled check for large layers --------------------------------------------------------------


def test_numerical_gradient_on_chosen_entries_only() -> None:
    net, x, t = kink_free([Tanh()], Softmax(), CategoricalCrossEntropy())
    W = net.layers[0].W
    before = W.copy()
    full = numerical_gradient(net, x, t, W, 1e-6)
    some = numerical_gradient(net, x, t, W, 1e-6, np.array([1, 4, 7]))
    assert np.array_equal(W, before)  # restored
    flat_full, flat_some = full.reshape(-1), some.reshape(-1)
    np.testing.assert_array_equal(flat_some[[1, 4, 7]], flat_full[[1, 4, 7]])
    assert np.count_nonzero(np.delete(flat_some, [1, 4, 7])) == 0


def test_sampled_check_passes_and_still_detects_errors() -> None:
    rng = np.random.default_rng(0)
    specs = [LayerSpec(20, Tanh()), LayerSpec(4, Softmax())]
    net = Network.build(12, specs, CategoricalCrossEntropy(), rng, dtype=np.float64)
    x, t = rng.normal(size=(6, 12)), np.eye(4)[rng.integers(0, 4, 6)]
    sampled = gradient_check(net, x, t, max_entries=10, seed=3)
    assert sampled.passed and sampled.max_error < TOL
    assert gradient_check(net, x, t, max_entries=10, seed=3) == sampled  # same seed, same entries

    broken = net.astype(np.float64)  # a copy
    broken.layers[0].activation = WrongTanh()
    assert not gradient_check(broken, x, t, max_entries=10, seed=3).passed


# ---------------------------------------------------------------------------------------------
# Class weights: c_w = w_y c, the same factor on lambda' and on the fused s = a - t


def _weighted_net(cost: Cost, out: Activation, units: int, weights: tuple[float, ...]) -> tuple:
    from nnctl.engine.costs import class_weighted

    rng = np.random.default_rng(7)
    net = Network.build(
        3, [LayerSpec(4, Tanh()), LayerSpec(units, out)], class_weighted(cost, weights), rng, dtype=np.float64
    )
    x = rng.normal(size=(8, 3))
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1]) if units == 1 else rng.integers(0, units, 8)
    t = labels[:, None].astype(np.float64) if units == 1 else np.eye(units)[labels]
    return net, x, t, labels


@pytest.mark.parametrize(
    ("cost", "out", "units", "weights"),
    [
        (CategoricalCrossEntropy(), Softmax(), 3, (0.5, 2.0, 1.25)),
        (BinaryCrossEntropy(), Logistic(), 1, (0.4, 3.0)),
        (BinaryCrossEntropy(), Logistic(k=2.0), 1, (0.4, 3.0)),
    ],
    ids=["softmax+cce", "logistic+bce", "logistic(k=2)+bce"],
)
def test_gradient_check_holds_with_class_weights(
    cost: Cost, out: Activation, units: int, weights: tuple
) -> None:
    net, x, t, labels = _weighted_net(cost, out, units, weights)
    assert net.rule.fused and "class weight" in net.rule.label
    assert_passes(net, x, t)
    # The loss is the weighted mean of the plain per-sample costs (weights by class).
    plain = Network(net.layers, cost)
    per_sample = plain.per_sample_loss(plain.forward_pass(x), t)
    expected = float(np.mean(np.asarray(weights)[labels] * per_sample))
    assert net.loss(x, t) == pytest.approx(expected, rel=1e-12)
    assert abs(net.loss(x, t) - plain.loss(x, t)) > 1e-3  # the weights change it


def test_gradient_check_with_class_weights_catches_a_missing_weight() -> None:
    """Mutation: the fused rule without the weight factor is wrong, and the check says so."""
    from nnctl.engine.costs import OutputRule

    net, x, t, _ = _weighted_net(CategoricalCrossEntropy(), Softmax(), 3, (0.5, 2.0, 1.25))
    unweighted = CategoricalCrossEntropy().fused_rule(Softmax())
    assert unweighted is not None
    net.rule = OutputRule(unweighted.label, unweighted.equation, True, unweighted.sensitivity)
    assert not gradient_check(net, x, t).passed
