"""``nnctl sweep``: train many variants of one config, on local processes or a Dask cluster.

The pieces, in the order ``sweep_main`` uses them:

* **Spec.** ``--grid KEY.PATH=[v1, v2]`` (VALUE is a YAML list) and ``--random N --seed S`` on the
  command line, or a ``sweep:`` section (``grid:``, ``random:`` with ``uniform`` / ``loguniform`` /
  ``choice``, ``trials:``, ``seed:``, ``monitor:``) in the config itself or in a separate sweep file
  whose ``sweep.config`` names the base config. Keys are the ``--set`` paths.
* **Plan.** Every trial's config is built with ``apply_override`` on the raw mapping and validated
  (schema, then the checks that need the data) before any trial starts. A trial's id is a short hash
  of its resolved config, so a re-run recognises the trials it already finished.
* **Executors.** A pool of spawned local processes (``--jobs``), a Dask ``LocalCluster``
  (``--dask-local``) or an existing Dask cluster (``--scheduler``). The data are read once by the
  client and shipped to the workers (pool initializer / ``Client.scatter``); workers need no shared
  file system. A worker trains in memory and sends back the history and the checkpoints, and the
  client writes ``<out>/<trial>/`` (``last.npz``, ``best.npz``, ``history.csv``, ``config.yaml`` and
  ``trial.json``, the done marker, last), every file atomically.
* **Faults.** A trial that raises (diverged, bad data...) is recorded as failed and the others go on.
  A lost worker process costs the trials it was running a retry (``retries``, default 1), on a fresh
  pool. Ctrl-C stops the workers and propagates ``KeyboardInterrupt``; finished trials stay on disk.
* **Determinism.** Workers pin BLAS to one thread (as ``nnctl train --deterministic`` does) and trial
  configs carry ``training.deterministic: true``, so a trial's weights are bit-identical to the same
  config trained alone, whichever executor ran it.

``NNCTL_SWEEP_KILL_ONCE=PATH`` (fault injection for the tests): the first trial to create PATH kills
its own worker process with SIGKILL after its first epoch.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import difflib
import hashlib
import io
import itertools
import json
import math
import os
import queue
import re
import signal
import socket
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nnctl import __version__
from nnctl.checkpoint import Checkpoint, save_checkpoint
from nnctl.config import (
    Config,
    apply_override,
    check_parameter_budget,
    format_key_path,
    parse_key_path,
    parse_yaml,
    read_config_file,
    validate_config,
)
from nnctl.data.load import load_table
from nnctl.data.table import Table
from nnctl.engine.metrics import headline_metric
from nnctl.errors import ConfigError, NnctlError
from nnctl.files import atomic_write_text
from nnctl.runs import RunFolder, RunWriter, history_csv
from nnctl.training import Callback, Trainer, build_network, prepare_table, resolve_data_path
from nnctl.workflows import relocate_data_path

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
KILL_ONCE_ENV = "NNCTL_SWEEP_KILL_ONCE"
SPEC_KEYS = ("config", "grid", "random", "trials", "seed", "monitor")
DISTRIBUTIONS = ("uniform", "loguniform", "choice")
DONE_MARKER = "trial.json"
SUMMARY_COLUMNS = (
    "rank",
    "id",
    "name",
    "status",
    "overrides",
    "monitor",
    "value",
    "best_epoch",
    "epochs",
    "seconds",
    "attempts",
    "error",
)
_ABBREVIATIONS = {
    "learning_rate": "lr",
    "batch_size": "bs",
    "epochs": "ep",
    "activation": "act",
    "weight_decay": "wd",
    "optimizer": "opt",
    "initializer": "init",
    "dropout": "drop",
    "momentum": "mom",
    "schedule": "sched",
    "clip_norm": "clip",
    "validation": "val",
    "normalize": "norm",
    "layers": "layers",
}


# ---------------------------------------------------------------------------------------------
# The sweep spec


@dataclass
class Dimension:
    """One swept key: a grid list, or a distribution to sample from."""

    key: str  # the --set path, normalized (model.layers[0].units)
    kind: str  # grid | uniform | loguniform | choice
    values: list[Any]  # grid/choice: the values; uniform/loguniform: [low, high]
    integer: bool = False  # round samples of uniform/loguniform to integers


@dataclass
class SweepSpec:
    grid: list[Dimension] = field(default_factory=list)
    random: list[Dimension] = field(default_factory=list)
    trials: int | None = None
    seed: int | None = None
    monitor: str | None = None

    @property
    def dimensions(self) -> list[Dimension]:
        return [*self.grid, *self.random]


def _normalize_key(key: str, where: str) -> str:
    try:
        return format_key_path(parse_key_path(key.strip()))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {key!r} is not a key path", hint=exc.hint) from None


def parse_grid_option(text: str) -> Dimension:
    """``KEY.PATH=[v1, v2]`` -> a grid dimension (VALUE is a YAML list, never split on commas)."""
    key, sep, value_text = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--grid {text!r}: expected KEY.PATH=[v1, v2, ...]")
    key = _normalize_key(key, "--grid")
    values = parse_yaml(value_text, f"--grid {key}") if value_text.strip() else None
    return _grid_dimension(key, values, f"--grid {key}")


def _grid_dimension(key: str, values: Any, where: str) -> Dimension:
    if not isinstance(values, list) or not values:
        shown = "nothing" if values is None else repr(values)
        raise ConfigError(
            f"{where}: expected a non-empty YAML list of values, got {shown}",
            hint=f"write {key}=[0.01, 0.1] (quote it for the shell: '{key}=[0.01, 0.1]')",
        )
    return Dimension(key, "grid", values)


def parse_sweep_section(section: Any, source: str) -> tuple[SweepSpec, str | None]:
    """A ``sweep:`` mapping -> (spec, the base config path it names or None)."""
    where = f"{source}: sweep"
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a mapping with grid:, random:, trials: ...")
    for key in section:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key{_did_you_mean(str(key), SPEC_KEYS)}")
    spec = SweepSpec()
    grid = section.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}.grid: must map KEY.PATH to a list of values")
    for key, values in grid.items():
        path = _normalize_key(str(key), f"{where}.grid")
        spec.grid.append(_grid_dimension(path, values, f"{where}.grid.{path}"))
    space = section.get("random") or {}
    if not isinstance(space, dict):
        raise ConfigError(f"{where}.random: must map KEY.PATH to {{uniform|loguniform|choice: ...}}")
    for key, entry in space.items():
        path = _normalize_key(str(key), f"{where}.random")
        spec.random.append(_distribution(path, entry, f"{where}.random.{path}"))
    for name in ("trials", "seed"):
        value = section.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ConfigError(f"{where}.{name} = {value!r}: must be a non-negative integer")
    spec.trials, spec.seed = section.get("trials"), section.get("seed")
    monitor = section.get("monitor")
    if monitor is not None and not isinstance(monitor, str):
        raise ConfigError(f"{where}.monitor = {monitor!r}: must be a metric name such as val_loss")
    spec.monitor = monitor
    base = section.get("config")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{where}.config = {base!r}: must be the path of the base config")
    return spec, base


def _distribution(key: str, entry: Any, where: str) -> Dimension:
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where}: expected {{uniform: [low, high]}}, {{loguniform: [low, high]}} or {{choice: [...]}}"
        )
    kinds = [k for k in entry if k in DISTRIBUTIONS]
    unknown = [k for k in entry if k not in (*DISTRIBUTIONS, "integer")]
    if unknown:
        options = (*DISTRIBUTIONS, "integer")
        raise ConfigError(f"{where}.{unknown[0]}: unknown key{_did_you_mean(str(unknown[0]), options)}")
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(DISTRIBUTIONS)}")
    kind = kinds[0]
    values = entry[kind]
    integer = entry.get("integer", False)
    if not isinstance(integer, bool):
        raise ConfigError(f"{where}.integer = {integer!r}: must be true or false")
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.choice: expected a non-empty list of values")
        return Dimension(key, kind, values)
    if (
        not isinstance(values, list)
        or len(values) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        or not all(math.isfinite(v) for v in values)
        or not values[0] < values[1]
    ):
        raise ConfigError(f"{where}.{kind} = {values!r}: expected [low, high] numbers with low < high")
    if kind == "loguniform" and values[0] <= 0:
        raise ConfigError(f"{where}.loguniform = {values!r}: the bounds must be positive")
    return Dimension(key, kind, [float(values[0]), float(values[1])], integer)


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(options)}"


def merge_specs(file_spec: SweepSpec, grid_options: Sequence[str]) -> SweepSpec:
    """Command-line ``--grid`` entries replace the file's entries for the same key, or add to them."""
    spec = copy.deepcopy(file_spec)
    for text in grid_options:
        dimension = parse_grid_option(text)
        spec.random = [d for d in spec.random if d.key != dimension.key]
        spec.grid = [d for d in spec.grid if d.key != dimension.key] + [dimension]
    keys = [d.key for d in spec.dimensions]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"sweep: {', '.join(repeated)} appear(s) in both grid: and random:")
    return spec


