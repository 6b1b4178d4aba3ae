"""Determinism: the same config and seed give byte-identical weights.

* two runs of the same config on one machine give byte-identical W*/b* in last.npz;
* under the deterministic setting (``--deterministic`` / ``training.deterministic``), different BLAS
  thread counts give byte-identical weights too;
* the checkpoint's meta records the library versions and BLAS threads the weights came from.

Each training is a separate ``python -m nnctl`` process: BLAS reads OPENBLAS_NUM_THREADS once, when
it loads, so thread counts can only be varied across processes. Across machines (container vs host) the
comparison is made by .ci/container.sh; what is guaranteed there is in docs/docker.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "configs" / "xor.yaml"
DIGITS = ROOT / "configs" / "digits.yaml"


def _cli_missing() -> str | None:
    try:
        import nnctl.cli.app  # noqa: F401
    except ImportError as exc:
        return f"the nnctl CLI is not importable yet ({exc})"
    missing = [p.relative_to(ROOT).as_posix() for p in (XOR, DIGITS) if not p.exists()]
    return f"shipped configs missing: {', '.join(missing)}" if missing else None


pytestmark = pytest.mark.skipif(_cli_missing() is not None, reason=str(_cli_missing()))

# Threads pinned through the environment the way the Docker image does it; each test overrides
# OPENBLAS_NUM_THREADS where the thread count is the point.
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# A full-batch digits run with a wide first layer: its matrix products are big enough that OpenBLAS
# really splits them over threads, so thread counts can change the rounding (checked below).
_WIDE_FULL_BATCH = [
    "--set",
    "training.epochs=4",
    "--set",
    "training.batch_size=4096",
    "--set",
    "model.layers[0].units=256",
]


def train(config: Path, out: Path, *args: str, threads: int | None = None) -> dict[str, np.ndarray]:
    """Run `nnctl train CONFIG --out OUT ARGS` in a fresh process; return last.npz's arrays."""
    env = {k: v for k, v in os.environ.items() if k not in _BLAS_ENV}
    if threads is not None:
        env.update(dict.fromkeys(_BLAS_ENV, str(threads)))
    cmd = [sys.executable, "-m", "nnctl", "train", str(config), "--out", str(out), "--quiet", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    with np.load(out / "last.npz", allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def weight_keys(arrays: dict[str, np.ndarray]) -> list[str]:
    keys = sorted(k for k in arrays if k[:1] in ("W", "b") and k[1:].isdigit())
    assert keys, f"no W*/b* arrays in the checkpoint (keys: {sorted(arrays)})"
    return keys


def differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    """Byte-level comparison of the weights; an empty list means identical."""
    assert weight_keys(a) == weight_keys(b)
    out = []
    for key in weight_keys(a):
        x, y = a[key], b[key]
        if x.dtype != y.dtype or x.shape != y.shape:
            out.append(f"{key}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
        elif x.tobytes() != y.tobytes():
            delta = np.abs(x.astype(np.float64) - y.astype(np.float64)).max()
            out.append(f"{key}: {np.count_nonzero(x != y)}/{x.size} values differ (max |diff| {delta:.3g})")
    return out


def meta_of(arrays: dict[str, np.ndarray]) -> dict:
    return json.loads(str(arrays["meta"]))


@pytest.mark.parametrize(
    ("config", "args"),
    [
        pytest.param(XOR, (), id="xor"),
        # shuffling and a validation split on: the seeded generators must drive both identically
        pytest.param(DIGITS, ("--set", "training.epochs=3"), id="digits"),
    ],
)
def test_same_config_twice_gives_identical_weights(tmp_path: Path, config: Path, args: tuple[str, ...]):
    first = train(config, tmp_path / "a", *args)
    second = train(config, tmp_path / "b", *args)
    assert differences(first, second) == []


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def blas_threads(arrays: dict[str, np.ndarray]) -> set[int]:
    """The thread counts meta records for the BLAS pools (OpenMP pools left out)."""
    pools = meta_of(arrays)["libraries"]["blas"]
    return {pool["num_threads"] for pool in pools if pool["internal_api"] in BLAS_LIBRARIES}


#: threadpoolctl's internal_api names of BLAS libraries.
BLAS_LIBRARIES = {"openblas", "mkl", "blis", "flexiblas", "accelerate"}


def test_deterministic_is_identical_across_blas_thread_counts(tmp_path: Path):
    if usable_cpus() < 2:
        pytest.skip("one CPU: BLAS runs one thread whatever is asked, so thread counts cannot differ here")
    one = train(DIGITS, tmp_path / "t1", *_WIDE_FULL_BATCH, "--deterministic", threads=1)
    # Control first: without the setting, 2 threads must round differently from 1 here, else the
    # comparisons below could not fail and prove nothing.
    free = train(DIGITS, tmp_path / "free", *_WIDE_FULL_BATCH, threads=2)
    assert blas_threads(free) == {2}
    if not differences(one, free):
        pytest.skip(
            "this machine's BLAS gives the same weights with 1 and 2 threads even without "
            "--deterministic, so it cannot show what the setting prevents"
        )
    two = train(DIGITS, tmp_path / "t2", *_WIDE_FULL_BATCH, "--deterministic", threads=2)
    assert differences(one, two) == []
    assert blas_threads(two) == {1}  # pinned, whatever the environment asked for

    # The config key is the same switch as the flag.
    key = train(
        DIGITS, tmp_path / "key", *_WIDE_FULL_BATCH, "--set", "training.deterministic=true", threads=2
    )
    assert differences(one, key) == []


def test_deterministic_flag_is_recorded(tmp_path: Path):
    arrays = train(DIGITS, tmp_path / "det", "--set", "training.epochs=1", "--deterministic", threads=2)
    config = json.loads(str(arrays["config"]))
    assert config["training"]["deterministic"] is True


def test_meta_records_library_versions_and_threads(tmp_path: Path):
    """numpy's version and threadpoolctl's view of every BLAS pool are always written (threadpoolctl is
    a dependency); under --deterministic every BLAS pool ran one thread."""
    det = meta_of(train(DIGITS, tmp_path / "det", "--set", "training.epochs=1", "--deterministic", threads=2))
    libraries = det["libraries"]
    assert libraries["numpy"] == np.__version__
    from threadpoolctl import threadpool_info

    # numpy's own BLAS: other tests in this process may have loaded scipy's or torch's as well
    numpy_blas = [p for p in threadpool_info() if p["user_api"] == "blas" and "numpy" in p["filepath"]]
    if not numpy_blas:
        pytest.skip("threadpoolctl finds no BLAS library in this numpy: nothing to record")
    recorded = [pool for pool in libraries["blas"] if pool["internal_api"] in BLAS_LIBRARIES]
    assert {(p["internal_api"], p["version"]) for p in recorded} == {
        (p["internal_api"], p["version"]) for p in numpy_blas
    }
    for pool in recorded:
        assert pool["version"] and pool["num_threads"] == 1, pool
        assert "architecture" in pool


def test_meta_records_the_threads_a_free_run_used(tmp_path: Path):
    if usable_cpus() < 2:
        pytest.skip("one CPU: BLAS runs one thread whatever the environment asks")
    free = train(DIGITS, tmp_path / "free", "--set", "training.epochs=1", threads=2)
    assert blas_threads(free) == {2}
