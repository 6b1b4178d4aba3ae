"""A dataset larger than we want in memory, trained with ``data.mmap: true``.

Writes W1-style features straight to ``FOLDER/x.npy`` (float32, chunk by chunk, never whole in
memory) and labels to ``y.npy``, then runs ``nnctl train`` on it as a subprocess and reports the
process's peak resident memory (VmHWM, from /proc) against the file size.

    python benchmarks/mmap_demo.py --gib 4 --folder /tmp/nnctl-mmap
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

FEATURES, CLASSES = 784, 10
CONFIG = """\
name: mmap-demo
seed: 0
data: {{path: {data}, mmap: true, validation: 0, test: 0, normalize: {normalize}, shuffle: true}}
model:
  layers:
    - {{units: 64, activation: relu}}
    - {{units: 10, activation: softmax}}
cost: cce
training: {{epochs: 1, batch_size: 512, learning_rate: 0.05}}
"""


def write_dataset(folder: Path, rows: int, chunk: int = 65_536) -> None:
    """x.npy written through a memory map a chunk at a time; labels from a random linear teacher."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32, shape=(rows, FEATURES))
    y = np.empty(rows, dtype=np.int64)
    for start in range(0, rows, chunk):
        block = rng.standard_normal((min(chunk, rows - start), FEATURES), dtype=np.float32)
        x[start : start + block.shape[0]] = block
        y[start : start + block.shape[0]] = (block @ teacher).argmax(axis=1)
        x.flush()
    del x
    np.save(folder / "y.npy", y)


def peak_rss(pid: int, samples: list[int], done: threading.Event) -> None:
    status = Path(f"/proc/{pid}/status")
    while not done.is_set():
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    samples.append(int(line.split()[1]) * 1024)
        except OSError:
            return
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/nnctl-mmap"))
    parser.add_argument("--normalize", default="standard")
    args = parser.parse_args()
    rows = int(args.gib * 2**30 / (FEATURES * 4))
    if not (args.folder / "x.npy").exists():
        write_dataset(args.folder, rows)
    size = (args.folder / "x.npy").stat().st_size
    config = args.folder / "mmap.yaml"
    config.write_text(CONFIG.format(data=args.folder, normalize=args.normalize))
    command = [sys.executable, "-m", "nnctl.cli.app", "train", str(config), "--out", str(args.folder / "run")]
    start = time.perf_counter()
    process = subprocess.Popen([*command, "--force", "-q"])
    samples: list[int] = []
    done = threading.Event()
    watcher = threading.Thread(target=peak_rss, args=(process.pid, samples, done))
    watcher.start()
    code = process.wait()
    done.set()
    watcher.join()
    seconds = time.perf_counter() - start
    peak = max(samples, default=0)
    print(f"x.npy: {size / 2**30:.2f} GiB ({rows:,} rows x {FEATURES})")
    print(f"nnctl train: exit {code} in {seconds:.0f} s")
    print(f"peak RSS of nnctl train: {peak / 2**20:,.0f} MiB ({peak / size:.1%} of the file)")


if __name__ == "__main__":
    main()