def sample_assignments(spec: SweepSpec, trials: int | None, seed: int) -> list[list[tuple[str, Any]]]:
    """The (key, value) overrides of each trial.

    Grid only: the full product (first key slowest), or ``trials`` distinct points drawn from it.
    With ``random:`` entries: ``trials`` samples, grid keys drawn uniformly from their lists.
    """
    if not spec.dimensions:
        raise NnctlError(
            "nothing to sweep", hint="give --grid KEY.PATH=[v1, v2] or a sweep: section with grid:/random:"
        )
    grid_points = [list(zip([d.key for d in spec.grid], point, strict=True)) for point in _product(spec)]
    if not spec.random and trials is None:
        return grid_points
    if trials is None:
        raise ConfigError(
            "sweep: random: entries need a number of trials", hint="add trials: N, or pass --random N"
        )
    if trials < 1:
        raise ConfigError(f"--random {trials}: need at least one trial")
    rng = np.random.default_rng(seed)
    if not spec.random:  # random search over the grid: distinct points
        picked = rng.choice(len(grid_points), size=min(trials, len(grid_points)), replace=False)
        return [grid_points[i] for i in sorted(int(i) for i in picked)]
    return [[(d.key, _draw(d, rng)) for d in spec.dimensions] for _ in range(trials)]


def _product(spec: SweepSpec) -> Iterator[tuple[Any, ...]]:
    return itertools.product(*(d.values for d in spec.grid))


def _draw(dimension: Dimension, rng: np.random.Generator) -> Any:
    if dimension.kind in ("grid", "choice"):
        return copy.deepcopy(dimension.values[int(rng.integers(len(dimension.values)))])
    low, high = dimension.values
    if dimension.kind == "uniform":
        value = float(rng.uniform(low, high))
    else:
        value = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if dimension.integer:
        return int(min(max(round(value), math.ceil(low)), math.floor(high)))
    return value


# ---------------------------------------------------------------------------------------------
# The plan: every trial's resolved, validated config


