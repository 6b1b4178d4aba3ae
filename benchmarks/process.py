"""Whole-process costs of the ``nnctl`` command: startup and one real training run.

* ``nnctl --help`` and ``nnctl --version`` in fresh processes (median of N): lazy imports keep
  numpy, pydantic and the engine out of these.
* ``nnctl train`` of W1 (60,000 rows, 784-512-256-10, batch 128, one epoch) as a subprocess,
  against the epoch's own time as the trainer measured it (``seconds`` in history.csv): the
  ratio is what startup, data loading, normalization and checkpointing add.

    python benchmarks/process.py [--rows 60000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.workload import make_w1

NNCTL = [sys.executable, "-m", "nnctl.cli.app"]
CONFIG = """\
name: w1
seed: 0
data: {{path: {data}, validation: 0, test: 0, normalize: standard, shuffle: true}}
model:
  layers:
    - {{units: 512, activation: relu}}
    - {{units: 256, activation: relu}}
    - {{units: 10, activation: softmax}}
cost: cce
training: {{epochs: 1, batch_size: 128, learning_rate: 0.05}}
"""


def command_seconds(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_ratio(rows: int, repeats: int, folder: Path) -> tuple[float, float]:
    """(median whole-process wall seconds, median in-process epoch seconds)."""
    data = make_w1(rows)
    np.savez(folder / "w1.npz", x=data.X, y=data.y)
    (folder / "w1.yaml").write_text(CONFIG.format(data=folder / "w1.npz"))
    walls, epochs = [], []
    for _ in range(repeats):
        out = folder / "run"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([*NNCTL, "train", str(folder / "w1.yaml"), "--out", str(out), "-q"], check=True)
        walls.append(time.perf_counter() - start)
        with (out / "history.csv").open() as handle:
            epochs.append(float(next(csv.DictReader(handle))["seconds"]))
    return statistics.median(walls), statistics.median(epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    help_s = command_seconds([*NNCTL, "--help"], args.repeats)
    version_s = command_seconds([*NNCTL, "--version"], args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        wall, epoch = train_ratio(args.rows, args.repeats, Path(tmp))
    print("| measure | median | goal | met |")
    print("|---|---:|---:|---|")
    print(
        f"| `nnctl --help`, fresh process | {help_s:.3f} s | < 0.3 s | "
        f"{'met' if help_s < 0.3 else 'not met'} |"
    )
    print(
        f"| `nnctl --version`, fresh process | {version_s:.3f} s | < 0.3 s | "
        f"{'met' if version_s < 0.3 else 'not met'} |"
    )
    ratio = wall / epoch
    print(
        f"| `nnctl train` W1 {args.rows:,} rows, 1 epoch: process {wall:.2f} s ÷ epoch {epoch:.2f} s | "
        f"{ratio:.2f}× | ≤ 1.3× | {'met' if ratio <= 1.3 else 'not met'} |"
    )


if __name__ == "__main__":
    main()
