"""A checkpoint as one ONNX graph, from raw input columns to the outputs ``nnctl predict`` gives.

The graph (ai.onnx opset ``OPSET``, or ``CATEGORICAL_OPSET`` with a categorical column; ai.onnx.ml
opset ``ML_OPSET``; every axis 0 is the dynamic batch) follows ``nnctl.data.columns``' encoding:

* one input per raw feature column, named as the column, shape ``[N, 1]``: ``float32`` for a numeric
  column (NaN marks a missing cell), ``string`` for a categorical one;
* numeric: ``Imputer`` puts the column's fill into missing cells, ``IsNaN`` makes the missing
  indicator; a cell ``predict`` refuses (missing without a fill, infinite) makes the row's outputs
  NaN, since a graph cannot raise;
* categorical: each cell gets a slot index (``CellRules``: stripped of whitespace, missing-value
  spellings first, numbers compared by value, infrequent -> ``<other>``, unknown -> all zeros or,
  under ``unknown: error``, a NaN row), then the one-hot row (``Equal`` against 0..slots-1);
* normalization ``(x - norm_shift) / norm_scale`` in float64, as nnctl computes it, then float32;
* per layer ``Gemm`` (z = a W^T + b, (1.3) batch-major) and the layer's activation (1.4)/(2.1);
* outputs: ``probabilities`` [N, K] and ``label`` [N] (classification, classes in checkpoint order;
  one logistic output unit gives [1 - p, p]), ``probabilities`` [N, T] (multilabel), ``values``
  [N, T] (regression).

Weights are stored as float32 even for a float64 checkpoint, so outputs agree with ``nnctl predict``
to about 1e-6 (float32 rounding), not bit for bit. ``onnx`` is imported inside the functions that
need it (the ``nnctl[onnx]`` extra).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnctl import __version__
from nnctl.checkpoint import load_checkpoint
from nnctl.data.columns import CategoricalColumn, NumericColumn, Preprocessing
from nnctl.data.table import format_number, parse_number
from nnctl.errors import CheckpointError, NnctlError
from nnctl.files import atomic_write_with

OPSET = 17
#: Graphs with a categorical column need opset 20 (``RegexFullMatch``; ONNX Runtime 1.17 or later).
CATEGORICAL_OPSET = 20
ML_OPSET = 3
#: Slot indices of a categorical cell besides its slots 0, 1, ...: no slot (all zeros), refused
#: by ``predict`` (a NaN row), not yet known (the exact lookup missed it).
UNKNOWN, REFUSED, UNRESOLVED = -1, -2, -3
#: What ``str.strip()`` removes (``str.isspace``), as an RE2 class; tests compare it with Python.
WHITESPACE_CHARS = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
WHITESPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE_CHARS) + "]"
#: A finite number as ``parse_number`` reads it, padded with the whitespace C's ``strtod`` skips, and
#: small enough that ONNX Runtime's ``Cast`` (``std::stod``) neither overflows nor underflows: at
#: most 300 digits, or 20 digits and a two-digit exponent. Longer spellings are compared as text.
_ASCII_SPACE = "[ \\t\\n\\x0b\\x0c\\r]*"
NUMBER_PATTERN = (
    f"{_ASCII_SPACE}[+-]?(?:(?:[0-9]{{1,300}}(?:\\.[0-9]{{0,300}})?|\\.[0-9]{{1,300}})"
    f"|(?:[0-9]{{1,20}}(?:\\.[0-9]{{0,20}})?|\\.[0-9]{{1,20}})[eE][+-]?[0-9]{{1,2}}){_ASCII_SPACE}"
)
OUTPUT_NAMES = {
    "classification": ("probabilities", "label"),
    "multilabel": ("probabilities",),
    "regression": ("values",),
}
INSTALL_HINT = "in nnctl's checkout: pip install -e '.[onnx]' (or install nnctl's wheel with [onnx])"


@dataclass
class ExportSummary:
    path: Path
    inputs: list[tuple[str, str]]  # (name, "float32" | "string")
    outputs: list[str]
    opset: int
    ml_opset: int
    nodes: int


def export_onnx(checkpoint_path: Path, output: Path) -> ExportSummary:
    """Read a checkpoint, build its graph, check it with ONNX's checker and write it atomically."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = build_model(checkpoint)
    data = model.SerializeToString()
    atomic_write_with(output, lambda handle: handle.write(data))
    inputs = [
        (column.name, "string" if isinstance(column, CategoricalColumn) else "float32")
        for column in checkpoint.preprocessing.columns
    ]
    outputs = [value.name for value in model.graph.output]
    return ExportSummary(output, inputs, outputs, opset_of(checkpoint), ML_OPSET, len(model.graph.node))


