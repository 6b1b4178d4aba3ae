"""``nnctl sweep`` (issue 8): grids and random spaces on local processes and Dask, faults, resume.

Trials are tiny (iris, 5 epochs); the expensive parts are process start-up (spawned pool workers,
a Dask LocalCluster), so the grid runs are made once per module and shared.
"""

from __future__ import annotations

import csv
import glob
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import weights
from rich.console import Console
from sweep_faults import kill_one_worker
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.cli.sweep import sweep_main
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


def history_of(folder: Path) -> list[dict[str, str]]:
    with (folder / "history.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_summary_is_the_histories(out: Path, monitor: str, maximize: bool) -> list[dict[str, str]]:
    """Each row's value and best epoch are the best of its trial's history.csv; ranks follow them
    (ties in trial order). Returns the rows in rank order."""
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    done = [row for row in rows if row["status"] == "done"]
    for row in done:
        epochs = history_of(out / row["name"])
        values = [float(e[monitor]) for e in epochs]
        best = max(values) if maximize else min(values)
        assert row["monitor"] == monitor
        assert float(row["value"]) == best, (row, values)
        assert int(row["best_epoch"]) == int(epochs[values.index(best)]["epoch"])
        assert int(row["epochs"]) == len(epochs)
    sign = -1.0 if maximize else 1.0
    order = sorted(done, key=lambda row: (sign * float(row["value"]), rows.index(row)))
    assert [row["rank"] for row in order] == [str(rank) for rank in range(1, len(order) + 1)]
    assert all(row["rank"] == "" for row in rows if row["status"] != "done")
    return order


def test_summary_rows_ranks_and_values(pool_sweep) -> None:
    out, _ = pool_sweep
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # one row per grid point, in plan order: the product of the two lists, first key slowest
    assert [row["overrides"] for row in rows] == [overrides_of(lr, units) for lr in LRS for units in UNITS]
    assert [row["name"] for row in rows] == [
        f"t00{i + 1}-lr{lr}-units{units}" for i, (lr, units) in enumerate((a, b) for a in LRS for b in UNITS)
    ]
    assert all(row["status"] == "done" and row["attempts"] == "1" and row["error"] == "" for row in rows)
    order = assert_summary_is_the_histories(out, "val_loss", maximize=False)
    assert len({row["value"] for row in order}) == 4  # four different values: the ranking is a real order
    winner = load_config(out / "best.yaml")
    assert winner.name == f"iris-{order[0]['name']}"


def test_ranking_on_a_maximized_metric(tmp_path) -> None:
    out = tmp_path / "sweep"
    code, output = nnctl(
        "sweep", IRIS, "--set", "training.epochs=3", "--monitor", "val_accuracy",
        "--grid", "training.learning_rate=[0.0002, 0.2, 0.002]", "--jobs", "1", "--out", out,
    )  # fmt: skip
    assert code == 0, output
    assert "ranked by val_accuracy" in output
    order = assert_summary_is_the_histories(out, "val_accuracy", maximize=True)
    values = [float(row["value"]) for row in order]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    assert order[0]["overrides"] == "training.learning_rate=0.2"  # the highest accuracy, not the lowest
    assert load_config(out / "best.yaml").training.learning_rate == 0.2


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
    """A local pool in miniature, without timers: the trial named ``*lr0.05`` kills its process the
    moment it is submitted, which (as in ProcessPoolExecutor) breaks every future of that pool; the
    other trials finish only when the runner has nothing else to do (``finish_idle``), so they are
    always in flight when the pool breaks, however slow the machine."""

    breaks_all = True

    def __init__(self) -> None:
        self.generation = 1
        self.pending: list[tuple[int, Future]] = []
        self.unfinished: list[Future] = []

    def describe(self) -> str:
        return "fake"

    def capacity(self) -> int:
        return 2

    def submit(self, task: Any) -> Future:
        future: Future = Future()
        self.pending.append((self.generation, future))
        if "lr0.05" in task.name:
            self._break(self.generation)
        else:
            self.unfinished.append(future)
        return future

    def _break(self, generation: int) -> None:
        for gen, future in self.pending:
            if gen == generation and not future.done():
                future.set_exception(BrokenProcessPool("a process died"))

    def finish_idle(self) -> None:
        outcome = TrialOutcome("done", "", [{"epoch": 1, "val_loss": 0.5}], None, None, 0.1, "fake")
        for future in self.unfinished:
            if not future.done():
                future.set_result(outcome)
        self.unfinished.clear()

    def is_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, BrokenProcessPool)

    def wait(self, futures: list[Future], timeout: float) -> None:
        wait_futures(futures, timeout=timeout)

    def restart(self) -> None:
        self.generation += 1


class FinishWhenIdle:
    """The runner's observer: when the runner waits with nothing to submit, the pool's trials finish."""

    def __init__(self, pool: FakePool) -> None:
        self.pool = pool

    def refresh(self) -> None:
        self.pool.finish_idle()

    def started(self, trial: Any) -> None: ...
    def retrying(self, trial: Any, note: str) -> None: ...
    def finished(self, trial: Any) -> None: ...


