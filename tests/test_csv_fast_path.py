"""The fast CSV paths (pyarrow) read exactly what the per-line readers read, bit for bit, and hand
every file they cannot read exactly to those readers, so that a bad cell is still named by file,
line and column. Files are big enough where it matters to cross pyarrow's 1 MB blocks and to
take the multithreaded conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnctl.data.csv import _load_csv_fast, _load_csv_slowly, load_csv, read_rows_slowly
from nnctl.data.load import load_table
from nnctl.data.raw import _table_from_rows, arrow_columns, read_csv, read_csv_arrow
from nnctl.data.table import Table
from nnctl.errors import DataError

TOKENS = ("", "NA")


def same_table(fast: Table, slow: Table) -> None:
    """Bit-identical features (the sign of zero included), equal targets and names."""
    assert fast.x.flags.c_contiguous and fast.x.dtype == np.float64
    assert fast.x.shape == slow.x.shape and fast.x.tobytes() == slow.x.tobytes()
    assert fast.feature_names == slow.feature_names and fast.target_names == slow.target_names
    if slow.y is None:
        assert fast.y is None
    else:
        assert fast.y is not None and fast.y.dtype.kind == slow.y.dtype.kind  # U3 or U5: the same text
        np.testing.assert_array_equal(fast.y, slow.y)
        assert fast.y.dtype.kind != "f" or fast.y.tobytes() == slow.y.tobytes()


def both(data: bytes, targets: list[str] | None = None, features: list[str] | None = None) -> Table:
    fast = _load_csv_fast("t.csv", data, targets, features, True)
    assert fast is not None, "the fast path refused a file it should read"
    same_table(fast, _load_csv_slowly("t.csv", data, targets, features, True))
    return fast


@pytest.mark.parametrize(
    "cell",
    ["-0", "0", "+2", " 3 ", "1e3", "1E-3", ".5", "5.", " +.5e-3 ", "00012", "9007199254740993",
     "123456789012345678901234", "0.1000000000000000055511151231257827", "-1.7976931348623157e308"],
)  # fmt: skip
def test_feature_cells_parse_as_float_parses_them(cell: str) -> None:
    # An integer column read as int64 would lose the sign of -0 and round 2**53 + 1 twice.
    table = both(f"a,b,y\n1,{cell},0\n{cell},2,1\n".encode())
    assert np.signbit(table.x[1, 0]) == cell.strip().startswith("-")


@pytest.mark.parametrize(
    ("cell", "what"),
    [("1_0", "is not a number"), ("0x10", "is not a number"), ("", "is not a number"),
     ("\u0661", "is not a number"), ("1d3", "is not a number"), ("inf", "is not a finite number"),
     ("nan", "is not a finite number"), ("1e400", "is not a finite number")],
)  # fmt: skip
def test_a_bad_cell_deep_in_a_big_file_is_named_by_line_and_column(
    tmp_path: Path, cell: str, what: str
) -> None:
    rows = [f"{i}.25,{i % 7}.5,{i % 3}" for i in range(60_000)]  # about 1 MB: several blocks
    rows[45_000] = f"1.25,{cell},2"
    path = tmp_path / "big.csv"
    path.write_text("a,b,y\n" + "\n".join(rows) + "\n")
    data = path.read_bytes()
    assert _load_csv_fast(str(path), data, None, None, True) is None
    with pytest.raises(DataError) as info:
        load_table(path)
    assert info.value.message.startswith(f"{path}:45002:2 (column 'b'): ") and what in info.value.message


def test_many_blocks_threads_index_column_and_reordered_features(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n, f = 30_000, 40  # 1.2 million cells: the threaded fill; about 6 MB: several pyarrow blocks
    x = np.column_stack([rng.normal(size=n).round(j % 9) * 10.0 ** (j % 7 - 3) for j in range(f)])
    labels = np.array(["cat", "dog", "bird"])[rng.integers(0, 3, n)]
    names = [f"f{j}" for j in range(f)]
    lines = [",".join(["", *names, "note", "label"])]
    lines += [",".join([str(i), *map(repr, x[i].tolist()), f'"a, b {i % 5}"', labels[i]]) for i in range(n)]
    data = ("\n".join(lines) + "\n").encode()
    header, arrow = read_csv_arrow(data, ",", ())  # type: ignore[misc]
    assert arrow.column(1).num_chunks > 2 and header[0] == ""
    table = both(data, ["label"], names[::-1])  # a checkpoint's order, not the file's; "note" unused
    assert table.x.tobytes() == np.ascontiguousarray(x[:, ::-1]).tobytes()
    assert table.y is not None and table.y[:, 0].tolist() == labels.tolist()
    table = both(data, ["note", "label"])  # the default features: every other column but the index
    assert table.feature_names == names and table.x.tobytes() == x.tobytes()
    assert table.y is not None and table.y[7].tolist() == ["a, b 2", labels[7]]


def test_targets_read_as_the_slow_path_reads_them() -> None:
    table = both(b"a,t,u\n1,2.5,-0\n2,3,7\n", ["t", "u"])
    assert table.y is not None and np.signbit(table.y[0, 1])  # "-0" is float("-0"), not int 0
    both(b"a,t\n1, cat \n2,dog\n", ["t"])
    both(b"a,t\n1,1_0\n2,3\n", ["t"])  # float() reads 1_0; nnctl never did: text, like the slow path
    mixed = b"a,t,u\n1,2,x\n2,3,y\n"  # a number column and a text column: both text
    same_table(
        load_csv("t.csv", mixed, ["t", "u"], None, True),
        _load_csv_slowly("t.csv", mixed, ["t", "u"], None, True),
    )
    # A missing or non-finite target: the same message by either path.
    for data in (b"a,t\n1,2\n2,\n", b"a,t\n1,nan\n2,1\n", b"a,t\n1, \n2,x\n", b"a,t\n1,3\n2,-inf\n"):
        messages = []
        for read in (load_csv, _load_csv_slowly):
            with pytest.raises(DataError) as info:
                read("t.csv", data, ["t"], None, True)
            messages.append(info.value.message)
        assert messages[0] == messages[1] and messages[0].startswith("t.csv:"), messages


CELL = st.sampled_from(["0", "-0", "1", "2.5", "-3e2", " 4 ", "+.5", "1_0", "x", "", "nan", "inf", "7e400"])


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=1, max_size=6))
def test_any_grid_of_cells_reads_as_the_slow_path_reads_it(grid: list[list[str]]) -> None:
    data = ("a,b,y\n" + "\n".join(",".join(row) for row in grid) + "\n").encode()

    def outcome(read: object) -> tuple[Table | None, str | None]:
        try:
            return read("t.csv", data, None, None, True), None  # type: ignore[operator]
        except DataError as exc:
            return None, exc.message

    slow, slow_error = outcome(_load_csv_slowly)
    fast, fast_error = outcome(_load_csv_fast)
    both_, error = outcome(load_csv)
    assert error == slow_error and fast_error in (None, slow_error)
    if slow is not None:
        assert fast_error is None and both_ is not None
        same_table(both_, slow)
        if fast is not None:
            same_table(fast, slow)


def test_tabular_columns_match_the_slow_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 40_000  # 13 columns: over 200,000 cells, so the columns convert on several threads
    numbers = rng.normal(size=(n, 8)).round(3).astype(str)
    numbers[rng.random((n, 8)) < 0.05] = "NA"
    words = np.array(["red", " green", "blue ", "NA", "", "7", '"x, y"'])[rng.integers(0, 7, (n, 4))]
    numeric_text = np.array(["1", "2.5", "NA", "-3"])[rng.integers(0, 4, n)]  # numbers, read as text
    lines = ["n0,n1,n2,n3,n4,n5,n6,n7,c0,c1,c2,c3,m"]
    lines += [",".join([*numbers[i], *words[i], numeric_text[i]]) for i in range(n)]
    data = ("\n".join(lines) + "\n").encode()
    names, arrow = read_csv_arrow(data, ",", TOKENS)  # type: ignore[misc]
    fast = arrow_columns(names, [arrow.column(i) for i in range(len(names))], TOKENS)
    slow = _table_from_rows("t.csv", *read_rows_slowly("t.csv", data, ","), TOKENS).columns
    assert [c.name for c in fast] == [c.name for c in slow] and [c.position for c in fast] == list(range(13))
    for a, b in zip(fast, slow, strict=True):
        assert a.numeric == b.numeric, a.name
        np.testing.assert_array_equal(a.missing, b.missing, err_msg=a.name)
        np.testing.assert_array_equal(a.values, b.values, err_msg=a.name)
    table = read_csv("t.csv", data, missing_values=TOKENS)
    assert table.n_rows == n and table.locate(n - 1, table.columns[12]) == f"t.csv:{n + 1}:13 (column 'm')"
