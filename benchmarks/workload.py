"""Workload W1 and the two ways the benchmarks run nnctl on it.

W1: synthetic learnable data (a random teacher network labels Gaussian inputs), 784 features,
10 classes; the student is 784-512-256-10 relu/relu/softmax with categorical cross-entropy and
plain SGD, all in float32.

* ``ProductTrainer``: the product. ``nnctl.training.loop.Trainer`` over ``prepare_table``, exactly
  what ``nnctl train`` runs between reading the data and writing files: the trainer's shuffling,
  batch gathering, loss tracking, finiteness checks, callbacks and end-of-epoch record are all in
  its time. The train, scaling and memory suites time this.
* ``nnctl_epoch``: the bare step alone (gather, ``net.gradients``, ``optimizer.update``), for the
  roofline suite, which splits a step into its matrix products and the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.config import Config, validate_config
from nnctl.data.table import Table
from nnctl.engine.activations import Relu, Softmax
from nnctl.engine.costs import CategoricalCrossEntropy
from nnctl.engine.network import LayerSpec, Network
from nnctl.engine.optimizers import SGD, Optimizer
from nnctl.training.loop import Trainer
from nnctl.training.prepare import Prepared, build_network, prepare_table

FEATURES = 784
CLASSES = 10
HIDDEN = (512, 256)
LEARNING_RATE = 0.05  # a Python float: NumPy keeps float32 arithmetic float32
DTYPE = np.float32


@dataclass
class Dataset:
    """Features X (n, 784) float32 C-contiguous, one-hot targets T (n, 10) float32, labels y."""

    X: np.ndarray
    T: np.ndarray
    y: np.ndarray

    @property
    def rows(self) -> int:
        return self.X.shape[0]

    @property
    def nbytes(self) -> int:
        """What the trainer must hold in memory: features plus one-hot targets."""
        return self.X.nbytes + self.T.nbytes

    def head(self, rows: int) -> Dataset:
        """The first ``rows`` rows, as views (no copy)."""
        return Dataset(self.X[:rows], self.T[:rows], self.y[:rows])


def make_w1(rows: int, seed: int = 0, chunk: int = 8192) -> Dataset:
    """W1 data: x ~ N(0, 1); y = argmax of a random 784-64-10 tanh teacher plus a little noise.

    Generated in chunks straight into float32 arrays, so building the data set never needs more
    than its own bytes plus a few MB (the memory suite relies on this).
    """
    rng = np.random.default_rng(seed)
    teacher_1 = rng.standard_normal((FEATURES, 64), dtype=DTYPE) / np.float32(np.sqrt(FEATURES))
    teacher_2 = rng.standard_normal((64, CLASSES), dtype=DTYPE)
    X = np.empty((rows, FEATURES), dtype=DTYPE)
    y = np.empty(rows, dtype=np.int64)
    for start in range(0, rows, chunk):
        block = X[start : start + chunk]
        rng.standard_normal(out=block, dtype=DTYPE)
        logits = np.tanh(block @ teacher_1) @ teacher_2
        logits += rng.gumbel(scale=0.1, size=logits.shape).astype(DTYPE)
        y[start : start + chunk] = logits.argmax(axis=1)
    T = np.zeros((rows, CLASSES), dtype=DTYPE)
    T[np.arange(rows), y] = 1.0
    return Dataset(X, T, y)


def build_nnctl(seed: int = 1, dtype: np.dtype | type = DTYPE) -> tuple[Network, Optimizer, dict]:
    """The W1 student in nnctl: network, plain SGD (1.32) and its state."""
    specs = [LayerSpec(HIDDEN[0], Relu()), LayerSpec(HIDDEN[1], Relu()), LayerSpec(CLASSES, Softmax())]
    net = Network.build(FEATURES, specs, CategoricalCrossEntropy(), np.random.default_rng(seed), dtype=dtype)
    optimizer = SGD()
    return net, optimizer, optimizer.init(net.parameters())


class NnctlTrainer:
    """What one nnctl training run holds between steps: network, optimizer state, batch buffers."""

    def __init__(self, batch_size: int, seed: int = 1, lr: float = LEARNING_RATE) -> None:
        self.net, self.optimizer, self.state = build_nnctl(seed)
        self.batch_size = batch_size
        self.lr = lr
        self.xb = np.empty((batch_size, FEATURES), dtype=DTYPE)
        self.tb = np.empty((batch_size, CLASSES), dtype=DTYPE)


def w1_config(batch_size: int, seed: int = 1, lr: float = LEARNING_RATE, epochs: int = 1) -> Config:
    """The W1 student as an nnctl config: plain SGD, float32, no normalization (the data are N(0, 1)),
    no held-out rows, shuffled every epoch."""
    return validate_config(
        {
            "name": "w1",
            "seed": seed,
            "dtype": "float32",
            "data": {"path": "w1", "validation": 0, "test": 0, "normalize": "none", "shuffle": True},
            "model": {
                "layers": [
                    {"units": HIDDEN[0], "activation": "relu"},
                    {"units": HIDDEN[1], "activation": "relu"},
                    {"units": CLASSES, "activation": "softmax"},
                ]
            },
            "cost": "cce",
            "training": {"epochs": epochs, "batch_size": batch_size, "learning_rate": lr},
        },
        "W1 benchmark config",
    )


def w1_table(data: Dataset) -> Table:
    """W1 as the table a reader returns: the float32 features themselves (no copy), labels 0-9."""
    labels = data.y.astype(np.float64).reshape(-1, 1)
    return Table(data.X, labels, [f"x{i}" for i in range(FEATURES)], ["label"], "W1")


class ProductTrainer:
    """nnctl's own training loop on W1: ``Trainer`` over ``prepare_table`` (one epoch per call)."""

    def __init__(self, data: Dataset, batch_size: int, seed: int = 1, lr: float = LEARNING_RATE) -> None:
        self.config = w1_config(batch_size, seed, lr)
        self.prepared: Prepared = prepare_table(self.config, w1_table(data))
        self.net = build_network(self.config, FEATURES)

    def epoch(self, _order: object = None) -> float:
        """One epoch over every row, in the trainer's own seeded shuffle; the epoch's train loss.
        A new ``Trainer`` each call continues from the network's current weights (plain SGD keeps
        no state but its step count)."""
        history = Trainer(self.prepared, self.net).fit()
        return float(history[-1]["train_loss"])


