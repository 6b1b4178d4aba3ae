"""nnctl.data: loading (CSV, .npz, builtins), target encoding, splitting and normalization."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import UNPICKLED, PicklePayload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnctl.data.builtins import BUILTINS
from nnctl.data.load import load_table
from nnctl.data.splits import split_indices
from nnctl.data.table import Table
from nnctl.data.targets import TASKS, TargetEncoder, describe_targets, infer_task
from nnctl.errors import DataError

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
IRIS_HEADER = "sepal_length,sepal_width,petal_length,petal_width,species"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def data_error(spec: str | Path, **kwargs: object) -> DataError:
    with pytest.raises(DataError) as info:
        load_table(spec, **kwargs)  # type: ignore[arg-type]
    return info.value


# ---------------------------------------------------------------------------------------------
# Shipped datasets


def test_iris_round_trip() -> None:
    table = load_table(DATASETS / "iris.csv")
    assert table.x.shape == (150, 4) and table.x.dtype == np.float64 and table.x.flags.c_contiguous
    assert table.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert table.target_names == ["species"]
    assert table.y is not None and table.y.shape == (150, 1) and table.y.dtype.kind == "U"
    np.testing.assert_array_equal(table.x[0], [5.1, 3.5, 1.4, 0.2])
    assert table.source == str(DATASETS / "iris.csv")
    encoder = TargetEncoder.fit(table.y, "classification", 3)
    assert encoder.classes == ["setosa", "versicolor", "virginica"]
    onehot = encoder.encode(table.y)
    assert onehot.shape == (150, 3) and onehot.sum(axis=0).tolist() == [50, 50, 50]
    np.testing.assert_array_equal(encoder.decode(onehot), table.y[:, 0])


def test_digits_round_trip() -> None:
    table = load_table(DATASETS / "digits.csv")
    assert table.x.shape == (1797, 64) and table.target_names == ["digit"]
    assert table.y is not None and table.y.dtype == np.float64
    assert table.x.min() == 0 and table.x.max() == 16
    encoder = TargetEncoder.fit(table.y, "classification", 10)
    assert encoder.classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(encoder.class_indices(table.y), table.y[:, 0].astype(int))


@pytest.mark.parametrize(
    ("name", "rows", "features", "target", "kind"),
    [
        ("iris", 150, 4, "species", "U"),
        ("wine", 178, 13, "cultivar", "f"),
        ("breast_cancer", 569, 30, "diagnosis", "U"),
        ("digits", 1797, 64, "digit", "f"),
        ("diabetes", 442, 10, "progression", "f"),
    ],
)
def test_shipped_datasets_load(name: str, rows: int, features: int, target: str, kind: str) -> None:
    table = load_table(DATASETS / f"{name}.csv")
    assert table.x.shape == (rows, features)
    assert table.target_names == [target]
    assert table.y is not None and table.y.dtype.kind == kind
    assert np.isfinite(table.x).all()


def test_relative_path_resolved_against_base_dir() -> None:
    table = load_table("iris.csv", base_dir=DATASETS)
    assert table.x.shape == (150, 4)


def test_csv_with_20000_rows_and_100_columns_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20_000, 100)).round(4)
    header = ",".join([f"f{i}" for i in range(99)] + ["t"])
    np.savetxt(tmp_path / "big.csv", x, fmt="%g", delimiter=",", header=header, comments="")
    table = load_table(tmp_path / "big.csv")
    assert table.x.shape == (20_000, 99) and table.y is not None and table.y.shape == (20_000, 1)
    np.testing.assert_allclose(table.x, x[:, :99])
    np.testing.assert_allclose(table.y[:, 0], x[:, 99])


# ---------------------------------------------------------------------------------------------
# CSV: columns, formats


def test_target_by_name_and_several_targets(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b,c,d\n1,2,3,4\n5,6,7,8\n")
    table = load_table(path, "b")
    assert table.feature_names == ["a", "c", "d"] and table.target_names == ["b"]
    np.testing.assert_array_equal(table.x, [[1, 3, 4], [5, 7, 8]])
    table = load_table(path, ["d", "a"])
    assert table.feature_names == ["b", "c"] and table.target_names == ["d", "a"]
    np.testing.assert_array_equal(table.y, [[4, 1], [8, 5]])


def test_feature_names_select_and_reorder_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "id,b,a,extra,y\n1,2,3,4,cat\n5,6,7,8,dog\n")
    table = load_table(path, "y", feature_names=["a", "b"])
    assert table.feature_names == ["a", "b"]
    np.testing.assert_array_equal(table.x, [[3, 2], [7, 6]])
    assert table.y is not None and table.y[:, 0].tolist() == ["cat", "dog"]


def test_feature_names_without_target_column(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "b,a\n1,2\n3,4\n")
    table = load_table(path, "y", feature_names=["a", "b"], require_target=False)
    assert table.y is None and table.target_names == []
    np.testing.assert_array_equal(table.x, [[2, 1], [4, 3]])
    err = data_error(path, target="y", feature_names=["a", "b"])
    assert "no target column 'y'" in err.message and str(path) in err.message


def test_missing_feature_column_named(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "a,petal_widht,y\n1,2,3\n")
    err = data_error(path, target="y", feature_names=["a", "petal_width"])
    assert str(path) in err.message and "'petal_width'" in err.message
    assert err.hint == "did you mean 'petal_widht'?"


def test_bom_crlf_and_blank_lines_tolerated(tmp_path: Path) -> None:
    text = "\ufeffa,b,y\r\n1,2,x\r\n\r\n3,4,z\r\n\r\n\r\n"
    table = load_table(write(tmp_path / "d.csv", text.encode("utf-8")))
    assert table.feature_names == ["a", "b"]
    np.testing.assert_array_equal(table.x, [[1, 2], [3, 4]])
    assert table.y is not None and table.y[:, 0].tolist() == ["x", "z"]


def test_quoted_csv_matches_unquoted(tmp_path: Path) -> None:
    plain = load_table(write(tmp_path / "a.csv", "a,b,label\n1,2.5,x y\n3,4,z\n"))
    quoted = load_table(write(tmp_path / "b.csv", '"a","b","label"\n"1","2.5","x y"\n3,"4","z"\n'))
    np.testing.assert_array_equal(plain.x, quoted.x)
    np.testing.assert_array_equal(plain.y, quoted.y)
    assert quoted.feature_names == ["a", "b"]


def test_target_cells_stripped_and_numeric_targets_float(tmp_path: Path) -> None:
    table = load_table(write(tmp_path / "d.csv", "a,y\n1, cat \n2,dog\n"))
    assert table.y is not None and table.y[:, 0].tolist() == ["cat", "dog"]
    table = load_table(write(tmp_path / "n.csv", "a,y\n1, 2.5\n2,3\n"))
    assert table.y is not None and table.y.dtype == np.float64 and table.y[:, 0].tolist() == [2.5, 3.0]


# ---------------------------------------------------------------------------------------------
# CSV: errors name the file, line, column and column name


def test_missing_file_and_directory(tmp_path: Path) -> None:
    err = data_error("nope.csv", base_dir=tmp_path)
    assert str(tmp_path / "nope.csv") in err.message and "no such file" in err.message
    assert err.hint is not None and str(tmp_path) in err.hint
    err = data_error(tmp_path)
    assert "directory" in err.message and str(tmp_path) in err.message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "d.csv", "a,y\n1,2\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    err = data_error(path)
    assert str(path) in err.message and "cannot read" in err.message and "Permission denied" in err.message


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "e.csv", text)
    assert data_error(path).message == f"{path}: the file is empty"


def test_header_only(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", IRIS_HEADER + "\n\n")
    assert data_error(path).message == f"{path}: only a header row, no data rows"


def test_duplicate_and_empty_column_names(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b,a\n1,2,3\n")
    assert data_error(path).message == f"{path}:1: duplicate column name 'a' (columns 1 and 3)"
    path = write(tmp_path / "e.csv", "a,,y\n1,2,3\n")
    assert data_error(path).message == f"{path}:1: column 2 has no name"


def test_ragged_row(tmp_path: Path) -> None:
    rows = ["5.1,3.5,1.4,0.2,setosa"] * 5 + ["5.1,3.5,setosa"]
    path = write(tmp_path / "file.csv", "\n".join([IRIS_HEADER, *rows]) + "\n")
    assert data_error(path).message == f"{path}:7: 3 cells, the header has 5"
    # Same answer on the quoted (slow) path.
    path = write(tmp_path / "q.csv", "\n".join([IRIS_HEADER, *rows[:5], '5.1,3.5,"setosa"']))
    assert data_error(path).message == f"{path}:7: 3 cells, the header has 5"


def test_consistent_width_different_from_header(tmp_path: Path) -> None:
    path = write(tmp_path / "w.csv", "a,b,y\n1,2,3,4\n5,6,7,8\n")
    assert data_error(path).message == f"{path}:2: 4 cells, the header has 3"


@pytest.mark.parametrize(
    ("cell", "what"),
    [("abc", "'abc' is not a number"), ("", "'' is not a number"), ("1_000", "'1_000' is not a number")],
)
def test_non_numeric_feature_cell(tmp_path: Path, cell: str, what: str) -> None:
    rows = ["5.1,3.5,1.4,0.2,setosa"] * 10 + [f"5.1,3.5,1.4,{cell},setosa"]
    path = write(tmp_path / "file.csv", "\n".join([IRIS_HEADER, *rows]) + "\n")
    err = data_error(path)
    assert err.message == f"{path}:12:4 (column 'petal_width'): {what}"


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_non_finite_feature_cell(tmp_path: Path, cell: str) -> None:
    path = write(tmp_path / "f.csv", f"a,b,y\n1,2,x\n\n3,{cell},y\n")
    err = data_error(path)
    assert err.message == f"{path}:4:2 (column 'b'): '{cell}' is not a finite number"
    assert err.hint is not None and "impute" in err.hint


def test_bad_cell_located_on_quoted_path(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", 'a,b,y\n"1",2,x\n3,"abc",y\n')
    assert data_error(path).message == f"{path}:3:2 (column 'b'): 'abc' is not a number"


def test_missing_target_column_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path / "file.csv", IRIS_HEADER + "\n1,2,3,4,setosa\n")
    err = data_error(path, target="specis")
    assert err.message == (
        f"{path}: no target column 'specis'; columns: sepal_length, sepal_width, petal_length, "
        "petal_width, species"
    )
    assert err.hint == "did you mean 'species'?"
    err = data_error(path, target=["species", "zzz"])
    assert "'zzz'" in err.message and err.hint == "set the target to one of the columns"


def test_empty_target_cell(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,b,species\n1,2,setosa\n3,4,\n")
    err = data_error(path)
    assert err.message == f"{path}:3:3 (column 'species'): empty target cell"
    path = write(tmp_path / "t2.csv", "a,b,species\n1,2,setosa\n3,4,  \n")
    assert data_error(path).message == f"{path}:3:3 (column 'species'): empty target cell"


def test_non_finite_numeric_target(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,y\n1,2\n3,nan\n")
    assert data_error(path).message == f"{path}:3:2 (column 'y'): target 'nan' is not a finite number"


def test_not_utf8_and_nul_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", b"a,y\n1,2\n3,caf\xe9\n")
    assert data_error(path).message.startswith(f"{path}:3: not UTF-8 text")
    path = write(tmp_path / "z.csv", b"a,y\n1,2\x00\n")
    assert data_error(path).message.startswith(f"{path}:2: contains a NUL byte")


def test_target_list_must_be_non_empty_and_unique(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b,y\n1,2,3\n")
    assert "empty" in data_error(path, target=[]).message
    assert "repeat" in data_error(path, target=["y", "y"]).message
    assert "no feature columns" in data_error(path, target=["a", "b", "y"]).message


# ---------------------------------------------------------------------------------------------
# .npz


def test_npz_loads_with_generated_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.arange(12).reshape(4, 3), y=np.array([0, 1, 1, 0]))
    table = load_table(tmp_path / "d.npz", target="ignored")
    assert table.x.dtype == np.float64 and table.x.shape == (4, 3)
    assert table.feature_names == ["x0", "x1", "x2"] and table.target_names == ["y"]
    assert table.y is not None and table.y.shape == (4, 1) and table.y.dtype == np.float64
    np.savez(tmp_path / "m.npz", x=np.ones((4, 2)), y=np.zeros((4, 3)))
    assert load_table(tmp_path / "m.npz").target_names == ["y0", "y1", "y2"]
    np.savez(tmp_path / "s.npz", x=np.ones((2, 2)), y=np.array(["cat", "dog"]))
    table = load_table(tmp_path / "s.npz")
    assert table.y is not None and table.y[:, 0].tolist() == ["cat", "dog"]


def test_npz_feature_count_checked_against_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((3, 5)))
    err = data_error(path, feature_names=["a", "b", "c", "d"], require_target=False)
    assert err.message == f"{path}: x has 5 features, the checkpoint expects 4"
    table = load_table(path, feature_names=list("abcde"), require_target=False)
    assert table.y is None and table.feature_names == list("abcde")


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"y": np.zeros(3)}, "no array 'x' (arrays: y)"),
        ({"x": np.ones((3, 2))}, "no array 'y' (the targets)"),
        ({"x": np.ones(3), "y": np.zeros(3)}, "x has shape (3,); expected (rows, features)"),
        ({"x": np.ones((3, 2)), "y": np.zeros((3, 1, 1))}, "y has shape (3, 1, 1)"),
        ({"x": np.ones((3, 2)), "y": np.zeros(4)}, "x has 3 rows but y has 4"),
        ({"x": np.array([["a", "b"]]), "y": np.zeros(1)}, "x has dtype <U1; features must be numbers"),
        ({"x": np.array([[1.0, np.nan]]), "y": np.zeros(1)}, "x[0, 1]: 'nan' is not a finite number"),
        ({"x": np.ones((2, 2)), "y": np.array([1.0, np.inf])}, "y[1]: target 'inf' is not a finite number"),
        ({"x": np.ones((0, 2)), "y": np.zeros(0)}, "x has shape (0, 2)"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict[str, np.ndarray], expected: str) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    err = data_error(path)
    assert err.message.startswith(f"{path}: ") and expected in err.message


def test_npz_pickle_payload_refused(tmp_path: Path) -> None:
    UNPICKLED.clear()
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.ones((2, 2)), y=np.array([PicklePayload(), None], dtype=object))  # pickled on save
    err = data_error(path)
    assert str(path) in err.message and "pickled" in err.message
    assert UNPICKLED == []
    with np.load(path, allow_pickle=True) as archive:  # the payload is live: loading it would run it
        archive["y"]
    assert UNPICKLED == ["ran"]
    UNPICKLED.clear()


@pytest.mark.parametrize(
    "payload",
    [b"", b"not a zip at all", b"PK\x03\x04garbage", b"\x93NUMPY\x01\x00garbage"],
)
def test_npz_corrupt(tmp_path: Path, payload: bytes) -> None:
    path = write(tmp_path / "bad.npz", payload)
    assert data_error(path).message.startswith(f"{path}: ")


def test_npz_truncated_and_single_npy(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.ones((50, 4)), y=np.zeros(50))
    path = write(tmp_path / "t.npz", buffer.getvalue()[:-40])
    assert "not a readable .npz archive" in data_error(path).message
    npy = io.BytesIO()
    np.save(npy, np.ones((3, 2)))
    path = write(tmp_path / "one.npz", npy.getvalue())
    assert "not an .npz archive" in data_error(path).message
    assert ".npy file" in data_error(write(tmp_path / "one.npy", npy.getvalue())).message


# ---------------------------------------------------------------------------------------------
# Builtins


def test_builtin_xor() -> None:
    table = load_table("builtin:xor")
    assert table.source == "builtin:xor" and table.feature_names == ["x1", "x2"]
    assert table.target_names == ["y"]
    np.testing.assert_array_equal(table.x, [[0, 0], [0, 1], [1, 0], [1, 1]])
    assert table.y is not None and table.y[:, 0].tolist() == [0, 1, 1, 0]


def test_builtin_spirals_deterministic() -> None:
    a, b = load_table("builtin:spirals"), load_table("builtin:spirals")
    assert a.x.shape == (300, 2) and a.target_names == ["class"]
    np.testing.assert_array_equal(a.x, b.x)
    assert a.y is not None and np.bincount(a.y[:, 0].astype(int)).tolist() == [100, 100, 100]
    assert np.abs(a.x).max() <= 1.0 + 1e-12
    assert BUILTINS["builtin:spirals"]().x.tobytes() == a.x.tobytes()


def test_builtin_with_checkpoint_feature_names_and_unknown() -> None:
    table = load_table("builtin:xor", feature_names=["x2", "x1"])
    np.testing.assert_array_equal(table.x[:, 0], [0, 1, 0, 1])
    err = data_error("builtin:xr")
    assert "builtin:xor" in err.message and "builtin:spirals" in err.message
    assert err.hint == "did you mean 'builtin:xor'?"
    assert "no target column 'label'" in data_error("builtin:xor", target="label").message


# ---------------------------------------------------------------------------------------------
# infer_task


@pytest.mark.parametrize(
    ("cost", "activation", "units", "y", "task"),
    [
        ("cce", "softmax", 3, np.array([["a"]]), "classification"),
        ("bce", "logistic", 1, np.zeros((2, 1)), "classification"),
        ("bce", "logistic", 4, np.zeros((2, 4)), "multilabel"),
        ("quadratic", "identity", 1, np.zeros((2, 1)), "regression"),
        ("quadratic", "softmax", 3, np.zeros((2, 1)), "classification"),
        ("quadratic", "logistic", 3, np.array([["a"]]), "classification"),
    ],
)
def test_infer_task_auto(cost: str, activation: str, units: int, y: np.ndarray, task: str) -> None:
    assert infer_task("auto", cost, activation, units, y) == task


def test_infer_task_explicit_and_invalid() -> None:
    for task in TASKS:
        assert infer_task(task, "cce", "softmax", 3, np.zeros((1, 1))) == task
    with pytest.raises(ValueError, match="unknown task"):
        infer_task("clustering", "cce", "softmax", 3, np.zeros((1, 1)))


# ---------------------------------------------------------------------------------------------
# TargetEncoder


def test_classes_sort_numerically_and_display_as_integers() -> None:
    y = np.array([[10.0], [2.0], [1.0], [2.0]])
    encoder = TargetEncoder.fit(y, "classification", 3)
    assert encoder.classes == ["1", "2", "10"]
    np.testing.assert_array_equal(encoder.class_indices(y), [2, 1, 0, 1])
    # The same labels read as text (another file, a checkpoint) map to the same classes.
    np.testing.assert_array_equal(encoder.class_indices(np.array([["10"], ["2.0"], ["01"]])), [2, 1, 0])


def test_text_classes_sort_as_text() -> None:
    encoder = TargetEncoder.fit(np.array([["b"], ["10"], ["a"], ["2"]]), "classification", 4)
    assert encoder.classes == ["10", "2", "a", "b"]


def test_binary_single_unit_positive_is_second_class() -> None:
    table = load_table(DATASETS / "breast_cancer.csv")
    assert table.y is not None
    encoder = TargetEncoder.fit(table.y, "classification", 1)
    assert encoder.classes == ["benign", "malignant"]
    t = encoder.encode(table.y)
    assert t.shape == (569, 1)
    np.testing.assert_array_equal(t[:, 0], table.y[:, 0] == "malignant")
    decoded = encoder.decode(np.array([[0.2], [0.5], [0.9]]))
    assert decoded.tolist() == ["benign", "malignant", "malignant"]
    assert describe_targets(encoder).startswith("classification, 2 classes: benign, malignant")
    two = TargetEncoder.fit(table.y, "classification", 2)
    assert two.encode(np.array([["malignant"]])).tolist() == [[0.0, 1.0]]


def test_output_units_must_match_classes() -> None:
    y = np.array([["setosa"], ["versicolor"]])
    with pytest.raises(DataError) as info:
        TargetEncoder.fit(y, "classification", 3, target_names=["species"])
    assert info.value.message == (
        "the output layer has 3 units but the target 'species' has 2 classes (setosa, versicolor); "
        "set the last layer's units to 2"
    )
    y3 = np.array([["a"], ["b"], ["c"]])
    with pytest.raises(DataError, match=r"has 3 classes .*set the last layer's units to 3"):
        TargetEncoder.fit(y3, "classification", 1)


def test_classification_needs_two_classes_and_one_column() -> None:
    with pytest.raises(DataError, match=r"1 class .*at least 2"):
        TargetEncoder.fit(np.array([["a"], ["a"]]), "classification", 2)
    with pytest.raises(DataError, match="exactly one target column"):
        TargetEncoder.fit(np.zeros((3, 2)), "classification", 2)


def test_unseen_label_names_label_row_and_classes() -> None:
    encoder = TargetEncoder.fit(np.array([["setosa"], ["virginica"]]), "classification", 2)
    with pytest.raises(DataError) as info:
        encoder.encode(np.array([["setosa"], ["virginca"], ["x"]]), source="test.csv")
    assert info.value.message == (
        "test.csv: data row 2: label 'virginca' was not seen in training; known classes: setosa, virginica"
    )


def test_multilabel_encoding() -> None:
    y = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    encoder = TargetEncoder.fit(y, "multilabel", 3)
    assert encoder.classes is None
    np.testing.assert_array_equal(encoder.encode(y), y)
    decoded = encoder.decode(np.array([[0.1, 0.5, 0.7]]))
    assert decoded.dtype.kind == "i" and decoded.tolist() == [[0, 1, 1]]
    assert describe_targets(encoder) == "multilabel, 3 labels"
    with pytest.raises(DataError, match=r"data row 2, target column 1: 2 is not 0 or 1"):
        TargetEncoder.fit(np.array([[0.0, 1.0], [2.0, 0.0]]), "multilabel", 2)
    with pytest.raises(DataError, match="3 units but there are 2 target columns"):
        TargetEncoder.fit(np.zeros((2, 2)), "multilabel", 3)


def test_regression_encoding() -> None:
    y = np.array([[1.5, -2.0], [3.0, 4.0]])
    encoder = TargetEncoder.fit(y, "regression", 2, target_names=["a", "b"])
    np.testing.assert_array_equal(encoder.encode(y), y)
    np.testing.assert_array_equal(encoder.decode(y), y)
    assert describe_targets(encoder) == "regression, 2 outputs"
    with pytest.raises(DataError, match="'setosa' is not a number"):
        TargetEncoder.fit(np.array([["setosa"], ["x"]]), "regression", 1)
    with pytest.raises(DataError, match=r"1 units but there are 2 target columns \(a, b\)"):
        TargetEncoder.fit(y, "regression", 1, target_names=["a", "b"])


def test_encode_checks_target_width() -> None:
    encoder = TargetEncoder.fit(np.zeros((2, 2)), "regression", 2)
    with pytest.raises(DataError, match="3 target columns, the model expects 2"):
        encoder.encode(np.zeros((2, 3)), source="eval.csv")


def test_describe_targets_classification() -> None:
    table = load_table(DATASETS / "iris.csv")
    assert table.y is not None
    encoder = TargetEncoder.fit(table.y, "classification", 3)
    assert describe_targets(encoder) == "classification, 3 classes: setosa, versicolor, virginica"


# ---------------------------------------------------------------------------------------------
# split_indices


def test_split_is_a_seeded_partition() -> None:
    train, val, test = split_indices(100, 0.2, 0.1, np.random.default_rng(0))
    assert (len(train), len(val), len(test)) == (70, 20, 10)
    joined = np.concatenate([train, val, test])
    assert sorted(joined.tolist()) == list(range(100))
    for part in (train, val, test):
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    again = split_indices(100, 0.2, 0.1, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    other = split_indices(100, 0.2, 0.1, np.random.default_rng(1))
    assert not np.array_equal(train, other[0])


def test_stratified_split_keeps_class_proportions() -> None:
    strata = np.repeat([0, 1, 2], [50, 50, 50])
    train, val, test = split_indices(150, 0.2, 0.2, np.random.default_rng(3), strata)
    for part, per_class in ((train, 30), (val, 10), (test, 10)):
        assert np.bincount(strata[part], minlength=3).tolist() == [per_class] * 3
    imbalanced = np.repeat([0, 1], [90, 10])
    train, val, test = split_indices(100, 0.0, 0.2, np.random.default_rng(0), imbalanced)
    assert np.bincount(imbalanced[test]).tolist() == [18, 2] and len(val) == 0
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))


def test_stratified_split_keeps_a_training_row_per_class() -> None:
    strata = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    train, val, test = split_indices(8, 0.3, 0.3, np.random.default_rng(0), strata)
    assert set(strata[train].tolist()) == {0, 1}
    assert len(val) >= 1 and len(test) >= 1


def test_non_zero_fraction_gets_at_least_one_row() -> None:
    train, val, test = split_indices(10, 0.01, 0.01, np.random.default_rng(0))
    assert (len(train), len(val), len(test)) == (8, 1, 1)
    train, val, test = split_indices(10, 0.0, 0.01, np.random.default_rng(0), np.repeat([0, 1], 5))
    assert (len(train), len(val), len(test)) == (9, 0, 1)


def test_split_fraction_errors() -> None:
    with pytest.raises(ValueError):
        split_indices(10, 0.5, 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError):
        split_indices(10, -0.1, 0.2, np.random.default_rng(0))
    with pytest.raises(DataError, match="too small") as info:
        split_indices(1, 0.0, 0.6, np.random.default_rng(0))
    assert info.value.hint is not None


# ---------------------------------------------------------------------------------------------
# Property: whatever the bytes, a Table or a DataError, never another exception


def _load_bytes(payload: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(payload)
        try:
            table = load_table(path)
        except DataError:
            return
        assert isinstance(table, Table)
        assert table.x.ndim == 2 and np.isfinite(table.x).all()
        assert table.y is not None and len(table.y) == len(table.x)


def _valid_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.arange(12.0).reshape(4, 3), y=np.array(["a", "b", "a", "b"]))
    return buffer.getvalue()


VALID_NPZ = _valid_npz()
EDITS = st.lists(st.tuples(st.integers(0, len(VALID_NPZ) - 1), st.integers(0, 255)), max_size=4)
PROPERTY = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.binary(max_size=400), st.sampled_from([".csv", ".npz"]))
def test_random_bytes_load_or_data_error(payload: bytes, suffix: str) -> None:
    _load_bytes(payload, suffix)


@PROPERTY
@given(st.text(alphabet=st.sampled_from(list('ab01.,-e\n\r "\ufeffnai_\t')), max_size=120))
def test_csv_like_text_loads_or_data_error(text: str) -> None:
    _load_bytes(text.encode("utf-8"), ".csv")


@PROPERTY
@given(EDITS, st.booleans())
def test_mutated_npz_loads_or_data_error(edits: list[tuple[int, int]], truncate: bool) -> None:
    payload = bytearray(VALID_NPZ)
    for position, value in edits:
        payload[position] = value
    if truncate and edits:
        payload = payload[: edits[0][0]]
    _load_bytes(bytes(payload), ".npz")


def test_valid_npz_fixture_loads() -> None:
    with zipfile.ZipFile(io.BytesIO(VALID_NPZ)) as archive:
        assert sorted(archive.namelist()) == ["x.npy", "y.npy"]
    _load_bytes(VALID_NPZ, ".npz")
