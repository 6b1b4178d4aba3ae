"""Commented starter configs for ``nnctl init``."""

from __future__ import annotations

from pathlib import Path

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


def config_from_data(data_path: Path, target: str | None, config_path: Path) -> str:
    """A commented config for a CSV/Parquet table: its columns as inferred, the task, the output
    layer and the cost that fit the target column."""
    import os

    import numpy as np

    from nnctl.config import DEFAULT_MISSING_VALUES
    from nnctl.data.table import format_number, preview
    from nnctl.data.tabular import is_tabular, read_table, resolve_types
    from nnctl.errors import DataError

    if not is_tabular(data_path):
        raise DataError(f"{data_path}: --from-data reads .csv and .parquet tables")
    raw = read_table(data_path, delimiter=None, missing_values=DEFAULT_MISSING_VALUES)
    columns = [c for c in raw.columns if c.name]
    names = [c.name for c in columns]
    target = target or names[-1]
    if target not in names:
        raise DataError(f"{data_path}: no column '{target}' for --target; columns: {preview(names)}")
    label = next(c for c in columns if c.name == target)
    present = label.values[~label.missing]
    features = [c for c in columns if c.name != target]
    types, warnings = resolve_types(raw, features, {}, ~label.missing)
    distinct = np.unique(present)
    integers = label.numeric and bool(np.all(distinct == np.round(distinct)))
    regression = label.numeric and not (integers and len(distinct) <= 20)
    shown = [format_number(float(v)) for v in distinct] if label.numeric else [str(v) for v in distinct]
    if regression:
        task, output, cost = "regression", "{units: 1, activation: identity}", "quadratic"
        low, high = format_number(float(present.min())), format_number(float(present.max()))
        summary = f"regression on '{target}' ({low} .. {high})"
    elif len(distinct) == 2:
        task, output, cost = "binary classification", "{units: 1, activation: logistic}", "bce"
        summary = f"binary classification of '{target}' ({preview(shown)}; positive class: {shown[1]})"
    else:
        task, output, cost = "classification", f"{{units: {len(distinct)}, activation: softmax}}", "cce"
        summary = f"classification of '{target}' into {len(distinct)} classes ({preview(shown)})"
    if len(distinct) < 2:
        raise DataError(f"{data_path}: the target '{target}' has {len(distinct)} distinct value")
    relative = os.path.relpath(data_path.resolve(), config_path.resolve().parent)
    lines = [
        f"# nnctl config written by `nnctl init --from-data {data_path} --target {target}`.",
        f"# {raw.n_rows} rows; task: {summary}.",
        f"# Check it with `nnctl check {config_path}`; column settings: docs/data.md.",
        f"name: {config_path.stem}",
        "seed: 0",
        "data:",
        f"  path: {Path(relative).as_posix()}",
        f"  target: {target}",
        "  validation: 0.15",
        "  test: 0.15",
        "  normalize: standard          # numeric columns only; one-hot and _missing inputs stay 0/1",
        "  columns:                     # as inferred; numeric: missing median (+ a _missing input),",
        "                               # categorical: one-hot, missing cells a category of their own",
    ]
    for column in features:
        kind = types[column.name]
        missing = int(column.missing.sum())
        if kind == "categorical":
            cats = np.unique(column.values[~column.missing])
            detail = f"{len(cats)} categories: {preview([str(c) for c in cats], 5)}"
        else:
            values = column.values[~column.missing]
            detail = f"{format_number(float(values.min()))} .. {format_number(float(values.max()))}"
        detail += f"; {missing} missing" if missing else ""
        lines.append(f"    {column.name}: {{type: {kind}}}".ljust(40) + f"# {detail}")
    drop = [w.split("'")[1] for w in warnings]
    if drop:
        lines.append(
            f"  drop: [{', '.join(drop)}]".ljust(40) + "# a different value in every row, like an ID"
        )
    lines += [
        "model:",
        "  layers:",
        "    - {units: 32, activation: relu}",
        f"    - {output}".ljust(40) + f"# {task}",
        f"cost: {cost}",
        "training:",
        "  epochs: 100",
        "  batch_size: 32",
        "  learning_rate: 0.05",
        "  optimizer: sgd",
    ]
    if not regression:
        lines.append("  class_weight: null                # or balanced, for imbalanced classes")
    return "\n".join(lines) + "\n"
