"""Optimizers: sgd is exactly (1.32) on a network worked out by hand; the others match an
independent textbook re-implementation over three steps; state is plain arrays."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import config_component

from nnctl.engine.activations import Logistic, Tanh
from nnctl.engine.costs import Quadratic
from nnctl.engine.network import DenseLayer, LayerSpec, Network
from nnctl.engine.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Momentum, Optimizer, RMSprop
from nnctl.errors import ConfigError

# -- sgd: one step of (1.32), by hand ----------------------------------------------------------


def hand_network() -> Network:
    """2-2-1 logistic net, quadratic cost. Chosen so every z is 0: a = 1/2 and a (1 - a) = 1/4
    exactly, and every number below is a short binary fraction (exact in float64)."""
    W1 = np.array([[0.75, -0.5], [-0.5, 0.5]])
    b1 = np.array([0.25, -0.5])
    W2 = np.array([[0.75, -0.5]])
    b2 = np.array([-0.125])
    return Network([DenseLayer(W1, b1, Logistic()), DenseLayer(W2, b2, Logistic())], Quadratic())


def test_sgd_step_is_1_32_by_hand() -> None:
    net = hand_network()
    x = np.array([[1.0, 2.0]])
    t = np.array([[1.0]])
    eta = 0.5

    # forward (1.3)-(1.4): z1 = W1 x + b1 = [0.75 - 1 + 0.25, -0.5 + 1 - 0.5] = [0, 0]
    trace = net.forward_pass(x)
    np.testing.assert_array_equal(trace.z[0], [[0.0, 0.0]])
    np.testing.assert_array_equal(trace.a[0], [[0.5, 0.5]])
    # z2 = 0.75 * 0.5 - 0.5 * 0.5 - 0.125 = 0
    np.testing.assert_array_equal(trace.z[1], [[0.0]])
    np.testing.assert_array_equal(trace.a[1], [[0.5]])

    # (1.27): s2 = 2 (a - t) a (1 - a) = 2 * (-0.5) * 0.25 = -0.25
    s2 = np.array([-0.25])
    # (1.26): s1 = (W2^T s2) * a1 (1 - a1) = [0.75 * -0.25, -0.5 * -0.25] * 0.25
    s1 = np.array([-0.046875, 0.03125])
    # (1.29): dc/dW = s a^T
    dW2 = np.array([[-0.125, -0.125]])  # s2 * [0.5, 0.5]
    dW1 = np.array([[-0.046875, -0.09375], [0.03125, 0.0625]])  # s1 x^T, x = [1, 2]
    # the same numbers from the formulas, as a check on the arithmetic above
    a1, a2, W2 = np.array([0.5, 0.5]), 0.5, np.array([[0.75, -0.5]])
    np.testing.assert_array_equal(s2, 2 * (a2 - 1.0) * a2 * (1 - a2))
    np.testing.assert_array_equal(s1, (W2.T @ s2) * a1 * (1 - a1))
    np.testing.assert_array_equal(dW1, np.outer(s1, x[0]))
    np.testing.assert_array_equal(dW2, np.outer(s2, a1))

    loss, grads = net.gradients(x, t)
    assert loss == 0.25  # (t - a)^2, no 1/2 factor (1.14)
    for got, want in zip(grads, [dW1, s1, dW2, s2], strict=True):
        assert np.array_equal(got, want), (got, want)

    sgd = SGD()
    state = sgd.init(net.parameters())
    sgd.update(net.parameters(), grads, state, eta)
    # (1.32): W <- W - eta s a^T (and b <- b - eta s)
    expected = [
        np.array([[0.7734375, -0.453125], [-0.515625, 0.46875]]),
        np.array([0.2734375, -0.515625]),
        np.array([[0.8125, -0.4375]]),
        np.array([0.0]),
    ]
    for got, want in zip(net.parameters(), expected, strict=True):
        assert got.dtype == np.float64
        assert np.array_equal(got, want), (got, want)
    assert int(state["step"]) == 1


def test_gradients_follow_1_26_1_27_on_a_generic_point() -> None:
    """Same 2-2-1 net at a point where nothing is exact: step-by-step (1.27), (1.26), (1.29)."""
    W1 = np.array([[0.2, -0.4], [0.6, 0.1]])
    b1 = np.array([0.05, -0.1])
    W2 = np.array([[0.5, -0.3]])
    b2 = np.array([0.2])
    net = Network(
        [DenseLayer(W1.copy(), b1.copy(), Logistic()), DenseLayer(W2.copy(), b2.copy(), Logistic())],
        Quadratic(),
    )
    x, t = np.array([0.3, -0.7]), np.array([1.0])
    z1 = W1 @ x + b1
    a1 = 1.0 / (1.0 + np.exp(-z1))
    z2 = W2 @ a1 + b2
    a2 = 1.0 / (1.0 + np.exp(-z2))
    s2 = 2.0 * (a2 - t) * a2 * (1.0 - a2)
    s1 = (W2.T @ s2) * a1 * (1.0 - a1)
    loss, grads = net.gradients(x[None, :], t[None, :])
    np.testing.assert_allclose(loss, np.sum((t - a2) ** 2), rtol=1e-15)
    for got, want in zip(grads, [np.outer(s1, x), s1, np.outer(s2, a1), s2], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13)
    before = [p.copy() for p in net.parameters()]
    SGD().update(net.parameters(), grads, SGD().init(net.parameters()), 0.3)
    for p, p0, g in zip(net.parameters(), before, grads, strict=True):
        assert np.array_equal(p, p0 - 0.3 * g)


def test_sgd_float32_is_bitwise_w_minus_lr_g() -> None:
    rng = np.random.default_rng(0)
    net = Network.build(
        3, [LayerSpec(5, Tanh()), LayerSpec(2, Logistic())], Quadratic(), rng, dtype=np.float32
    )
    x = rng.normal(size=(8, 3)).astype(np.float32)
    t = rng.uniform(size=(8, 2)).astype(np.float32)
    _, grads = net.gradients(x, t)
    lr = 0.1  # not exact in binary: the float32 rounding of lr must be the one used
    before = [p.copy() for p in net.parameters()]
    SGD().update(net.parameters(), grads, SGD().init(net.parameters()), lr)
    for p, p0, g in zip(net.parameters(), before, grads, strict=True):
        assert p.dtype == np.float32 and g.dtype == np.float32
        assert np.array_equal(p, p0 - np.float32(lr) * g)
        assert not np.array_equal(p, p0)


# -- other optimizers vs textbook formulas -------------------------------------------------------


def reference(name: str, hp: dict, params: list[np.ndarray], grads_per_step, lr: float, mask: list[bool]):
    """Independent textbook implementations; returns the parameters after each step."""
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    history = []
    for step, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            if name == "momentum":
                mu = hp.get("momentum", 0.9)
                v[i] = mu * v[i] + g
                direction = g + mu * v[i] if hp.get("nesterov", False) else v[i]
                params[i] = params[i] - lr * direction
            elif name in ("adam", "adamw"):
                b1, b2, eps = hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp.get("eps", 1e-8)
                wd = hp.get("weight_decay", 0.01 if name == "adamw" else 0.0) if mask[i] else 0.0
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g**2
                m_hat = m[i] / (1 - b1**step)
                v_hat = v[i] / (1 - b2**step)
                # Loshchilov & Hutter: theta <- theta - lr (m_hat / (sqrt(v_hat) + eps) + wd theta)
                params[i] = params[i] - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * params[i])
            elif name == "rmsprop":
                rho, eps = hp.get("rho", 0.9), hp.get("eps", 1e-8)
                v[i] = rho * v[i] + (1 - rho) * g**2
                params[i] = params[i] - lr * g / (np.sqrt(v[i]) + eps)
            else:
                raise AssertionError(name)
        history.append([p.copy() for p in params])
    return history


CASES = [
    pytest.param("momentum", {}, True, id="momentum"),
    pytest.param("momentum", {"momentum": 0.7}, True, id="momentum-0.7"),
    pytest.param("momentum", {"nesterov": True}, True, id="nesterov"),
    pytest.param("momentum", {"momentum": 0.5, "nesterov": True}, True, id="nesterov-0.5"),
    pytest.param("adam", {}, False, id="adam"),
    pytest.param("adam", {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6}, False, id="adam-custom"),
    pytest.param("adamw", {}, False, id="adamw"),
    pytest.param("adamw", {"weight_decay": 0.1, "beta1": 0.85}, False, id="adamw-0.1"),
    pytest.param("rmsprop", {}, False, id="rmsprop"),
    pytest.param("rmsprop", {"rho": 0.8, "eps": 1e-6}, False, id="rmsprop-custom"),
]


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=(2, 3)), rng.normal(size=2)]
    grads = [[rng.normal(size=p.shape) for p in params] for _ in range(3)]
    return params, grads, [True, False, True, False]


@pytest.mark.parametrize(("name", "hp", "bitwise"), CASES)
def test_first_three_steps_match_textbook(name: str, hp: dict, bitwise: bool) -> None:
    params, grads_per_step, mask = problem()
    lr = 0.05
    expected = reference(name, hp, params, grads_per_step, lr, mask)
    opt = config_component("training.optimizer", {"name": name, **hp})
    ours = [p.copy() for p in params]
    state = opt.init(ours)
    for step, grads in enumerate(grads_per_step):
        opt.update(ours, grads, state, lr, mask)
        for got, want in zip(ours, expected[step], strict=True):
            if bitwise:  # same operation order as the textbook form
                assert np.array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert int(state["step"]) == 3
    assert not np.allclose(ours[0], params[0])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_is_plain_arrays(name: str) -> None:
    opt: Optimizer = OPTIMIZERS[name]()
    params, grads_per_step, mask = problem(1)
    state = opt.init(params)
    expected_keys = {"step"} | {f"{slot}_{i}" for slot in opt.slots for i in range(len(params))}
    for step in range(3):
        assert set(state) == expected_keys
        for key, value in state.items():
            assert type(value) is np.ndarray, (key, type(value))
            if key != "step":
                index = int(key.rsplit("_", 1)[1])
                assert value.shape == params[index].shape and value.dtype == params[index].dtype
        opt.update(params, grads_per_step[step], state, 0.01, mask)
    assert state["step"].shape == () and int(state["step"]) == 3


def test_adamw_decay_mask_excludes_biases() -> None:
    rng = np.random.default_rng(2)
    net = Network.build(
        3, [LayerSpec(4, Tanh()), LayerSpec(2, Logistic())], Quadratic(), rng, dtype=np.float64
    )
    for layer in net.layers:
        layer.b[:] = rng.normal(size=layer.b.shape)  # nonzero biases, so decay would show
    mask = net.weight_mask()
    assert mask == [True, False, True, False]
    grads = [rng.normal(size=p.shape) for p in net.parameters()]

    def run(opt: Optimizer, decay_mask) -> list[np.ndarray]:
        params = [p.copy() for p in net.parameters()]
        state = opt.init(params)
        for _ in range(3):
            opt.update(params, grads, state, 0.01, decay_mask)
        return params

    adamw = run(AdamW(weight_decay=0.1), mask)
    adam = run(Adam(), mask)
    adamw_all = run(AdamW(weight_decay=0.1), None)
    for i, is_weight in enumerate(mask):
        if is_weight:
            assert not np.allclose(adamw[i], adam[i])  # weights decay
        else:
            assert np.array_equal(adamw[i], adam[i])  # biases follow plain Adam exactly
            assert not np.allclose(adamw_all[i], adam[i])  # without a mask, they would decay
    assert Adam().weight_decay == 0.0 and AdamW().weight_decay == 0.01


def test_registry() -> None:
    assert set(OPTIMIZERS) == {"sgd", "momentum", "adam", "adamw", "rmsprop"}
    assert isinstance(config_component("training.optimizer", "rmsprop"), RMSprop)
    assert config_component("training.optimizer", {"name": "momentum", "nesterov": True}) == Momentum(
        nesterov=True
    )
    with pytest.raises(ConfigError, match=r"unknown optimizer 'lbfgs'.*sgd, momentum"):
        config_component("training.optimizer", "lbfgs")
