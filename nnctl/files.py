"""Atomic file writes: a temporary file in the same folder, flushed, fsynced, renamed into place.

A crash at any point leaves either the old file or the new one, never half of either. Failures
(disk full, read-only folder) become one ``NnctlError`` naming the file, with nothing left behind:
the temporary file is removed whatever happens (an exception, Ctrl-C), and the file it would have
replaced is untouched. The new file gets the permissions of the file it replaces, or the usual
``0o666 & ~umask`` for a new file (as ``open()`` gives, not ``mkstemp``'s private ``0o600``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from nnctl.errors import NnctlError

TEMP_SUFFIX = ".tmp"
_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


@contextlib.contextmanager
def atomic_writer(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object; on success it replaces ``path`` atomically, on failure it vanishes.

    The temporary file's name is chosen *before* the file is created, so an exception that lands
    at any instant (a second Ctrl-C raises ``KeyboardInterrupt`` wherever Python happens to be,
    e.g. just after ``os.open`` returned) still finds and removes it.
    """
    path = Path(path)
    if path.is_dir():
        raise NnctlError(f"cannot write {path}: it is a folder", hint="give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from None
    keep_mode = _existing_mode(path)
    tmp: Path | None = None
    fd = -1
    try:
        for _ in range(100):
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
            try:
                fd = os.open(tmp, _CREATE_FLAGS, 0o666)  # the umask applies, as for open()
                break
            except FileExistsError:
                tmp = None  # someone else's file: never remove it
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))
        if keep_mode is not None:
            with contextlib.suppress(OSError):  # best effort: some file systems have no permissions
                os.fchmod(fd, keep_mode)
        encoding = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **encoding) as handle:
            fd = -1  # the file object owns it now
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_directory(path.parent)
    except OSError as exc:
        _clean_up(tmp, fd)
        raise _write_error(path, exc) from None
    except BaseException:
        _clean_up(tmp, fd)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic_writer(path, "w") as handle:
        handle.write(text)


def atomic_write_with(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    """Write binary content produced by ``write(file)`` atomically."""
    with atomic_writer(path, "wb") as handle:
        write(handle)


def _clean_up(tmp: Path | None, fd: int) -> None:
    """Remove the temporary file (and close its descriptor if no file object took it over); never
    let cleanup hide the error that caused it."""
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
    if tmp is not None:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _existing_mode(path: Path) -> int | None:
    """The permissions of the file being replaced (kept by the new one), or None for a new file."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return None


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
    getattr(errno, "EDQUOT", errno.ENOSPC): (
        "disk quota exceeded",
        "free some space or choose another folder with --out",
    ),
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
