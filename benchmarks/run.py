#!/usr/bin/env python
"""nnctl's benchmark: nnctl side by side with PyTorch CPU and scikit-learn, in one process.

    python benchmarks/run.py --suite train|process|infer|scaling|roofline|memory|blasenv|all
                             [--repeats N] [--quick] [--threads N]

Every comparison alternates the contenders (A B A B ...) on the same data in the same process,
reports medians and the median of the per-pair ratios (pairs run back to back, so slow phases of a
shared machine hit both), and writes JSON + a Markdown table to benchmarks/results/. See
benchmarks/README.md for what each suite measures.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks import peers  # noqa: E402
from benchmarks.workload import (  # noqa: E402
    FEATURES,
    HIDDEN,
    NnctlTrainer,
    ProductTrainer,
    make_w1,
    nnctl_epoch,
    step_flops,
)

RESULTS = ROOT / "benchmarks" / "results"
SUITES = ("train", "process", "roofline", "infer", "scaling", "memory", "blasenv")
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """Sizes of one run; ``--quick`` shrinks everything so ``--suite all`` takes well under a minute."""

    quick: bool
    repeats: int
    data_rows: int  # W1 rows held in memory for train/roofline/infer
    trial_rows: int  # rows trained per timed trial (a multiple of every batch size)
    batches: tuple[int, ...] = (32, 128, 512)
    infer_batch: int = 4096
    infer_calls: int = 10
    scaling_rows: tuple[int, ...] = (15_000, 30_000, 60_000, 120_000)
    scaling_batch: int = 128
    memory_rows: int = 60_000
    memory_steps: int | None = None  # None: one full epoch

    @classmethod
    def make(cls, quick: bool, repeats: int | None) -> Plan:
        if quick:
            return cls(
                quick=True,
                repeats=repeats or 3,
                data_rows=16_384,
                trial_rows=4_608,
                infer_calls=3,
                scaling_rows=(3_750, 7_500, 15_000, 30_000),
                memory_steps=100,
            )
        return cls(quick=False, repeats=repeats or 7, data_rows=60_000, trial_rows=30_720)


# -- helpers ---------------------------------------------------------------------------------
def timed(fn: Callable[..., object], *args: object) -> float:
    """Wall seconds of one call, after a garbage collection outside the timed region."""
    gc.collect()
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def spread(values: list[float]) -> list[float]:
    return [float(min(values)), float(max(values))]


def fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_ratio(entry: dict | None) -> str:
    if not entry:
        return "—"
    low, high = entry["range"]
    return f"**{entry['median']:.2f}** ({low:.2f}–{high:.2f})"


def ratio_entry(a: list[float], b: list[float]) -> dict:
    """Median and range of the per-pair ratios a[i] / b[i] (pairs ran back to back)."""
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return {"median": median(ratios), "range": spread(ratios), "pairs": ratios}


def target(name: str, value: float | None, goal: float, *, at_most: bool = False, unit: str = "×") -> dict:
    if value is None:
        return {"target": name, "value": None, "goal": goal, "met": None, "unit": unit}
    met = value <= goal if at_most else value >= goal
    return {"target": name, "value": value, "goal": goal, "at_most": at_most, "met": met, "unit": unit}


# -- environment -----------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_report() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed: BLAS library unknown (pip install threadpoolctl)"}]
    rows = []
    for info in threadpool_info():
        rows.append(
            {
                "user_api": info.get("user_api"),
                "library": info.get("internal_api"),
                "version": info.get("version"),
                "threads": info.get("num_threads"),
                "architecture": info.get("architecture"),
                "file": Path(info.get("filepath", "")).name,
            }
        )
    return rows


def numpy_blas_threads() -> int:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.cpu_count() or 1
    for info in threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            return int(info["num_threads"])
    return os.cpu_count() or 1


def environment(torch, sklearn, threads: int) -> dict:
    import nnctl

    env = {
        "time": dt.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "nnctl": nnctl.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__ if torch else None,
        "sklearn": sklearn.__version__ if sklearn else None,
        "env": {
            k: os.environ.get(k)
            for k in (*BLAS_ENV, "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            if k in os.environ
        },
        "blas": blas_report(),
        "load_average_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if torch is not None:
        env["torch_threads"] = torch.get_num_threads()
        config = torch.__config__.show()
        blas = [part for part in config.replace(",", " ").split() if part.startswith("BLAS_INFO=")]
        env["torch_blas"] = blas[0].split("=", 1)[1] if blas else "unknown"
        env["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        env["torch_blas_version"] = torch_blas_version(config)
    return env


def torch_blas_version(config: str) -> str:
    """The BLAS line of ``torch.__config__.show()`` (PyTorch links MKL statically, so threadpoolctl
    cannot see it): e.g. "Intel(R) oneAPI Math Kernel Library Version 2024.2 ..."."""
    for line in config.splitlines():
        if "Math Kernel Library" in line or "OpenBLAS" in line or "BLIS" in line:
            return line.strip(" -")
    return "unknown"


# -- suites ----------------------------------------------------------------------------------
class Context:
    """What the suites share: the plan, the peers (or why they are missing), the W1 data."""

    def __init__(self, plan: Plan, threads: int) -> None:
        self.plan = plan
        self.threads = threads
        self.torch, self.torch_note = peers.load_torch()
        self.sklearn, self.sklearn_note = peers.load_sklearn()
        if self.torch is not None:
            self.torch.set_num_threads(threads)
        self.rng = np.random.default_rng(2024)
        self._data = None

    @property
    def data(self):
        if self._data is None:
            self._data = make_w1(self.plan.data_rows)
        return self._data

    def order(self, rows: int) -> np.ndarray:
        """A fresh random row order, shared by every contender of one repeat."""
        return self.rng.permutation(self.data.rows)[:rows].astype(np.int64)


def suite_train(ctx: Context) -> dict:
    """Training samples/s at each batch size: nnctl's real Trainer, PyTorch, scikit-learn, and the
    bare nnctl step (what the trainer adds), alternating, all on the same ``trial_rows`` rows."""
    plan = ctx.plan
    data = ctx.data.head(plan.trial_rows)
    out: dict = {"trial_rows": plan.trial_rows, "repeats": plan.repeats, "notes": [], "batches": {}}
    for note, mod in ((ctx.torch_note, ctx.torch), (ctx.sklearn_note, ctx.sklearn)):
        if mod is None:
            out["notes"].append(note)
    for batch in plan.batches:
        product = ProductTrainer(data, batch)
        step = NnctlTrainer(batch)
        contenders: dict[str, Callable[[Any], float]] = {
            "nnctl": product.epoch,
            "step": lambda o, step=step: nnctl_epoch(step, data, o),
        }
        prepare: dict[str, Callable[[np.ndarray], object]] = {"nnctl": lambda o: o, "step": lambda o: o}
        if ctx.torch is not None:
            tt = peers.TorchTrainer(ctx.torch, data, batch)
            contenders["torch"] = tt.epoch
            prepare["torch"] = lambda o: o
        if ctx.sklearn is not None:
            sk = peers.SklearnTrainer(data, batch)
            contenders["sklearn"] = sk.epoch
            prepare["sklearn"] = sk.gather
        warm = ctx.rng.permutation(data.rows)[: batch * 16]
        for name, run in contenders.items():  # warm-up: thread pools, allocator, sklearn's init
            if name != "nnctl":  # the trainer always runs whole epochs: its first timed one warms it
                run(prepare[name](warm))
        product.epoch()
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        losses: dict[str, float] = {}
        for _ in range(plan.repeats):
            order = ctx.rng.permutation(data.rows).astype(np.int64)
            for name, run in contenders.items():
                arg = prepare[name](order)
                gc.collect()
                start = time.perf_counter()
                losses[name] = run(arg)
                rates[name].append(plan.trial_rows / (time.perf_counter() - start))
        row: dict = {
            "samples_per_s": {name: median(r) for name, r in rates.items()},
            "range": {name: spread(r) for name, r in rates.items()},
            "raw": rates,
            "last_loss": losses,
            "trainer_over_step": ratio_entry(rates["nnctl"], rates["step"]),
        }
        for peer in ("torch", "sklearn"):
            if peer in rates:
                row[f"vs_{peer}"] = ratio_entry(rates["nnctl"], rates[peer])
        out["batches"][batch] = row
    return out


# -- whole processes -------------------------------------------------------------------------
PROCESS_CONFIG = """\
name: w1
seed: 1
dtype: float32
data: {{path: {data}, validation: 0, test: 0, normalize: none, shuffle: true}}
model:
  layers:
    - {{units: {h1}, activation: relu}}
    - {{units: {h2}, activation: relu}}
    - {{units: 10, activation: softmax}}