def opset_of(checkpoint: Any) -> int:
    """The ai.onnx opset a checkpoint's graph needs: 20 with a categorical column, else 17."""
    categorical = any(isinstance(c, CategoricalColumn) for c in checkpoint.preprocessing.columns)
    return CATEGORICAL_OPSET if categorical else OPSET


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise NnctlError("nnctl export needs the onnx package", hint=INSTALL_HINT) from None
    return onnx


def build_model(checkpoint: Any) -> Any:
    """The checkpoint (with its ``preprocessing``) as a checked ``onnx.ModelProto``."""
    onnx = _onnx()
    builder = _GraphBuilder(onnx, checkpoint)
    graph = builder.graph()
    model = onnx.helper.make_model(
        graph,
        opset_imports=[
            onnx.helper.make_opsetid("", opset_of(checkpoint)),
            onnx.helper.make_opsetid("ai.onnx.ml", ML_OPSET),
        ],
        producer_name="nnctl",
        producer_version=__version__,
        doc_string=f"nnctl checkpoint {checkpoint.path}: {checkpoint.meta['task']}, raw columns in, "
        "float32 arithmetic",
    )
    model.ir_version = min(model.ir_version, 9)  # readable by ONNX Runtime 1.16 and later
    onnx.helper.set_model_props(model, _metadata(checkpoint))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # the checker's own error types differ between onnx versions
        raise CheckpointError(
            f"{checkpoint.path}: the exported graph does not pass ONNX's checker ({exc})"
        ) from None
    return model


def _metadata(checkpoint: Any) -> dict[str, str]:
    """Model metadata: who wrote it, the raw columns, the encoded features, classes and targets."""
    pre: Preprocessing = checkpoint.preprocessing
    props = {
        "nnctl_version": __version__,
        "trained_with_nnctl": str(checkpoint.meta.get("nnctl_version", "")),
        "task": checkpoint.meta["task"],
        "epoch": str(checkpoint.epoch),
        "inputs": json.dumps(pre.to_json()),
        "features": json.dumps(pre.feature_names),
        "targets": json.dumps(checkpoint.target_names),
        "precision": f"float32 graph (checkpoint dtype {checkpoint.config.dtype})",
    }
    if checkpoint.classes is not None:
        props["classes"] = json.dumps(checkpoint.classes)
    return props


