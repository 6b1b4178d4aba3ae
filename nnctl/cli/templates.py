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

BINARY = """\
# nnctl config: binary classification (one logistic output, binary cross-entropy).
name: my-binary-classifier
seed: 0
data:
  path: builtin:circles     # your .csv (header row) or .npz (arrays x, y); relative to this file
  target: inside            # two labels; the second in sorted order is the positive class
  validation: 0.15
  test: 0.15
  normalize: standard
model:
  layers:
    - {units: 16, activation: relu}
    - {units: 1, activation: logistic}
cost: bce
""" + _COMMON_TRAINING.format(epochs=60, batch=32, lr=0.1)

REGRESSION = """\
# nnctl config: regression (identity output, quadratic cost).
name: my-regressor
seed: 0
data:
  path: builtin:sine        # your .csv (header row) or .npz (arrays x, y); relative to this file
  target: y                 # numeric target column(s); a list gives several outputs
  validation: 0.15
  test: 0.15
  normalize: standard       # features only; targets are never normalized
model:
  layers:
    - {units: 16, activation: tanh}
    - {units: 1, activation: identity}
cost: quadratic             # per sample sum_k (t_k - a_k)^2, the seed's (1.14)
""" + _COMMON_TRAINING.format(epochs=200, batch=16, lr=0.05)

XOR = """\
# nnctl config: XOR, the seed's chapter 1 network (logistic output, quadratic cost).
name: xor
seed: 0
data:
  path: builtin:xor
  task: classification      # 0/1 targets scored as classes (auto would call quadratic cost regression)
  validation: 0
  test: 0
  normalize: none
model:
  layers:
    - {units: 4, activation: tanh}
    - {units: 1, activation: logistic}
cost: quadratic
""" + _COMMON_TRAINING.format(epochs=2000, batch=4, lr=1.0)

TEMPLATES: dict[str, str] = {
    "classification": CLASSIFICATION,
    "binary": BINARY,
    "regression": REGRESSION,
    "xor": XOR,
}
