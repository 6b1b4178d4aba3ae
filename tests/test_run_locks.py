"""No run silently lost: a run folder (and a sweep folder) is locked for the whole run, so a second
process is refused at once; a killed run's lock never blocks the next one; a sweep folder remembers
which sweep it holds, so another sweep is refused instead of being mixed into it.

The lock tests use two real ``nnctl`` processes; the first is stopped as soon as the second has
answered, so the tests wait on events (a lock file appearing), never on the clock.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import CLI_ENV, CONFIGS, invoke, nnctl_command, ok, run_nnctl

DIGITS = CONFIGS / "digits.yaml"
IRIS = CONFIGS / "iris.yaml"
LOCK = ".nnctl.lock"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and POSIX signals")


def flat(text: str) -> str:
    return " ".join(text.split())


def start(*args: object) -> subprocess.Popen:
    env = {**os.environ, **CLI_ENV, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*nnctl_command(), *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_lock(folder: Path, proc: subprocess.Popen, limit: float = 120) -> None:
    """Until ``proc`` holds ``folder``'s lock (its pid is in the lock file)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the first run ended early:\n{proc.communicate()[0]}"
        try:
            if (folder / LOCK).read_text().strip() == str(proc.pid):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{folder} was never locked by process {proc.pid}")


def stop(proc: subprocess.Popen, sig: int) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    output, _ = proc.communicate(timeout=120)
    return output


# ---------------------------------------------------------------------------------------------
# Run folders


def test_second_train_into_a_busy_folder_is_refused_at_once(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    first = start("train", DIGITS, "--out", out, "--quiet", "--set", "training.epochs=100000")
    try:
        wait_for_lock(out, first)
        for extra in ((), ("--force",)):  # --force overwrites a finished run, never a running one
            second = run_nnctl("train", DIGITS, "--out", out, "--set", "seed=5", *extra)
            assert second.code == 2, second.output
            message = flat(second.stderr)
            assert str(out) in message and "in use" in message
            assert f"process {first.pid}" in message
            assert first.poll() is None  # answered while the first run was still training
    finally:
        stop(first, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL
    assert (out / LOCK).exists()  # a killed process leaves its lock file behind ...
    third = run_nnctl("train", DIGITS, "--out", out, "--force", "--quiet", "--set", "training.epochs=1")
    assert third.code == 0, third.output  # ... and it blocks nobody: the kernel dropped the lock
    assert not (out / LOCK).exists()  # released (and removed) at the end of a run
    assert (out / "last.npz").exists()


def test_resume_into_a_busy_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "iris"
    ok(invoke("train", IRIS, "--out", out, "--quiet", "--set", "training.epochs=2"))
    first = start("train", IRIS, "--out", out, "--force", "--quiet", "--set", "training.epochs=1000000")
    try:
        wait_for_lock(out, first)
        second = run_nnctl("train", "--resume", out / "last.npz", "--set", "training.epochs=5")
        assert second.code == 2, second.output
        assert f"process {first.pid}" in flat(second.stderr)
    finally:
        stop(first, signal.SIGKILL)


def test_the_lock_is_released_after_a_refused_and_after_a_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "iris"
    refused = invoke("train", IRIS, "--out", out, "--set", "training.early_stopping={monitor: val_f1}")
    assert refused.code == 2
    assert not out.exists()  # the folder this refused run created is gone again
    ok(invoke("train", IRIS, "--out", out, "--quiet", "--set", "training.epochs=1"))
    assert sorted(p.name for p in out.iterdir()) == ["best.npz", "config.yaml", "history.csv", "last.npz"]


# ---------------------------------------------------------------------------------------------
# Sweep folders

SWEEP = ["--set", "training.epochs=2", "--jobs", "1"]


def summary_names(out: Path) -> list[str]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        return sorted(row["overrides"] for row in csv.DictReader(handle))


def trial_folders(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if (p / "trial.json").exists())


def test_a_different_sweep_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    grid = ["--grid", "training.learning_rate=[0.01, 0.05]"]
    ok(invoke("sweep", IRIS, *SWEEP, *grid, "--out", out, "--quiet"))
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    other = invoke("sweep", IRIS, *SWEEP, "--grid", "model.layers[0].units=[4, 8]", "--out", out)
    assert other.code == 2, other.output
    message = flat(other.output)
    assert str(out) in message and "--out" in message and "--force" in message
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing touched

    again = ok(invoke("sweep", IRIS, *SWEEP, *grid, "--out", out))  # the same sweep resumes
    assert "2 done earlier" in again.output and "nothing left to run" in again.output

    replaced = ok(
        invoke("sweep", IRIS, *SWEEP, "--grid", "model.layers[0].units=[4, 8]", "--out", out, "--force")
    )
    assert "done earlier" not in replaced.output
    assert summary_names(out) == ["model.layers[0].units=4", "model.layers[0].units=8"]
    assert trial_folders(out) == ["t001-units4", "t002-units8"]  # no trial of the other sweep left
    stored = json.loads((out / "sweep.json").read_text())
    assert len(stored["trials"]) == 2


def test_a_sweep_that_widens_the_folders_sweep_extends_it(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    ok(invoke("sweep", IRIS, *SWEEP, "--grid", "training.learning_rate=[0.05]", "--out", out, "--quiet"))
    wider = ok(invoke("sweep", IRIS, *SWEEP, "--grid", "training.learning_rate=[0.01, 0.05]", "--out", out))
    assert "1 done earlier" in wider.output
    narrower = invoke("sweep", IRIS, *SWEEP, "--grid", "training.learning_rate=[0.01]", "--out", out)
    assert narrower.code == 2  # the folder now holds the wider sweep: a part of it is another sweep
    assert "--force" in flat(narrower.output)


def test_second_sweep_into_a_busy_folder_is_refused_at_once(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    grid = ["--grid", "training.learning_rate=[0.05]", "--jobs", "1", "--set", "training.epochs=100000"]
    first = start("sweep", IRIS, *grid, "--out", out)
    try:
        wait_for_lock(out, first)
        second = run_nnctl("sweep", IRIS, *grid, "--out", out)
        assert second.code == 2, second.output
        message = flat(second.stderr)
        assert str(out) in message and f"process {first.pid}" in message
        assert first.poll() is None
    finally:
        stop(first, signal.SIGTERM)
    assert first.returncode == 143


def test_quiet_sweep_whose_trials_all_fail_says_so(tmp_path: Path) -> None:
    outcome = invoke(
        "sweep", CONFIGS / "diabetes.yaml", "--set", "training.epochs=2", "--jobs", "1", "--quiet",
        "--grid", "training.learning_rate=[1e6]", "--out", tmp_path / "sweep",
    )  # fmt: skip
    assert outcome.code == 1
    assert outcome.stdout == ""
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and "no trial finished (1 failed)" in lines[0] and "summary.csv" in lines[0]
