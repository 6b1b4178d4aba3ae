"""k-fold cross-validation on the sweep's machinery: every fold is a trial whose config names its fold
(``data.folds: {k: K, index: i}``), run by the same executors and runner, stored as a normal run folder.

* ``build_cv_plan``: the folds (and the refit on all non-test rows) of one config, validated up front
* ``expand_folds``: every trial of a sweep plan as K fold trials (``nnctl sweep --folds K``)
* ``summarize``: per-fold metrics at each fold's final epoch, mean and standard deviation
* ``write_cv``: ``cv.csv`` (a row per fold, then ``mean`` and ``std``) and ``cv.json``

A fold's metrics are its last history row (the weights of ``last.npz``): with a fixed number of epochs
nothing has been selected on the held-out fold, so the mean estimates how the recipe generalises.
The display is ``nnctl.cli.cv``; nothing here prints.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nnctl.config import Config, apply_override, validate_config
from nnctl.errors import NnctlError
from nnctl.files import atomic_write_text
from nnctl.sweep.plan import Plan, Trial, config_hash, load_tables, read_base, ship_tables
from nnctl.sweep.store import _read_history, find_finished
from nnctl.training.prepare import prepare_loaded

MAX_FOLDS = 1000
REFIT = "refit"


@dataclass
class CvPlan:
    plan: Plan  # its trials: fold1..foldK, then the refit when asked for
    k: int
    folds: list[Trial]
    refit: Trial | None


@dataclass
class CvSummary:
    k: int
    columns: list[str]  # metric names, as in history.csv
    folds: list[dict[str, Any]]  # {"fold": i, "epoch": n, METRIC: value, ...} for finished folds
    failed: list[str] = field(default_factory=list)  # "foldN: error" for folds that did not finish
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.failed and len(self.folds) == self.k


def check_folds(k: int) -> None:
    if not 2 <= k <= MAX_FOLDS:
        raise NnctlError(f"--folds {k}: need between 2 and {MAX_FOLDS} folds")


def fold_config_raw(raw: dict[str, Any], k: int, index: int) -> dict[str, Any]:
    """The raw config of fold ``index`` of ``k``: the fold named in ``data.folds``, BLAS pinned."""
    fold = copy.deepcopy(raw)
    apply_override(fold, f"data.folds={json.dumps({'k': k, 'index': index})}")
    apply_override(fold, "training.deterministic=true")
    return fold


def refit_config_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """The refit: every non-test row trains (no validation split, no fold)."""
    refit = copy.deepcopy(raw)
    apply_override(refit, "data.validation=0")
    apply_override(refit, "data.folds=null")
    apply_override(refit, "training.deterministic=true")
    return refit


def build_cv_plan(config_path: Path, k: int, overrides: Sequence[str], refit: bool) -> CvPlan:
    """Every fold's (and the refit's) resolved, validated config and the data, before anything runs."""
    check_folds(k)
    base_raw, base_path, _spec, base = read_base(config_path, overrides)
    source = str(base_path)
    folds = [
        _trial(index, f"fold{index}", fold_config_raw(base_raw, k, index), base, f"{source} (fold {index})")
        for index in range(1, k + 1)
    ]
    refit_trial = None
    if refit:
        refit_trial = _trial(k + 1, REFIT, refit_config_raw(base_raw), base, f"{source} (refit)")
    trials = [*folds, *([refit_trial] if refit_trial else [])]
    loaded = load_tables(trials, base_path.parent)
    plan = Plan(base, base_path, trials, ship_tables(loaded), "val_loss", False, base.seed)
    for trial in (folds[0], *([refit_trial] if refit_trial else [])):
        try:  # the data checks (task, output units, sizes, class weights, enough rows for k folds)
            plan.remember(prepare_loaded(trial.config, loaded[trial.table_key]))
        except NnctlError as exc:
            raise type(exc)(f"{trial.name}: {exc.message}", hint=exc.hint) from None
    return CvPlan(plan, k, folds, refit_trial)


def _trial(index: int, name: str, raw: dict[str, Any], base: Config, where: str) -> Trial:
    config = validate_config(raw, where)
    config = config.model_copy(update={"name": f"{base.name}-{name}"})
    folds = config.data.folds.model_dump() if config.data.folds else None
    return Trial(index, name, config_hash(config), [("data.folds", folds)], config, "")


def expand_folds(plan: Plan, k: int, out: Path) -> tuple[Plan, dict[str, list[Trial]]]:
    """``sweep --folds K``: each trial of ``plan`` as K fold trials in ``out/TRIAL/foldI``; finished
    folds of an earlier run are recognised (by config hash) and not run again."""
    check_folds(k)
    groups: dict[str, list[Trial]] = {}
    every: list[Trial] = []
    for trial in plan.trials:
        raw = trial.config.model_dump(mode="json")
        folds = []
        for index in range(1, k + 1):
            config = validate_config(fold_config_raw(raw, k, index), f"{trial.name} (fold {index})")
            config = config.model_copy(update={"name": f"{trial.config.name}-fold{index}"})
            spec = {"k": k, "index": index}
            fold = Trial(
                len(every) + 1,
                f"fold{index}",
                config_hash(config),
                [*trial.assignments, ("data.folds", spec)],
                config,
                trial.table_key,
            )
            folds.append(fold)
            every.append(fold)
        find_finished(out / trial.name, replace(plan, trials=folds))
        for fold in folds:  # display names say which trial a fold belongs to
            fold.name = f"{trial.name}/{fold.name}"
        groups[trial.name] = folds
    return replace(plan, trials=every), groups


# ---------------------------------------------------------------------------------------------
# Results


def metric_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The loss and metric columns of a history (not epoch, lr, time or per-layer diagnostics)."""
    header = list(rows[0]) if rows else []
    return [c for c in header if c == "train_loss" or c.startswith("val_")]