@dataclass
class Trial:
    index: int
    name: str
    id: str
    assignments: list[tuple[str, Any]]
    config: Config  # as validated and hashed (data.path relative to the base config)
    table_key: str
    folder: Path | None = None
    stored: Config | None = None  # as the trial folder stores it (data.path relative to the folder)
    status: str = "pending"  # pending | running | done | failed
    value: float | None = None
    best_epoch: int | None = None
    epochs: int = 0
    seconds: float | None = None
    error: str = ""
    attempts: int = 0
    lost: int = 0  # lost workers charged to this trial
    isolate: bool = False  # run alone in the local pool (after a lost worker)
    earlier: bool = False  # finished by an earlier run of the sweep
    started: float | None = None

    @property
    def overrides(self) -> str:
        return " ".join(f"{key}={_compact(value)}" for key, value in self.assignments)


@dataclass
class Plan:
    base: Config
    base_path: Path
    trials: list[Trial]
    tables: dict[str, Table]
    monitor: str
    maximize: bool
    seed: int
    duplicates: int = 0


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": ")) if not isinstance(value, str) else value


def read_spec(config_path: Path) -> tuple[dict[str, Any], Path, SweepSpec]:
    """(base config mapping without ``sweep:``, its path, the file's sweep spec)."""
    raw = read_config_file(config_path)
    section = raw.pop("sweep", None)
    if section is None:
        return raw, config_path, SweepSpec()
    spec, base = parse_sweep_section(section, str(config_path))
    if base is None:
        return raw, config_path, spec
    if raw:
        raise ConfigError(
            f"{config_path}: sweep.config names a base config, so this file may hold only sweep: "
            f"(found {', '.join(map(str, raw))})",
            hint="put the sweep: section into the base config instead, or drop sweep.config",
        )
    base_path = Path(base) if Path(base).is_absolute() else config_path.parent / base
    base_raw = read_config_file(base_path)
    base_raw.pop("sweep", None)  # a base config's own sweep: section is not used
    return base_raw, base_path, spec


def config_hash(config: Config) -> str:
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def build_plan(
    config_path: Path,
    *,
    grid: Sequence[str],
    random: int | None,
    seed: int | None,
    monitor: str | None,
    overrides: Sequence[str],
) -> Plan:
    """Resolve and validate every trial (schema and data checks) before anything runs."""
    base_raw, base_path, file_spec = read_spec(config_path)
    for assignment in overrides:
        apply_override(base_raw, assignment)
    if not base_raw.get("name"):
        base_raw["name"] = base_path.stem
    source = str(base_path)
    base = validate_config(copy.deepcopy(base_raw), source)
    spec = merge_specs(file_spec, grid)
    sweep_seed = seed if seed else (file_spec.seed or 0)
    assignments = sample_assignments(spec, random if random is not None else spec.trials, sweep_seed)
    labels = _labels(spec.dimensions)
    width = max(3, len(str(len(assignments))))
    trials: list[Trial] = []
    seen: set[str] = set()
    duplicates = 0
    for index, pairs in enumerate(assignments, start=1):
        raw = copy.deepcopy(base_raw)
        described = " ".join(f"{k}={_compact(v)}" for k, v in pairs)
        for key, value in pairs:
            try:
                apply_override(raw, f"{key}={json.dumps(value)}")
            except ConfigError as exc:
                raise ConfigError(f"sweep key {key}: {exc.message}", hint=exc.hint) from None
        if isinstance(raw.get("training"), dict):
            raw["training"]["deterministic"] = True
        config = validate_config(raw, f"{source} (sweep trial {index}: {described})")
        trial_id = config_hash(config)
        if trial_id in seen:
            duplicates += 1
            continue
        seen.add(trial_id)
        name = f"t{index:0{width}d}" + "".join(f"-{labels[k]}{_label_value(v)}" for k, v in pairs)
        name = name[:80]
        config = config.model_copy(update={"name": f"{base.name}-{name}"})
        trials.append(Trial(index, name, trial_id, pairs, config, ""))
    tables = _load_tables(trials, base_path.parent)
    chosen = monitor or spec.monitor
    chosen, maximize = _check_trials(trials, tables, chosen)
    return Plan(base, base_path, trials, tables, chosen, maximize, sweep_seed, duplicates)


def _labels(dimensions: Sequence[Dimension]) -> dict[str, str]:
    """Short readable labels per key: ``training.learning_rate`` -> ``lr``; clashes get layer indices."""
    labels: dict[str, str] = {}
    for d in dimensions:
        parts = parse_key_path(d.key)
        last = next((p for p in reversed(parts) if isinstance(p, str)), d.key)
        labels[d.key] = _ABBREVIATIONS.get(last, last)
    for d in dimensions:
        if list(labels.values()).count(labels[d.key]) > 1:
            parts = parse_key_path(d.key)
            indices = "".join(str(p) for p in parts if isinstance(p, int))
            labels[d.key] = labels[d.key] + indices if indices else re.sub(r"\W+", "_", d.key)
    return {k: re.sub(r"[^A-Za-z0-9_]", "", v) for k, v in labels.items()}


