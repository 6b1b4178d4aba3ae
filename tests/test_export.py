"""``nnctl export``: the ONNX graph, run in ONNX Runtime, gives ``nnctl predict``'s answers.

Every shipped config (``configs/*.yaml``, so a new one is covered automatically) is trained briefly,
exported, and run in ONNX Runtime on its own test rows, one row at a time and as a batch of 1,000;
probabilities or values match ``nnctl predict`` on the same rows to 1e-5 and the labels agree. A
hand-built tabular checkpoint checks imputation, indicators and one-hot encoding against encodings
written out by hand; other tests cover every activation, the output layouts, metadata and refusals.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import CONFIGS, invoke, ok, read_csv, train, write_csv
from serving_helpers import TABULAR_ROWS, onnx_feed, reference_outputs, tabular_checkpoint

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

SHIPPED = sorted(path.stem for path in CONFIGS.glob("*.yaml"))
TOLERANCE = 1e-5


def session(path: Path) -> Any:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def export(checkpoint: Path, output: Path) -> Path:
    outcome = ok(invoke("export", checkpoint, "-o", output))
    assert f"wrote {output}" in outcome.stdout
    return output


def predict_csv(checkpoint: Path, rows_csv: Path) -> tuple[list[str], list[list[str]]]:
    text = ok(invoke("predict", checkpoint, rows_csv)).stdout
    table = list(csv.reader(io.StringIO(text)))
    return table[0], table[1:]


# ---------------------------------------------------------------------------------------------
# The test rows of a checkpoint, as raw cells


def raw_test_rows(checkpoint_path: Path, folder: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The checkpoint's test rows (all rows without a test split) as a CSV for ``nnctl predict`` and as
    per-row ONNX inputs: numeric cells as floats (NaN when missing), categorical cells as text.
    Rows ``predict`` must refuse (a missing cell in a column without a fill) are left out."""
    from nnctl.checkpoint import load_checkpoint
    from nnctl.data.columns import CategoricalColumn
    from nnctl.data.load import load_table
    from nnctl.workflows import locate_data, prepare_checkpoint_data

    checkpoint = load_checkpoint(checkpoint_path)
    source = locate_data(checkpoint)
    if source.startswith("builtin:"):
        table = load_table(source, checkpoint.target_names)
        header = [*table.feature_names, *table.target_names]
        cells = [[repr(float(v)) for v in row] for row in np.hstack([table.x, table.y])]
    else:
        header, cells = read_csv(source)
    prepared = prepare_checkpoint_data(checkpoint.config, checkpoint)
    pre = checkpoint.preprocessing
    missing = set(pre.missing_values)
    index = {name: i for i, name in enumerate(header)}
    if prepared.test is not None and prepared.train.features.shape[0] == len(cells):
        # the test rows, and every row with a missing feature cell (penguins: NA measurements and sex)
        gaps = [
            i for i, row in enumerate(cells) if any(row[index[n]].strip() in missing for n in pre.input_names)
        ]
        cells = [cells[i] for i in sorted({*prepared.test.rows.tolist(), *gaps})]
    kept, inputs = [], []
    for row in cells:
        record: dict[str, Any] = {}
        for column in pre.columns:
            cell = row[index[column.name]]
            is_missing = cell.strip() in missing
            if isinstance(column, CategoricalColumn):
                if is_missing and column.missing != "category" and column.fill is None:
                    break
                record[column.name] = cell  # as in the file: the graph strips and canonicalizes
            else:
                if is_missing and column.fill is None:
                    break
                record[column.name] = float("nan") if is_missing else float(cell)
        else:
            kept.append(row)
            inputs.append(record)
    assert inputs, "no test rows"
    return write_csv(folder / "rows.csv", header, kept), inputs


def expected_from_predict(header: list[str], rows: list[list[str]], task: str) -> dict[str, np.ndarray]:
    probabilities = [i for i, name in enumerate(header) if name.startswith("p_")]
    if task == "classification":
        return {
            "probabilities": np.array([[float(r[i]) for i in probabilities] for r in rows]),
            "label": np.array([r[0] for r in rows], dtype=object),
        }
    if task == "multilabel":
        return {"probabilities": np.array([[float(r[i]) for i in probabilities] for r in rows])}
    return {"values": np.array([[float(v) for v in r] for r in rows])}


