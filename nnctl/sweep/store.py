"""Files: trial folders (written atomically, ``trial.json`` last as the done marker), the summary,
``best.yaml``, and ``sweep.json``: which sweep the folder holds (its base config and trial ids), so that
another sweep is never mixed into it."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from nnctl import __version__
from nnctl.checkpoint import save_checkpoint
from nnctl.errors import NnctlError
from nnctl.files import atomic_write_text
from nnctl.runs import history_csv, relocate_data_path
from nnctl.sweep.plan import Plan, Trial, config_hash
from nnctl.sweep.worker import TrialOutcome

DONE_MARKER = "trial.json"
SPACE_FILE = "sweep.json"
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


def sweep_space(plan: Plan) -> dict[str, Any]:
    """What identifies a sweep: its base config and the ids (config hashes) of its trials."""
    trials = sorted(t.id for t in plan.trials)
    text = json.dumps({"base": config_hash(plan.base), "trials": trials}, sort_keys=True)
    return {
        "space": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
        "base": plan.base.name,
        "config": str(plan.base_path),
        "trials": trials,
    }


def folder_trial_ids(out: Path) -> set[str]:
    """The trial ids ``out`` holds: from its ``sweep.json``, else from its trial folders' markers."""
    stored = _read_json(out / SPACE_FILE)
    if isinstance(stored, dict) and isinstance(stored.get("trials"), list):
        return {str(i) for i in stored["trials"]}
    ids = set()
    for marker in out.glob(f"*/{DONE_MARKER}"):
        record = _read_json(marker)
        if isinstance(record, dict) and "id" in record:
            ids.add(str(record["id"]))
    return ids


def claim_folder(out: Path, plan: Plan, force: bool) -> None:
    """Refuse a folder that holds another sweep, unless ``force`` (then that sweep's trials that this
    one does not plan are deleted). The same sweep again resumes; a wider one (every trial the folder
    holds is planned again) extends it."""
    if not out.is_dir():
        return
    held = folder_trial_ids(out)
    foreign = held - {t.id for t in plan.trials}
    if not foreign:
        return
    if not force:
        raise NnctlError(
            f"{out} holds another sweep ({len(foreign)} of its {len(held)} trials are not in this one)",
            hint="choose another folder with --out, or pass --force to replace that sweep "
            "(its trials that this sweep does not plan are deleted)",
        )
    for marker in out.glob(f"*/{DONE_MARKER}"):
        record = _read_json(marker)
        if isinstance(record, dict) and str(record.get("id")) in foreign:
            shutil.rmtree(marker.parent)
    for name in ("best.yaml", "summary.csv", SPACE_FILE):
        (out / name).unlink(missing_ok=True)


def write_space(out: Path, plan: Plan) -> None:
    atomic_write_text(out / SPACE_FILE, json.dumps(sweep_space(plan), indent=2) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
