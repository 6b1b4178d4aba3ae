"""Commented starter configs for ``nnctl init``."""

from __future__ import annotations

_COMMON_TRAINING = """\
training:
  epochs: {epochs}
  batch_size: {batch:<14}# a value >= the number of training rows means full batch
  learning_rate: {lr}
  optimizer: sgd            # sgd (the seed's (1.32)) | momentum | adam | adamw | rmsprop
"""

CLASSIFICATION = """\
# nnctl config: multi-class classification (softmax output, categorical cross-entropy).
name: my-classifier
seed: 0                     # one integer drives initialization, splits and shuffling
dtype: float32              # float32 | float64
data:
  path: builtin:spirals     # your .csv (header row) or .npz (arrays x, y); relative to this file
  target: class             # target column (default: the last column)
  validation: 0.15          # fraction held out for validation (0 = none)
  test: 0.15                # fraction held out for test (0 = none)
  normalize: standard       # none | standard | minmax (statistics from the training rows only)
  shuffle: true
model:
  initializer: auto         # auto (He for relu/elu, Xavier otherwise) | he | xavier
  layers:                   # hidden layers and the output layer; the input width comes from the data
    - {units: 32, activation: relu}
    - {units: 32, activation: relu}
    - {units: 3, activation: softmax}
cost: cce                   # quadratic | cce | bce
""" + _COMMON_TRAINING.format(epochs=200, batch=16, lr=0.1)


def _two_layer(header: tuple[str, str], data: str, model: tuple[str, str, str]) -> str:
    """A starter with one hidden layer and one output unit: header (title, name), data keys,
    model (hidden layer, output activation, cost)."""
    (title, name), (hidden, output, cost) = header, model
    layers = f"  layers:\n    - {{units: {hidden}}}\n    - {{units: 1, activation: {output}}}\n"
    return f"# nnctl config: {title}.\nname: {name}\nseed: 0\ndata:\n{data}model:\n{layers}cost: {cost}\n"


def _data(path: str, target: str, held_out: str, normalize: str) -> str:
    """The data section's lines: ``held_out`` is the validation and test fraction."""
    keys = [("path", path), ("", target), ("validation", held_out), ("test", held_out)]
    keys.append(("normalize", normalize))
    return "".join(f"  {key}: {value}\n" if key else f"  {value}\n" for key, value in keys)


_YOUR_FILE = "# your .csv (header row) or .npz (arrays x, y); relative to this file"
_POSITIVE = "# two labels; the second in sorted order is the positive class"
_TARGET_Y = "target: y                 # numeric target column(s); a list gives several outputs"
_AS_CLASSES = "# 0/1 targets scored as classes (auto would call quadratic cost regression)"
_STANDARD_FEATURES = "standard       # features only; targets are never normalized"
_SEED_COST = "quadratic             # per sample sum_k (t_k - a_k)^2, the seed's (1.14)"

BINARY = _two_layer(
    ("binary classification (one logistic output, binary cross-entropy)", "my-binary-classifier"),
    _data(f"builtin:circles     {_YOUR_FILE}", f"target: inside            {_POSITIVE}", "0.15", "standard"),
    ("16, activation: relu", "logistic", "bce"),
) + _COMMON_TRAINING.format(epochs=60, batch=32, lr=0.1)

REGRESSION = _two_layer(
    ("regression (identity output, quadratic cost)", "my-regressor"),
    _data(
        f"builtin:sine        {_YOUR_FILE}",
        _TARGET_Y,
        "0.15",
        _STANDARD_FEATURES,
    ),
    ("16, activation: tanh", "identity", _SEED_COST),
) + _COMMON_TRAINING.format(epochs=200, batch=16, lr=0.05)

XOR = _two_layer(
    ("XOR, the seed's chapter 1 network (logistic output, quadratic cost)", "xor"),
    _data("builtin:xor", f"task: classification      {_AS_CLASSES}", "0", "none"),
    ("4, activation: tanh", "logistic", "quadratic"),
) + _COMMON_TRAINING.format(epochs=2000, batch=4, lr=1.0)

TEMPLATES: dict[str, str] = {
    "classification": CLASSIFICATION,
    "binary": BINARY,
    "regression": REGRESSION,
    "xor": XOR,
}
