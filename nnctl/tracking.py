"""Experiment tracking in MLflow (``--mlflow URI`` on train, sweep and cv; the ``mlflow`` extra:
``pip install -e '.[mlflow]'`` in nnctl's checkout).

What a run records: the whole resolved config as flattened params (``training.learning_rate``,
``model.layers.0.units``) and as ``config.yaml``; every epoch's history row as metrics with the epoch
as step; the final (test) metrics; the checkpoints, history and plots as artifacts. A sweep or a cv
is a parent run with one nested run per trial or fold (MLflow's ``mlflow.parentRunId`` tag).

``TrainingTracker`` is a training ``Callback`` (it logs epochs as they finish); sweeps and cv log each
trial from the client when its outcome arrives (``RunsTracker``, a runner observer), so workers need
no access to the tracking store. mlflow is imported here only, inside the functions, and only when
``--mlflow`` is given. A tracking failure after the start never stops training: the first error is
kept in ``errors`` for the CLI to report, and logging stops.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from nnctl.compare import flatten
from nnctl.errors import NnctlError
from nnctl.runs import RunFolder
from nnctl.training.loop import Callback, Trainer

#: History columns that are bookkeeping, not metrics of the model.
NOT_METRICS = {"epoch"}


def flatten_params(node: Any, prefix: str = "") -> dict[str, str]:
    """A config mapping as MLflow params: dotted keys (list items as ``.0``), values as text;
    a component ``{name: relu}`` is the one param ``...activation = relu`` plus its settings."""
    flat = flatten(node, prefix, item="{}.{}".format)
    return {key: "null" if value is None else str(value) for key, value in flat.items()}


class MlflowStore:
    """One MLflow tracking store and experiment, through ``MlflowClient`` (no global active run)."""

    def __init__(self, uri: str, experiment: str) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise NnctlError(
                "--mlflow needs MLflow",
                hint="in nnctl's checkout: pip install -e '.[mlflow]' (mlflow-skinny with sqlite support)",
            ) from None
        for name in ("mlflow", "alembic"):  # their INFO lines (database set-up) are not ours to show
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri = uri
        self.errors: list[str] = []
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=default_artifact_location(uri, experiment)
                )
            else:
                self.experiment_id = found.experiment_id
        except Exception as exc:
            raise NnctlError(
                f"--mlflow {uri}: cannot use this tracking store ({_short(exc)})",
                hint="give an MLflow tracking URI: sqlite:///FILE.db or http://HOST:PORT",
            ) from None

    def start(self, name: str, parent: str | None = None, tags: dict[str, str] | None = None) -> str | None:
        with self.guard():
            all_tags = {"mlflow.source.name": "nnctl", **(tags or {})}
            if parent:
                all_tags["mlflow.parentRunId"] = parent
            return self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
        return None

    def params(self, run_id: str | None, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value[:6000]) for key, value in params.items()]
        with self.guard(run_id):
            for start in range(0, len(items), 100):
                self.client.log_batch(run_id, params=items[start : start + 100])

    def metrics(self, run_id: str | None, rows: Sequence[tuple[str, float, int]]) -> None:
        """(name, value, step) triples; non-finite values are skipped (MLflow stores them badly)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step) for key, value, step in rows if math.isfinite(value)]
        with self.guard(run_id):
            for start in range(0, len(items), 1000):
                self.client.log_batch(run_id, metrics=items[start : start + 1000])

    def text(self, run_id: str | None, text: str, name: str) -> None:
        with self.guard(run_id):
            self.client.log_text(run_id, text, name)

    def files(self, run_id: str | None, paths: Sequence[Path], folder: str | None = None) -> None:
        with self.guard(run_id):
            for path in paths:
                if path.is_file():
                    self.client.log_artifact(run_id, str(path), folder)

    def end(self, run_id: str | None, status: str = "FINISHED") -> None:
        with self.guard(run_id):
            self.client.set_terminated(run_id, status)

    @contextlib.contextmanager
    def guard(self, run_id: str | None = "") -> Iterator[None]:
        """Run one tracking call unless an earlier one failed; keep the first failure."""
        if self.errors or run_id is None:
            yield
            return
        try:
            yield
        except Exception as exc:
            self.errors.append(f"--mlflow {self.uri}: tracking stopped ({_short(exc)})")