class _GraphBuilder:
    """Nodes and initializers, appended in order; internal tensor names start with ``nnctl/`` so
    they never collide with a column's name."""

    def __init__(self, onnx: Any, checkpoint: Any) -> None:
        self.onnx = onnx
        self.helper = onnx.helper
        self.checkpoint = checkpoint
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    # -- small helpers -----------------------------------------------------------------------
    def name(self, hint: str) -> str:
        self.count += 1
        return f"nnctl/{hint}_{self.count}"

    def node(self, op: str, inputs: list[str], hint: str, *, domain: str = "", **attrs: Any) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    # -- the graph ---------------------------------------------------------------------------
    def graph(self) -> Any:
        checkpoint = self.checkpoint
        pre: Preprocessing = checkpoint.preprocessing
        task = checkpoint.meta["task"]
        outputs = OUTPUT_NAMES[task]
        self._check_names(pre, outputs)
        inputs, pieces = [], []
        for column in pre.columns:
            if isinstance(column, CategoricalColumn):
                inputs.append(self._input(column.name, self.onnx.TensorProto.STRING))
                pieces.append(self._categorical(column, pre.missing_values))
            else:
                inputs.append(self._input(column.name, self.onnx.TensorProto.FLOAT))
                pieces.extend(self._numeric(column))
        encoded = pieces[0] if len(pieces) == 1 else self.node("Concat", pieces, "encoded", axis=1)
        a = self._normalize(encoded)
        for index, (W, b, layer) in enumerate(
            zip(checkpoint.weights, checkpoint.biases, checkpoint.config.model.layers, strict=True), start=1
        ):
            W32, b32 = np.asarray(W, dtype=np.float32), np.asarray(b, dtype=np.float32)
            parameters = [self.const(W32, f"W{index}"), self.const(b32, f"b{index}")]
            z = self.node("Gemm", [a, *parameters], "z", transB=1)
            a = self._activation(layer.activation, z, index)
        tail = self._outputs(task, a)  # the named outputs, after the helper nodes they need
        return self.helper.make_graph(
            [*self.nodes, *tail],
            "nnctl",
            inputs,
            self._output_infos(task),
            initializer=self.initializers,
        )

    def _check_names(self, pre: Preprocessing, outputs: tuple[str, ...]) -> None:
        if pre.feature_names != list(self.checkpoint.feature_names):
            raise CheckpointError(f"{self.checkpoint.path}: preprocessing does not match feature_names")
        for column in pre.columns:
            if column.name in outputs:
                raise CheckpointError(
                    f"{self.checkpoint.path}: cannot export: the input column '{column.name}' has the "
                    f"name of an output of the graph ({', '.join(outputs)})",
                    hint="rename the column in the data and retrain",
                )
            if column.name.startswith("nnctl/"):
                raise CheckpointError(
                    f"{self.checkpoint.path}: cannot export: the column name '{column.name}' starts "
                    "with 'nnctl/', which the graph uses for its own tensors"
                )

    def _input(self, name: str, elem_type: int) -> Any:
        return self.helper.make_tensor_value_info(name, elem_type, ["N", 1])

    def _numeric(self, column: NumericColumn) -> list[str]:
        """[value] or [value, indicator], each [N, 1] float32. An infinite cell, which ``predict``
        refuses, becomes NaN (so do the row's outputs), as does a missing cell without a fill."""
        value = column.name
        if column.fill is not None:
            value = self.node(
                "Imputer",
                [value],
                "imputed",
                domain="ai.onnx.ml",
                imputed_value_floats=[float(column.fill)],
                replaced_value_float=math.nan,
            )
        infinite = self.node("IsInf", [column.name], "isinf")
        value = self.node("Where", [infinite, self.nan(), value], "finite")
        pieces = [value]
        if column.indicator:
            missing = self.node("IsNaN", [column.name], "isnan")
            pieces.append(self.node("Cast", [missing], "indicator", to=self.onnx.TensorProto.FLOAT))
        return pieces

    def nan(self) -> str:
        return self.const(np.array(math.nan, dtype=np.float32), "nan")

    def _categorical(self, column: CategoricalColumn, missing_values: tuple[str, ...]) -> str:
        """The one-hot block [N, slots] of a string column, by ``nnctl.data.columns``' rules.

        Each cell gets a slot index: its category's, ``<other>``'s for an infrequent one, for a
        missing-value spelling ``<missing>``'s or the fill category's; UNKNOWN (all zeros) for a
        category never seen, REFUSED (a NaN row) where ``predict`` would refuse the cell. A cell
        written exactly as a key is looked up in one ``LabelEncoder``; only the rest (padded with
        whitespace, numbers in another spelling, unknown categories) take the slow path of
        ``_resolve``, on those rows alone (``Compress``, then ``ScatterND`` back)."""
        rules = CellRules.of(column, missing_values)
        flat_shape = self.const(np.array([-1], dtype=np.int64), "flat")
        flat = self.node("Reshape", [column.name, flat_shape], "cells")
        fast = self.node(
            "LabelEncoder",
            [flat],
            "slot_exact",
            domain="ai.onnx.ml",
            keys_strings=list(rules.exact),
            values_int64s=list(rules.exact.values()),
            default_int64=UNRESOLVED,
        )
        unresolved = self.node("Equal", [fast, self.const(np.array(UNRESOLVED, dtype=np.int64), "u")], "todo")
        rows = self.node("NonZero", [unresolved], "rows")  # [1, M]
        rows = self.node("Transpose", [rows], "rows_m1")  # [M, 1]: ScatterND's indices
        cells = self.node("Compress", [flat, unresolved], "todo_cells", axis=0)
        slot = self.node("ScatterND", [fast, rows, self._resolve(cells, rules)], "slot")
        slots = self.const(np.arange(rules.width, dtype=np.int64).reshape(1, -1), "slots")
        column_slot = self.node("Unsqueeze", [slot, self.const(np.array([1], dtype=np.int64), "axis1")], "s")
        equal = self.node("Equal", [column_slot, slots], "hot")
        hot = self.node("Cast", [equal], "onehot", to=self.onnx.TensorProto.FLOAT)
        refused = self.node("Equal", [column_slot, self.const(np.array(REFUSED, dtype=np.int64), "r")], "bad")
        return self.node("Where", [refused, self.nan(), hot], "block")

    def _resolve(self, cells: str, rules: CellRules) -> str:
        """Slot indices of cells [M] the exact lookup did not resolve: stripped of whitespace (by
        regular expressions around each key), numbers compared by value."""
        slot = self.const(np.array(rules.unknown_slot, dtype=np.int64), "unknown")  # broadcast by Where
        value = None
        if rules.numeric:
            is_number = self.node("RegexFullMatch", [cells], "is_number", pattern=NUMBER_PATTERN)
            nan_text = self.const(np.array("nan", dtype=object), "nan_text")
            numbers = self.node("Where", [is_number, cells, nan_text], "number_text")
            value = self.node("Cast", [numbers], "value", to=self.onnx.TensorProto.DOUBLE)
        for index, (texts, numbers) in enumerate(rules.slot_keys):
            hits = []
            if texts:
                pattern = f"{WHITESPACE}*(?:{'|'.join(map(_re2_literal, texts))}){WHITESPACE}*"
                hits.append(self.node("RegexFullMatch", [cells], "text_hit", pattern=pattern))
            for number in numbers:
                assert value is not None
                key = self.const(np.array(number, dtype=np.float64), "key")
                hits.append(self.node("Equal", [value, key], "number_hit"))
            if not hits:
                continue  # <missing>: reached only through missing_pattern
            hit = hits[0]
            for other in hits[1:]:
                hit = self.node("Or", [hit, other], "hit")
            index_const = self.const(np.array(index, dtype=np.int64), "slot_index")
            slot = self.node("Where", [hit, index_const, slot], "slot")
        if rules.missing_pattern is not None:
            missing = self.node("RegexFullMatch", [cells], "is_missing", pattern=rules.missing_pattern)
            target = self.const(np.array(rules.missing_slot, dtype=np.int64), "missing_slot")
            slot = self.node("Where", [missing, target, slot], "slot")  # missing comes first, as in training
        return slot

    def _normalize(self, encoded: str) -> str:
        """(x - shift) / scale in float64, then float32: the arithmetic of ``Normalizer.apply``."""
        shift = np.asarray(self.checkpoint.norm_shift, dtype=np.float64).reshape(1, -1)
        scale = np.asarray(self.checkpoint.norm_scale, dtype=np.float64).reshape(1, -1)
        if not shift.any() and np.all(scale == 1.0):
            return encoded
        x64 = self.node("Cast", [encoded], "x64", to=self.onnx.TensorProto.DOUBLE)
        centred = self.node("Sub", [x64, self.const(shift, "norm_shift")], "centred")
        scaled = self.node("Div", [centred, self.const(scale, "norm_scale")], "scaled")
        return self.node("Cast", [scaled], "x", to=self.onnx.TensorProto.FLOAT)

    def _activation(self, activation: Any, z: str, index: int) -> str:
        """(1.4) for the activations of table 1.1, (1.7) for the generalized logistic, (2.1) softmax."""
        name = activation.name
        if name == "relu":
            return self.node("Relu", [z], "relu")
        if name == "tanh":
            return self.node("Tanh", [z], "tanh")
        if name == "identity":
            return z
        if name == "softmax":
            return self.node("Softmax", [z], "softmax", axis=-1)
        if name == "elu":
            return self.node("Elu", [z], "elu", alpha=float(activation.alpha))
        if name == "logistic":  # L / (1 + e^{-k (z - x0)}) (1.7) = L * sigmoid(k (z - x0))
            u = z
            if activation.x0 != 0.0:
                u = self.node("Sub", [u, self.const(np.float32(activation.x0), "x0")], "shifted")
            if activation.k != 1.0:
                u = self.node("Mul", [u, self.const(np.float32(activation.k), "k")], "scaled")
            a = self.node("Sigmoid", [u], "sigmoid")
            if activation.L != 1.0:
                a = self.node("Mul", [a, self.const(np.float32(activation.L), "L")], "logistic")
            return a
        raise CheckpointError(
            f"{self.checkpoint.path}: cannot export layer {index}: no ONNX form for activation '{name}'"
        )

    def _outputs(self, task: str, a: str) -> list[Any]:
        helper = self.helper
        if task != "classification":
            return [helper.make_node("Identity", [a], [OUTPUT_NAMES[task][0]], name="nnctl/output")]
        classes = np.array([str(c) for c in self.checkpoint.classes], dtype=object)
        names = self.const(classes, "classes")
        nodes = []
        if self.checkpoint.config.model.layers[-1].units == 1:  # one logistic unit: p is the 2nd class
            one = self.const(np.array(1.0, dtype=np.float32), "one")
            p0 = self.node("Sub", [one, a], "p0")
            nodes.append(helper.make_node("Concat", [p0, a], ["probabilities"], name="nnctl/probs", axis=1))
            half = self.const(np.array(0.5, dtype=np.float32), "half")
            positive = self.node("GreaterOrEqual", [a, half], "positive")
            index = self.node("Cast", [positive], "index2d", to=self.onnx.TensorProto.INT64)
            flat = self.const(np.array([-1], dtype=np.int64), "flat")
            index = self.node("Reshape", [index, flat], "index")
        else:
            nodes.append(helper.make_node("Identity", [a], ["probabilities"], name="nnctl/probs"))
            index = self.node("ArgMax", [a], "index", axis=1, keepdims=0)
        nodes.append(helper.make_node("Gather", [names, index], ["label"], name="nnctl/label", axis=0))
        return nodes

    def _output_infos(self, task: str) -> list[Any]:
        helper, T = self.helper, self.onnx.TensorProto
        units = self.checkpoint.config.model.layers[-1].units
        if task == "classification":
            k = len(self.checkpoint.classes)
            return [
                helper.make_tensor_value_info("probabilities", T.FLOAT, ["N", k]),
                helper.make_tensor_value_info("label", T.STRING, ["N"]),
            ]
        return [helper.make_tensor_value_info(OUTPUT_NAMES[task][0], T.FLOAT, ["N", units])]


