"""Wall time of a 16-trial ``nnctl sweep``: 1 vs 2 local workers, and Dask LocalCluster(2) vs the pool.

    python benchmarks/sweep_bench.py [--config configs/digits.yaml] [--epochs 200] [--repeats 1]

The sweep is a 4 x 4 grid (learning rate x first-layer width) on a shipped config; every run starts
its executor from scratch (spawned pool processes / a new LocalCluster), as a user's ``nnctl sweep``
does, so start-up is part of the wall time. "trial time" is the sum of the trials' own training time
(measured in the workers); ``overhead`` = wall - trial time / workers: start-up, shipping data and
checkpoints, and writing the trial folders. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from nnctl.cli.sweep import sweep_main

REPO = Path(__file__).resolve().parents[1]
GRID = ["training.learning_rate=[0.01, 0.02, 0.05, 0.1]", "model.layers[0].units=[16, 32, 64, 128]"]


def run_once(config: Path, epochs: int, executor: dict[str, int]) -> tuple[float, float]:
    """(wall seconds, summed trial seconds) of one fresh sweep."""
    out = Path(tempfile.mkdtemp(prefix="nnctl-sweep-bench-"))
    try:
        options = {"jobs": None, "scheduler": None, "dask_local": None, **executor}
        started = time.perf_counter()
        code = sweep_main(
            config,
            grid=GRID,
            random=None,
            seed=0,
            monitor=None,
            out=out,
            retries=1,
            overrides=[f"training.epochs={epochs}"],
            quiet=True,
            console=Console(file=io.StringIO()),
            **options,
        )
        wall = time.perf_counter() - started
        if code != 0:
            raise SystemExit(f"sweep failed with exit code {code}")
        with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 16 and all(row["status"] == "done" for row in rows), rows
        return wall, sum(float(row["seconds"]) for row in rows)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "digits.yaml")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1, help="runs per setup; the median is shown")
    args = parser.parse_args()

    setups: list[tuple[str, int, dict[str, int]]] = [
        ("local pool", 1, {"jobs": 1}),
        ("local pool", 2, {"jobs": 2}),
    ]
    try:
        import distributed  # noqa: F401

        setups.append(("Dask LocalCluster", 2, {"dask_local": 2}))
    except ImportError:
        print("(distributed is not installed: the Dask row is skipped; pip install distributed)")

    results = []
    for label, workers, executor in setups:
        runs = [run_once(args.config, args.epochs, executor) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        trial = statistics.median(r[1] for r in runs)
        results.append((label, workers, wall, trial))
        print(f"  {label} x{workers}: {wall:.2f} s", file=sys.stderr)

    base = results[0][2]
    pool2 = next((r[2] for r in results if r[0] == "local pool" and r[1] == 2), None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"\n16-trial sweep of {args.config.name} ({args.epochs} epochs per trial), "
        f"{platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}\n"
    )
    print("| executor | workers | wall time (s) | speed-up vs 1 worker | vs local pool x2 | "
          "trial time (s) | overhead (s) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, workers, wall, trial in results:
        versus_pool = f"{wall / pool2:.2f}x" if pool2 else "-"
        overhead = wall - trial / workers
        print(
            f"| {label} | {workers} | {wall:.2f} | {base / wall:.2f}x | {versus_pool} | {trial:.2f} | "
            f"{overhead:.2f} |"
        )


if __name__ == "__main__":  # the spawned pool workers import this module without running it
    main()