def assert_matches(
    got: dict[str, np.ndarray], expected: dict[str, np.ndarray], rows: slice | None = None
) -> None:
    for name, want in expected.items():
        want = want if rows is None else want[rows]
        if name == "label":
            assert list(got[name]) == list(want)
        else:
            np.testing.assert_allclose(got[name], want, rtol=TOLERANCE, atol=TOLERANCE, err_msg=name)


def run(sess: Any, inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, onnx_feed(sess, inputs)), strict=True))


@pytest.mark.parametrize("stem", SHIPPED)
def test_shipped_config_in_onnx_runtime_matches_predict(tmp_path: Path, stem: str) -> None:
    run_dir = train(CONFIGS / f"{stem}.yaml", tmp_path / "run", "training.epochs=3")
    checkpoint = run_dir / "best.npz"
    model = export(checkpoint, tmp_path / "model.onnx")
    rows_csv, inputs = raw_test_rows(checkpoint, tmp_path)
    task = json.loads(str(np.load(checkpoint)["meta"][()]))["task"]
    expected = expected_from_predict(*predict_csv(checkpoint, rows_csv), task)
    sess = session(model)
    if stem == "penguins":  # the rows include missing cells of both kinds
        assert any(r["sex"] == "NA" for r in inputs) and any(np.isnan(r["body_mass_g"]) for r in inputs)

    assert_matches(run(sess, inputs), expected)  # the test rows as one batch
    for i in range(min(len(inputs), 20)):  # batch size 1
        assert_matches(run(sess, inputs[i : i + 1]), expected, slice(i, i + 1))
    repeat = np.arange(1000) % len(inputs)  # batch size 1,000
    tiled = {name: value[repeat] for name, value in expected.items()}
    assert_matches(run(sess, [inputs[i] for i in repeat]), tiled)


def test_graph_contract(tmp_path: Path) -> None:
    """Inputs per raw column [N, 1], outputs and their shapes, opsets, metadata."""
    run_dir = train(CONFIGS / "iris.yaml", tmp_path / "run", "training.epochs=2")
    model = onnx.load(str(export(run_dir / "best.npz", tmp_path / "iris.onnx")))
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets == {"": 17, "ai.onnx.ml": 3}
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(inputs) == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    for tensor in inputs.values():
        assert tensor.elem_type == onnx.TensorProto.FLOAT
        assert [d.dim_param or d.dim_value for d in tensor.shape.dim] == ["N", 1]
    outputs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert list(outputs) == ["probabilities", "label"]
    assert [d.dim_param or d.dim_value for d in outputs["probabilities"].shape.dim] == ["N", 3]
    assert outputs["label"].elem_type == onnx.TensorProto.STRING
    meta = {p.key: p.value for p in model.metadata_props}
    import nnctl

    assert meta["nnctl_version"] == nnctl.__version__
    assert json.loads(meta["classes"]) == ["setosa", "versicolor", "virginica"]
    assert json.loads(meta["features"]) == list(inputs)
    assert [c["name"] for c in json.loads(meta["inputs"])["columns"]] == list(inputs)


def test_tabular_checkpoint_imputes_and_one_hot_encodes(tmp_path: Path) -> None:
    """Raw cells (NaN, missing spellings, infrequent, unknown, "2.0" for "2") give the outputs of the
    encodings the contract prescribes, written out by hand."""
    checkpoint = tabular_checkpoint(tmp_path)
    model = export(checkpoint, tmp_path / "tabular.onnx")
    sess = session(model)
    types = {i.name: i.type for i in sess.get_inputs()}
    assert types == {
        "length": "tensor(float)",
        "island": "tensor(string)",
        "depth": "tensor(float)",
        "sex": "tensor(string)",
        "ring": "tensor(string)",
    }
    inputs = [onnx_cells for _, onnx_cells, _ in TABULAR_ROWS]
    want = reference_outputs(checkpoint, [encoded for _, _, encoded in TABULAR_ROWS])
    got = run(sess, inputs)
    np.testing.assert_allclose(got["probabilities"], want, rtol=TOLERANCE, atol=TOLERANCE)
    assert list(got["label"]) == [["a", "b", "c"][i] for i in want.argmax(axis=1)]
    for i in range(len(inputs)):  # one row at a time gives the same
        np.testing.assert_allclose(
            run(sess, inputs[i : i + 1])["probabilities"], want[i : i + 1], atol=TOLERANCE
        )


