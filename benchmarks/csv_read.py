"""CSV reading, side by side: nnctl's reader before pyarrow (``np.loadtxt``, commit
85c6bf2, kept verbatim in ``benchmarks/previous_reader.py``), nnctl's reader now (pyarrow), and
pandas' C engine.

Two generated files: numeric (100,000 rows x 101 columns, about 75 MB: 100 features written with
4 decimals and an integer label) and mixed (100,000 rows, about 8 MB: 8 numeric columns with NA
cells, 4 text columns, a text label). Each repeat reads the file with every reader in turn, the
order rotated from one repeat to the next (A B C, B C A, ...), so that a slow phase of a shared
machine hits them all. Reported: wall and CPU seconds (all threads), best and median of the
repeats, and the ratios of the per-repeat pairs (their median): CPU seconds move less than wall
time when other jobs share the machine. "Reading" ends with what training needs: for nnctl a
float64 feature matrix (numeric) or its raw columns (mixed), for pandas a DataFrame (plus
``to_numpy()`` on the numeric file). Before timing, the readers' numeric results are checked equal.

    python benchmarks/csv_read.py [--rows 100000] [--repeats 9] [--cpus 0,1] [--quick]

``--cpus`` pins the process to those cores (as ``taskset -c`` does), e.g. ``--cpus 0`` for
single-core figures.
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
    from benchmarks import previous_reader
    from nnctl.data.load import load_table
    from nnctl.data.tabular import read_table

    def now(path: Path) -> object:
        if kind == "numeric":
            return load_table(path, "label").x
        return read_table(path, delimiter=None, missing_values=("", "NA")).columns

    found: dict[str, Callable[[Path], object]] = {}
    if kind == "numeric":  # the previous reader refuses text columns: it has no mixed figure
        found[BEFORE] = lambda path: previous_reader.load_table(path, "label").x
    found[NOW] = now
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


BEFORE = "nnctl before (np.loadtxt, 85c6bf2)"
NOW = "nnctl now (pyarrow)"
Measured = tuple[dict[str, list[float]], dict[str, list[float]]]


def check_same(results: dict[str, object]) -> None:
    """Every reader's feature matrix equal (numeric file): the benchmark times the same work."""
    arrays = {name: np.asarray(value) for name, value in results.items() if isinstance(value, np.ndarray)}
    reference = arrays.get(NOW)
    for name, array in arrays.items() if reference is not None else ():
        width = reference.shape[1]
        if not np.array_equal(array[:, :width], reference):
            raise SystemExit(f"{name} read different numbers than {NOW}")


def measure(path: Path, kind: str, repeats: int) -> Measured:
    contenders = readers(kind)
    # Warm the page cache and the lazy imports, and check the readers agree.
    check_same({name: read(path) for name, read in contenders.items()})
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            contenders[name](path)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return times, cpu


def pairs(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def report(title: str, path: Path, measured: Measured) -> None:
    times, cpu = measured
    print(f"\n### {title} ({path.stat().st_size / 1e6:.0f} MB)\n")
    print("| reader | wall best / median (s) | CPU best / median (s) | wall ÷ now | CPU ÷ now |")
    print("|---|---:|---:|---:|---:|")
    for name in times:
        wall, used = times[name], cpu[name]
        print(
            f"| {name} | {min(wall):.3f} / {statistics.median(wall):.3f} | {min(used):.3f} / "
            f"{statistics.median(used):.3f} | {pairs(wall, times[NOW]):.2f} | {pairs(used, cpu[NOW]):.2f} |"
        )
    pandas = next((name for name in times if name.startswith("pandas")), None)
    print()
    for slower, faster, bar in ((BEFORE, NOW, "at least 3"), (NOW, pandas, "at most 1.25")):
        if slower in times and faster in times:
            print(
                f"{slower.split(' (')[0]} ÷ {faster.split(' (')[0]}: wall "
                f"{min(times[slower]) / min(times[faster]):.2f} best against best, "
                f"{pairs(times[slower], times[faster]):.2f} median of pairs; CPU "
                f"{min(cpu[slower]) / min(cpu[faster]):.2f} best against best (the bar: {bar})"
            )


def machine() -> str:
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{p['internal_api']} {p['version']}" for p in threadpool_info())
    except ImportError:
        blas = "unknown BLAS"
    import pyarrow

    try:
        import pandas

        pandas_version = f"pandas {pandas.__version__}"
    except ImportError:
        pandas_version = "no pandas"
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as handle:
        model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{model}, {cores} of {os.cpu_count()} cores; Python {platform.python_version()}; numpy "
        f"{np.__version__} ({blas}); pyarrow {pyarrow.__version__}; {pandas_version}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cpus", help="pin to these cores, as taskset -c does: 0 or 0,1")
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 2 repeats: checks the script")
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    rows, repeats = (10_000, 2) if args.quick else (args.rows, args.repeats)
    print(f"# CSV reading, {rows:,} rows, {repeats} repeats\n\n{machine()}")
    with tempfile.TemporaryDirectory() as folder:  # 100,000 x 101 at 4 decimals: about 75 MB
        numeric, mixed = Path(folder) / "numeric.csv", Path(folder) / "mixed.csv"
        write_numeric(numeric, rows)
        write_mixed(mixed, rows)
        report("numeric: 100 features + label", numeric, measure(numeric, "numeric", repeats))
        report(
            "mixed: 8 numeric (2% NA) + 4 text columns + text label", mixed, measure(mixed, "mixed", repeats)
        )
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
