"""``nnctl sweep`` (issue 8): grids and random spaces on local processes and Dask, faults, resume.

Trials are tiny (iris, 5 epochs); the expensive parts are process start-up (spawned pool workers,
a Dask LocalCluster), so the grid runs are made once per module and shared.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rich.console import Console
from sweep_faults import kill_one_worker
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.cli.sweep import Display, sweep_main
from nnctl.config import load_config
from nnctl.errors import NnctlError
from nnctl.sweep.plan import build_plan
from nnctl.sweep.runner import Runner
from nnctl.sweep.spec import parse_sweep_section, sample_assignments
from nnctl.sweep.store import find_finished
from nnctl.sweep.worker import TrialOutcome

REPO = Path(__file__).resolve().parents[1]
IRIS = REPO / "configs" / "iris.yaml"
DIABETES = REPO / "configs" / "diabetes.yaml"
DIGITS = REPO / "configs" / "digits.yaml"
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
EPOCHS = "training.epochs=5"
LRS = [0.01, 0.05]
UNITS = [8, 16]
GRID = ["--grid", f"training.learning_rate={LRS}", "--grid", f"model.layers[0].units={UNITS}"]


def nnctl(*args: Any, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner(env={**ENV, **(env or {})}).invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"nnctl {args} raised {result.exception!r}\n{result.output}")
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return result.exit_code, output


def summary(folder: Path) -> dict[str, dict[str, str]]:
    with (folder / "summary.csv").open(newline="", encoding="utf-8") as handle:
        return {row["overrides"]: row for row in csv.DictReader(handle)}


def weights(path: Path) -> dict[str, bytes]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k].tobytes() for k in npz.files if k[0] in "Wb" and k[1:].isdigit()}


def overrides_of(lr: float, units: int) -> str:
    return f"training.learning_rate={lr} model.layers[0].units={units}"


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """Each grid point trained alone with ``nnctl train --deterministic``: the weights to match."""
    root = tmp_path_factory.mktemp("train")
    found = {}
    for lr in LRS:
        for units in UNITS:
            out = root / f"{lr}-{units}"
            code, output = nnctl(
                "train", IRIS, "--deterministic", "-q", "--out", out,
                "--set", EPOCHS, "--set", f"training.learning_rate={lr}",
                "--set", f"model.layers[0].units={units}",
            )  # fmt: skip
            assert code == 0, output
            found[overrides_of(lr, units)] = weights(out / "last.npz")
    return found


@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("pool") / "sweep"
    code, output = nnctl("sweep", IRIS, "--set", EPOCHS, *GRID, "--jobs", "2", "--out", out)
    assert code == 0, output
    return out, output


def assert_matches(out: Path, references: dict[str, dict[str, bytes]]) -> None:
    rows = summary(out)
    assert set(rows) == set(references)
    for overrides, row in rows.items():
        assert row["status"] == "done", row
        trained = weights(out / row["name"] / "last.npz")
        assert trained == references[overrides], f"{row['name']}: weights differ from nnctl train"


# ---------------------------------------------------------------------------------------------
# Executors: same weights as nnctl train, bit for bit


def test_local_pool_grid_matches_nnctl_train(pool_sweep, references) -> None:
    out, output = pool_sweep
    assert "4 trials" in output and "2 local processes" in output
    assert_matches(out, references)
    for row in summary(out).values():
        folder = out / row["name"]
        for name in ("last.npz", "best.npz", "history.csv", "config.yaml", "trial.json"):
            assert (folder / name).exists(), folder / name
        assert row["monitor"] == "val_loss" and float(row["value"]) > 0 and row["best_epoch"]
    assert {row["rank"] for row in summary(out).values()} == {"1", "2", "3", "4"}
    assert "t001-lr0.01-units8" in output and "ranked by val_loss" in output


def test_dask_local_cluster_grid_matches_nnctl_train(tmp_path, references) -> None:
    pytest.importorskip("distributed", reason="Dask's distributed is not installed (pip install nnctl[dask])")
    out = tmp_path / "sweep"
    code, output = nnctl("sweep", IRIS, "--set", EPOCHS, *GRID, "--dask-local", "2", "--out", out)
    assert code == 0, output
    assert "local Dask cluster of 2 workers" in output
    assert_matches(out, references)


def test_existing_dask_cluster_via_scheduler_address(tmp_path, references) -> None:
    distributed = pytest.importorskip("distributed", reason="Dask's distributed is not installed")
    out = tmp_path / "sweep"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        code, output = nnctl(
            "sweep", IRIS, "--set", EPOCHS, "--grid", f"training.learning_rate={LRS}",
            "--grid", "model.layers[0].units=[8]", "--scheduler", cluster.scheduler_address, "--out", out,
        )  # fmt: skip
    assert code == 0, output
    assert f"the Dask cluster at {cluster.scheduler_address}" in output
    rows = summary(out)
    assert len(rows) == 2
    for overrides, row in rows.items():
        assert weights(out / row["name"] / "last.npz") == references[overrides]


def test_best_yaml_loads_and_trains_the_winner(pool_sweep, tmp_path) -> None:
    out, _ = pool_sweep
    rows = summary(out).values()
    winner = next(row for row in rows if row["rank"] == "1")
    assert float(winner["value"]) == min(float(row["value"]) for row in rows)
    config = load_config(out / "best.yaml")
    assert config.name == f"iris-{winner['name']}"
    code, output = nnctl("train", out / "best.yaml", "-q", "--out", tmp_path / "again")
    assert code == 0, output
    assert weights(tmp_path / "again" / "last.npz") == weights(out / winner["name"] / "last.npz")


def test_missing_distributed_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code, output = nnctl("sweep", IRIS, *GRID, "--dask-local", "2", "--out", tmp_path / "s")
    assert code == 2
    assert "nnctl[dask]" in output


# ---------------------------------------------------------------------------------------------
# Faults


def test_diverging_trial_is_recorded_failed_and_others_finish(tmp_path) -> None:
    out = tmp_path / "sweep"
    code, output = nnctl(
        "sweep", DIABETES, "--set", "training.epochs=3",
        "--grid", "training.learning_rate=[0.0005, 1e6]", "--jobs", "2", "--out", out,
    )  # fmt: skip
    assert code == 0, output
    rows = summary(out)
    assert rows["training.learning_rate=0.0005"]["status"] == "done"
    failed = rows["training.learning_rate=1000000.0"]
    assert failed["status"] == "failed" and "diverged" in failed["error"] and failed["rank"] == ""
    assert "failed" in output and "RuntimeWarning" not in output
    assert load_config(out / "best.yaml").training.learning_rate == 0.0005


def test_all_trials_failing_exits_1(tmp_path) -> None:
    out = tmp_path / "sweep"
    code, output = nnctl(
        "sweep", DIABETES, "--set", "training.epochs=2",
        "--grid", "training.learning_rate=[1e6]", "--jobs", "1", "--out", out,
    )  # fmt: skip
    assert code == 1, output
    assert [row["status"] for row in summary(out).values()] == ["failed"]
    assert not (out / "best.yaml").exists()


def test_killed_worker_is_retried_and_the_sweep_completes(tmp_path, references) -> None:
    marker = tmp_path / "killed"
    out = tmp_path / "sweep"
    grid = [GRID[1], GRID[3]]
    console = Console(file=io.StringIO(), width=200, color_system=None)
    code = sweep_main(
        IRIS, grid=grid, random=None, seed=None, monitor=None, jobs=2, scheduler=None, dask_local=None,
        out=out, retries=1, overrides=[EPOCHS], quiet=False, console=console,
        trial_callbacks=kill_one_worker(str(marker)),
    )  # fmt: skip
    output = console.file.getvalue()
    assert code == 0, output
    killed = marker.read_text()  # the trial whose worker process was SIGKILLed after its first epoch
    assert "worker process died" in output
    rows = {row["name"]: row for row in summary(out).values()}
    assert int(rows[killed]["attempts"]) >= 2
    assert_matches(out, references)  # the retried trial's weights are the same as ever


class FakePool:
    """A local pool in miniature: the trial named ``bad`` kills its process every time, which (as in
    ProcessPoolExecutor) breaks every future of that pool."""

    breaks_all = True

    def __init__(self) -> None:
        self.generation = 1
        self.pending: list[tuple[int, Future]] = []

    def describe(self) -> str:
        return "fake"

    def capacity(self) -> int:
        return 2

    def submit(self, task: Any) -> Future:
        future: Future = Future()
        generation = self.generation
        self.pending.append((generation, future))
        if "lr0.05" in task.name:
            threading.Timer(0.02, self._break, (generation,)).start()
        else:
            outcome = TrialOutcome("done", "", [{"epoch": 1, "val_loss": 0.5}], None, None, 0.1, "fake")
            threading.Timer(0.2, self._finish, (future, outcome)).start()
        return future

    def _break(self, generation: int) -> None:
        for gen, future in self.pending:
            if gen == generation and not future.done():
                future.set_exception(BrokenProcessPool("a process died"))

    def _finish(self, future: Future, outcome: TrialOutcome) -> None:
        if not future.done():
            future.set_result(outcome)

    def is_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, BrokenProcessPool)

    def wait(self, futures: list[Future], timeout: float) -> None:
        wait_futures(futures, timeout=timeout)

    def restart(self) -> None:
        self.generation += 1


@pytest.mark.parametrize("retries", [0, 1])
def test_a_trial_that_keeps_killing_its_worker_fails_alone(tmp_path, retries) -> None:
    plan = build_plan(
        IRIS, grid=["training.learning_rate=[0.01, 0.05, 0.1]"], random=None, seed=0,
        monitor=None, overrides=[EPOCHS],
    )  # fmt: skip
    out = tmp_path / "sweep"
    find_finished(out, plan)
    Runner(plan, FakePool(), out, retries, Display(Console(), True, plan)).run()
    by_name = {t.name: t for t in plan.trials}
    bad = by_name["t002-lr0.05"]
    assert bad.status == "failed" and "worker lost" in bad.error
    # broke the pool with t001 in flight (nobody charged), then alone: 1 + (retries + 1) runs
    assert bad.attempts == retries + 2
    assert by_name["t001-lr0.01"].status == "done" and by_name["t001-lr0.01"].attempts == 2
    assert by_name["t003-lr0.1"].status == "done" and by_name["t003-lr0.1"].attempts == 1


# ---------------------------------------------------------------------------------------------
# Resume


def test_rerun_skips_trials_already_done(tmp_path) -> None:
    out = tmp_path / "sweep"
    code, output = nnctl("sweep", IRIS, "--set", EPOCHS, "--grid", "training.learning_rate=[0.05]",
                         "--jobs", "1", "--out", out)  # fmt: skip
    assert code == 0, output
    first = out / "t001-lr0.05" / "last.npz"
    stamp = first.stat().st_mtime_ns
    code, output = nnctl("sweep", IRIS, "--set", EPOCHS, "--grid", "training.learning_rate=[0.01, 0.05]",
                         "--jobs", "2", "--out", out)  # fmt: skip
    assert code == 0, output
    assert "1 done earlier" in output
    assert first.stat().st_mtime_ns == stamp  # not trained again
    rows = summary(out)
    assert [rows[f"training.learning_rate={lr}"]["status"] for lr in (0.01, 0.05)] == ["done", "done"]
    assert rows["training.learning_rate=0.05"]["name"] == "t001-lr0.05"  # where its files are
    code, output = nnctl("sweep", IRIS, "--set", EPOCHS, "--grid", "training.learning_rate=[0.01, 0.05]",
                         "--out", out)  # fmt: skip
    assert code == 0 and "2 done earlier" in output and "nothing left to run" in output


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path) -> None:
    out = tmp_path / "sweep"
    script = Path(sys.executable).with_name("nnctl")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "nnctl"]
    args = ["sweep", str(DIGITS), "--set", "training.epochs=60", "--out", str(out), "--jobs", "2",
            "--grid", "training.learning_rate=[0.01, 0.02, 0.05, 0.1]"]  # fmt: skip
    process = subprocess.Popen(
        command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV}
    )
    deadline = time.monotonic() + 60
    while not glob.glob(str(out / "*" / "trial.json")) and process.poll() is None:
        assert time.monotonic() < deadline, "no trial finished within a minute"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    if process.returncode == 0:  # pragma: no cover - the machine finished all trials first
        pytest.skip("the sweep finished before the interrupt arrived")
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "interrupted" in stderr, stdout + stderr
    finished = {p.parent.name for p in out.glob("*/trial.json")}
    assert finished and all((out / name / "last.npz").exists() for name in finished)
    code, output = nnctl("sweep", *args[1:])
    assert code == 0, output
    assert f"{len(finished)} done earlier" in output, (sorted(finished), output)
    assert all(row["status"] == "done" for row in summary(out).values())


# ---------------------------------------------------------------------------------------------
# Spec and validation: everything fails before any trial runs


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--grid", "training.learnin_rate=[0.1, 0.2]"], "did you mean 'learning_rate'"),
        (["--grid", "training.learning_rate=0.1"], "expected a non-empty YAML list"),
        (["--grid", "training.learning_rate=[0.1, -1]"], "training.learning_rate"),
        (["--grid", "model.layers[5].units=[4]"], "out of range"),
        (["--grid", "training.learning_rate=[0.1]", "--monitor", "val_acc"], "did you mean 'val_accuracy'"),
        (["--grid", "model.layers[1].units=[2, 3]"], "output layer has 2 units"),  # 2 outputs for 3 classes
        (["--grid", "training.learning_rate=[0.1]", "--jobs", "2", "--dask-local", "2"], "exclude"),
        (["--set", "training.epochs=5"], "nothing to sweep"),
    ],
)
def test_bad_spec_fails_fast_with_exit_2(tmp_path, args, expected) -> None:
    out = tmp_path / "sweep"
    code, output = nnctl("sweep", IRIS, *args, "--out", out)
    assert code == 2, output
    assert expected in output
    assert not out.exists()  # nothing ran, nothing written


def test_sweep_file_with_random_space_is_reproducible(tmp_path) -> None:
    spec = tmp_path / "space.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "sweep": {
                    "config": str(IRIS),
                    "grid": {"model.layers[0].activation": ["tanh", "relu"]},
                    "random": {
                        "training.learning_rate": {"loguniform": [1e-3, 1e-1]},
                        "model.layers[0].units": {"uniform": [4, 32], "integer": True},
                        "training.batch_size": {"choice": [8, 16]},
                    },
                    "trials": 5,
                    "seed": 3,
                }
            }
        )
    )

    def ids(**kwargs: Any) -> list[str]:
        options = {"grid": [], "random": None, "seed": 0, "monitor": None, "overrides": [], **kwargs}
        return [t.id for t in build_plan(spec, **options).trials]

    first = build_plan(spec, grid=[], random=None, seed=0, monitor=None, overrides=[])
    assert len(first.trials) == 5 and first.seed == 3
    for trial in first.trials:
        assert 1e-3 <= trial.config.training.learning_rate <= 1e-1
        assert isinstance(trial.config.model.layers[0].units, int)
        assert trial.config.training.deterministic
    assert ids() == [t.id for t in first.trials]  # same seed, same trials
    assert ids(seed=4) != ids()  # --seed overrides the file's seed
    assert len(ids(random=2)) == 2  # --random overrides trials:


def test_sweep_section_inside_the_config_and_grid_sampling(tmp_path) -> None:
    config = yaml.safe_load(IRIS.read_text())
    config["data"]["path"] = str(REPO / "datasets" / "iris.csv")
    config["sweep"] = {"grid": {"training.learning_rate": [0.01, 0.1], "training.batch_size": [8, 16, 32]}}
    path = tmp_path / "iris.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    plan = build_plan(path, grid=[], random=None, seed=0, monitor="val_accuracy", overrides=[])
    assert [t.name for t in plan.trials][:2] == ["t001-lr0.01-bs8", "t002-lr0.01-bs16"]
    assert len(plan.trials) == 6 and plan.maximize
    sampled = build_plan(path, grid=[], random=4, seed=1, monitor=None, overrides=[])
    assert len({t.id for t in sampled.trials}) == 4  # distinct grid points
    # --grid replaces the file's entry for the same key
    narrowed = build_plan(path, grid=["training.batch_size=[64]"], random=None, seed=0, monitor=None,
                          overrides=[])  # fmt: skip
    assert len(narrowed.trials) == 2


def test_spec_parsing_errors() -> None:
    with pytest.raises(NnctlError, match="did you mean 'trials'"):
        parse_sweep_section({"trails": 3}, "f.yaml")
    with pytest.raises(NnctlError, match="low < high"):
        parse_sweep_section({"random": {"training.learning_rate": {"uniform": [1, 0]}}}, "f.yaml")
    with pytest.raises(NnctlError, match="positive"):
        parse_sweep_section({"random": {"training.learning_rate": {"loguniform": [0, 1]}}}, "f.yaml")
    spec, _ = parse_sweep_section({"random": {"seed": {"choice": [1, 2]}}}, "f.yaml")
    with pytest.raises(NnctlError, match="number of trials"):
        sample_assignments(spec, None, 0)


def test_sweep_main_signature_is_the_clis(tmp_path) -> None:
    code = sweep_main(
        IRIS, grid=["training.learning_rate=[0.05]"], random=None, seed=0, monitor="val_accuracy",
        jobs=1, scheduler=None, dask_local=None, out=tmp_path / "s", retries=1,
        overrides=[EPOCHS], quiet=True, console=Console(file=open(os.devnull, "w")),  # noqa: SIM115
    )  # fmt: skip
    assert code == 0
    assert (tmp_path / "s" / "best.yaml").exists()
