"""The task (classification, multilabel, regression) and the target encoder: raw target cells to the
network's float targets t, and outputs back to labels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnctl.data.table import (
    Array,
    canonical_label,
    first_cell,
    format_number,
    parse_number,
    preview,
    show_cell,
)
from nnctl.engine.metrics import TASKS, positive, predicted_classes, tasks_for_cost
from nnctl.errors import DataError


def infer_task(requested: str, cost: str, output_activation: str, output_units: int, y: Array) -> str:
    """The task: ``requested`` unless it is "auto", else read off the cost and output layer
    (``tasks_for_cost``), taking the second choice, where there is one, for non-numeric targets."""
    if requested not in ("auto", *TASKS):
        raise ValueError(f"unknown task {requested!r}; expected one of: auto, {', '.join(TASKS)}")
    if requested != "auto":
        return requested
    choices = tasks_for_cost(cost, output_activation, output_units)
    numeric = y is None or np.asarray(y).dtype.kind == "f"
    return choices[0] if numeric or len(choices) == 1 else choices[1]


def _as_2d(y: Array) -> Array:
    y = np.asarray(y)
    return y.reshape(len(y), -1) if y.ndim != 2 else y


def _label_codes(column: Array) -> tuple[list[str], Array]:
    """Canonical label text of each distinct value, and each row's index into that list."""
    uniq, inverse = np.unique(column, return_inverse=True)
    if uniq.dtype.kind in "biuf":
        labels = [format_number(float(u)) for u in uniq]
    else:
        labels = [canonical_label(str(u)) for u in uniq]
    return labels, inverse.reshape(-1)


def _sort_labels(labels: set[str]) -> list[str]:
    """Numeric order when every label is a number (so "2" precedes "10"), text order otherwise."""
    values = {label: parse_number(label) for label in labels}
    if all(v is not None and math.isfinite(v) for v in values.values()):
        return sorted(labels, key=lambda label: (values[label], label))
    return sorted(labels)


def _numeric_targets(y: Array, source: str, task: str) -> Array:
    """float64 copy of numeric targets; DataError naming the first non-number otherwise."""
    if y.dtype.kind in "biuf":
        out = y.astype(np.float64)
    else:
        out = np.empty(y.shape, dtype=np.float64)
        for (r, c), cell in np.ndenumerate(y):
            v = parse_number(str(cell).strip())
            if v is None:
                raise DataError(
                    f"{source}: data row {r + 1}, target column {c + 1}: {show_cell(str(cell))} "
                    "is not a number; "
                    f"{task} targets must be numeric",
                    hint="use task: classification for text labels",
                )
            out[r, c] = v
    bad = first_cell(~np.isfinite(out))
    if bad is not None:
        r, c = bad
        where = f"{source}: data row {r + 1}, target column {c + 1}"
        raise DataError(f"{where}: {out[r, c]} is not a finite number")
    return out