cost: cce
training: {{epochs: {epochs}, batch_size: {batch}, learning_rate: {lr}}}
"""


def nnctl_command() -> list[str]:
    script = Path(sys.executable).with_name("nnctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nnctl"]


def suite_process(ctx: Context, batch: int = 128, epochs: int = 1) -> dict:
    """Whole processes, start to exit: ``nnctl train`` (a subprocess of the real command: imports,
    reading x.npy/y.npy, preparing, training, writing checkpoints and history) against a PyTorch
    and a scikit-learn script that load the same files, train the same epochs and save their
    weights. Alternating, each repeat in fresh processes."""
    import tempfile

    from benchmarks.workload import LEARNING_RATE

    plan = ctx.plan
    rows = plan.data_rows
    with tempfile.TemporaryDirectory(prefix="nnctl-bench-") as tmp:
        folder = Path(tmp)
        data = folder / "w1"
        data.mkdir()
        np.save(data / "x.npy", ctx.data.X)
        np.save(data / "y.npy", ctx.data.y)
        config = folder / "w1.yaml"
        config.write_text(
            PROCESS_CONFIG.format(
                data=data, h1=HIDDEN[0], h2=HIDDEN[1], epochs=epochs, batch=batch, lr=LEARNING_RATE
            )
        )
        threads = {
            k: str(ctx.threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        }
        env = {**os.environ, **threads}
        commands = {
            "nnctl": [
                *nnctl_command(),
                "train",
                str(config),
                "--out",
                str(folder / "run"),
                "--quiet",
                "--force",
            ]
        }
        notes = []
        for name, module in (("torch", ctx.torch), ("sklearn", ctx.sklearn)):
            if module is None:
                notes.append(ctx.torch_note if name == "torch" else ctx.sklearn_note)
                continue
            commands[name] = child_command(
                "--peer-process", name, str(data), str(batch), str(epochs), "--threads", str(ctx.threads)
            )
        walls: dict[str, list[float]] = {name: [] for name in commands}
        epoch_seconds: list[float] = []
        for _ in range(plan.repeats):
            for name, command in commands.items():
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
                wall = time.perf_counter() - start
                if done.returncode != 0:
                    return {"error": f"{name}: " + (done.stderr.strip().splitlines() or ["failed"])[-1]}
                walls[name].append(wall)
                if name == "nnctl":
                    with (folder / "run" / "history.csv").open(newline="") as handle:
                        epoch_seconds.append(sum(float(r["seconds"]) for r in csv.DictReader(handle)))
    trained = rows * epochs
    out: dict = {
        "rows": rows,
        "epochs": epochs,
        "batch": batch,
        "dataset_mb": ctx.data.X.nbytes / MB,
        "notes": notes,
        "wall_s": {name: median(w) for name, w in walls.items()},
        "samples_per_s": {name: trained / median(w) for name, w in walls.items()},
        "raw": walls,
        "nnctl_epochs_s": median(epoch_seconds),
    }
    out["nnctl_outside_epochs_s"] = out["wall_s"]["nnctl"] - out["nnctl_epochs_s"]
    for peer in ("torch", "sklearn"):
        if peer in walls:  # a rate ratio: peer's seconds over nnctl's, pair by pair
            out[f"vs_{peer}"] = ratio_entry(walls[peer], walls["nnctl"])
    return out


def peer_process(name: str, folder: Path, batch: int, epochs: int, threads: int) -> None:
    """Runs as its own process: load x.npy/y.npy, train the W1 student with the peer, save weights."""
    import pickle

    from benchmarks.workload import Dataset

    X = np.load(folder / "x.npy")
    y = np.load(folder / "y.npy")
    data = Dataset(X, np.empty((0, 10), np.float32), y)
    if name == "torch":
        torch, _ = peers.load_torch()
        torch.set_num_threads(threads)
        trainer = peers.TorchTrainer(torch, data, batch)
        rng = np.random.default_rng(1)
        for _ in range(epochs):
            trainer.epoch(rng.permutation(len(y)).astype(np.int64))
        torch.save(trainer.model.state_dict(), folder.parent / "torch.pt")
    else:
        trainer = peers.SklearnTrainer(data, batch)
        for _ in range(epochs):
            trainer.epoch((X, y))
        with (folder.parent / "sklearn.pkl").open("wb") as handle:
            pickle.dump(trainer.model, handle)


def gemm_operands(batch: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The 8 matrix products of one W1 step, with the shapes and layouts nnctl uses (W.T views)."""
    f32 = np.float32
    sizes = (FEATURES, *HIDDEN, 10)
    W = [rng.standard_normal((sizes[i + 1], sizes[i]), dtype=f32) for i in range(3)]
    A = [rng.standard_normal((batch, n), dtype=f32) for n in sizes]  # x, a1, a2, a3
    S = [rng.standard_normal((batch, n), dtype=f32) for n in sizes[1:]]  # s1, s2, s3
    ops = []
    for layer in range(3):  # forward (1.3): z = a W^T
        ops.append((A[layer], W[layer].T, np.empty((batch, sizes[layer + 1]), f32)))
    for layer in range(3):  # weight gradients (1.29): s^T a
        ops.append((S[layer].T, A[layer], np.empty_like(W[layer])))
    for layer in (2, 1):  # data gradients (1.21): s W (no gradient into x)
        ops.append((S[layer], W[layer], np.empty((batch, sizes[layer]), f32)))
    return ops


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of a float32 size^3 matmul: the machine's BLAS ceiling."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    times = [timed(np.matmul, a, b, c) for _ in range(repeats)]
    return 2 * size**3 / median(times) / 1e9