def _label_value(value: Any) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:.3g}"
    elif isinstance(value, dict):
        text = str(value.get("name", "")) or "-".join(f"{k}{_label_value(v)}" for k, v in value.items())
    elif isinstance(value, list):
        text = "x".join(_label_value(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+_-]", "", text)[:24]


def _table_key(config: Config, config_dir: Path) -> str:
    return json.dumps([resolve_data_path(config, config_dir), config.data.target])


def _load_tables(trials: list[Trial], config_dir: Path) -> dict[str, Table]:
    """Each distinct data file once; sources made absolute so workers anywhere record a usable path."""
    tables: dict[str, Table] = {}
    for trial in trials:
        key = _table_key(trial.config, config_dir)
        trial.table_key = key
        if key not in tables:
            table = load_table(resolve_data_path(trial.config, config_dir), trial.config.data.target)
            if not table.source.startswith("builtin:"):
                table = replace(table, source=str(Path(table.source).resolve()))
            tables[key] = table
    return tables


def _check_trials(trials: list[Trial], tables: dict[str, Table], monitor: str | None) -> tuple[str, bool]:
    """The checks that need the data (task, output units, sizes, monitor), once per distinct setup."""
    tasks: dict[str, str] = {}
    if monitor is None:
        monitor = "val_loss" if all(t.config.data.validation > 0 for t in trials) else "train_loss"
    for trial in trials:
        config = trial.config
        setup = json.dumps(
            [
                trial.table_key,
                config.model_dump(mode="json", include={"data", "seed", "dtype", "cost"}),
                config.model.layers[-1].model_dump(mode="json"),
            ],
            sort_keys=True,
        )
        table = tables[trial.table_key]
        try:
            if setup not in tasks:
                tasks[setup] = prepare_table(config, table).task
            check_parameter_budget(config, table.x.shape[1])
        except NnctlError as exc:
            raise type(exc)(f"sweep trial {trial.name}: {exc.message}", hint=exc.hint) from None
        trial_task = tasks[setup]
        known = ["train_loss"]
        if config.data.validation > 0:
            known += ["val_loss", f"val_{headline_metric(trial_task)}"]
        stopping = config.training.early_stopping
        if stopping is not None and stopping.monitor not in known:
            raise ConfigError(
                f"sweep trial {trial.name}: training.early_stopping.monitor: {stopping.monitor!r} "
                f"is not recorded in this run; choose one of: {', '.join(known)}"
            )
        if monitor not in known:
            raise ConfigError(
                f"--monitor {monitor}: not recorded by trial {trial.name}{_did_you_mean(monitor, known)}",
                hint=f"it records: {', '.join(known)}",
            )
    return monitor, monitor.endswith(("accuracy", "r2", "f1"))


# ---------------------------------------------------------------------------------------------
# The worker side: one trial, in memory


@dataclass
class TrialTask:
    id: str
    name: str
    config: dict[str, Any]  # the resolved config as JSON-able data
    table_key: str
    attempt: int = 1


@dataclass
class TrialOutcome:
    status: str  # done | failed
    error: str
    rows: list[dict[str, Any]]
    last: Checkpoint | None
    best: Checkpoint | None
    seconds: float
    worker: str


class _MemoryWriter(RunWriter):
    """``RunWriter``'s choice of last/best checkpoints and history rows, kept in memory."""

    def __init__(self) -> None:
        super().__init__(RunFolder("."), flush_seconds=math.inf)
        self.last: Checkpoint | None = None
        self.best: Checkpoint | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        pass

    def on_interrupt(self, trainer: Trainer) -> None:
        self.flush()

    def flush(self) -> None:
        if self.pending_best is not None:
            self.best = self.pending_best
        if self.pending_last is not None:
            self.last = self.pending_last
        self.pending_last = self.pending_best = None


class _KillOnce(Callback):
    """Fault injection: the first trial to create the marker file kills its worker after epoch 1."""

    def __init__(self, marker: str, name: str) -> None:
        self.marker, self.name = marker, name

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        if record["epoch"] != 1:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, self.name.encode())
        os.close(fd)
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        os._exit(137)  # pragma: no cover - where SIGKILL does not exist


_BLAS_PINNED = False


def _pin_blas() -> None:
    """One BLAS thread in this worker process, for good (restoring would race other threads)."""
    global _BLAS_PINNED
    if _BLAS_PINNED:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    _BLAS_PINNED = True


def run_trial(task: TrialTask, table: Table) -> TrialOutcome:
    """Train one trial in this process; never raises for a failing trial (the outcome says so)."""
    _pin_blas()
    started = time.perf_counter()
    writer = _MemoryWriter()
    status, error = "done", ""
    try:
        config = validate_config(task.config, task.name)
        prepared = prepare_table(config, table)
        net = build_network(config, prepared.train.n_features)
        callbacks: list[Any] = [writer]
        marker = os.environ.get(KILL_ONCE_ENV)
        if marker:
            callbacks.append(_KillOnce(marker, task.name))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a diverging trial's
            Trainer(prepared, net, callbacks=callbacks).fit()  # error message says it all
    except Exception as exc:
        status, error = "failed", describe_exception(exc)
    return TrialOutcome(
        status,
        error,
        writer.rows,
        writer.last,
        writer.best,
        time.perf_counter() - started,
        f"{socket.gethostname()}:{os.getpid()}",
    )


def describe_exception(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, NnctlError) else f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split())


_WORKER_TABLES: dict[str, Table] = {}


def _init_pool_worker(tables: dict[str, Table]) -> None:
    """Local pool worker: Ctrl-C is the client's business; one BLAS thread; the data, once."""
    with contextlib.suppress(ValueError):  # not the main thread (cannot happen in a pool worker)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in BLAS_ENV:
        os.environ[name] = "1"
    _pin_blas()
    _WORKER_TABLES.update(tables)


def _run_pooled(task: TrialTask) -> TrialOutcome:
    return run_trial(task, _WORKER_TABLES[task.table_key])


def _worker_version() -> str:
    return __version__


# ---------------------------------------------------------------------------------------------
# Executors