def _re2_literal(text: str) -> str:
    """``text`` as an RE2 pattern matching exactly it (every character but ASCII letters and
    digits written as ``\\x{HEX}``)."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text)


@dataclass
class CellRules:
    """How ``nnctl.data.columns`` encodes a categorical cell, as lookup tables for the graph.

    ``exact``: texts whose slot is certain without stripping (the stored keys, other spellings of
    numeric keys, missing-value spellings); ``slot_keys``: per slot, its keys as text and as numbers;
    ``missing_pattern`` matches a missing-value spelling padded with whitespace."""

    width: int
    exact: dict[str, int]
    slot_keys: list[tuple[list[str], list[float]]]
    missing_pattern: str | None
    missing_slot: int
    unknown_slot: int

    @property
    def numeric(self) -> bool:
        return any(numbers for _, numbers in self.slot_keys)

    @classmethod
    def of(cls, column: CategoricalColumn, missing_values: tuple[str, ...]) -> CellRules:
        width = len(column.encoded_names)
        slot_of = column.slot_of()
        if column.missing == "category":
            missing_slot = width - 1
        elif column.missing == "most_frequent":
            missing_slot = slot_of[str(column.fill)]
        else:  # error, drop_row: predict refuses the row
            missing_slot = REFUSED
        slot_keys: list[tuple[list[str], list[float]]] = [([], []) for _ in range(width)]
        exact: dict[str, int] = {}
        for key, slot in slot_of.items():
            texts, numbers = slot_keys[slot]
            texts.append(key)
            value = parse_number(key)
            if value is not None and math.isfinite(value):
                numbers.append(value)
                for spelling in (format_number(value), repr(value)):
                    exact.setdefault(spelling, slot)
            exact[key] = slot
        # A cell is missing when its stripped text is a missing-value spelling, before anything
        # else; a spelling with whitespace of its own never equals a stripped text.
        tokens = [t for t in missing_values if t == t.strip()]
        for token in tokens:
            exact[token] = missing_slot
        missing_pattern = None
        if tokens:
            missing_pattern = f"{WHITESPACE}*(?:{'|'.join(map(_re2_literal, tokens))}){WHITESPACE}*"
        unknown_slot = UNKNOWN if column.unknown == "ignore" else REFUSED
        return cls(width, exact, slot_keys, missing_pattern, missing_slot, unknown_slot)