ACTIVATIONS_CONFIG = """
seed: 3
dtype: {dtype}
data: {{path: {data}, target: {target}, task: {task}, validation: 0, test: 0}}
model:
  layers:
    - {{units: 7, activation: {{name: elu, alpha: 0.5}}}}
    - {{units: 6, activation: {{name: logistic, L: 2.0, k: 0.7, x0: 0.3}}}}
    - {{units: 5, activation: tanh}}
    - {{units: 5, activation: relu}}
    - {{units: 4, activation: softmax}}
    - {{units: {units}, activation: {output}}}
cost: {cost}
training: {{epochs: 3, batch_size: 8, learning_rate: 0.05}}
"""


@pytest.mark.parametrize(
    ("task", "output", "cost", "dtype"),
    [
        ("regression", "identity", "quadratic", "float64"),
        ("multilabel", "logistic", "bce", "float32"),
        ("classification", "logistic", "bce", "float32"),  # one unit: probabilities [1 - p, p]
        ("classification", "softmax", "cce", "float64"),
    ],
)
def test_every_activation_and_output_layout(
    tmp_path: Path, task: str, output: str, cost: str, dtype: str
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)).round(4)
    if task == "regression":
        target, units, y = ["u", "v"], 2, x[:, :2] * 3 + 1
    elif task == "multilabel":
        target, units, y = ["p", "q"], 2, (x[:, :2] > 0).astype(int)
    else:
        target, units = "kind", 1 if cost == "bce" else 3
        y = np.array([["low", "mid", "high"][i % (2 if units == 1 else 3)] for i in range(80)])[:, None]
    names = [target] if isinstance(target, str) else target
    data = write_csv(
        tmp_path / "data.csv",
        ["x1", "x2", "x3", *names],
        [[*a, *b] for a, b in zip(x.tolist(), y.tolist(), strict=True)],
    )
    config = tmp_path / "net.yaml"
    config.write_text(
        ACTIVATIONS_CONFIG.format(
            dtype=dtype,
            data=data.name,
            target=json.dumps(target),
            task=task,
            units=units,
            output=output,
            cost=cost,
        )
    )
    checkpoint = train(config, tmp_path / "run") / "best.npz"
    sess = session(export(checkpoint, tmp_path / "net.onnx"))
    expected = expected_from_predict(*predict_csv(checkpoint, data), task)
    got = run(sess, [{"x1": a, "x2": b, "x3": c} for a, b, c in x.tolist()])
    assert set(got) == set(expected)
    assert_matches(got, expected)
    if task == "classification" and units == 1:
        np.testing.assert_allclose(got["probabilities"].sum(axis=1), 1.0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Refusals


def test_missing_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    outcome = invoke("export", tmp_path / "nope.npz", "-o", tmp_path / "m.onnx")
    assert outcome.code == 2
    assert "nope.npz: no such checkpoint" in outcome.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_column_named_like_an_output_cannot_be_exported(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", ["label", "x", "y"], [[i % 3, i / 7, i % 2] for i in range(30)])
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{path: {data.name}, target: y, validation: 0, test: 0}}\n"
        "model: {layers: [{units: 2, activation: softmax}]}\ncost: cce\n"
        "training: {epochs: 1, learning_rate: 0.1}\n"
    )
    checkpoint = train(config, tmp_path / "run") / "best.npz"
    outcome = invoke("export", checkpoint, "-o", tmp_path / "m.onnx")
    assert outcome.code == 2
    assert "cannot export: the input column 'label' has the name of an output" in outcome.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_unwritable_output_is_one_clear_error(tmp_path: Path) -> None:
    run_dir = train(CONFIGS / "iris.yaml", tmp_path / "run", "training.epochs=1")
    (tmp_path / "file").write_text("x")
    outcome = invoke("export", run_dir / "best.npz", "-o", tmp_path / "file" / "m.onnx")
    assert outcome.code == 2
    assert "cannot write" in outcome.stderr