def default_artifact_location(uri: str, experiment: str) -> str | None:
    """For a sqlite store, artifacts go beside the database file (``mlartifacts/EXPERIMENT``), not
    into the current folder; other stores (a server) choose their own."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.resolve().parent / "mlartifacts" / experiment).as_uri()


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def history_metrics(rows: Sequence[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """Every numeric history cell as (column, value, epoch)."""
    found = []
    for row in rows:
        try:
            step = int(row["epoch"])
        except (KeyError, TypeError, ValueError):
            continue
        for key, value in row.items():
            if key in NOT_METRICS:
                continue
            try:
                found.append((key, float(value), step))
            except (TypeError, ValueError):
                continue
    return found


def scalar_metrics(metrics: dict[str, Any] | None, prefix: str) -> list[tuple[str, float, int]]:
    return [
        (f"{prefix}{key}", float(value), 0)
        for key, value in (metrics or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]


def config_text(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


# ---------------------------------------------------------------------------------------------
# nnctl train --mlflow


class TrainingTracker(Callback):
    """One MLflow run for one ``nnctl train``: params and config at the start, metrics per epoch."""

    def __init__(self, store: MlflowStore, name: str) -> None:
        self.store, self.name = store, name
        self.run_id: str | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        config = trainer.config.model_dump(mode="json")
        self.run_id = self.store.start(self.name or str(config.get("name") or "nnctl"))
        self.store.params(self.run_id, flatten_params(config))
        self.store.text(self.run_id, config_text(config), "config.yaml")

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        self.store.metrics(self.run_id, history_metrics([record]))

    def on_interrupt(self, trainer: Trainer) -> None:
        self.store.end(self.run_id, "KILLED")

    def on_failure(self, trainer: Trainer) -> None:
        self.store.end(self.run_id, "FAILED")

    def finish(self, result: Any, extra_files: Sequence[Path] = ()) -> None:
        """After training: the final metrics, the run folder's files and the plots; the run ends."""
        folder = result.folder
        final = [("best_epoch", float(result.best_epoch), 0)] if result.best_epoch else []
        if result.history:
            last = result.history[-1]
            final += [(f"final_{k}", v, 0) for k, v, _ in history_metrics([last]) if k != "seconds"]
        final += scalar_metrics(result.test_metrics, "test_")
        self.store.metrics(self.run_id, final)
        self.store.files(self.run_id, [folder.best, folder.last, folder.history, folder.config], "run")
        self.store.files(self.run_id, list(extra_files), "plots")
        self.store.end(self.run_id)


# ---------------------------------------------------------------------------------------------
# nnctl sweep / cv --mlflow


class RunsTracker:
    """A parent run for a sweep or a cv and a nested run per trial or fold, logged from the trial's
    folder as each finishes (the runner's observer protocol: ``finished(trial)``)."""

    def __init__(self, store: MlflowStore, name: str, base_config: dict[str, Any], kind: str) -> None:
        self.store = store
        self.parent = store.start(name, tags={"nnctl.kind": kind})
        store.params(self.parent, flatten_params(base_config))
        store.text(self.parent, config_text(base_config), "config.yaml")
        self.children: dict[str, str | None] = {}

    def finished(self, trial: Any) -> None:
        folder: Path | None = trial.folder
        run_id = self.store.start(
            trial.name.replace("/", "-"), parent=self.parent, tags={"nnctl.trial": trial.id}
        )
        self.children[trial.name] = run_id
        config = (trial.stored or trial.config).model_dump(mode="json")
        self.store.params(run_id, flatten_params(config))
        self.store.text(run_id, config_text(config), "config.yaml")
        if folder is not None:
            self.store.metrics(run_id, history_metrics(_history_rows(folder)))
            names = ("best.npz", "last.npz", "history.csv", "config.yaml", "trial.json")
            self.store.files(run_id, [folder / n for n in names], "run")
        self.store.end(run_id, "FINISHED" if trial.status == "done" else "FAILED")

    def close(
        self, metrics: Sequence[tuple[str, float, int]] = (), files: Sequence[Path] = (), ok: bool = True
    ) -> None:
        self.store.metrics(self.parent, metrics)
        self.store.files(self.parent, list(files))
        self.store.end(self.parent, "FINISHED" if ok else "FAILED")


def _history_rows(folder: Path) -> list[dict[str, Any]]:
    """A trial's history.csv rows; none when the folder is gone or unreadable (logging never fails)."""
    try:
        return RunFolder(folder).read_history(up_to_epoch=sys.maxsize)
    except OSError:
        return []
