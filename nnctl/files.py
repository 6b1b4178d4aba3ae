"""Atomic file writes: a temporary file in the same folder, flushed, fsynced, renamed into place.

A crash at any point leaves either the old file or the new one, never half of either. Failures
(disk full, read-only folder) become one ``NnctlError`` naming the file, with nothing left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from nnctl.errors import NnctlError


@contextlib.contextmanager
def atomic_writer(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object; on success it replaces ``path`` atomically, on failure it vanishes."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic_writer(path, "w") as handle:
        handle.write(text)


def atomic_write_with(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    """Write binary content produced by ``write(file)`` atomically."""
    with atomic_writer(path, "wb") as handle:
        write(handle)


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (not supported on every platform/filesystem)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_error(path: Path, exc: OSError) -> NnctlError:
    reason = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return NnctlError(
        f"cannot write {path}: {reason}",
        hint="free some space or choose another folder with --out; earlier files were left as they were",
    )
