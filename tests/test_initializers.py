"""Initializers of section 1.6 (with corrections 1 and 2 of docs/math.md) and how Network.build uses them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import config_component

from nnctl.engine.activations import ACTIVATIONS, Activation, Elu, Identity, Logistic, Relu, Softmax, Tanh
from nnctl.engine.costs import Quadratic
from nnctl.engine.initializers import INITIALIZERS, Auto, He, Xavier
from nnctl.engine.network import LayerSpec, Network
from nnctl.errors import ConfigError

ALL_ACTIVATIONS = [cls() for cls in ACTIVATIONS.values()] + [Elu(alpha=0.5), Logistic(L=2.0, k=0.5, x0=1.0)]


def he_bound(fan_in: int) -> float:
    return math.sqrt(6.0 / fan_in)  # (1.33) corrected: sqrt(6 / fan_in), not 6 / sqrt(fan_in)


def xavier_bound(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))  # (1.34), fan-out = this matrix's rows


@pytest.mark.parametrize(("fan_in", "fan_out"), [(4, 3), (784, 128), (1, 1), (10, 1)])
@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=lambda a: a.describe())
def test_bounds_equal_the_formulas(fan_in: int, fan_out: int, act: Activation) -> None:
    assert He().bound(fan_in, fan_out, act) == he_bound(fan_in)
    xavier = xavier_bound(fan_in, fan_out)
    assert Xavier().bound(fan_in, fan_out, act) == (
        4.0 * xavier if isinstance(act, Logistic) else xavier
    )  # (1.35)
    expected_auto = He() if isinstance(act, (Relu, Elu)) else Xavier()
    assert Auto().resolve(act) == expected_auto
    assert Auto().bound(fan_in, fan_out, act) == expected_auto.bound(fan_in, fan_out, act)


def test_he_bound_for_fan_in_4_is_not_the_misprint() -> None:
    """The seed's printed 6/sqrt(4) = 3 would make weights of +-3; the right bound is sqrt(1.5)."""
    assert He().bound(4, 10, Relu()) == math.sqrt(1.5)


@pytest.mark.parametrize(
    ("init", "act", "bound"),
    [
        (He(), Relu(), he_bound(500)),
        (Xavier(), Tanh(), xavier_bound(500, 2000)),
        (Xavier(), Logistic(), 4 * xavier_bound(500, 2000)),
        (Auto(), Elu(), he_bound(500)),
        (Auto(), Softmax(), xavier_bound(500, 2000)),
    ],
    ids=["he-relu", "xavier-tanh", "xavier-logistic", "auto-elu", "auto-softmax"],
)
def test_empirical_distribution(init, act: Activation, bound: float) -> None:
    """U(-r, r) has variance r^2/3; with 10^6 draws the estimate is within ~0.1% (3% cannot flake)."""
    W = init.weights(np.random.default_rng(0), 500, 2000, act, np.float64)
    assert W.shape == (2000, 500)
    assert np.abs(W).max() <= bound
    assert np.abs(W).max() > 0.999 * bound
    assert abs(W.mean()) < 0.01 * bound
    np.testing.assert_allclose(W.var(), bound**2 / 3.0, rtol=0.03)


def build(seed: int, dtype: type = np.float64, activations: tuple[Activation, ...] | None = None) -> Network:
    acts = activations or (Relu(), Tanh(), Logistic(), Softmax())
    specs = [LayerSpec(units, act) for units, act in zip((7, 6, 5, 3), acts, strict=True)]
    return Network.build(4, specs, Quadratic(), np.random.default_rng(seed), dtype=dtype)


def test_build_shapes_bounds_and_zero_biases() -> None:
    net = build(0)
    widths = [4, 7, 6, 5, 3]
    expected_bounds = [he_bound(4), xavier_bound(7, 6), 4 * xavier_bound(6, 5), xavier_bound(5, 3)]
    for layer, fan_in, fan_out, bound in zip(
        net.layers, widths[:-1], widths[1:], expected_bounds, strict=True
    ):
        assert layer.W.shape == (fan_out, fan_in)  # (units_l, units_{l-1}), the seed's w_ij
        assert layer.b.shape == (fan_out,)
        assert np.all(layer.b == 0.0)
        assert np.abs(layer.W).max() <= bound
        assert layer.initializer.bound(fan_in, fan_out, layer.activation) == bound
        assert len(np.unique(layer.W)) == layer.W.size  # really random, not constant


def test_build_explicit_initializer_overrides_auto() -> None:
    specs = [LayerSpec(3, Relu(), initializer=Xavier()), LayerSpec(2, Tanh())]
    net = Network.build(5, specs, Quadratic(), np.random.default_rng(0), dtype=np.float64, initializer=He())
    assert isinstance(net.layers[0].initializer, Xavier)
    assert isinstance(net.layers[1].initializer, He)
    assert np.abs(net.layers[1].W).max() <= he_bound(3)


def test_same_seed_same_weights_different_seed_different() -> None:
    a, b, c = build(42), build(42), build(43)
    for la, lb, lc in zip(a.layers, b.layers, c.layers, strict=True):
        np.testing.assert_array_equal(la.W, lb.W)
        assert not np.array_equal(la.W, lc.W)


def test_float32_and_float64_start_from_the_same_values() -> None:
    n64, n32 = build(7, np.float64), build(7, np.float32)
    for l64, l32 in zip(n64.layers, n32.layers, strict=True):
        assert l64.W.dtype == np.float64 and l32.W.dtype == np.float32
        assert l64.b.dtype == np.float64 and l32.b.dtype == np.float32
        np.testing.assert_array_equal(l32.W, l64.W.astype(np.float32))  # one draw, then cast
        np.testing.assert_allclose(l32.W, l64.W, rtol=2**-23)


def test_global_random_state_is_untouched() -> None:
    np.random.seed(1234)
    before = np.random.get_state()
    build(0)
    Xavier().weights(np.random.default_rng(1), 3, 4, Tanh())
    after = np.random.get_state()
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


def test_weights_default_dtype_and_shape() -> None:
    W = He().weights(np.random.default_rng(0), fan_in=3, fan_out=5, activation=Identity())
    assert W.shape == (5, 3) and W.dtype == np.float32


def test_registry_and_get() -> None:
    assert set(INITIALIZERS) == {"auto", "he", "xavier"}
    assert config_component("model.initializer", "he") == He()
    assert config_component("model.initializer", {"name": "xavier"}) == Xavier()
    with pytest.raises(ConfigError, match=r"unknown initializer 'glorot'.*auto, he, xavier"):
        config_component("model.initializer", "glorot")