@pytest.mark.parametrize("retries", [0, 1])
def test_a_trial_that_keeps_killing_its_worker_fails_alone(tmp_path, retries) -> None:
    plan = build_plan(
        IRIS, grid=["training.learning_rate=[0.01, 0.05, 0.1]"], random=None, seed=0,
        monitor=None, overrides=[EPOCHS],
    )  # fmt: skip
    out = tmp_path / "sweep"
    find_finished(out, plan)
    pool = FakePool()
    Runner(plan, pool, out, retries, FinishWhenIdle(pool)).run()
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


def test_rerun_runs_failed_trials_again(tmp_path) -> None:
    """A re-run skips finished trials and runs the failed ones again (their failure is recorded anew)."""
    out = tmp_path / "sweep"
    args = ["sweep", DIABETES, "--set", "training.epochs=2", "--grid", "training.learning_rate=[0.0005, 1e6]",
            "--jobs", "1", "--out", out]  # fmt: skip
    code, output = nnctl(*args)
    assert code == 0, output
    rows = summary(out)
    done, failed = rows["training.learning_rate=0.0005"], rows["training.learning_rate=1000000.0"]
    assert (done["status"], failed["status"]) == ("done", "failed")
    done_marker, failed_marker = out / done["name"] / "trial.json", out / failed["name"] / "trial.json"
    (done_stamp, failed_stamp) = (done_marker.stat().st_mtime_ns, failed_marker.stat().st_mtime_ns)
    record = json.loads(failed_marker.read_text())
    failed_marker.write_text(json.dumps({**record, "seconds": -1.0}))  # a value no run writes

    code, output = nnctl(*args)
    assert code == 0, output
    assert "1 done earlier" in output
    assert done_marker.stat().st_mtime_ns == done_stamp  # not trained again
    assert failed_marker.stat().st_mtime_ns != failed_stamp  # trained again, recorded again
    record = json.loads(failed_marker.read_text())
    assert record["status"] == "failed" and record["seconds"] != -1.0
    rows = summary(out)
    again = rows["training.learning_rate=1000000.0"]
    assert again["status"] == "failed" and "diverged" in again["error"] and again["name"] == failed["name"]
    assert rows["training.learning_rate=0.0005"]["rank"] == "1"


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
    hang_guard = time.monotonic() + 600  # a stuck sweep fails the test instead of hanging it
    while not glob.glob(str(out / "*" / "trial.json")) and process.poll() is None:
        if time.monotonic() > hang_guard:
            process.kill()
            pytest.fail("the sweep neither finished a trial nor exited: hung")
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


def test_random_samples_stay_in_their_bounds_and_cover_them() -> None:
    section = {
        "random": {
            "training.learning_rate": {"loguniform": [1e-4, 1e-1]},
            "training.weight_decay": {"uniform": [0.0, 0.5]},
            "model.layers[0].units": {"uniform": [4.2, 9.7], "integer": True},
            "training.batch_size": {"choice": [8, 16, 32]},
        },
        "grid": {"training.optimizer": ["sgd", "adam"]},
    }
    spec, _ = parse_sweep_section(section, "space.yaml")
    samples = [dict(trial) for trial in sample_assignments(spec, 600, seed=5)]
    assert len(samples) == 600
    lrs = np.array([s["training.learning_rate"] for s in samples])
    decays = np.array([s["training.weight_decay"] for s in samples])
    units = [s["model.layers[0].units"] for s in samples]
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    # log-uniform: each decade gets about a third of the samples (uniform would put 90 % in the last)
    decades = np.histogram(np.log10(lrs), bins=[-4, -3, -2, -1])[0] / len(lrs)
    assert np.all(np.abs(decades - 1 / 3) < 0.08), decades
    assert decades[-1] < 0.5
    assert decays.min() >= 0.0 and decays.max() <= 0.5
    assert abs(np.mean(decays < 0.25) - 0.5) < 0.08  # uniform: half below the middle
    assert all(isinstance(u, int) for u in units) and set(units) == {
        5,
        6,
        7,
        8,
        9,
    }  # rounded inside [4.2, 9.7]
    assert {s["training.batch_size"] for s in samples} == {8, 16, 32}
    assert {s["training.optimizer"] for s in samples} == {"sgd", "adam"}  # grid keys drawn from their lists
    assert sample_assignments(spec, 600, seed=5) == sample_assignments(spec, 600, seed=5)  # seeded


def test_grid_is_the_full_product_first_key_slowest() -> None:
    lrs, units, activations = [0.1, 0.01], [4, 8, 16], ["tanh", "relu"]
    section = {
        "grid": {
            "training.learning_rate": lrs,
            "model.layers[0].units": units,
            "model.layers[0].activation": activations,
        }
    }
    spec, _ = parse_sweep_section(section, "grid.yaml")
    points = sample_assignments(spec, None, seed=0)
    keys = ["training.learning_rate", "model.layers[0].units", "model.layers[0].activation"]
    assert points == [list(zip(keys, p, strict=True)) for p in itertools.product(lrs, units, activations)]
    assert len(points) == 12
    # --random N over a grid: N distinct points of that product, in product order
    picked = sample_assignments(spec, 5, seed=2)
    assert len(picked) == 5 and all(point in points for point in picked)
    assert len({repr(point) for point in picked}) == 5
    assert [points.index(point) for point in picked] == sorted(points.index(point) for point in picked)
    assert sample_assignments(spec, 50, seed=2) == points  # more than the grid holds: all of it


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
