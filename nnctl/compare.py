"""``nnctl compare``: the best and final metrics of several run folders and the config keys in which
they differ. Reads ``history.csv`` and ``config.yaml`` only; never prints (the table is the CLI's)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nnctl.engine.metrics import higher_is_better
from nnctl.errors import NnctlError


@dataclass
class RunRecord:
    name: str
    path: Path
    config: dict[str, Any]  # flattened: "training.learning_rate" -> 0.1
    history: dict[str, list[float]]  # column -> value per epoch
    epochs: list[int]


@dataclass
class Comparison:
    runs: list[RunRecord]
    metrics: list[str]  # history columns compared, in a stable order
    differing: list[str]  # flattened config keys whose values are not the same in every run

    def best(self, run: RunRecord, metric: str) -> tuple[float, int] | None:
        """The best finite value of ``metric`` over the run's epochs and its epoch."""
        values = run.history.get(metric) or []
        finite = [(v, e) for v, e in zip(values, run.epochs, strict=False) if math.isfinite(v)]
        if not finite:
            return None
        pick = max if higher_is_better(metric) else min
        return pick(finite, key=lambda pair: pair[0])

    def final(self, run: RunRecord, metric: str) -> float | None:
        values = run.history.get(metric) or []
        return values[-1] if values and math.isfinite(values[-1]) else None


def compare_runs(folders: list[Path]) -> Comparison:
    if len(folders) < 2:
        raise NnctlError("compare needs at least two run folders", hint="nnctl compare runs/a runs/b ...")
    runs = [read_run(folder) for folder in folders]
    names = [run.name for run in runs]
    if len(set(names)) < len(names):  # same folder names in different places: use the paths
        for run in runs:
            run.name = str(run.path)
    metrics: list[str] = []
    for run in runs:
        metrics.extend(c for c in run.history if _is_metric(c) and c not in metrics)
    keys = sorted({key for run in runs for key in run.config}, key=_key_order)
    differing = [key for key in keys if len({repr(run.config.get(key)) for run in runs}) > 1]
    return Comparison(runs, metrics, differing)


def _is_metric(column: str) -> bool:
    return column == "train_loss" or column.startswith("val_")


def _key_order(key: str) -> tuple[int, str]:
    sections = ("name", "seed", "dtype", "data", "model", "cost", "training")
    head = key.split(".")[0].split("[")[0]
    return (sections.index(head) if head in sections else len(sections), key)


def read_run(folder: Path) -> RunRecord:
    if not folder.is_dir():
        raise NnctlError(
            f"{folder}: no such run folder" if not folder.exists() else f"{folder}: is not a folder",
            hint="pass folders written by nnctl train, sweep or cv (each holds history.csv and config.yaml)",
        )
    history, epochs = _read_history(folder / "history.csv")
    config_path = folder / "config.yaml"
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NnctlError(f"{config_path}: no such file; is {folder} a run folder?") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise NnctlError(
            f"{config_path}: cannot read the run's config ({' '.join(str(exc).split())})"
        ) from None
    if not isinstance(raw, dict):
        raise NnctlError(f"{config_path}: not an nnctl config (expected a mapping)")
    data = raw.get("data")
    if (
        isinstance(data, dict)
        and isinstance(data.get("path"), str)
        and not data["path"].startswith("builtin:")
    ):
        data["path"] = str((folder / data["path"]).resolve())  # runs at other depths: the same file
    return RunRecord(folder.resolve().name, folder, flatten(raw), history, epochs)


def _read_history(path: Path) -> tuple[dict[str, list[float]], list[int]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = [c for c in (reader.fieldnames or []) if c]
    except FileNotFoundError:
        raise NnctlError(f"{path}: no such file; is {path.parent} a run folder?") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NnctlError(f"{path}: cannot read the history ({exc})") from None
    if "epoch" not in header or not rows:
        raise NnctlError(f"{path}: not an nnctl history with at least one epoch")
    columns: dict[str, list[float]] = {c: [] for c in header if c != "epoch"}
    epochs: list[int] = []
    for line, row in enumerate(rows, start=2):
        try:
            epochs.append(int(row["epoch"]))
        except (TypeError, ValueError):
            raise NnctlError(f"{path}:{line}: epoch = {row.get('epoch')!r} is not a whole number") from None
        for column in columns:
            try:
                columns[column].append(float(row.get(column) or "nan"))
            except ValueError:
                columns[column].append(math.nan)
    return columns, epochs


def flatten(node: Any, prefix: str = "", item: Callable[[str, int], str] = "{}[{}]".format) -> dict[str, Any]:
    """``{"training": {"learning_rate": 0.1}}`` -> ``{"training.learning_rate": 0.1}``; list items
    as ``model.layers[0].units`` (``item(prefix, index)`` names them); a component ``{name: relu}``
    stays one value."""
    if isinstance(node, dict):
        if set(node) == {"name"} and prefix:
            return {prefix: node["name"]}
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key), item))
        return out
    if isinstance(node, list) and any(isinstance(entry, dict | list) for entry in node):
        out = {}
        for index, entry in enumerate(node):
            out.update(flatten(entry, item(prefix, index), item))
        return out
    return {prefix: node}


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """What ``nnctl compare --json`` prints: per run its best and final metrics and differing keys."""
    runs = []
    for run in comparison.runs:
        best = {}
        for metric in comparison.metrics:
            found = comparison.best(run, metric)
            best[metric] = None if found is None else {"value": found[0], "epoch": found[1]}
        runs.append(
            {
                "name": run.name,
                "path": str(run.path),
                "epochs": len(run.epochs),
                "best": best,
                "final": {metric: comparison.final(run, metric) for metric in comparison.metrics},
                "config": {key: run.config.get(key) for key in comparison.differing},
            }
        )
    return {"metrics": comparison.metrics, "differing": comparison.differing, "runs": runs}