def nnctl_epoch(trainer: NnctlTrainer, data: Dataset, order: np.ndarray) -> float:
    """One pass of the bare nnctl step over the rows ``order`` (full batches only); mean batch loss.

    The trainer's step without the trainer around it: gather the batch rows with
    ``np.take(..., out=buffer, mode="clip")`` (as ``Split.gather`` in nnctl/training/prepare.py
    does), ``loss, grads = net.gradients(xb, tb)``, ``optimizer.update(net.parameters(), grads, state,
    lr)``. Only the roofline suite times this; ``ProductTrainer`` is the product.
    """
    net, optimizer, state, lr = trainer.net, trainer.optimizer, trainer.state, trainer.lr
    xb, tb, batch = trainer.xb, trainer.tb, trainer.batch_size
    total, steps = 0.0, 0
    for start in range(0, len(order) - batch + 1, batch):
        idx = order[start : start + batch]
        np.take(data.X, idx, axis=0, out=xb, mode="clip")
        np.take(data.T, idx, axis=0, out=tb, mode="clip")
        loss, grads = net.gradients(xb, tb)
        optimizer.update(net.parameters(), grads, state, lr)
        total += loss
        steps += 1
    return total / max(steps, 1)


def step_flops(batch: int) -> int:
    """FLOPs of one training step: 3 forward, 3 weight-gradient and 2 data-gradient products.

    6 B W - 2 B (784 * 512): no gradient is propagated into the data.
    """
    sizes = (FEATURES, *HIDDEN, CLASSES)
    weights = sum(sizes[i] * sizes[i + 1] for i in range(len(sizes) - 1))
    return 6 * batch * weights - 2 * batch * sizes[0] * sizes[1]