class LocalPool:
    """Spawned worker processes; the data travel once per process (initializer)."""

    breaks_all = True  # one dead process breaks the whole pool

    def __init__(self, jobs: int, tables: dict[str, Table]) -> None:
        import multiprocessing

        self.jobs = jobs
        self.tables = tables
        self.context = multiprocessing.get_context("spawn")
        self.generation = 0
        self.pool: Any = None
        self._start()

    def describe(self) -> str:
        return f"{self.jobs} local process{'es' * (self.jobs != 1)}"

    def _start(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(
            max_workers=self.jobs,
            mp_context=self.context,
            initializer=_init_pool_worker,
            initargs=(self.tables,),
        )
        self.generation += 1

    def capacity(self) -> int:
        return self.jobs

    def submit(self, task: TrialTask) -> Any:
        return self.pool.submit(_run_pooled, task)

    def is_lost(self, exc: BaseException) -> bool:
        from concurrent.futures.process import BrokenProcessPool

        return isinstance(exc, BrokenProcessPool)

    def restart(self) -> None:
        with contextlib.suppress(Exception):
            self.pool.shutdown(wait=True, cancel_futures=True)
        self._start()

    def wait(self, futures: list[Any], timeout: float) -> None:
        from concurrent.futures import wait

        wait(futures, timeout=timeout)

    def close(self, abort: bool = False) -> None:
        if self.pool is None:
            return
        if abort:  # Ctrl-C: the workers ignore SIGINT, so stop them here
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    process.kill()
        with contextlib.suppress(Exception):
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = None


class DaskExecutor:
    """An existing cluster (``--scheduler``) or a LocalCluster (``--dask-local N``)."""

    breaks_all = False  # the scheduler knows which task ran on the lost worker

    def __init__(self, tables: dict[str, Table], scheduler: str | None, local_workers: int | None) -> None:
        try:
            import distributed
        except ImportError:
            raise NnctlError(
                "--scheduler and --dask-local need Dask's distributed package",
                hint="install nnctl[dask] (pip install 'nnctl[dask]'), or run on local processes with --jobs",
            ) from None
        import logging

        from distributed.comm.core import CommClosedError

        self.lost_errors: tuple[type[BaseException], ...] = (distributed.KilledWorker, CommClosedError)
        self.cluster: Any = None
        self.generation = 1
        self._threads, self._asked = 1, -math.inf
        if local_workers is not None:
            self.cluster = distributed.LocalCluster(
                n_workers=local_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self.client = distributed.Client(self.cluster)
            self.where = f"a local Dask cluster of {local_workers} worker{'s' * (local_workers != 1)}"
        else:
            try:
                self.client = distributed.Client(scheduler, timeout="15s")
            except (OSError, TimeoutError) as exc:
                raise NnctlError(
                    f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})",
                    hint="start one with `dask scheduler` and workers with `dask worker tcp://HOST:8786`",
                ) from None
            self.where = f"the Dask cluster at {scheduler}"
        try:
            self._check_workers()
            self.data = {key: self.client.scatter(t, broadcast=True, hash=False) for key, t in tables.items()}
        except BaseException:
            self.close()
            raise

    def _check_workers(self) -> None:
        try:
            versions = self.client.run(_worker_version)
        except Exception as exc:
            raise NnctlError(
                f"the Dask workers cannot run nnctl ({describe_exception(exc)})",
                hint=f"install nnctl {__version__} (the client's version) on every worker",
            ) from None
        other = {addr: v for addr, v in versions.items() if v != __version__}
        if other:
            raise NnctlError(
                "Dask workers run another nnctl version: "
                + ", ".join(f"{addr}: {v}" for addr, v in sorted(other.items())),
                hint=f"install nnctl {__version__} on every worker (results must not depend on the worker)",
            )

    def describe(self) -> str:
        return self.where

    def capacity(self) -> int:
        """Worker threads in the cluster now (asked at most every 2 s: workers come and go)."""
        if time.monotonic() - self._asked > 2.0:
            with contextlib.suppress(Exception):
                self._threads = max(1, sum(self.client.nthreads().values()))
            self._asked = time.monotonic()
        return self._threads

    def submit(self, task: TrialTask) -> Any:
        return self.client.submit(
            run_trial,
            task,
            self.data[task.table_key],
            key=f"nnctl-trial-{task.name}-{task.id}-{task.attempt}-{time.time_ns()}",
            pure=False,
        )

    def is_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, self.lost_errors)

    def restart(self) -> None:  # pragma: no cover - breaks_all is False
        pass

    def wait(self, futures: list[Any], timeout: float) -> None:  # pragma: no cover
        pass

    def close(self, abort: bool = False) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
            self.cluster = None


@contextlib.contextmanager
def _one_blas_thread_env() -> Iterator[None]:
    """Spawned children inherit this environment: BLAS starts single-threaded in them."""
    saved = {name: os.environ.get(name) for name in BLAS_ENV}
    os.environ.update({name: "1" for name in BLAS_ENV})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def default_jobs() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Running the trials


@dataclass
class _Running:
    trial: Trial
    future: Any
    generation: int


