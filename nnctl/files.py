"""Atomic file writes: a temporary file in the same folder, flushed, fsynced, renamed into place.

A crash at any point leaves either the old file or the new one, never half of either. Failures
(disk full, read-only folder) become one ``NnctlError`` naming the file, with nothing left behind:
the temporary file is removed whatever happens (an exception, Ctrl-C), and the file it would have
replaced is untouched. The new file gets the permissions of the file it replaces, or the usual
``0o666 & ~umask`` for a new file (not ``mkstemp``'s private ``0o600``).
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

TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_writer(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object; on success it replaces ``path`` atomically, on failure it vanishes."""
    path = Path(path)
    if path.is_dir():
        raise NnctlError(f"cannot write {path}: it is a folder", hint="give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    tmp = Path(tmp_name)
    try:
        with contextlib.suppress(OSError):  # best effort: some file systems have no permissions
            os.fchmod(fd, _mode_for(path))
        encoding = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except OSError as exc:
        _remove(tmp)
        raise _write_error(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic_writer(path, "w") as handle:
        handle.write(text)


def atomic_write_with(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    """Write binary content produced by ``write(file)`` atomically."""
    with atomic_writer(path, "wb") as handle:
        write(handle)


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):  # never let cleanup hide the error that caused it
        tmp.unlink(missing_ok=True)


def _mode_for(path: Path) -> int:
    """The permissions of the file being replaced, else what ``open()`` would give a new file."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, briefly, for every thread)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (not supported on every platform/filesystem)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_REASONS = {
    errno.ENOSPC: ("no space left on the device", "free some space or choose another folder with --out"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose another folder with --out"),
    errno.EROFS: ("the file system is read-only", "choose a writable folder with --out"),
    errno.EACCES: ("permission denied", "choose a writable folder with --out"),
    errno.EPERM: ("permission denied", "choose a writable folder with --out"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another folder with --out"),
    errno.EEXIST: ("a part of the path is a file, not a folder", "choose another folder with --out"),
    errno.EISDIR: ("it is a folder", "give a file name"),
}


def _write_error(path: Path, exc: OSError) -> NnctlError:
    reason, hint = _REASONS.get(
        exc.errno or 0, (exc.strerror or str(exc), "check the path and choose another with --out")
    )
    return NnctlError(
        f"cannot write {path}: {reason}",
        hint=f"{hint}; earlier files were left as they were",
    )
