"""Ctrl-C and SIGTERM during a real ``nnctl train``: save, say how to resume, resume bit-exactly.

A generated dataset (10,000 rows, batch size 1) makes an epoch thousands of steps long, so a
signal sent just after the first epoch line lands mid-epoch. The interrupted run must exit 130
(143 for SIGTERM) with ``last.npz`` saved at that batch; ``--resume`` must then finish with
weights bit-identical to a run that was never interrupted (shuffling and validation on).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from nnctl.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

NNCTL_SCRIPT = Path(sys.executable).parent / "nnctl"
NNCTL = [str(NNCTL_SCRIPT)] if NNCTL_SCRIPT.exists() else [sys.executable, "-m", "nnctl"]
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
EPOCHS = 3
CONFIG = textwrap.dedent(
    f"""\
    name: long
    seed: 3
    data: {{path: long.npz, validation: 0.2, test: 0, shuffle: true}}
    model:
      layers:
        - {{units: 16, activation: tanh}}
        - {{units: 2, activation: softmax}}
    cost: cce
    training: {{epochs: {EPOCHS}, batch_size: 1, learning_rate: 0.01}}
    """
)


@dataclass
class Running:
    """A ``nnctl train`` subprocess whose output is collected by threads as it comes."""

    process: subprocess.Popen
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    first_epoch: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        for thread in self.threads:
            thread.join(timeout=10)
        return code


def start(*args: object, cwd: Path) -> Running:
    process = subprocess.Popen(
        [*NNCTL, *map(str, args)],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(process)

    def pump(stream: object, sink: list[str], watch: bool) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line)
            if watch and line.startswith("epoch 1/"):
                running.first_epoch.set()

    running.threads = [
        threading.Thread(target=pump, args=(process.stdout, running.stdout, True), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, running.stderr, False), daemon=True),
    ]
    for thread in running.threads:
        thread.start()
    return running


def interrupt_after_first_epoch(running: Running, *signals: signal.Signals, gap: float = 0.0) -> None:
    """Wait until epoch 1 is reported (training is under way), then send the signals mid-epoch 2."""
    if not running.first_epoch.wait(timeout=60):
        running.process.kill()
        running.finish()
        pytest.fail(f"training never reported epoch 1:\n{running.output}")
    time.sleep(0.05)
    for index, sig in enumerate(signals):
        if index:
            time.sleep(gap)
        running.process.send_signal(sig)


def weights(path: Path) -> list[np.ndarray]:
    checkpoint = load_checkpoint(path)
    return [*checkpoint.weights, *checkpoint.biases]


def history(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row.pop("seconds", None)  # wall time differs between runs
    return rows


def assert_folder_whole(folder: Path) -> None:
    """Every file nnctl left is complete: checkpoints load, history parses, no temporary files."""
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    for npz in folder.glob("*.npz"):
        load_checkpoint(npz)
    if (folder / "history.csv").exists():
        history(folder / "history.csv")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset, the config and the reference: the same run, never interrupted."""
    root = tmp_path_factory.mktemp("interrupts")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10_000, 8))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64)
    np.savez(root / "long.npz", x=x, y=y)
    (root / "long.yaml").write_text(CONFIG, encoding="utf-8")
    done = subprocess.run(
        [*NNCTL, "train", "long.yaml", "--out", "straight", "-q"],
        cwd=root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def test_sigint_mid_epoch_saves_and_resume_is_bit_identical(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    running = start("train", workspace / "long.yaml", "--out", out, cwd=workspace)
    interrupt_after_first_epoch(running, signal.SIGINT)
    code = running.finish()
    assert code == 130, running.output
    assert "Traceback" not in running.output
    stderr = "".join(running.stderr)
    assert "SIGINT" in stderr
    assert f"nnctl train --resume {out / 'last.npz'}" in stderr, stderr
    assert_folder_whole(out)
    saved = load_checkpoint(out / "last.npz")
    assert saved.epoch == 1 and saved.meta["batch"] > 0, saved.meta  # mid-epoch 2
    assert saved.train_state["loop"]["batch"] == saved.meta["batch"]

    resumed = subprocess.run(
        [*NNCTL, "train", "--resume", out / "last.npz", "-q"],
        cwd=workspace,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    straight = workspace / "straight"
    for name in ("last.npz", "best.npz"):
        for a, b in zip(weights(out / name), weights(straight / name), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert load_checkpoint(out / "last.npz").epoch == EPOCHS
    assert history(out / "history.csv") == history(straight / "history.csv")


def test_sigterm_saves_and_exits_143(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    running = start("train", workspace / "long.yaml", "--out", out, cwd=workspace)
    interrupt_after_first_epoch(running, signal.SIGTERM)
    code = running.finish()
    assert code == 143, running.output
    assert "Traceback" not in running.output
    assert "SIGTERM" in running.output and "--resume" in running.output
    assert_folder_whole(out)
    saved = load_checkpoint(out / "last.npz")
    assert (saved.epoch, saved.meta["batch"] > 0) == (1, True)


def test_second_sigint_aborts_at_once_and_leaves_files_whole(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    running = start("train", workspace / "long.yaml", "--out", out, cwd=workspace)
    interrupt_after_first_epoch(running, signal.SIGINT, signal.SIGINT, gap=0.002)
    code = running.finish(timeout=30)
    # 130; or, when the second signal only lands once nnctl is exiting, death by SIGINT, which a
    # shell reports as 130 as well
    assert code in (130, -signal.SIGINT), running.output
    assert "Traceback" not in running.output
    assert "aborted" in running.output or "stopped by SIGINT" in running.output
    assert_folder_whole(out)


def test_interrupt_message_names_the_default_run_folder(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "long.yaml").write_text(
        CONFIG.replace("path: long.npz", f"path: {workspace / 'long.npz'}"), encoding="utf-8"
    )
    running = start("train", "long.yaml", cwd=tmp_path)
    interrupt_after_first_epoch(running, signal.SIGINT)
    assert running.finish() == 130, running.output
    load_checkpoint(tmp_path / "runs" / "long" / "last.npz")
    assert f"--resume {Path('runs') / 'long' / 'last.npz'}" in running.output, running.output


def test_first_sigint_while_reading_data_exits_130_with_an_honest_message(tmp_path: Path) -> None:
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)  # reading it blocks until a writer comes: the run is stuck in data loading
    (tmp_path / "fifo.yaml").write_text(CONFIG.replace("path: long.npz", "path: data.csv"), encoding="utf-8")
    running = start("train", "fifo.yaml", "--out", tmp_path / "run", cwd=tmp_path)
    deadline = time.monotonic() + 60
    writer = None
    while writer is None:  # opening the write end succeeds once nnctl has opened the read end
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if time.monotonic() > deadline or running.process.poll() is not None:
                running.process.kill()
                running.finish()
                pytest.fail(f"nnctl never opened the data file:\n{running.output}")
            time.sleep(0.02)
    try:
        running.process.send_signal(signal.SIGINT)
        code = running.finish(timeout=30)
    finally:
        os.close(writer)
    assert code == 130, running.output
    assert "Traceback" not in running.output
    assert not (tmp_path / "run").exists()
    assert "second interrupt" not in running.output, running.output
