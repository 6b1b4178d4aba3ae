"""MLflow tracking for the commands: the callback for ``train``, the parent-run factory for ``sweep`` and
``cv``, and the run's figures as artifacts. mlflow itself is imported only when ``--mlflow`` is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def training_tracker(uri: str | None, experiment: str | None, name: str | None) -> Any:
    if uri is None:
        return None
    from nnctl.tracking import MlflowStore, TrainingTracker

    return TrainingTracker(MlflowStore(uri, experiment or name or "nnctl"), name or "nnctl")


def finish_tracking(tracker: Any, result: Any, console: Any) -> None:
    """The run's plots (when matplotlib is there) and files to MLflow; tracking problems as warnings."""
    import tempfile

    from rich.markup import escape

    from nnctl.errors import NnctlError

    with tempfile.TemporaryDirectory(prefix="nnctl-plots-") as folder:
        plots: list[Path] = []
        try:
            from nnctl.cli.plots import plot_run

            plots = [p for p in plot_run(result.folder.path, folder) if p.suffix == ".png"]
        except NnctlError:
            pass  # no matplotlib: the run is tracked without its figures
        tracker.finish(result, plots)
    for error in tracker.store.errors:
        console.print(f"[yellow]warning:[/] {escape(error)}")


def runs_tracker(uri: str | None, experiment: str | None, kind: str) -> Any:
    """A factory the sweep/cv code calls with its plan: the parent MLflow run of the trials."""
    if uri is None:
        return None
    from nnctl.tracking import MlflowStore, RunsTracker

    def start(plan: Any) -> Any:
        name = plan.base.name or "nnctl"
        store = MlflowStore(uri, experiment or name)
        return RunsTracker(store, f"{kind} {name}", plan.base.model_dump(mode="json"), kind)

    return start
