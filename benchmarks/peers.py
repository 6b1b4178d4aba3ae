"""The peers nnctl is measured against: PyTorch CPU and scikit-learn's MLPClassifier.

Both are optional (``pip install -e '.[bench]'``); ``load_torch``/``load_sklearn`` return None
with the reason when one is missing, and the suites report it instead of failing.

Fairness, as implemented here:

* same data (float32 C-contiguous features), same layer sizes, activations, cost, plain SGD with
  the same learning rate, same batch size, same number of BLAS/OpenMP threads;
* PyTorch: ``nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)`` + ``CrossEntropyLoss`` (softmax
  inside the loss) + ``torch.optim.SGD``; batches gathered with ``index_select(..., out=buffer)``
  from the same row order nnctl uses; ``loss.item()`` read each step, as nnctl returns its loss;
* scikit-learn: ``MLPClassifier(solver="sgd", momentum=0, alpha=0, learning_rate="constant")``.
  One ``partial_fit`` call is exactly one epoch of its own mini-batch loop over the rows it is
  given (shuffled with its own generator). The first call (which allocates the weights and the
  label binarizer) is a warm-up and is not timed; each timed call then trains one epoch on a
  pre-gathered contiguous float32 copy of the same rows nnctl trains on. The per-call input
  validation it does is included (well under 1% of an epoch).
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import numpy as np

from benchmarks.workload import CLASSES, FEATURES, HIDDEN, LEARNING_RATE, Dataset


def load_torch() -> tuple[ModuleType | None, str]:
    if importlib.util.find_spec("torch") is None:
        return None, "torch not installed: skipped (pip install torch==2.13.0)"
    import torch

    return torch, f"torch {torch.__version__}"


def load_sklearn() -> tuple[ModuleType | None, str]:
    if importlib.util.find_spec("sklearn") is None:
        return None, "scikit-learn not installed: skipped (pip install scikit-learn)"
    import sklearn

    return sklearn, f"scikit-learn {sklearn.__version__}"


class TorchTrainer:
    """The W1 student in PyTorch, trained exactly like nnctl (same rows, same order)."""

    def __init__(self, torch: ModuleType, data: Dataset, batch_size: int, seed: int = 1) -> None:
        self.torch = torch
        torch.manual_seed(seed)
        nn = torch.nn
        self.model = nn.Sequential(
            nn.Linear(FEATURES, HIDDEN[0]),
            nn.ReLU(),
            nn.Linear(HIDDEN[0], HIDDEN[1]),
            nn.ReLU(),
            nn.Linear(HIDDEN[1], CLASSES),
        )
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE)
        self.X = torch.from_numpy(data.X)
        self.y = torch.from_numpy(data.y)
        self.batch_size = batch_size
        self.xb = torch.empty((batch_size, FEATURES), dtype=torch.float32)
        self.yb = torch.empty(batch_size, dtype=torch.int64)

    def epoch(self, order: np.ndarray) -> float:
        torch, batch = self.torch, self.batch_size
        index = torch.from_numpy(order)
        total, steps = 0.0, 0
        for start in range(0, len(order) - batch + 1, batch):
            idx = index[start : start + batch]
            torch.index_select(self.X, 0, idx, out=self.xb)
            torch.index_select(self.y, 0, idx, out=self.yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(self.xb), self.yb)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            steps += 1
        return total / max(steps, 1)

    def predictor(self, x: np.ndarray):
        """A callable running inference on x: logits and softmax, as nnctl's forward returns a^L."""
        torch = self.torch
        xt = torch.from_numpy(x)

        def predict() -> None:
            with torch.inference_mode():
                torch.softmax(self.model(xt), dim=1)

        return predict


class SklearnTrainer:
    """The W1 student as scikit-learn's MLPClassifier with plain SGD; one partial_fit = one epoch."""

    def __init__(self, data: Dataset, batch_size: int, seed: int = 1) -> None:
        from sklearn.neural_network import MLPClassifier

        self.data = data
        self.model = MLPClassifier(
            hidden_layer_sizes=HIDDEN,
            activation="relu",
            solver="sgd",
            alpha=0.0,
            batch_size=batch_size,
            learning_rate="constant",
            learning_rate_init=LEARNING_RATE,
            momentum=0.0,
            nesterovs_momentum=False,
            shuffle=True,
            early_stopping=False,
            max_iter=1,
            random_state=seed,
        )
        self.classes = np.arange(CLASSES)
        self._warm = False

    def gather(self, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows an epoch trains on, as contiguous float32 (done outside the timed region)."""
        return np.take(self.data.X, order, axis=0), np.take(self.data.y, order)

    def epoch(self, rows: tuple[np.ndarray, np.ndarray]) -> float:
        X, y = rows
        if not self._warm:
            self.model.partial_fit(X, y, classes=self.classes)
            self._warm = True
        else:
            self.model.partial_fit(X, y)
        return float(self.model.loss_)
