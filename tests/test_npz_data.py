"""Data ``.npz`` files are read by the same hardened reader as checkpoints (``nnctl.npz``): hostile or
broken archives are refused through ``nnctl train`` with exit 2 and one message naming the file and
the array, before any pickle runs and before a lying header gets its memory."""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import UNPICKLED, PicklePayload, invoke

CONFIG = """\
name: npz-data
seed: 0
data: {path: data.npz, validation: 0.25}
model: {layers: [{units: 3, activation: tanh}, {units: 1, activation: logistic}]}
cost: bce
training: {epochs: 1, batch_size: 4, learning_rate: 0.1}
"""

X = np.arange(24, dtype=np.float64).reshape(8, 3) / 10
Y = np.array([0, 1, 0, 1, 1, 0, 1, 0])


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def write_members(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name, written on purpose
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members:
                archive.writestr(name, data)
    return path


def train_on(folder: Path, members: list[tuple[str, bytes]]) -> tuple[int, str]:
    write_members(folder / "data.npz", members)
    config = folder / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    outcome = invoke("train", config, "--out", folder / "run", "--quiet")
    return outcome.code, outcome.output


def test_a_plain_archive_trains(tmp_path: Path) -> None:
    """The control: the members the refusals below change, unchanged, train."""
    code, output = train_on(tmp_path, [("x.npy", npy_bytes(X)), ("y.npy", npy_bytes(Y))])
    assert code == 0, output
    assert (tmp_path / "run" / "last.npz").is_file()


def test_pickled_object_x_is_refused_unread(tmp_path: Path) -> None:
    UNPICKLED.clear()
    x = np.array([[PicklePayload(), 1.0, 2.0]] * 8, dtype=object)
    code, output = train_on(tmp_path, [("x.npy", npy_bytes(x)), ("y.npy", npy_bytes(Y))])
    assert code == 2
    assert f"{tmp_path / 'data.npz'}: 'x' contains pickled Python objects" in output
    assert UNPICKLED == []
    with np.load(tmp_path / "data.npz", allow_pickle=True) as archive:  # the payload is live
        archive["x"]
    assert UNPICKLED == ["ran"]
    UNPICKLED.clear()


def test_a_header_claiming_more_bytes_than_its_member_holds_is_refused(tmp_path: Path) -> None:
    x = npy_bytes(X)[:-8]  # the header says 24 floats; the member holds 23
    code, output = train_on(tmp_path, [("x.npy", x), ("y.npy", npy_bytes(Y))])
    assert code == 2
    assert (
        f"{tmp_path / 'data.npz'}: 'x' declares 192 bytes of data (float64, shape (8, 3)) but holds 184"
        in output
    )


def test_a_header_claiming_terabytes_is_refused_before_allocating(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 3)}
    )
    code, output = train_on(tmp_path, [("x.npy", header.getvalue() + b"\0" * 64), ("y.npy", npy_bytes(Y))])
    assert code == 2
    assert "'x' declares 24,000,000,000,000 bytes of data" in output


def test_a_duplicate_member_is_refused(tmp_path: Path) -> None:
    """zipfile (and so np.load) would silently read the second x: a file that shows two readers
    two different datasets."""
    members = [("x.npy", npy_bytes(X)), ("y.npy", npy_bytes(Y)), ("x.npy", npy_bytes(X * 100))]
    code, output = train_on(tmp_path, members)
    assert code == 2
    assert f"{tmp_path / 'data.npz'}: the array 'x' appears twice" in output


@pytest.mark.parametrize(
    ("member", "needle"),
    [
        (("z.npy", npy_bytes(np.array([None, 1], dtype=object))), "'z' contains pickled Python objects"),
        (("z.npy", npy_bytes(np.zeros(2, dtype="datetime64[s]"))), "'z' has dtype datetime64[s]"),
        (("notes.txt", b"hello"), "unexpected archive member 'notes.txt'"),
    ],
)
def test_every_member_is_checked_not_only_x_and_y(
    tmp_path: Path, member: tuple[str, bytes], needle: str
) -> None:
    code, output = train_on(tmp_path, [("x.npy", npy_bytes(X)), ("y.npy", npy_bytes(Y)), member])
    assert code == 2
    assert f"{tmp_path / 'data.npz'}: {needle}" in output
