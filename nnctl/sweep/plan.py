"""The plan: every trial's resolved, validated config, built before any trial starts. A trial's id is a
short hash of its resolved config, so a re-run recognises the trials it already finished."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nnctl.config import (
    Config,
    apply_override,
    check_parameter_budget,
    parse_key_path,
    read_composed_config,
    validate_config,
)
from nnctl.data.table import Table
from nnctl.data.tabular import TabularData
from nnctl.engine.metrics import higher_is_better
from nnctl.errors import ConfigError, NnctlError
from nnctl.sweep.spec import (
    Dimension,
    SweepSpec,
    merge_specs,
    parse_sweep_section,
    sample_assignments,
)
from nnctl.training.monitor import best_epoch_monitor, check_monitor
from nnctl.training.prepare import Prepared, load_data, prepare_loaded, resolve_data_path

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

#: Data settings that only choose rows or scale features once the data are read: trials that differ
#: in nothing else share one read. Every other data setting (a new one too) gets its own read.
_SPLIT_SETTINGS = {"validation", "test", "folds", "normalize", "shuffle", "task", "mmap"}

#: The data as ``load_data`` reads them (``nnctl train``'s reader): a raw table or numeric arrays.
TrialData = Table | TabularData


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
    tables: dict[str, TrialData]  # by Trial.table_key, as shipped to the workers (``ship_tables``)
    monitor: str
    maximize: bool
    seed: int
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)  # what reading did to the data (rows dropped, ...)
    warnings: list[str] = field(default_factory=list)  # what looks wrong with them (an ID column, ...)

    def remember(self, prepared: Prepared) -> None:
        """Keep a prepared setup's notes and warnings (each once), for the display."""
        self.notes.extend(n for n in prepared.notes if n not in self.notes)
        self.warnings.extend(w for w in prepared.warnings if w not in self.warnings)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": ")) if not isinstance(value, str) else value


def read_spec(config_path: Path) -> tuple[dict[str, Any], Path, SweepSpec]:
    """(base config mapping without ``sweep:``, its path, the file's sweep spec)."""
    raw = read_composed_config(config_path)
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
    base_raw = read_composed_config(base_path)
    base_raw.pop("sweep", None)  # a base config's own sweep: section is not used
    return base_raw, base_path, spec


def config_hash(config: Config) -> str:
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def read_base(config_path: Path, overrides: Sequence[str]) -> tuple[dict[str, Any], Path, SweepSpec, Config]:
    """The base config of a sweep or cv: its raw mapping with ``--set`` applied and a name, where it
    came from, its ``sweep:`` spec, and the validated config."""
    base_raw, base_path, file_spec = read_spec(config_path)
    for assignment in overrides:
        apply_override(base_raw, assignment)
    if not base_raw.get("name"):
        base_raw["name"] = base_path.stem
    return base_raw, base_path, file_spec, validate_config(copy.deepcopy(base_raw), str(base_path))


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
    base_raw, base_path, file_spec, base = read_base(config_path, overrides)
    source = str(base_path)
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
    loaded = load_tables(trials, base_path.parent)
    plan = Plan(base, base_path, trials, ship_tables(loaded), "", False, sweep_seed, duplicates)
    plan.monitor, plan.maximize = _check_trials(plan, loaded, monitor or spec.monitor)
    return plan


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
    """The file and every setting its reading depends on (features, columns, missing values, ...)."""
    reading = config.data.model_dump(mode="json", exclude=_SPLIT_SETTINGS)
    reading["path"] = resolve_data_path(config, config_dir)
    return json.dumps(reading, sort_keys=True)


def load_tables(trials: list[Trial], config_dir: Path) -> dict[str, TrialData]:
    """Each distinct data read once, as ``nnctl train`` reads it (held in memory: workers get a copy)."""
    tables: dict[str, TrialData] = {}
    for trial in trials:
        key = _table_key(trial.config, config_dir)
        trial.table_key = key
        if key not in tables:
            tables[key] = load_data(trial.config, config_dir, mmap=False)
    return tables


@dataclass(frozen=True)
class DataRowLocator:
    """Names a raw table's row by its number among the data rows: a locator that pickles."""

    source: str

    def __call__(self, row: int) -> str:
        return f"{self.source}: data row {row + 1}"


def ship_tables(tables: dict[str, TrialData]) -> dict[str, TrialData]:
    """The data as the workers get them: sources made absolute, so workers anywhere record a usable
    path. Of a raw table, the selected feature columns and targets travel; the file's every column
    (only reading looks at them) stays here, and its cell locator (a closure over the file's bytes,
    which pickle cannot carry) becomes a ``DataRowLocator``: the client has already prepared every
    distinct setup with the file's own line numbers, so a worker's preparation does not fail on a cell."""
    shipped: dict[str, TrialData] = {}
    for key, data in tables.items():
        source = data.source if data.source.startswith("builtin:") else str(Path(data.source).resolve())
        if isinstance(data, TabularData):
            raw = replace(data.raw, source=source, columns=[], locator=DataRowLocator(source))
            shipped[key] = replace(data, raw=raw)
        else:
            shipped[key] = replace(data, source=source)
    return shipped


def _check_trials(plan: Plan, tables: dict[str, TrialData], monitor: str | None) -> tuple[str, bool]:
    """The checks that need the data (task, output units, sizes, class weights, monitor), each distinct
    setup prepared once as ``nnctl train`` prepares it (``tables`` as read: messages keep the file's
    line numbers); the setups' notes and warnings go to ``plan``."""
    trials = plan.trials
    setups: dict[str, tuple[str, bool, int]] = {}  # setup -> (task, has a validation split, inputs)
    if monitor is None:
        monitor = "val_loss" if all(t.config.data.validation > 0 for t in trials) else "train_loss"
    for trial in trials:
        config = trial.config
        setup = json.dumps(
            [
                trial.table_key,
                config.model_dump(mode="json", include={"data", "seed", "dtype", "cost"}),
                config.training.model_dump(mode="json", include={"class_weight"}),
                config.model.layers[-1].model_dump(mode="json"),
            ],
            sort_keys=True,
        )
        try:
            if setup not in setups:
                prepared = prepare_loaded(config, tables[trial.table_key])
                plan.remember(prepared)
                setups[setup] = (prepared.task, prepared.validation is not None, len(prepared.feature_names))
            task, validated, inputs = setups[setup]
            check_parameter_budget(config, inputs)
            best_epoch_monitor(config, task, validated)
            check_monitor("--monitor", monitor, task, validated)
        except NnctlError as exc:
            raise type(exc)(f"sweep trial {trial.name}: {exc.message}", hint=exc.hint) from None
    return monitor, higher_is_better(monitor)