class Runner:
    """Keeps the executor busy, records outcomes, retries lost trials."""

    def __init__(self, plan: Plan, executor: Any, out: Path, retries: int, display: Display) -> None:
        self.plan, self.executor, self.out, self.retries, self.display = plan, executor, out, retries, display
        self.pending: deque[Trial] = deque(t for t in plan.trials if t.status != "done")
        self.running: dict[int, _Running] = {}
        self.finished: queue.Queue[int] = queue.Queue()
        self.tokens = itertools.count()
        self.idle_restarts = 0

    def run(self) -> None:
        while self.pending or self.running:
            self._fill()
            try:
                token = self.finished.get(timeout=0.25)
            except queue.Empty:
                self.display.refresh()
                continue
            entry = self.running.pop(token, None)
            if entry is not None:
                self._collect(entry)

    def _fill(self) -> None:
        while self.pending:
            trial = self.pending[0]
            if any(r.trial.isolate for r in self.running.values()):
                return
            if self.running and (trial.isolate or len(self.running) >= self.executor.capacity()):
                return
            config = (trial.stored or trial.config).model_dump(mode="json")
            task = TrialTask(trial.id, trial.name, config, trial.table_key, trial.attempts + 1)
            try:
                future = self.executor.submit(task)
            except Exception as exc:
                if not self.executor.is_lost(exc):
                    self.pending.popleft()
                    self._fail(trial, describe_exception(exc))
                    continue
                if self.running:  # the pool broke: its running futures will say so, then it restarts
                    return
                self.idle_restarts += 1  # broke while idle (a worker died between trials)
                if self.idle_restarts > 3:
                    where = self.executor.describe()
                    raise NnctlError(f"{where}: workers keep dying before any trial starts") from None
                self.executor.restart()
                continue
            self.idle_restarts = 0
            self.pending.popleft()
            trial.attempts += 1
            trial.status, trial.started = "running", time.monotonic()
            token = next(self.tokens)
            self.running[token] = _Running(trial, future, self.executor.generation)
            future.add_done_callback(lambda _f, token=token: self.finished.put(token))
            self.display.started(trial)

    def _collect(self, entry: _Running) -> None:
        trial = entry.trial
        exc = _exception_of(entry.future)
        if exc is None:
            self._record(trial, entry.future.result())
        elif self.executor.is_lost(exc):
            self._lost(entry, exc)
        else:
            self._fail(trial, describe_exception(exc))

    def _lost(self, entry: _Running, exc: BaseException) -> None:
        lost = [entry]
        if self.executor.breaks_all:  # every trial in this pool lost its process too
            doomed = [(t, r) for t, r in self.running.items() if r.generation == entry.generation]
            self.executor.wait([r.future for _, r in doomed], timeout=10)
            for token, running in doomed:
                del self.running[token]
                future = running.future
                if future.done() and _exception_of(future) is None:  # finished just before the break
                    self._record(running.trial, future.result())
                else:  # failed with the pool, or orphaned by it (a submit racing the break)
                    lost.append(running)
            self.executor.restart()
        reason = describe_exception(exc) if not self.executor.breaks_all else "its worker process died"
        if len(lost) > 1:  # cannot tell whose process died: re-run each alone, charging nobody yet
            for running in reversed(lost):
                running.trial.isolate = True
                self._requeue(running.trial, f"{reason} (re-running it alone)")
            return
        trial = entry.trial
        trial.lost += 1
        if trial.lost > self.retries:
            lives = f"{trial.lost} time{'s' * (trial.lost > 1)}"
            self._fail(trial, f"worker lost {lives}: {reason}")
            return
        trial.isolate = self.executor.breaks_all
        self._requeue(trial, f"{reason}; retry {trial.lost} of {self.retries}")

    def _requeue(self, trial: Trial, note: str) -> None:
        trial.status, trial.started = "pending", None
        self.pending.appendleft(trial)
        self.display.retrying(trial, note)

    def _fail(self, trial: Trial, error: str) -> None:
        trial.status, trial.error = "failed", error
        trial.seconds = time.monotonic() - trial.started if trial.started else None
        write_trial(self.out, trial, None, self.plan)
        self.display.finished(trial)

    def _record(self, trial: Trial, outcome: TrialOutcome) -> None:
        trial.status, trial.error, trial.seconds = outcome.status, outcome.error, outcome.seconds
        trial.value, trial.best_epoch = best_of(outcome.rows, self.plan.monitor, self.plan.maximize)
        trial.epochs = len(outcome.rows)
        write_trial(self.out, trial, outcome, self.plan)
        self.display.finished(trial)

    def abort(self) -> None:
        for entry in self.running.values():
            with contextlib.suppress(Exception):
                entry.future.cancel()
            entry.trial.status = "pending"
        self.running.clear()


def _exception_of(future: Any) -> BaseException | None:
    try:
        return future.exception()
    except BaseException as exc:  # cancelled, or the exception could not be fetched
        if isinstance(exc, KeyboardInterrupt):
            raise
        return exc


def best_of(rows: Sequence[dict[str, Any]], monitor: str, maximize: bool) -> tuple[float | None, int | None]:
    """The best finite value of ``monitor`` over the epochs, and its epoch."""
    best: tuple[float, int] | None = None
    for row in rows:
        try:
            value, epoch = float(row[monitor]), int(row["epoch"])
        except (KeyError, TypeError, ValueError):
            continue
        if not math.isfinite(value):
            continue
        if best is None or (value > best[0] if maximize else value < best[0]):
            best = (value, epoch)
    return (best[0], best[1]) if best else (None, None)


# ---------------------------------------------------------------------------------------------
# Files: trial folders, done markers, summary, best.yaml


def write_trial(out: Path, trial: Trial, outcome: TrialOutcome | None, plan: Plan) -> None:
    """The trial's run folder, atomically file by file; ``trial.json`` (the done marker) last."""
    folder = trial.folder or out / trial.name
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / DONE_MARKER
    marker.unlink(missing_ok=True)
    resolved = (trial.stored or trial.config).model_dump(mode="json")
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    if outcome is not None:
        if outcome.best is not None:
            save_checkpoint(folder / "best.npz", outcome.best)
        if outcome.last is not None:
            save_checkpoint(folder / "last.npz", outcome.last)
        if outcome.rows:
            atomic_write_text(folder / "history.csv", history_csv(outcome.rows))
    record = {
        "id": trial.id,
        "name": trial.name,
        "status": trial.status,
        "overrides": {key: value for key, value in trial.assignments},
        "error": trial.error,
        "seconds": trial.seconds,
        "attempts": trial.attempts,
        "epochs": trial.epochs,
        "worker": outcome.worker if outcome is not None else None,
        "nnctl_version": __version__,
    }
    atomic_write_text(marker, json.dumps(record, indent=2) + "\n")


