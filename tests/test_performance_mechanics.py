"""The mechanics behind nnctl's speed, checked without timing anything.

* float32 stays float32 through a training step: every buffer, trace array, gradient and the
  optimizer's scratch (no silent float64 upcast: a float64 temporary would also show up in the
  step's peak of traced memory);
* a step reuses the network's buffers for its batch size (same arrays, same data pointers) and
  allocates nothing that outlives it (tracemalloc sees no growth over 50 steps);
* reused buffers change nothing: gradients are bit-identical to a fresh network's, to the
  allocating ``forward_pass`` + ``backward`` path, from run to run and from thread to thread.
"""

from __future__ import annotations

import copy
import gc
import threading
import tracemalloc

import numpy as np
import pytest

from nnctl.engine.activations import Relu, Softmax, Tanh
from nnctl.engine.costs import CategoricalCrossEntropy, softmax_cce
from nnctl.engine.network import BackwardBuffers, ForwardBuffers, LayerSpec, Network
from nnctl.engine.optimizers import SGD, Scratch

SIZES = (32, 64, 48, 10)  # a small W1: inputs, two relu layers, softmax outputs


def make_net(dtype=np.float32, seed: int = 0, dropout: float = 0.0) -> Network:
    specs = [
        LayerSpec(SIZES[1], Relu(), dropout=dropout),
        LayerSpec(SIZES[2], Relu(), dropout=dropout),
        LayerSpec(SIZES[3], Softmax()),
    ]
    return Network.build(SIZES[0], specs, CategoricalCrossEntropy(), np.random.default_rng(seed), dtype=dtype)


def make_data(rows: int = 512, dtype=np.float32, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, SIZES[0])).astype(dtype)
    t = np.eye(SIZES[3], dtype=dtype)[rng.integers(0, SIZES[3], rows)]
    return x, t


class Loop:
    """The trainer's step: gather into reused buffers, gradients, SGD (1.32)."""

    def __init__(self, net: Network, batch: int, dtype=np.float32, lr: float = 0.05) -> None:
        self.net, self.batch, self.lr = net, batch, lr
        self.sgd = SGD()
        self.state = self.sgd.init(net.parameters())
        self.scratch = Scratch()
        self.x, self.t = make_data(dtype=dtype)
        self.xb = np.empty((batch, SIZES[0]), dtype=dtype)
        self.tb = np.empty((batch, SIZES[3]), dtype=dtype)
        self.order = np.random.default_rng(2).permutation(len(self.x))
        self.position = 0

    def step(self, rng: np.random.Generator | None = None) -> tuple[float, list[np.ndarray]]:
        if self.position + self.batch > len(self.order):
            self.position = 0
        idx = self.order[self.position : self.position + self.batch]
        self.position += self.batch
        np.take(self.x, idx, axis=0, out=self.xb)
        np.take(self.t, idx, axis=0, out=self.tb)
        loss, grads = self.net.gradients(self.xb, self.tb, rng)
        self.sgd.update(self.net.parameters(), grads, self.state, self.lr, None, self.scratch)
        return loss, grads


def buffer_arrays(net: Network) -> dict[str, np.ndarray]:
    """Every array in the network's buffer cache, by a readable name."""
    arrays = {}
    for key, buffers in net._buffers.items():
        kind, batch = key[0].__name__, key[1]
        if isinstance(buffers, ForwardBuffers):
            for name in ("z", "a"):
                for layer, array in enumerate(getattr(buffers, name)):
                    arrays[f"{kind}[{batch}].{name}{layer}"] = array
            for layer, (mask, dropped, uniform) in buffers.dropout.items():
                arrays[f"{kind}[{batch}].mask{layer}"] = mask
                arrays[f"{kind}[{batch}].dropped{layer}"] = dropped
                arrays[f"{kind}[{batch}].uniform{layer}"] = uniform
        else:
            assert isinstance(buffers, BackwardBuffers)
            for layer, array in enumerate(buffers.s):
                arrays[f"{kind}[{batch}].s{layer}"] = array
            arrays[f"{kind}[{batch}].ones"] = buffers.ones
    return arrays


