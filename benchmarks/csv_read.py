"""CSV reading, side by side: nnctl's reader before the tables issue (np.loadtxt, still the per-line
path that names bad cells), nnctl's reader now (pyarrow), and pandas' C engine.

Two generated files: numeric (100,000 rows x 101 columns, about 81 MB: 100 features written with
4 decimals and an integer label) and mixed (100,000 rows: 8 numeric columns with NA cells, 4 text
columns, a text label). Each repeat reads the file with every reader in turn (A B C A B C ...),
so a slow phase of a shared machine hits them all; the figure is the best of the repeats, the
ratio the median of the per-repeat ratios; CPU seconds (all threads) are shown too, as they
move less than wall time when other jobs share the machine. "Reading" ends with what training
needs: for nnctl a float64 feature matrix (numeric) or its raw columns (mixed), for pandas a
DataFrame (plus ``to_numpy()`` on the numeric file).

    python benchmarks/csv_read.py [--rows 100000] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def write_numeric(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    header = ",".join([f"f{i}" for i in range(100)] + ["label"])
    with path.open("w") as handle:
        handle.write(header + "\n")
        for start in range(0, rows, 10_000):
            x = rng.normal(size=(min(10_000, rows - start), 100))
            y = rng.integers(0, 10, len(x))
            block = np.column_stack([x, y])
            np.savetxt(handle, block, fmt=["%.4f"] * 100 + ["%d"], delimiter=",")


def write_mixed(path: Path, rows: int) -> None:
    rng = np.random.default_rng(1)
    words = np.array(["red", "green", "blue", "amber", "violet", "teal"])
    cities = np.array([f"city{i:03d}" for i in range(200)])
    numbers = rng.normal(size=(rows, 8)).round(3).astype(str)
    numbers[rng.random((rows, 8)) < 0.02] = "NA"
    text = np.column_stack(
        [
            words[rng.integers(0, 6, rows)],
            cities[rng.integers(0, 200, rows)],
            np.where(rng.random(rows) < 0.5, "yes", "no"),
            words[rng.integers(0, 3, rows)],
        ]
    )
    label = np.array(["cat", "dog", "bird"])[rng.integers(0, 3, rows)]
    header = ",".join([f"n{i}" for i in range(8)] + ["colour", "city", "flag", "shade", "label"])
    with path.open("w") as handle:
        handle.write(header + "\n")
        for r in range(rows):
            handle.write(",".join([*numbers[r], *text[r], label[r]]) + "\n")


def readers(kind: str) -> dict[str, Callable[[Path], object]]:
    from nnctl.data.csv import _load_csv_slowly
    from nnctl.data.load import load_table
    from nnctl.data.tabular import read_table

    def before(path: Path) -> object:
        return _load_csv_slowly(str(path), path.read_bytes(), ["label"], None, True).x

    def now(path: Path) -> object:
        if kind == "numeric":
            return load_table(path, "label").x
        return read_table(path, delimiter=None, missing_values=("", "NA")).columns

    found: dict[str, Callable[[Path], object]] = {}
    if kind == "numeric":
        found["nnctl before (np.loadtxt)"] = before
    found["nnctl now (pyarrow)"] = now
    try:
        import pandas as pd

        found[f"pandas {pd.__version__} (C engine)"] = (
            (lambda path: pd.read_csv(path, engine="c").to_numpy())
            if kind == "numeric"
            else (lambda path: pd.read_csv(path, engine="c"))
        )
    except ImportError:
        print("pandas not installed: skipped (pip install -e '.[bench]')")
    return found


def measure(path: Path, kind: str, repeats: int) -> dict[str, list[float]]:
    contenders = readers(kind)
    for read in contenders.values():  # warm the page cache and the lazy imports
        read(path)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, read in contenders.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            read(path)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return times, cpu


def report(title: str, path: Path, measured: tuple[dict[str, list[float]], dict[str, list[float]]]) -> None:
    times, cpu = measured
    size = path.stat().st_size / 1e6
    names = list(times)
    now = next(n for n in names if n.startswith("nnctl now"))
    print(f"\n### {title} ({size:.0f} MB)\n")
    print("| reader | wall, best (s) | wall ÷ nnctl now | CPU, best (s) | CPU ÷ nnctl now |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(times[name], times[now], strict=True))
        cpu_ratio = statistics.median(a / b for a, b in zip(cpu[name], cpu[now], strict=True))
        print(f"| {name} | {min(times[name]):.3f} | {ratio:.2f} | {min(cpu[name]):.3f} | {cpu_ratio:.2f} |")


def machine() -> str:
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{p['internal_api']} {p['version']}" for p in threadpool_info())
    except ImportError:
        blas = "unknown BLAS"
    import pyarrow

    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as handle:
        model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    return (
        f"{model}, {os.cpu_count()} cores; numpy {np.__version__} ({blas}); pyarrow {pyarrow.__version__}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 2 repeats: checks the script")
    args = parser.parse_args()
    rows, repeats = (10_000, 2) if args.quick else (args.rows, args.repeats)
    print(f"# CSV reading, {rows:,} rows, {repeats} repeats\n\n{machine()}")
    with tempfile.TemporaryDirectory() as folder:  # 100,000 x 101 at 4 decimals: about 75-81 MB
        numeric, mixed = Path(folder) / "numeric.csv", Path(folder) / "mixed.csv"
        write_numeric(numeric, rows)
        write_mixed(mixed, rows)
        report("numeric: 100 features + label", numeric, measure(numeric, "numeric", repeats))
        report(
            "mixed: 8 numeric (2% NA) + 4 text columns + text label", mixed, measure(mixed, "mixed", repeats)
        )


if __name__ == "__main__":
    main()
