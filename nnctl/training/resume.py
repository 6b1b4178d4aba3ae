"""Checkpoint assembly: a trainer's state as a ``Checkpoint``, and a trainer rebuilt from one."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnctl import __version__
from nnctl.checkpoint import Checkpoint
from nnctl.training.loop import Callback, Trainer
from nnctl.training.prepare import Prepared, network_from_checkpoint
from nnctl.training.state import LoopState


def library_versions() -> dict[str, Any]:
    """numpy and BLAS versions and threads, recorded in meta for reproducibility."""
    info: dict[str, Any] = {"numpy": np.__version__}
    with contextlib.suppress(ImportError, AttributeError):  # numpy's SIMD level changes float rounding
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

        info["numpy_simd"] = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: pool.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for pool in threadpool_info()
        ]
    except ImportError:  # optional: without threadpoolctl we record numpy's version only
        pass
    return info


def data_location(source: str) -> str:
    """Absolute path of a data file (so eval/resume find it from any folder); builtins as they are."""
    return source if source.startswith("builtin:") else str(Path(source).resolve())


def make_checkpoint(trainer: Trainer, metrics: dict[str, Any] | None = None) -> Checkpoint:
    prepared = trainer.prepared
    state, optimizer_state = trainer.snapshot()
    meta = {
        "epoch": trainer.loop.epoch,
        "batch": trainer.loop.batch,
        "nnctl_version": __version__,
        "task": prepared.task,
        "data_source": prepared.source,
        "data_path": data_location(prepared.source),
        "metrics": metrics or {},
        "libraries": library_versions(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if prepared.class_weights is not None:
        meta["class_weights"] = prepared.class_weights
    return Checkpoint(
        weights=[layer.W.copy() for layer in trainer.net.layers],
        biases=[layer.b.copy() for layer in trainer.net.layers],
        config=prepared.config,
        meta=meta,
        feature_names=prepared.feature_names,
        target_names=prepared.target_names,
        classes=prepared.encoder.classes,
        norm_shift=prepared.normalizer.shift,
        norm_scale=prepared.normalizer.scale,
        train_state=state,
        optimizer_state=optimizer_state,
        preprocessing=prepared.preprocessing,
    )


def trainer_from_checkpoint(
    checkpoint: Checkpoint,
    prepared: Prepared,
    callbacks: Sequence[Callback] = (),
    best: Checkpoint | None = None,
) -> Trainer:
    """Continue exactly where ``checkpoint`` stopped (same config, same data).

    ``best`` (the run's best.npz) restores the early-stopping candidate weights.
    """
    net = network_from_checkpoint(checkpoint)
    saved = checkpoint.train_state
    loop = LoopState.from_json(saved["loop"])
    optimizer_state = {key: value.copy() for key, value in checkpoint.optimizer_state.items()}
    return Trainer(
        prepared,
        net,
        callbacks=callbacks,
        optimizer_state=optimizer_state,
        loop=loop,
        generator_states=saved["generators"],
        best_parameters=None
        if best is None
        else [p for pair in zip(best.weights, best.biases, strict=False) for p in pair],
    )
