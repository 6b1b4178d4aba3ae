"""Network: dtype discipline, chunked forward, loss, the 1/B mean, dropout backprop, XOR."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine.activations import Elu, Identity, Logistic, Relu, Softmax, Tanh
from nnctl.engine.costs import BinaryCrossEntropy, CategoricalCrossEntropy, Cost, Quadratic
from nnctl.engine.network import LayerSpec, Network
from nnctl.engine.optimizers import SGD

DTYPES = [np.float32, np.float64]
HEADS = [
    pytest.param(Softmax(), CategoricalCrossEntropy(), id="softmax-cce"),
    pytest.param(Logistic(k=0.5, x0=1.0), BinaryCrossEntropy(), id="logistic-bce"),
    pytest.param(Identity(), Quadratic(), id="identity-quadratic"),
    pytest.param(Softmax(), Quadratic(), id="softmax-quadratic"),
]


def make(out_act, cost: Cost, dtype, seed: int = 0, dropout: float = 0.0, fused: bool = True) -> Network:
    specs = [
        LayerSpec(6, Tanh(), dropout=dropout),
        LayerSpec(5, Elu(), dropout=dropout),
        LayerSpec(3, out_act),
    ]
    return Network.build(4, specs, cost, np.random.default_rng(seed), dtype=dtype, fused=fused)


def data(cost: Cost, n: int, dtype, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    t = (
        np.eye(3)[rng.integers(0, 3, n)]
        if isinstance(cost, CategoricalCrossEntropy)
        else rng.uniform(size=(n, 3))
    )
    return x.astype(dtype), t.astype(dtype)


# -- dtype -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("out_act", "cost"), HEADS)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generalized"])
def test_forward_and_gradients_keep_the_network_dtype(dtype, out_act, cost: Cost, fused: bool) -> None:
    net = make(out_act, cost, dtype, dropout=0.2, fused=fused)
    x, t = data(cost, 9, dtype)
    assert net.dtype == dtype
    assert net.forward(x).dtype == dtype
    assert net.forward(x.astype(np.float64)).dtype == dtype  # forward casts its input
    trace = net.forward_pass(x, np.random.default_rng(0))
    assert all(z.dtype == dtype for z in trace.z) and all(a.dtype == dtype for a in trace.a)
    for rng in (None, np.random.default_rng(3)):  # without and with dropout
        loss, grads = net.gradients(x, t, rng)
        assert isinstance(loss, float) and np.isfinite(loss)
        assert len(grads) == len(net.parameters())
        for g, p in zip(grads, net.parameters(), strict=True):
            assert g.dtype == net.dtype and g.shape == p.shape


def test_gradients_cast_float64_data_to_a_float32_network() -> None:
    net = make(Softmax(), CategoricalCrossEntropy(), np.float32)
    x, t = data(CategoricalCrossEntropy(), 5, np.float64)
    _, grads = net.gradients(x, t)
    assert all(g.dtype == np.float32 for g in grads)


def test_float32_gradients_agree_with_float64() -> None:
    net64 = make(Softmax(), CategoricalCrossEntropy(), np.float64)
    net32 = net64.astype(np.float32)
    x, t = data(CategoricalCrossEntropy(), 16, np.float64)
    loss64, g64 = net64.gradients(x, t)
    loss32, g32 = net32.gradients(x.astype(np.float32), t.astype(np.float32))
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for a, b in zip(g32, g64, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_build_rejects_other_dtypes() -> None:
    with pytest.raises(ValueError, match="float32 or float64"):
        make(Identity(), Quadratic(), np.float16)


# -- forward and loss ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("out_act", "cost"), HEADS)
def test_chunked_forward_equals_unchunked(dtype, out_act, cost: Cost) -> None:
    net = make(out_act, cost, dtype)
    x, _ = data(cost, 103, dtype)
    whole = net.forward(x)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for batch_size in (1, 7, 50, 102):
        chunked = net.forward(x, batch_size=batch_size)
        assert chunked.shape == whole.shape == (103, 3) and chunked.dtype == dtype
        np.testing.assert_allclose(chunked, whole, rtol=rtol, atol=rtol * 1e-3)
    # the inference path (which may overwrite z in place) equals the training forward pass
    np.testing.assert_allclose(whole, net.forward_pass(x).a[-1], rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize(("out_act", "cost"), HEADS)
def test_forward_is_the_layer_recurrence(out_act, cost: Cost) -> None:
    """(1.3)-(1.4) batch-major: z = a W^T + b, one row per sample."""
    net = make(out_act, cost, np.float64)
    x, _ = data(cost, 5, np.float64)
    a = x
    for layer in net.layers:
        a = np.stack([layer.activation.forward((layer.W @ row + layer.b)[None, :])[0] for row in a])
    np.testing.assert_allclose(net.forward(x), a, rtol=1e-12)


@pytest.mark.parametrize(("out_act", "cost"), HEADS)
def test_loss_is_mean_of_per_sample(out_act, cost: Cost) -> None:
    net = make(out_act, cost, np.float64)
    x, t = data(cost, 11, np.float64)
    expected = cost.per_sample(net.forward(x), t).mean()
    assert net.loss(x, t) == pytest.approx(expected, rel=1e-12)
    loss, _ = net.gradients(x, t)
    assert loss == pytest.approx(expected, rel=1e-12)


def test_gradients_are_of_the_batch_mean() -> None:
    """Backprop scales s^L by 1/B: the batch gradient is the mean of per-sample gradients."""
    net = make(Softmax(), CategoricalCrossEntropy(), np.float64)
    x, t = data(CategoricalCrossEntropy(), 6, np.float64)
    _, batch = net.gradients(x, t)
    singles = [net.gradients(x[i : i + 1], t[i : i + 1])[1] for i in range(6)]
    for j, g in enumerate(batch):
        np.testing.assert_allclose(g, np.mean([s[j] for s in singles], axis=0), rtol=1e-12, atol=1e-15)


# -- dropout -------------------------------------------------------------------------------------


def test_dropout_only_with_rng_and_inverted_scaling() -> None:
    net = make(Identity(), Quadratic(), np.float64, dropout=0.5)
    x, _ = data(Quadratic(), 200, np.float64)
    plain = net.forward_pass(x)
    assert all(m is None for m in plain.masks)
    dropped = net.forward_pass(x, np.random.default_rng(0))
    assert dropped.masks[-1] is None  # never on the output layer
    for mask in dropped.masks[:-1]:
        assert set(np.unique(mask)) == {0.0, 2.0}  # keep with prob 1/2, scale by 1/(1 - 1/2)
        assert 0.4 < (mask > 0).mean() < 0.6
    np.testing.assert_array_equal(dropped.inputs[1], dropped.a[0] * dropped.masks[0])
    np.testing.assert_allclose(net.forward(x), plain.a[-1], rtol=1e-12)


def test_dropout_backprop_equals_finite_differences_with_a_fixed_mask() -> None:
    net = make(Softmax(), CategoricalCrossEntropy(), np.float64, dropout=0.3)
    x, t = data(CategoricalCrossEntropy(), 8, np.float64)

    def loss() -> float:  # the same seed draws the same masks every time
        trace = net.forward_pass(x, np.random.default_rng(5))
        return float(net.per_sample_loss(trace, t).mean())

    _, grads = net.gradients(x, t, np.random.default_rng(5))
    _, no_dropout = net.gradients(x, t)
    eps = 1e-6
    for p, g in zip(net.parameters(), grads, strict=True):
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            original = p[idx]
            p[idx] = original + eps
            plus = loss()
            p[idx] = original - eps
            minus = loss()
            p[idx] = original
            numeric[idx] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)
    assert not np.allclose(grads[0], no_dropout[0])


# -- learning ------------------------------------------------------------------------------------


def test_xor_is_learned_with_plain_sgd() -> None:
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    t = np.array([[0.0], [1.0], [1.0], [0.0]])
    specs = [LayerSpec(4, Tanh()), LayerSpec(1, Logistic())]
    net = Network.build(2, specs, Quadratic(), np.random.default_rng(0), dtype=np.float64)
    sgd = SGD()
    state = sgd.init(net.parameters())
    first = net.loss(x, t)
    for _ in range(2000):  # full batch, lr = 1: all four right after ~30 epochs from this seed
        _, grads = net.gradients(x, t)
        sgd.update(net.parameters(), grads, state, 1.0)
    out = net.forward(x)
    np.testing.assert_array_equal((out > 0.5).astype(float), t)  # 100% accuracy
    assert np.abs(out - t).max() < 0.1
    assert net.loss(x, t) < 0.05 * first


def test_relu_network_learns_a_linear_rule() -> None:
    """A sanity check of the whole loop on a regression head."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    t = x @ np.array([[1.0], [-2.0], [0.5]])
    net = Network.build(
        3,
        [LayerSpec(8, Relu()), LayerSpec(1, Identity())],
        Quadratic(),
        np.random.default_rng(1),
        dtype=np.float64,
    )
    sgd = SGD()
    state = sgd.init(net.parameters())
    first = net.loss(x, t)
    for _ in range(300):
        _, grads = net.gradients(x, t)
        sgd.update(net.parameters(), grads, state, 0.05)
    assert net.loss(x, t) < 0.05 * first