def find_finished(out: Path, plan: Plan) -> int:
    """Mark planned trials already done in ``out`` (by config hash); give every trial its folder."""
    done: dict[str, Path] = {}
    taken: dict[str, str] = {}
    if out.is_dir():
        for marker in sorted(out.glob(f"*/{DONE_MARKER}")):
            with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
                record = json.loads(marker.read_text(encoding="utf-8"))
                taken[marker.parent.name] = str(record["id"])
                if record.get("status") == "done" and (marker.parent / "last.npz").exists():
                    done.setdefault(str(record["id"]), marker.parent)
    found = 0
    for trial in plan.trials:
        if trial.id in done:
            trial.folder = done[trial.id]
            trial.name = trial.folder.name  # the name it was first run under
            rows = _read_history(trial.folder / "history.csv")
            trial.status, trial.earlier, trial.epochs = "done", True, len(rows)
            trial.value, trial.best_epoch = best_of(rows, plan.monitor, plan.maximize)
            with contextlib.suppress(OSError, ValueError, TypeError):
                record = json.loads((trial.folder / DONE_MARKER).read_text(encoding="utf-8"))
                trial.seconds, trial.attempts = record.get("seconds"), int(record.get("attempts") or 0)
            found += 1
        else:
            name = trial.name
            if taken.get(name, trial.id) != trial.id:  # that folder holds another config's trial
                name = trial.name = f"{name}-{trial.id[:6]}"
            trial.folder = out / name
        source = plan.tables[trial.table_key].source
        trial.stored = relocate_data_path(trial.config, source, trial.folder)
    return found