# -- float32 end to end ---------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [0.0, 0.25], ids=["plain", "dropout"])
def test_every_array_of_a_float32_step_is_float32(dropout: float) -> None:
    net = make_net(dropout=dropout)
    loop = Loop(net, batch=16)
    rng = np.random.default_rng(3) if dropout else None
    for _ in range(3):
        loss, grads = loop.step(rng)
    assert type(loss) is float
    assert [g.dtype for g in grads] == [np.float32] * 6
    assert [p.dtype for p in net.parameters()] == [np.float32] * 6
    arrays = buffer_arrays(net)
    assert len(arrays) >= 9
    for name, array in arrays.items():
        # the uniform draws behind a dropout mask are float64 by design: rng.random's own
        # output, compared with 1 - rate; the mask made from them is float32
        expected = np.float64 if ".uniform" in name else np.float32
        assert array.dtype == expected, name
    trace = net.forward_pass(loop.xb, rng)
    for array in [*trace.z, *trace.a, *trace.inputs, *(m for m in trace.masks if m is not None)]:
        assert array.dtype == np.float32
    assert len(loop.scratch.arrays) == len(grads)
    assert all(array.dtype == np.float32 for array in loop.scratch.arrays.values())


def test_a_float32_step_allocates_no_float64_temporary() -> None:
    """Peak traced memory of one step: the returned gradients plus small change. A float64 copy
    of any hidden-layer array (batch x units x 8 bytes) would not fit under the bound."""
    batch = 64
    net = make_net()
    loop = Loop(net, batch=batch)
    for _ in range(3):
        loop.step()
    grad_bytes = sum(p.nbytes for p in net.parameters())
    smallest_float64_hidden = batch * min(SIZES[1:3]) * 8  # 24 kB
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        loop.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < grad_bytes + smallest_float64_hidden


# -- buffers are reused -------------------------------------------------------------------------------


def test_buffers_keep_their_arrays_and_addresses_across_steps() -> None:
    net = make_net()
    loop = Loop(net, batch=32)
    loop.step()
    before = {name: (id(a), a.ctypes.data) for name, a in buffer_arrays(net).items()}
    for _ in range(50):
        loop.step()
    after = {name: (id(a), a.ctypes.data) for name, a in buffer_arrays(net).items()}
    assert after == before

    # another batch size gets its own buffers and leaves these alone
    Loop(net, batch=7).step()
    assert set(buffer_arrays(net)) > set(before)
    loop.step()
    assert {
        name: (id(a), a.ctypes.data) for name, a in buffer_arrays(net).items() if name in before
    } == before


def test_fifty_steps_do_not_grow_traced_memory() -> None:
    net = make_net()
    loop = Loop(net, batch=32)
    for _ in range(3):
        loop.step()
    tracemalloc.start()
    try:
        loop.step()
        gc.collect()  # a full collection also empties CPython's free lists of small objects
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(50):
            loop.step()
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start < 1024  # bytes: nothing accumulates step after step


def test_the_buffer_cache_is_bounded() -> None:
    net = make_net()
    x, t = make_data()
    for batch in range(1, 20):
        net.gradients(x[:batch], t[:batch])
    assert len(net._buffers) == 2 * net.cached_buffer_sets


def test_sgd_scratch_is_its_owners_reused_and_changes_no_bit() -> None:
    g = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    mine, other = Scratch(), Scratch()
    p, q, plain = (np.ones((5, 3), dtype=np.float32) for _ in range(3))
    SGD().update([p], [g], SGD().init([p]), 0.3, None, mine)
    first = mine.arrays[0]
    SGD().update([p], [g], SGD().init([p]), 0.3, None, mine)
    assert mine.arrays[0] is first and first.dtype == np.float32  # reused, not reallocated
    SGD().update([q], [g], SGD().init([q]), 0.3, None, other)
    assert other.arrays[0] is not first  # two trainers never share temporaries
    for _ in range(2):
        SGD().update([plain], [g], SGD().init([plain]), 0.3)  # numpy's own temporary
    np.testing.assert_array_equal(p, plain)