# Cells as people write them: padded with any whitespace str.strip() removes, numbers in other
# spellings, unknown categories, missing-value spellings, refused cells. Per cell: (column, text).
MESSY_CELLS = [
    ("island", " Dream "),
    ("island", "\tBiscoe\u00a0"),
    ("island", "\u3000Rare\n"),  # infrequent -> <other>
    ("island", "dream"),  # another category (unknown: ignore -> zeros)
    ("island", "Dr eam"),
    ("island", " NA "),  # missing -> <missing>
    ("island", "\u2003"),  # only whitespace: the empty spelling, missing
    ("island", "Dream\u200b"),  # a zero-width space is not whitespace: unknown
    ("sex", "  female\r\n"),
    ("sex", " ? "),  # missing -> most frequent (male)
    ("sex", "Female"),  # unknown: error -> refused (NaN row)
    ("ring", " 2.0 "),
    ("ring", "02"),
    ("ring", "+2"),
    ("ring", "2."),
    ("ring", "0.2e1"),
    ("ring", "20E-1"),
    ("ring", "1.000000000000000000001"),  # rounds to 1.0, as float() does
    ("ring", "\u00a01\u00a0"),
    ("ring", "3"),  # unknown -> zeros
    ("ring", "1e999"),  # not finite: a text category, unknown
    ("ring", "N/A"),  # missing -> fill 1
]
BASE_CELLS = {"length": 1.0, "island": "Dream", "depth": 0.5, "sex": "male", "ring": "1"}
NUMERIC_CELLS = [
    ("length", float("nan")),
    ("length", float("inf")),
    ("depth", float("nan")),
    ("depth", -0.25),
]


def expected_by_nnctl(checkpoint: Path, record: dict[str, Any]) -> np.ndarray:
    """nnctl's own encoding of one raw record (``nnctl.data.columns``, as ``predict`` uses it) through
    the network; NaN where nnctl refuses the record."""
    from nnctl.checkpoint import load_checkpoint
    from nnctl.errors import DataError

    pre = load_checkpoint(checkpoint).preprocessing
    raw = {name: [None if isinstance(v, float) and np.isnan(v) else v] for name, v in record.items()}
    try:
        encoded = pre.encode(raw, source="test")
    except DataError:
        return np.full(3, np.nan)
    return reference_outputs(checkpoint, encoded.tolist())[0]


def test_graph_encodes_raw_cells_exactly_as_nnctl(tmp_path: Path) -> None:
    """Every messy cell, alone and all in one batch, gives nnctl's own encoding's outputs; a record
    nnctl refuses (an unknown category under unknown: error, an infinite or unfillable number) gives
    a NaN row, since a graph cannot raise."""
    checkpoint = tabular_checkpoint(tmp_path)
    sess = session(export(checkpoint, tmp_path / "tabular.onnx"))
    records = [{**BASE_CELLS, name: cell} for name, cell in [*MESSY_CELLS, *NUMERIC_CELLS]]
    want = np.array([expected_by_nnctl(checkpoint, r) for r in records])
    assert np.isnan(want).any(axis=1).sum() == 3  # "Female", inf, depth NaN (no fill)
    got = run(sess, records)["probabilities"]
    np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE)
    for record, row in zip(records, want, strict=True):
        np.testing.assert_allclose(
            run(sess, [record])["probabilities"][0], row, rtol=TOLERANCE, atol=TOLERANCE
        )


def test_whitespace_class_is_what_str_strip_removes() -> None:
    from nnctl.export.onnx import WHITESPACE_CHARS

    assert set(WHITESPACE_CHARS) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
