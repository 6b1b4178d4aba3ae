"""A checkpoint as one ONNX graph, from raw input columns to the outputs ``nnctl predict`` gives.

The graph (ai.onnx opset ``OPSET``, ai.onnx.ml opset ``ML_OPSET``; every axis 0 is the dynamic batch):

* one input per raw feature column, named as the column, shape ``[N, 1]``: ``float32`` for a numeric
  column (NaN marks a missing cell), ``string`` for a categorical one;
* numeric: ``Imputer`` puts the column's fill into missing cells (a column without a fill passes NaN
  on, and the outputs of that row are NaN: a graph cannot raise the error ``predict`` would), and
  ``IsNaN`` makes the missing indicator;
* categorical: ``LabelEncoder`` maps each cell to its slot (its category, ``<other>`` for an
  infrequent category, ``<missing>`` or the fill category for a missing-value spelling), then
  ``OneHotEncoder`` (zeros=1) writes the one-hot row; anything else is all zeros. The graph compares
  cells as given (numbers in their canonical spelling, "1" and also "1.0"): it does not strip spaces;
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
from nnctl.data.table import format_number, parse_number
from nnctl.errors import CheckpointError, NnctlError
from nnctl.export.tabular import CategoricalColumn, Preprocessing, load_checkpoint
from nnctl.files import atomic_write_with

OPSET = 17
ML_OPSET = 3
OUTPUT_NAMES = {
    "classification": ("probabilities", "label"),
    "multilabel": ("probabilities",),
    "regression": ("values",),
}
INSTALL_HINT = "pip install 'nnctl[onnx]'"


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
    return ExportSummary(output, inputs, outputs, OPSET, ML_OPSET, len(model.graph.node))


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
        opset_imports=[onnx.helper.make_opsetid("", OPSET), onnx.helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
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

    def _numeric(self, column: Any) -> list[str]:
        """[value] or [value, indicator], each [N, 1] float32."""
        value = column.name
        if column.fill is not None:
            value = self.node(
                "Imputer",
                [column.name],
                "imputed",
                domain="ai.onnx.ml",
                imputed_value_floats=[float(column.fill)],
                replaced_value_float=math.nan,
            )
        pieces = [value]
        if column.indicator:
            missing = self.node("IsNaN", [column.name], "isnan")
            pieces.append(self.node("Cast", [missing], "indicator", to=self.onnx.TensorProto.FLOAT))
        return pieces

    def _categorical(self, column: CategoricalColumn, missing_values: tuple[str, ...]) -> str:
        """The one-hot block [N, slots] of a string column."""
        categories = [str(c) for c in column.categories]
        other = _fresh_token("<other>", categories)
        missing = _fresh_token("<missing>", categories)
        unknown = _fresh_token("<unknown>", [*categories, other, missing])
        slots = [*categories, *([other] if column.other else [])]
        slots += [missing] if column.missing == "category" else []
        mapping: dict[str, str] = {}
        for category in categories:
            for spelling in _spellings(category):
                mapping.setdefault(spelling, category)
        if column.other:
            for category in column.infrequent:
                for spelling in _spellings(str(category)):
                    mapping.setdefault(spelling, other)
        fill = missing if column.missing == "category" else column.fill
        for spelling in missing_values:  # missing first, as in training: "NA" is never a category
            mapping[spelling] = fill if fill is not None else unknown
        slot = self.node(
            "LabelEncoder",
            [column.name],
            "slot",
            domain="ai.onnx.ml",
            keys_strings=list(mapping),
            values_strings=list(mapping.values()),
            default_string=unknown,
        )
        onehot = self.node(
            "OneHotEncoder", [slot], "onehot", domain="ai.onnx.ml", cats_strings=slots, zeros=1
        )
        shape = self.const(np.array([-1, len(slots)], dtype=np.int64), "shape")
        return self.node("Reshape", [onehot, shape], "block")

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


def _fresh_token(token: str, taken: list[str]) -> str:
    """A slot name that is not one of the categories."""
    while token in taken:
        token = "_" + token
    return token


def _spellings(category: str) -> list[str]:
    """The texts the graph maps to ``category``: itself and, for a number, "1" and "1.0" alike."""
    value = parse_number(category)
    if value is None or not math.isfinite(value):
        return [category]
    return list(dict.fromkeys([category, format_number(value), repr(value)]))