# -- reuse changes nothing ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_with_reused_buffers_equal_a_fresh_networks(dtype) -> None:
    net = make_net(dtype)
    loop = Loop(net, batch=32, dtype=dtype)
    for _ in range(20):  # the buffers now hold other batches' values
        loop.step()
    fresh = copy.deepcopy(net)
    assert fresh._buffers == {}
    x, t = make_data(32, dtype, seed=9)
    loss, grads = net.gradients(x, t)
    fresh_loss, fresh_grads = fresh.gradients(x, t)
    trace = fresh.forward_pass(x)  # the allocating path: new arrays everywhere
    assert loss == fresh_loss == float(fresh.per_sample_loss(trace, t).mean())
    for g, f, h in zip(grads, fresh_grads, fresh.backward(trace, t), strict=True):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, f)
        np.testing.assert_array_equal(g, h)


def test_returned_gradients_are_never_overwritten() -> None:
    net = make_net()
    x, t = make_data(64)
    _, first = net.gradients(x[:32], t[:32])
    kept = [g.copy() for g in first]
    net.gradients(x[32:], t[32:])
    for g, k in zip(first, kept, strict=True):
        np.testing.assert_array_equal(g, k)


def test_dropout_draws_the_same_masks_as_forward_pass() -> None:
    net = make_net(dropout=0.3)
    x, t = make_data(16)
    for _ in range(3):  # warm buffers
        net.gradients(x, t, np.random.default_rng(4))
    trace = net.forward_pass(x, np.random.default_rng(5))
    loss, grads = net.gradients(x, t, np.random.default_rng(5))
    assert loss == float(net.per_sample_loss(trace, t).mean())
    for g, h in zip(grads, net.backward(trace, t), strict=True):
        np.testing.assert_array_equal(g, h)


def test_training_is_identical_run_to_run() -> None:
    def train(steps: int = 30) -> list[np.ndarray]:
        net = make_net(seed=3)
        loop = Loop(net, batch=24)
        for _ in range(steps):
            loop.step()
        return net.parameters()

    for a, b in zip(train(), train(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_threads_get_their_own_buffers() -> None:
    net = make_net()
    x, t = make_data(256)
    expected = [net.gradients(x[i : i + 32], t[i : i + 32])[1] for i in range(0, 256, 32)]
    results: dict[int, list] = {}

    def work(worker: int) -> None:
        results[worker] = [
            net.gradients(x[i : i + 32], t[i : i + 32])[1] for i in range(0, 256, 32) for _ in range(5)
        ]

    threads = [threading.Thread(target=work, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got in results.values():
        for k, grads in enumerate(got):
            for g, e in zip(grads, expected[k // 5], strict=True):
                np.testing.assert_array_equal(g, e)


def test_copies_start_without_buffers() -> None:
    net = make_net()
    x, t = make_data(32)
    net.gradients(x, t)
    assert net._buffers
    for clone in (
        copy.copy(net),
        copy.deepcopy(net),
        net.astype(np.float64),
    ):
        assert clone._buffers == {}
    net64 = net.astype(np.float64)
    loss64, grads64 = net64.gradients(x.astype(np.float64), t.astype(np.float64))
    assert all(g.dtype == np.float64 for g in grads64)
    loss32, _ = net.gradients(x, t)
    assert loss32 == pytest.approx(loss64, rel=1e-5)


def test_soft_targets_and_other_activations_match_the_general_path() -> None:
    """The one-pass softmax+CCE head equals Softmax.forward + the CCE loss + rule (2.20) to the
    bit, also for targets that are not one-hot; a tanh layer runs on the buffers as well."""
    specs = [LayerSpec(16, Tanh()), LayerSpec(4, Softmax())]
    net = Network.build(8, specs, CategoricalCrossEntropy(), np.random.default_rng(0))
    assert net.rule.head is softmax_cce
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 8)).astype(np.float32)
    t = rng.uniform(size=(12, 4)).astype(np.float32)
    for _ in range(2):
        loss, grads = net.gradients(x, t)
    trace = net.forward_pass(x)
    assert loss == float(net.per_sample_loss(trace, t).mean())
    for g, h in zip(grads, net.backward(trace, t), strict=True):
        np.testing.assert_array_equal(g, h)