def _read_history(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def ranked(plan: Plan) -> list[Trial]:
    """Finished trials with a value, best first (ties: trial order)."""
    scored = [t for t in plan.trials if t.status == "done" and t.value is not None]
    sign = -1.0 if plan.maximize else 1.0
    return sorted(scored, key=lambda t: (sign * (t.value or 0.0), t.index))


def write_summary(out: Path, plan: Plan) -> None:
    ranks = {t.id: rank for rank, t in enumerate(ranked(plan), start=1)}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for t in plan.trials:
        writer.writerow(
            [
                ranks.get(t.id, ""),
                t.id,
                t.name,
                t.status,
                t.overrides,
                plan.monitor,
                "" if t.value is None else repr(t.value),
                "" if t.best_epoch is None else t.best_epoch,
                t.epochs,
                "" if t.seconds is None else f"{t.seconds:.3f}",
                t.attempts,
                t.error,
            ]
        )
    atomic_write_text(out / "summary.csv", buffer.getvalue())


def write_best(out: Path, plan: Plan, trial: Trial) -> Path:
    """The winner's resolved config, ``data.path`` relative to ``out`` (as run folders store it)."""
    source = plan.tables[trial.table_key].source
    resolved = relocate_data_path(trial.config, source, out).model_dump(mode="json")
    header = (
        f"# best trial of the sweep in {out}: {trial.name} (id {trial.id})\n"
        f"# {plan.monitor} = {trial.value:.6g} at epoch {trial.best_epoch}; overrides: {trial.overrides}\n"
    )
    target = out / "best.yaml"
    atomic_write_text(target, header + yaml.safe_dump(resolved, sort_keys=False))
    return target


# ---------------------------------------------------------------------------------------------
# Display: a live Rich table on a terminal, plain lines otherwise, nothing when quiet


class Display:
    def __init__(self, console: Any, quiet: bool, plan: Plan) -> None:
        self.console, self.quiet, self.plan = console, quiet, plan
        self.live: Any = None
        self.to_run = sum(t.status != "done" for t in plan.trials)
        self.count = 0

    def print(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False)

    def start(self) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        from rich.live import Live

        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
        self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def started(self, trial: Trial) -> None:
        self.refresh()

    def retrying(self, trial: Trial, note: str) -> None:
        self._line(f"[yellow]lost[/]   {trial.name}: {_escape(note)}")

    def finished(self, trial: Trial) -> None:
        self.count += 1
        progress = f"[{self.count}/{self.to_run}]"
        if trial.status == "done":
            value = "n/a" if trial.value is None else f"{trial.value:.4g}"
            text = (
                f"[green]done[/]   {trial.name}  {self.plan.monitor} {value} "
                f"(epoch {trial.best_epoch})  {trial.seconds or 0:.1f}s  {progress}"
            )
        else:
            text = f"[red]failed[/] {trial.name}: {_escape(trial.error)}  {progress}"
        self._line(text)

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.live is not None:
            self.live.console.print(text, highlight=False)
            self.refresh()
        else:
            self.console.print(text, highlight=False)

    def _render(self) -> Any:
        from rich.table import Table as RichTable

        trials = self.plan.trials
        counts = {s: sum(t.status == s for t in trials) for s in ("running", "done", "failed", "pending")}
        title = (
            f"sweep: {counts['done']} done, {counts['failed']} failed, "
            f"{counts['running']} running, {counts['pending']} waiting"
        )
        table = RichTable(title=title, title_justify="left")
        table.add_column("trial", no_wrap=True)
        table.add_column("status", no_wrap=True)
        for column in (self.plan.monitor, "best epoch", "time"):
            table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
        limit = max(8, (self.console.height or 30) - 8)
        shown = trials
        if len(trials) > limit:
            running = [t for t in trials if t.status == "running"]
            recent = [t for t in trials if t.status in ("done", "failed") and not t.earlier]
            shown = sorted(running + recent[-max(0, limit - len(running)) :], key=lambda t: t.index)
        now = time.monotonic()
        styles = {"done": "green", "failed": "red", "running": "cyan", "pending": "dim"}
        for t in shown:
            elapsed = t.seconds if t.status in ("done", "failed") else None
            if t.status == "running" and t.started is not None:
                elapsed = now - t.started
            status = "done (earlier)" if t.earlier else ("waiting" if t.status == "pending" else t.status)
            table.add_row(
                t.name,
                f"[{styles[t.status]}]{status}[/]",
                "" if t.value is None else f"{t.value:.4g}",
                "" if t.best_epoch is None else str(t.best_epoch),
                "" if elapsed is None else f"{elapsed:.1f}s",
            )
        return table


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def print_ranking(console: Any, plan: Plan, out: Path, best: Path | None, top: int = 10) -> None:
    from rich.table import Table as RichTable

    order = ranked(plan)
    direction = "higher" if plan.maximize else "lower"
    table = RichTable(title=f"sweep results: ranked by {plan.monitor} ({direction} is better)")
    table.add_column("rank", justify="right", no_wrap=True, min_width=4)
    table.add_column("trial", no_wrap=True)
    for column in (plan.monitor, "best epoch", "time"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    for rank, t in enumerate(order[:top], start=1):
        seconds = "" if t.seconds is None else f"{t.seconds:.1f}s"
        table.add_row(str(rank), t.name, f"{t.value:.4g}", str(t.best_epoch), seconds)
    console.print(table)
    if len(order) > top:
        console.print(f"... and {len(order) - top} more in {_escape(str(out / 'summary.csv'))}")
    failed = [t for t in plan.trials if t.status == "failed"]
    if failed:
        console.print(f"[red]{len(failed)} failed[/]: " + ", ".join(t.name for t in failed))
    unscored = [t for t in plan.trials if t.status == "done" and t.value is None]
    if unscored:
        console.print(f"[yellow]no {plan.monitor} recorded[/]: " + ", ".join(t.name for t in unscored))
    console.print(f"summary: {_escape(str(out / 'summary.csv'))}")
    if best is not None:
        console.print(f"best config: {_escape(str(best))}  (train it with: nnctl train {_escape(str(best))})")


# ---------------------------------------------------------------------------------------------
# Entry point


def sweep_main(
    config_path: Path,
    *,
    grid: Sequence[str],
    random: int | None,
    seed: int | None,
    monitor: str | None,
    jobs: int | None,
    scheduler: str | None,
    dask_local: int | None,
    out: Path | None,
    retries: int,
    overrides: Sequence[str],
    quiet: bool,
    console: Any,
) -> int:
    """Run a sweep; 0 when at least one trial finished, 1 when none did. Bad input: ``NnctlError``."""
    executors = (("--jobs", jobs), ("--scheduler", scheduler), ("--dask-local", dask_local))
    chosen = [name for name, value in executors if value is not None]
    if len(chosen) > 1:
        raise NnctlError(f"{' and '.join(chosen)} exclude each other: pick one executor")
    for name, value in (("--jobs", jobs), ("--dask-local", dask_local)):
        if value is not None and value < 1:
            raise NnctlError(f"{name} {value}: need at least 1")
    if retries < 0:
        raise NnctlError(f"--retries {retries}: must be 0 or more")
    if random is not None and random < 1:
        raise NnctlError(f"--random {random}: need at least one trial")

    plan = build_plan(config_path, grid=grid, random=random, seed=seed, monitor=monitor, overrides=overrides)
    out = out if out is not None else Path("runs") / f"{plan.base.name}-sweep"
    if out.exists() and not out.is_dir():
        raise NnctlError(f"{out}: exists and is not a folder", hint="choose another --out")
    earlier = find_finished(out, plan)
    to_run = [t for t in plan.trials if t.status != "done"]
    display = Display(console, quiet, plan)

    executor: Any = None
    runner: Runner | None = None
    try:
        if to_run:
            with _one_blas_thread_env():
                if scheduler or dask_local:
                    executor = DaskExecutor(plan.tables, scheduler, dask_local)
                else:
                    executor = LocalPool(min(jobs or default_jobs(), len(to_run)), plan.tables)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NnctlError(f"cannot create the sweep folder {out}: {exc.strerror}") from None
        where = f"on {executor.describe()}" if executor is not None else "nothing left to run"
        notes = [f"{earlier} done earlier"] if earlier else []
        if plan.duplicates:
            notes.append(f"{plan.duplicates} duplicate{'s' * (plan.duplicates > 1)} dropped")
        direction = "higher" if plan.maximize else "lower"
        display.print(
            f"[bold]sweep {_escape(plan.base.name or '')}[/]: {len(plan.trials)} trials"
            + (f" ({', '.join(notes)})" if notes else "")
            + f", {_escape(where)} -> {_escape(str(out))}; ranking by {plan.monitor} ({direction} is better)"
        )
        if executor is not None:
            runner = Runner(plan, executor, out, retries, display)
            display.start()
            with _one_blas_thread_env():
                runner.run()
    except BaseException:
        display.stop()
        if runner is not None:
            runner.abort()
        if executor is not None:
            executor.close(abort=True)
            executor = None
        with contextlib.suppress(Exception):
            if out.is_dir():
                write_summary(out, plan)
        raise
    finally:
        display.stop()
        if executor is not None:
            executor.close()

    write_summary(out, plan)
    order = ranked(plan)
    best = write_best(out, plan, order[0]) if order else None
    if not quiet:
        print_ranking(console, plan, out, best)
    return 0 if any(t.status == "done" for t in plan.trials) else 1