@dataclass
class TargetEncoder:
    """Maps raw targets to the network's output space and back.

    classification: one target column; ``classes`` are the sorted labels (as text); one-hot
    column i is class i, or, for two classes and one output unit, 1.0 marks ``classes[1]``.
    multilabel: k columns of 0/1, one unit each. regression: k numeric columns, one unit each.
    """

    task: str
    classes: list[str] | None
    output_units: int

    @classmethod
    def fit(
        cls,
        y: Array,
        task: str,
        output_units: int,
        *,
        target_names: list[str] | None = None,
        source: str = "data",
    ) -> TargetEncoder:
        """Learn the classes (classification) and check the targets fit ``output_units``.
        ``target_names`` and ``source`` only make the error messages name the column and file."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")
        y = _as_2d(y)
        names = ", ".join(target_names) if target_names else None
        k = y.shape[1]
        if task == "classification":
            if k != 1:
                raise DataError(
                    f"classification needs exactly one target column; got {k}"
                    + (f" ({names})" if names else ""),
                    hint="use task: multilabel (bce) or regression for several target columns",
                )
            labels, _ = _label_codes(y[:, 0])
            classes = _sort_labels(set(labels))
            what = f"the target '{names}'" if names else "the target"
            if len(classes) < 2:
                raise DataError(
                    f"{source}: {what} has {len(classes)} class{'es' * (len(classes) != 1)} "
                    f"({preview(classes)}); classification needs at least 2"
                )
            n = len(classes)
            if output_units != n and not (n == 2 and output_units == 1):
                # One unit tells two classes apart; with more, bce would make them independent labels.
                how = " with a softmax activation and cost cce" if output_units == 1 else ""
                raise DataError(
                    f"the output layer has {output_units} unit{'s' * (output_units != 1)} but {what} has "
                    f"{n} classes ({preview(classes)}); set the last layer's units to {n}{how}"
                )
            return cls(task=task, classes=classes, output_units=output_units)
        if k != output_units:
            cols = f" ({names})" if names else ""
            fix = f"set the last layer's units to {k}"
            if task == "multilabel" and k == 1:  # a class column read as 0/1 labels: one hint for all
                fix = (
                    "several bce output units mean one 0/1 target column each (multilabel); for one "
                    "column of classes use a softmax output (one unit per class) with cost cce"
                )
            raise DataError(
                f"the output layer has {output_units} units but there {'is' if k == 1 else 'are'} {k} "
                f"target column{'s' * (k != 1)}{cols}; {fix}"
            )
        encoder = cls(task=task, classes=None, output_units=output_units)
        encoder.encode(y, source=source)  # validates: numeric, and 0/1 for multilabel
        return encoder

    def _expect_columns(self, y: Array, source: str) -> Array:
        y = _as_2d(y)
        expected = 1 if self.task == "classification" else self.output_units
        if y.shape[1] != expected:
            raise DataError(f"{source}: {y.shape[1]} target columns, the model expects {expected}")
        return y

    def class_indices(self, y: Array, *, source: str = "data") -> Array:
        """Classification: the class index (int64) of every row; unseen labels are a DataError."""
        if self.task != "classification" or self.classes is None:
            raise ValueError(f"class indices exist for classification only, not {self.task}")
        y = self._expect_columns(y, source)
        labels, inverse = _label_codes(y[:, 0])
        position = {label: i for i, label in enumerate(self.classes)}
        lookup = np.array([position.get(label, -1) for label in labels], dtype=np.int64)
        idx = lookup[inverse] if len(inverse) else np.zeros(0, dtype=np.int64)
        unseen = np.flatnonzero(idx < 0)
        if len(unseen):
            row = int(unseen[0])
            raise DataError(
                f"{source}: data row {row + 1}: label '{labels[inverse[row]]}' was not seen in training; "
                f"known classes: {preview(self.classes)}"
            )
        return idx

    def encode(self, y: Array, *, source: str = "data") -> Array:
        """Raw targets (n, k) -> float64 training targets (n, output_units)."""
        y = self._expect_columns(y, source)
        if self.task == "classification":
            idx = self.class_indices(y, source=source)
            if self.output_units == 1:
                return (idx == 1).astype(np.float64).reshape(-1, 1)
            out = np.zeros((len(idx), self.output_units), dtype=np.float64)
            out[np.arange(len(idx)), idx] = 1.0
            return out
        out = _numeric_targets(y, source, self.task)
        if self.task == "multilabel":
            bad = first_cell((out != 0.0) & (out != 1.0))
            if bad is not None:
                r, c = bad
                raise DataError(
                    f"{source}: data row {r + 1}, target column {c + 1}: {format_number(out[r, c])} "
                    "is not 0 or 1; multilabel targets must be 0 or 1"
                )
        return np.ascontiguousarray(out)

    def decode(self, outputs: Array) -> Array:
        """Network outputs -> labels (classification, str (n,)), 0/1 int (multilabel) or values."""
        outputs = _as_2d(outputs)
        if self.task == "classification":
            assert self.classes is not None
            return np.asarray(self.classes, dtype=np.str_)[predicted_classes(outputs)]
        if self.task == "multilabel":
            return positive(outputs).astype(np.int64)
        return np.array(outputs, dtype=np.float64)


def describe_targets(encoder: TargetEncoder) -> str:
    """One line for the run summary, e.g. "classification, 3 classes: setosa, versicolor, virginica"."""
    if encoder.task == "classification" and encoder.classes is not None:
        text = f"classification, {len(encoder.classes)} classes: {preview(encoder.classes)}"
        if encoder.output_units == 1:
            text += f" (one output unit; positive class: {encoder.classes[1]})"
        return text
    if encoder.task == "multilabel":
        return f"multilabel, {encoder.output_units} label{'s' * (encoder.output_units != 1)}"
    return f"regression, {encoder.output_units} output{'s' * (encoder.output_units != 1)}"