def summarize(folds: Sequence[Trial], k: int) -> CvSummary:
    """Each finished fold's last history row; mean and sample standard deviation (n - 1) over folds."""
    summary = CvSummary(k, [], [])
    for index, trial in enumerate(folds, start=1):
        rows = _read_history(trial.folder / "history.csv") if trial.folder else []
        if trial.status != "done" or not rows:
            summary.failed.append(f"{trial.name}: {trial.error or 'no history'}")
            continue
        columns = metric_columns(rows)
        summary.columns = summary.columns or columns
        last = rows[-1]
        record: dict[str, Any] = {"fold": index, "epoch": int(last["epoch"])}
        record.update({c: _number(last.get(c)) for c in columns})
        summary.folds.append(record)
    if summary.complete:
        for column in summary.columns:
            values = [record[column] for record in summary.folds]
            summary.mean[column] = math.fsum(values) / len(values)
            summary.std[column] = _sample_std(values)
    return summary


def _number(cell: Any) -> float:
    try:
        return float(cell)
    except (TypeError, ValueError):
        return math.nan


def _sample_std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def cv_csv(summary: CvSummary) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["fold", "epoch", *summary.columns])
    for record in summary.folds:
        writer.writerow([record["fold"], record["epoch"], *(repr(record[c]) for c in summary.columns)])
    if summary.complete:
        for label, values in (("mean", summary.mean), ("std", summary.std)):
            writer.writerow([label, "", *(repr(values[c]) for c in summary.columns)])
    return buffer.getvalue()


def cv_json(summary: CvSummary, refit: dict[str, Any] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "k": summary.k,
        "folds": summary.folds,
        "mean": summary.mean,
        "std": summary.std,
    }
    if summary.failed:
        document["failed"] = summary.failed
    if refit is not None:
        document["refit"] = refit
    return document


def write_cv(out: Path, summary: CvSummary, refit: dict[str, Any] | None = None) -> list[Path]:
    """``cv.csv`` and ``cv.json`` in ``out``, each written atomically."""
    atomic_write_text(out / "cv.csv", cv_csv(summary))
    atomic_write_text(out / "cv.json", json.dumps(cv_json(summary, refit), indent=2) + "\n")
    return [out / "cv.csv", out / "cv.json"]


def score_trials(plan: Plan, groups: dict[str, list[Trial]], out: Path) -> dict[str, CvSummary]:
    """``sweep --folds``: each trial's value becomes the mean of its folds' final ``plan.monitor``;
    a trial with a failed fold is failed. Writes ``cv.csv``/``cv.json`` into each trial's folder."""
    summaries: dict[str, CvSummary] = {}
    for trial in plan.trials:
        folds = groups[trial.name]
        summary = summarize(folds, len(folds))
        summaries[trial.name] = summary
        trial.folder = out / trial.name
        trial.epochs = max((int(r["epoch"]) for r in summary.folds), default=0)
        trial.seconds = math.fsum(f.seconds or 0.0 for f in folds)
        trial.attempts = max((f.attempts for f in folds), default=0)
        trial.earlier = all(f.earlier for f in folds)
        if summary.folds:
            write_cv(trial.folder, summary)
        if not summary.complete:
            trial.status, trial.error = "failed", "; ".join(summary.failed)
            continue
        if plan.monitor not in summary.mean:
            trial.status, trial.value = "done", None
            continue
        trial.status, trial.error = "done", ""
        trial.value, trial.best_epoch = summary.mean[plan.monitor], trial.epochs
    return summaries