def suite_roofline(ctx: Context, batch: int = 128) -> dict:
    """A full nnctl step vs its 8 matrix products alone, alternating; the rest is overhead."""
    plan, data = ctx.plan, ctx.data
    nn = NnctlTrainer(batch)
    ops = gemm_operands(batch, np.random.default_rng(5))
    steps = plan.trial_rows // batch

    def matmuls() -> None:
        for _ in range(steps):
            for a, b, c in ops:
                np.matmul(a, b, out=c)

    nnctl_epoch(nn, data, ctx.order(batch * 16))
    matmuls()
    step_times, gemm_times = [], []
    for _ in range(plan.repeats):
        order = ctx.order(plan.trial_rows)
        step_times.append(timed(nnctl_epoch, nn, data, order) / steps)
        gemm_times.append(timed(matmuls) / steps)
    outside = [1.0 - g / s for g, s in zip(gemm_times, step_times, strict=True)]
    flops = step_flops(batch)
    return {
        "batch": batch,
        "step_us": median(step_times) * 1e6,
        "gemm_us": median(gemm_times) * 1e6,
        "outside_fraction": median(outside),
        "outside_range": spread(outside),
        "step_gflops": flops / median(step_times) / 1e9,
        "gemm_gflops": flops / median(gemm_times) / 1e9,
        "peak_gflops_2048": matmul_peak(repeats=max(3, plan.repeats // 2)),
        "flops_per_step": flops,
    }


def suite_infer(ctx: Context) -> dict:
    """Inference on one batch of 4096 rows: ``Network.forward`` (a^L) vs PyTorch (softmax of logits)."""
    plan = ctx.plan
    x = np.ascontiguousarray(ctx.data.X[: plan.infer_batch])
    nn = NnctlTrainer(plan.infer_batch)
    contenders = {"nnctl": lambda: nn.net.forward(x)}
    if ctx.torch is None:
        notes = [ctx.torch_note]
    else:
        notes = []
        contenders["torch"] = peers.TorchTrainer(ctx.torch, ctx.data, 32).predictor(x)

    def run(fn: Callable[[], object]) -> None:
        for _ in range(plan.infer_calls):
            fn()

    for fn in contenders.values():
        run(fn)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(plan.repeats):
        for name, fn in contenders.items():
            rates[name].append(plan.infer_batch * plan.infer_calls / timed(run, fn))
    out = {
        "batch": plan.infer_batch,
        "notes": notes,
        "samples_per_s": {name: median(r) for name, r in rates.items()},
        "raw": rates,
    }
    if "torch" in rates:
        out["vs_torch"] = ratio_entry(rates["nnctl"], rates["torch"])
    return out


def suite_scaling(ctx: Context) -> dict:
    """Epoch time of nnctl's Trainer at growing data sizes (sizes interleaved within each repeat)."""
    plan = ctx.plan
    sizes, batch = plan.scaling_rows, plan.scaling_batch
    data = make_w1(max(sizes), seed=7)
    trainers = {n: ProductTrainer(data.head(n), batch) for n in sizes}
    trainers[min(sizes)].epoch()
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(plan.repeats):
        for n in sizes:
            times[n].append(timed(trainers[n].epoch))
    trained = dict(zip(sizes, sizes, strict=True))  # the trainer runs the last, partial batch too
    per_row = {n: median(times[n]) / trained[n] for n in sizes}
    reference = median(list(per_row.values()))
    rows = {
        n: {
            "epoch_s": median(times[n]),
            "us_per_row": per_row[n] * 1e6,
            "deviation": per_row[n] / reference - 1.0,
            "raw": times[n],
        }
        for n in sizes
    }
    return {
        "batch": batch,
        "sizes": rows,
        "max_abs_deviation": max(abs(r["deviation"]) for r in rows.values()),
        "reference_us_per_row": reference * 1e6,
    }


def child_command(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def suite_memory(ctx: Context) -> dict:
    """Peak RSS of a fresh process that builds W1 and trains it with nnctl's Trainer (no torch loaded)."""
    plan = ctx.plan
    steps = "epoch" if plan.memory_steps is None else str(plan.memory_steps)
    cmd = child_command("--memory-child", str(plan.memory_rows), steps, "--threads", str(ctx.threads))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["child failed"]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["over_dataset_mb"] = (result["peak_bytes"] - result["dataset_bytes"]) / MB
    return result


def peak_rss() -> int:
    """Peak resident memory of this process in bytes: VmHWM, the high-water mark of its own address
    space, where Linux has it. (``ru_maxrss`` would do in a process started from a small parent,
    but a child forked from this benchmark inherits the parent's RSS at fork as its starting
    maximum, torch and data included.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def memory_child(rows: int, steps: str) -> None:
    """Runs in its own process: peak RSS after imports, after building the data, after training."""
    baseline = peak_rss()
    data = make_w1(rows)
    after_data = peak_rss()
    trained = rows if steps == "epoch" else min(rows, int(steps) * 128)
    ProductTrainer(data.head(trained), 128).epoch()
    peak = peak_rss()
    print(
        json.dumps(
            {
                "rows": rows,
                "trained_rows": trained,
                "dataset_bytes": data.nbytes,
                "baseline_bytes": baseline,
                "after_data_bytes": after_data,
                "peak_bytes": peak,
                "training_overhead_mb": (peak - after_data) / MB,
            }
        )
    )


def suite_blasenv(ctx: Context) -> dict:
    """The train comparison with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as set and unset, each in
    child processes (this process and the tests never change them), rounds alternating."""
    present = {k: os.environ[k] for k in BLAS_ENV if k in os.environ}
    if not present:
        return {"note": "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are not set: nothing to compare"}
    plan = ctx.plan
    variants = {
        "as set": dict(os.environ),
        "unset": {k: v for k, v in os.environ.items() if k not in BLAS_ENV},
    }
    rows = 1_536 if plan.quick else 7_680
    args = ["--blas-child", str(rows), "--threads", str(ctx.threads), *(["--quick"] if plan.quick else [])]
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(1 if plan.quick else 2):
        for name, env in variants.items():
            done = subprocess.run(child_command(*args), capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                return {"error": done.stderr.strip().splitlines()[-1:] or ["child failed"]}
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out: dict = {"env": present, "trial_rows": rows, "variants": {}}
    for name, results in runs.items():
        batches: dict = {}
        for batch in results[0]["batches"]:
            raw = {
                who: [r for res in results for r in res["batches"][batch]["raw"][who]]
                for who in results[0]["batches"][batch]["raw"]
            }
            row: dict = {"samples_per_s": {who: median(v) for who, v in raw.items()}}
            for peer in ("torch", "sklearn"):
                if peer in raw:
                    row[f"vs_{peer}"] = ratio_entry(raw["nnctl"], raw[peer])
            batches[batch] = row
        out["variants"][name] = {
            "architecture": results[0]["architecture"],
            "peak_gflops_2048": median([r["peak"] for r in results]),
            "batches": batches,
            "notes": results[0]["notes"],
        }
    base = out["variants"]["as set"]["batches"]
    unset = out["variants"]["unset"]["batches"]
    out["nnctl_unset_over_set"] = {
        b: unset[b]["samples_per_s"]["nnctl"] / base[b]["samples_per_s"]["nnctl"] for b in base
    }
    return out


def blas_child(rows: int, threads: int, quick: bool) -> None:
    """Runs in a child process: the train suite (small trials, 3 repeats) and the matmul peak;
    with ``--quick`` on less data and without scikit-learn, the slowest contender."""
    try:
        from threadpoolctl import threadpool_info

        arch = next((i.get("architecture") for i in threadpool_info() if i.get("user_api") == "blas"), None)
    except ImportError:
        arch = None
    plan = Plan(quick=True, repeats=3, data_rows=8_192 if quick else 16_384, trial_rows=rows)
    ctx = Context(plan, threads)
    if quick:
        ctx.sklearn, ctx.sklearn_note = None, "scikit-learn: skipped in --quick"
    result = suite_train(ctx)
    result["architecture"] = arch
    result["peak"] = matmul_peak(repeats=3)
    print(json.dumps(result))


# -- report ----------------------------------------------------------------------------------
def targets(results: dict) -> list[dict]:
    rows = []
    train = results.get("train", {}).get("batches", {})
    for batch, goal in ((32, 1.3), (128, 1.3), (512, 1.0)):
        entry = train.get(batch, {}).get("vs_torch")
        rows.append(target(f"train ÷ PyTorch, batch {batch}", entry and entry["median"], goal))
    for batch, goal in ((32, 2.5), (128, 1.7)):
        entry = train.get(batch, {}).get("vs_sklearn")
        rows.append(target(f"train ÷ sklearn, batch {batch}", entry and entry["median"], goal))
    if "roofline" in results:
        value = results["roofline"]["outside_fraction"]
        rows.append(target("time outside GEMMs, batch 128", value, 0.15, at_most=True, unit="frac"))
    if "infer" in results:
        entry = results["infer"].get("vs_torch")
        rows.append(target("inference ÷ PyTorch, batch 4096", entry and entry["median"], 1.0))
    if "scaling" in results:
        value = results["scaling"]["max_abs_deviation"]
        rows.append(target("epoch time vs linear (max deviation)", value, 0.10, at_most=True, unit="frac"))
    if "memory" in results and "peak_bytes" in results["memory"]:
        value = results["memory"]["over_dataset_mb"]
        rows.append(target("peak RSS − dataset bytes", value, 200.0, at_most=True, unit="MB"))
    ran_train = "train" in results
    return [r for r in rows if r["value"] is not None or (ran_train and r["target"].startswith("train"))]


def markdown(results: dict) -> str:
    env, plan = results["environment"], results["plan"]
    lines = [
        f"# nnctl benchmark — {env['time']}{' (quick)' if plan['quick'] else ''}",
        "",
        f"- CPU: {env['cpu']}, {env['cpus']} CPUs; threads used: {env['threads']}"
        + (f" (torch: {env['torch_threads']})" if "torch_threads" in env else ""),
        f"- Python {env['python']}; nnctl {env['nnctl']}; numpy {env['numpy']}; "
        f"torch {env['torch'] or 'not installed'}; scikit-learn {env['sklearn'] or 'not installed'}",
    ]
    for lib in env["blas"]:
        if "note" in lib:
            lines.append(f"- {lib['note']}")
        else:
            lines.append(
                f"- {lib['user_api']}: {lib['library']} {lib['version']}, {lib['threads']} threads, "
                f"architecture {lib['architecture'] or '—'} ({lib['file']})"
            )
    others = [lib for lib in env["blas"] if lib.get("threads") not in (None, env["threads"])]
    if others:  # a library loaded after the limit was set would run with its own thread count
        lines.append(
            "- **note**: not every library runs the threads asked for: "
            + ", ".join(f"{lib['file']} {lib['threads']}" for lib in others)
        )
    if "torch_blas" in env:
        lines.append(
            f"- PyTorch BLAS: {env['torch_blas']} ({env.get('torch_blas_version', 'version unknown')}), "
            f"CPU capability {env['torch_cpu_capability']}"
        )
    if env["env"]:
        lines.append("- environment: " + ", ".join(f"{k}={v}" for k, v in env["env"].items()))
    lines.append(f"- repeats: {plan['repeats']} (medians; ratios are medians of back-to-back pairs, range)")
    if env.get("load_average_start") is not None:
        load = f"- load average (1 min) before the run: {env['load_average_start']:.2f}"
        if env["load_average_start"] > 0.5:
            load += " — other processes were using the CPUs: rates suffer, pair ratios less"
        lines.append(load + " (the run itself adds about one per thread)")

    if "train" in results:
        tr = results["train"]
        lines += [
            "",
            f"## Training W1 (samples/s, {tr['trial_rows']:,} rows per trial)",
            "",
            "nnctl is its `Trainer` (as `nnctl train` runs it, without files or display); the bare step "
            "is the same step without the trainer around it.",
            "",
            "| batch | nnctl | PyTorch | scikit-learn | nnctl ÷ PyTorch | nnctl ÷ sklearn "
            "| bare step | trainer ÷ bare step |",
            "|---:|---:|---:|---:|---|---|---:|---|",
        ]
        for batch, row in tr["batches"].items():
            rate = row["samples_per_s"]
            lines.append(
                f"| {batch} | {fmt_rate(rate['nnctl'])} | {fmt_rate(rate.get('torch'))} | "
                f"{fmt_rate(rate.get('sklearn'))} | {fmt_ratio(row.get('vs_torch'))} | "
                f"{fmt_ratio(row.get('vs_sklearn'))} | {fmt_rate(rate.get('step'))} | "
                f"{fmt_ratio(row.get('trainer_over_step'))} |"
            )
        lines += [f"- {note}" for note in tr["notes"]]
    if "process" in results:
        pr = results["process"]
        lines += ["", "## Whole processes: `nnctl train` vs a PyTorch and a scikit-learn script", ""]
        if "error" in pr:
            lines.append(f"- failed: {pr['error']}")
        else:
            wall, rate = pr["wall_s"], pr["samples_per_s"]
            lines += [
                f"{pr['rows']:,} rows ({pr['dataset_mb']:.0f} MB of float32 x.npy), {pr['epochs']} "
                f"epoch(s) at batch {pr['batch']}; start to exit, fresh processes; "
                "rate = rows trained ÷ wall time.",
                "",
                "| | nnctl | PyTorch | scikit-learn | nnctl ÷ PyTorch | nnctl ÷ sklearn |",
                "|---|---:|---:|---:|---|---|",
                f"| wall | {wall['nnctl']:.2f} s | "
                + (f"{wall['torch']:.2f} s" if "torch" in wall else "—")
                + " | "
                + (f"{wall['sklearn']:.2f} s" if "sklearn" in wall else "—")
                + f" | {fmt_ratio(pr.get('vs_torch'))} | {fmt_ratio(pr.get('vs_sklearn'))} |",
                f"| samples/s | {fmt_rate(rate['nnctl'])} | {fmt_rate(rate.get('torch'))} | "
                f"{fmt_rate(rate.get('sklearn'))} | | |",
                f"- nnctl's epochs took {pr['nnctl_epochs_s']:.2f} s of its {wall['nnctl']:.2f} s "
                f"(history.csv); start-up, reading, preparing and writing: "
                f"{pr['nnctl_outside_epochs_s']:.2f} s",
            ]
            lines += [f"- {note}" for note in pr["notes"]]
    if "roofline" in results:
        rf = results["roofline"]
        lines += [
            "",
            f"## GEMM roofline, batch {rf['batch']}",
            "",
            "| step | 8 matmuls alone | outside matmuls | step GFLOP/s | matmuls GFLOP/s | 2048³ peak |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {rf['step_us']:.0f} µs | {rf['gemm_us']:.0f} µs | **{rf['outside_fraction']:.1%}** "
            f"({rf['outside_range'][0]:.1%}–{rf['outside_range'][1]:.1%}) | {rf['step_gflops']:.0f} | "
            f"{rf['gemm_gflops']:.0f} | {rf['peak_gflops_2048']:.0f} |",
        ]
    if "infer" in results:
        inf = results["infer"]
        rate = inf["samples_per_s"]
        lines += [
            "",
            f"## Inference, batch {inf['batch']} (samples/s)",
            "",
            "| nnctl | PyTorch | nnctl ÷ PyTorch |",
            "|---:|---:|---|",
            f"| {fmt_rate(rate['nnctl'])} | {fmt_rate(rate.get('torch'))} | "
            f"{fmt_ratio(inf.get('vs_torch'))} |",
        ]
        lines += [f"- {note}" for note in inf["notes"]]
    if "scaling" in results:
        sc = results["scaling"]
        lines += [
            "",
            f"## Scaling: one epoch at batch {sc['batch']}",
            "",
            "| rows | epoch | µs/row | vs linear |",
            "|---:|---:|---:|---:|",
        ]
        for n, row in sc["sizes"].items():
            lines.append(
                f"| {n:,} | {row['epoch_s']:.2f} s | {row['us_per_row']:.2f} | {row['deviation']:+.1%} |"
            )
        lines.append(f"- linear = the median µs/row over all sizes ({sc['reference_us_per_row']:.2f})")
    if "memory" in results:
        mem = results["memory"]
        lines += ["", "## Peak memory of training W1 (fresh process without torch, peak RSS)", ""]
        if "error" in mem:
            lines.append(f"- child failed: {mem['error']}")
        else:
            lines += [
                "| rows | dataset | after imports | after data | peak | peak − dataset | training adds |",
                "|---:|---:|---:|---:|---:|---:|---:|",
                f"| {mem['rows']:,} | {mem['dataset_bytes'] / MB:.0f} MB | "
                f"{mem['baseline_bytes'] / MB:.0f} MB | "
                f"{mem['after_data_bytes'] / MB:.0f} MB | {mem['peak_bytes'] / MB:.0f} MB | "
                f"**{mem['over_dataset_mb']:.0f} MB** | {mem['training_overhead_mb']:.1f} MB |",
                f"- trained {mem['trained_rows']:,} rows at batch 128",
            ]
    if "blasenv" in results:
        be = results["blasenv"]
        lines += ["", "## OpenBLAS kernel selection: the train comparison in child processes", ""]
        if "variants" not in be:
            lines.append(f"- {be.get('note') or be.get('error')}")
        else:
            lines += [
                "| OpenBLAS env | kernel | batch | nnctl | PyTorch | scikit-learn "
                "| nnctl ÷ PyTorch | nnctl ÷ sklearn |",
                "|---|---|---:|---:|---:|---:|---|---|",
            ]
            for name, v in be["variants"].items():
                label = ", ".join(f"{k}={val}" for k, val in be["env"].items()) if name == "as set" else name
                for batch, row in v["batches"].items():
                    rate = row["samples_per_s"]
                    lines.append(
                        f"| {label} | {v['architecture']} | {batch} | {fmt_rate(rate['nnctl'])} | "
                        f"{fmt_rate(rate.get('torch'))} | {fmt_rate(rate.get('sklearn'))} | "
                        f"{fmt_ratio(row.get('vs_torch'))} | {fmt_ratio(row.get('vs_sklearn'))} |"
                    )
            peaks = ", ".join(
                f"{name} {v['peak_gflops_2048']:.0f} GFLOP/s" for name, v in be["variants"].items()
            )
            gain = ", ".join(f"b={b}: {r:.2f}×" for b, r in be["nnctl_unset_over_set"].items())
            lines.append(f"- {be['trial_rows']:,} rows per trial; 2048³ matmul: {peaks}")
            lines.append(f"- nnctl with the variables unset ÷ as set: {gain}")
    rows = results.get("targets", [])
    if rows:
        lines += ["", "## Targets", "", "| target | measured | goal | met |", "|---|---:|---:|---|"]
        for row in rows:
            if row["value"] is None:
                lines.append(f"| {row['target']} | — | {row['goal']} | not measured |")
                continue
            unit = row["unit"]
            if unit == "frac":
                value, goal = f"{row['value']:.1%}", f"≤ {row['goal']:.0%}"
            elif unit == "MB":
                value, goal = f"{row['value']:.0f} MB", f"≤ {row['goal']:.0f} MB"
            else:
                value, goal = f"{row['value']:.2f}×", f"≥ {row['goal']:.1f}×"
            lines.append(f"| {row['target']} | {value} | {goal} | {'met' if row['met'] else '**not met**'} |")
    return "\n".join(lines) + "\n"


def limit_threads(threads: int | None) -> object:
    """Limit every BLAS/OpenMP library loaded so far to ``threads`` (None: leave them)."""
    if threads is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl not installed: --threads cannot limit BLAS", file=sys.stderr)
        return None
    return threadpool_limits(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--suite", default="all", help=f"{', '.join(SUITES)} or all; several as a comma-separated list"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats, ≥ 3 (7; quick 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes: --suite all in < 1 min")
    parser.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP threads (default: numpy's)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where JSON and Markdown go")
    parser.add_argument("--memory-child", nargs=2, metavar=("ROWS", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--blas-child", type=int, metavar="ROWS", help=argparse.SUPPRESS)
    parser.add_argument(
        "--peer-process", nargs=4, metavar=("PEER", "DIR", "BATCH", "EPOCHS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.threads is not None:
        peers.load_torch()  # load every peer's BLAS and OpenMP first: a limit applies to those loaded
        peers.load_sklearn()
    limiter = limit_threads(args.threads)
    if args.memory_child:
        memory_child(int(args.memory_child[0]), args.memory_child[1])
        return 0
    if args.peer_process:
        peer, folder, batch, epochs = args.peer_process
        peer_process(peer, Path(folder), int(batch), int(epochs), args.threads or numpy_blas_threads())
        return 0
    if args.blas_child:
        blas_child(args.blas_child, args.threads or numpy_blas_threads(), args.quick)
        return 0
    if args.repeats is not None and args.repeats < 3:
        parser.error("--repeats must be at least 3")

    threads = args.threads or numpy_blas_threads()
    plan = Plan.make(args.quick, args.repeats)
    ctx = Context(plan, threads)
    results: dict = {
        "environment": environment(ctx.torch, ctx.sklearn, threads),
        "plan": plan.__dict__,
    }
    suites = SUITES if args.suite == "all" else tuple(args.suite.split(","))
    unknown = [name for name in suites if name not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)} or all")
    runners = {
        "train": suite_train,
        "process": suite_process,
        "roofline": suite_roofline,
        "infer": suite_infer,
        "scaling": suite_scaling,
        "memory": suite_memory,
        "blasenv": suite_blasenv,
    }
    started = time.perf_counter()
    for name in suites:
        t0 = time.perf_counter()
        print(f"[{name}] running ...", file=sys.stderr, flush=True)
        results[name] = runners[name](ctx)
        print(f"[{name}] {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    results["seconds"] = time.perf_counter() - started
    if hasattr(os, "getloadavg"):
        results["environment"]["load_average_end"] = os.getloadavg()[0]
    results["targets"] = targets(results)
    del limiter

    text = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{stamp}-{args.suite.replace(',', '+')}{'-quick' if args.quick else ''}"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"wrote {args.out / stem}.json and .md ({results['seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
