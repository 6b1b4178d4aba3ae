"""The run folder: ``last.npz``, ``best.npz``, ``history.csv`` and the resolved ``config.yaml``.

``RunWriter`` is a training callback; every file is replaced atomically, so an interrupted or failed
run leaves the previous version of each file whole. ``FolderLock`` keeps a second process out of a
folder while a run (or a sweep) writes to it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from pathlib import Path
from typing import Any, Protocol

import yaml

from nnctl.checkpoint import Checkpoint, save_checkpoint
from nnctl.config import Config
from nnctl.errors import NnctlError
from nnctl.files import _write_error, atomic_write_text
from nnctl.training.loop import Callback, Trainer
from nnctl.training.resume import make_checkpoint

CHECKPOINT_FILES = ("last.npz", "best.npz")
LOCK_FILE = ".nnctl.lock"


class FolderLock:
    """An exclusive ``fcntl.flock`` on ``FOLDER/.nnctl.lock`` for as long as a run writes there.

    The lock file holds the owner's process id, for the message a second run gets. The kernel drops
    the lock when its process dies, however it dies, so a killed run never blocks the next one (its
    stale lock file is simply locked again). ``release`` removes the lock file, and the folder
    itself when this lock created it and nothing else was written there (a refused run leaves no
    empty folder behind).
    """

    def __init__(self, folder: Path, what: str = "run") -> None:
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK_FILE
        self.created: list[Path] = []  # folders this lock made, outermost first
        self.fd: int | None = None

    def acquire(self) -> FolderLock:
        """Create the folder if needed and lock it; ``NnctlError`` (exit 2) when another process holds it."""
        self._make_folder()
        try:
            self._lock()
        except BaseException:
            self._remove_created()
            raise
        return self

    def _make_folder(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise NnctlError(f"{self.folder}: exists and is not a folder", hint="choose another --out")
        missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NnctlError(f"cannot create the {self.what} folder {self.folder}: {exc.strerror}") from None
        self.created = list(reversed(missing))

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock on this platform: run unlocked
            return
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as exc:  # a read-only or full file system, no permission: named as for any write
                raise _write_error(self.path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_pid(fd)
                os.close(fd)
                holder = f"process {owner}" if owner else "another process"
                raise NnctlError(
                    f"{self.folder} is in use: another nnctl {self.what} ({holder}) is writing to it",
                    hint="wait for it to finish, or choose another folder with --out",
                ) from None
            if _same_file(fd, self.path):
                self.fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return
            os.close(fd)  # the file was removed by its previous owner while we waited: take the new one
        raise NnctlError(f"{self.path}: could not lock the {self.what} folder")  # pragma: no cover

    def release(self) -> None:
        """Unlock, remove the lock file, and the folders this lock created if they are still empty."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still locked, so no one locks the old file after us
            os.close(self.fd)
            self.fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only empty folders go
        self.created = []

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return str(int(text))
    return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


