"""Reading an ``.npz`` archive that trusts nothing: the one hardened reader behind checkpoints and data.

The archive is read member by member with ``zipfile``, and every ``.npy`` header is inspected before
any data is read: an object dtype (a pickle, which could run code) is refused without being
unpickled, a dtype outside the caller's list is refused, a name that appears twice is refused, and a
header that claims more (or fewer) bytes than its member holds is refused before anything is
allocated. Each problem is an ``NpzProblem`` whose text names the member but not the file; the
caller re-raises it as its own error (``CheckpointError``, ``DataError``) with the file's name.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

import numpy as np

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
NPY_MAGIC = b"\x93NUMPY"
#: A member's name without ``.npy``: what ``np.savez`` writes for a keyword argument.
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NpzProblem(Exception):
    """What is wrong with an archive, in words that name the member (never the file)."""


@dataclass(frozen=True)
class NpzRules:
    """What one kind of archive may hold."""

    kinds: Mapping[str, str]  # numpy dtype kinds allowed, with their names for messages
    holder: str  # who holds only those kinds, for messages: "a checkpoint"
    max_members: int = 100_000
    max_total_bytes: int | None = None  # the archive's declared (uncompressed) size; None: no limit
    max_header: int = 10_000


@dataclass
class NpzMember:
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int  # where the data start, after the .npy header

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class NpzArchive:
    """One pass over the headers when opened; data only on ``read``, once they are known to fit."""

    def __init__(self, archive: zipfile.ZipFile, rules: NpzRules) -> None:
        self.archive = archive
        self.rules = rules
        self.members: dict[str, NpzMember] = {}
        infos = archive.infolist()
        if len(infos) > rules.max_members:
            raise NpzProblem(f"{len(infos):,} archive members, over the {rules.max_members:,} limit")
        total = sum(info.file_size for info in infos)
        if rules.max_total_bytes is not None and total > rules.max_total_bytes:
            raise NpzProblem(f"declares {total:,} bytes of arrays, over the {rules.max_total_bytes:,} limit")
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else None
            if key is None or not _KEY.match(key):
                raise NpzProblem(f"unexpected archive member {info.filename!r} (an .npz holds .npy arrays)")
            if key in self.members:
                raise NpzProblem(f"the array '{key}' appears twice; the file was tampered with")
            self.members[key] = self._header(key, info)

    def _header(self, key: str, info: zipfile.ZipInfo) -> NpzMember:
        with self.archive.open(info) as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle, self.rules.max_header)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle, self.rules.max_header)
            else:
                raise NpzProblem(f"'{key}' uses .npy format {version}, which nnctl does not read")
            offset = handle.tell()
        if dtype.hasobject:
            raise NpzProblem(
                f"'{key}' contains pickled Python objects, which nnctl never loads (they can run code)"
            )
        if dtype.kind not in self.rules.kinds or dtype.fields is not None or dtype.subdtype is not None:
            allowed = ", ".join(dict.fromkeys(self.rules.kinds.values()))
            raise NpzProblem(f"'{key}' has dtype {dtype}; {self.rules.holder} holds only {allowed}")
        if dtype.itemsize == 0 or any(not isinstance(n, int) or n < 0 for n in shape):
            raise NpzProblem(f"'{key}' has an invalid header ({dtype}, shape {shape})")
        member = NpzMember(info, tuple(shape), bool(fortran), dtype, offset)
        if offset + member.nbytes != info.file_size:
            raise NpzProblem(
                f"'{key}' declares {member.nbytes:,} bytes of data ({dtype}, shape {tuple(shape)}) "
                f"but holds {info.file_size - offset:,}; the file is truncated or corrupt"
            )
        return member

    def read(self, key: str) -> np.ndarray:
        """The array ``key`` (a member the caller has checked exists), its CRC checked."""
        member = self.members[key]
        with self.archive.open(member.info) as handle:
            _skip(handle, member.offset)
            flat = np.empty(math.prod(member.shape), dtype=member.dtype)
            view = flat.view(np.uint8)
            got = handle.readinto(view) if view.size else 0
            if got != view.size or handle.read(1):  # reading to the end also checks the CRC
                raise NpzProblem(f"'{key}' is truncated")
        if member.fortran:
            return np.ascontiguousarray(flat.reshape(member.shape[::-1]).T)
        return flat.reshape(member.shape)


def _skip(handle: IO[bytes], count: int) -> None:
    while count > 0:
        chunk = handle.read(min(count, 1 << 16))
        if not chunk:
            raise EOFError("unexpected end of member")
        count -= len(chunk)


def first_line(exc: BaseException) -> str:
    """A parser's exception in one short line: "ValueError: what it said"."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