class RunFolder:
    """A run folder's path and the paths of the files in it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.last = self.path / "last.npz"
        self.best = self.path / "best.npz"
        self.history = self.path / "history.csv"
        self.config = self.path / "config.yaml"

    def lock(self) -> FolderLock:
        """Lock the folder (creating it) for one run; see ``FolderLock``."""
        return FolderLock(self.path).acquire()

    def has_checkpoint(self) -> bool:
        return any((self.path / name).exists() for name in CHECKPOINT_FILES)

    def ensure_writable(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise NnctlError(f"{self.path}: exists and is not a folder", hint="choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NnctlError(f"cannot create the run folder {self.path}: {exc.strerror}") from None

    def read_history(self, up_to_epoch: int) -> list[dict[str, Any]]:
        """Rows of an existing history.csv for epochs <= ``up_to_epoch`` (for resume)."""
        if not self.history.exists():
            return []
        with self.history.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        kept = []
        for row in rows:
            try:
                if int(row.get("epoch", "")) <= up_to_epoch:
                    kept.append(row)
            except ValueError:
                continue
        return kept


def relocate_data_path(config: Config, source: str, folder: Path) -> Config:
    """The config as a run folder stores it: ``data.path`` relative to ``folder``, so the folder's
    config.yaml and checkpoints stay usable from anywhere (builtin names stay as they are)."""
    if source.startswith("builtin:"):
        return config
    relative = os.path.relpath(Path(source).resolve(), folder.resolve())
    data = config.data.model_copy(update={"path": Path(relative).as_posix()})
    return config.model_copy(update={"data": data})


def history_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key, "")) for key in columns})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    return repr(float(value)) if isinstance(value, float) else value


class RunStorage(Protocol):
    """Where a ``RunWriter`` puts what it keeps: ``FolderStorage`` writes the run folder's files;
    a sweep's worker keeps them in memory and sends them back to its client."""

    def save_checkpoint(self, which: str, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` as ``which``: ``"last"`` or ``"best"``."""
        ...

    def save_history(self, rows: list[dict[str, Any]]) -> None: ...

    def save_config(self, text: str) -> None:
        """The resolved config as YAML text."""
        ...


class FolderStorage:
    """The run folder's files, each replaced atomically; ``written`` lists them in order of first write."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.written: list[Path] = []

    def save_checkpoint(self, which: str, checkpoint: Checkpoint) -> None:
        path = {"last": self.folder.last, "best": self.folder.best}[which]
        save_checkpoint(path, checkpoint)
        self._note(path)

    def save_history(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.folder.history, history_csv(rows))
        self._note(self.folder.history)

    def save_config(self, text: str) -> None:
        atomic_write_text(self.folder.config, text)
        self._note(self.folder.config)

    def _note(self, path: Path) -> None:
        if path not in self.written:
            self.written.append(path)


class RunWriter(Callback):
    """Chooses what a run keeps as training goes: the last and best checkpoints, the history, the
    resolved config; ``storage`` keeps them (by default ``FolderStorage(folder)``: the run folder).

    Short epochs would spend their time in fsync, so what is pending is stored at most every
    ``flush_seconds``, and always after the final epoch, on an interrupt and on a failure
    (where ``last`` is the last epoch that finished with finite weights).
    """

    def __init__(
        self,
        folder: RunFolder | None = None,
        earlier_rows: list[dict[str, Any]] | None = None,
        flush_seconds: float = 5.0,
        *,
        storage: RunStorage | None = None,
    ) -> None:
        if storage is None:
            if folder is None:
                raise TypeError("RunWriter needs a run folder or a storage")
            storage = FolderStorage(folder)
        self.folder = folder
        self.storage = storage
        self.rows: list[dict[str, Any]] = list(earlier_rows or [])
        self.flush_seconds = flush_seconds
        self.pending_last: Checkpoint | None = None
        self.pending_best: Checkpoint | None = None  # set it to start a run with an earlier best
        self.last_flush = time.monotonic()
        self.resolved_config: str | None = None

    @property
    def written(self) -> list[Path]:
        """The files written so far (none when the storage is not a folder)."""
        return list(getattr(self.storage, "written", []))

    def on_train_start(self, trainer: Trainer) -> None:
        # Stored with the first checkpoint (in flush), so a run that fails before finishing an
        # epoch leaves an earlier run's files in this folder exactly as they were.
        self.resolved_config = yaml.safe_dump(trainer.config.model_dump(mode="json"), sort_keys=False)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        checkpoint = make_checkpoint(trainer, metrics=record)
        self.pending_last = checkpoint
        best_is_last = trainer.prepared.validation is None and trainer.config.training.early_stopping is None
        if improved or best_is_last:
            self.pending_best = checkpoint
        self.rows.append(record)
        finished = trainer.loop.epoch >= trainer.config.training.epochs or trainer.loop.stopped_early
        if finished or time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def on_interrupt(self, trainer: Trainer) -> None:
        self.flush()
        self.storage.save_checkpoint("last", make_checkpoint(trainer))  # mid-epoch: resume continues it
        self._store_config_once()

    def on_failure(self, trainer: Trainer) -> None:
        self.flush()

    def flush(self) -> None:
        """Store what is pending: the best and last checkpoints, then the history."""
        if self.pending_best is not None:
            self.storage.save_checkpoint("best", self.pending_best)
        if self.pending_last is not None:
            self.storage.save_checkpoint("last", self.pending_last)
        if self.pending_last is not None or self.pending_best is not None:
            self.storage.save_history(self.rows)
            self._store_config_once()
        self.pending_last = self.pending_best = None
        self.last_flush = time.monotonic()

    def _store_config_once(self) -> None:
        if self.resolved_config is not None:
            self.storage.save_config(self.resolved_config)
            self.resolved_config = None
