"""Raw records in, answers out: what ``nnctl serve`` computes, without HTTP.

A record is a mapping from column name to a cell (a number, a string for a categorical column, or
None for a missing cell). ``Predictor.columns`` gathers records into per-column lists, the
checkpoint's ``preprocessing`` encodes them as in training, normalization and the network follow,
and ``answers`` turns the outputs into one JSON-ready dict per record.

Thread safety: ``Network.forward`` writes only into arrays it allocates for the call (the scratch
buffers a network keeps are used by training only), and nothing here mutates shared state, so one
``Predictor`` answers concurrent requests from many threads without a lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnctl import __version__
from nnctl.checkpoint import load_checkpoint
from nnctl.data.columns import CategoricalColumn, CellLocator, Preprocessing
from nnctl.data.normalize import Normalizer
from nnctl.data.targets import TargetEncoder
from nnctl.engine.network import Network


@dataclass
class Predictor:
    checkpoint: Any
    preprocessing: Preprocessing
    net: Network
    normalizer: Normalizer
    encoder: TargetEncoder

    @classmethod
    def from_checkpoint(cls, checkpoint: Any) -> Predictor:
        from nnctl.training.prepare import network_from_checkpoint

        units = checkpoint.config.model.layers[-1].units
        normalize = checkpoint.config.data.normalize
        return cls(
            checkpoint=checkpoint,
            preprocessing=checkpoint.preprocessing,
            net=network_from_checkpoint(checkpoint),
            normalizer=Normalizer(normalize, checkpoint.norm_shift, checkpoint.norm_scale),
            encoder=TargetEncoder(checkpoint.meta["task"], checkpoint.classes, units),
        )

    @classmethod
    def load(cls, path: Path | str) -> Predictor:
        return cls.from_checkpoint(load_checkpoint(path))

    # -- facts ------------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.encoder.task

    @property
    def input_names(self) -> list[str]:
        return self.preprocessing.input_names

    @property
    def numeric_only(self) -> bool:
        return not any(isinstance(c, CategoricalColumn) for c in self.preprocessing.columns)

    def info(self) -> dict[str, Any]:
        """What ``GET /info`` shows: the task, the raw columns, classes, layers, provenance."""
        checkpoint = self.checkpoint
        layers = [
            {"units": layer.units, "activation": layer.activation.describe()}
            for layer in checkpoint.config.model.layers
        ]
        return {
            "task": self.task,
            "columns": self.preprocessing.to_json()["columns"],
            "missing_values": list(self.preprocessing.missing_values),
            "features": self.preprocessing.feature_names,
            "targets": checkpoint.target_names,
            "classes": checkpoint.classes,
            "layers": [{"units": len(checkpoint.feature_names), "activation": "input"}, *layers],
            "dtype": checkpoint.config.dtype,
            "nnctl_version": __version__,
            "checkpoint": {
                "path": str(checkpoint.path),
                "epoch": checkpoint.epoch,
                "metrics": checkpoint.meta.get("metrics", {}),
                "trained_with_nnctl": checkpoint.meta.get("nnctl_version"),
                "saved_at": checkpoint.meta.get("saved_at"),
            },
        }

    # -- prediction -------------------------------------------------------------------------
    def encode(
        self, columns: Mapping[str, Sequence[object]], *, source: str, locate: CellLocator | None = None
    ) -> np.ndarray:
        """Raw cells per column -> the network's normalized inputs: ``nnctl.data.columns``' encoding
        (strip, missing-value spellings, fills, categories), as ``predict``'s. Raises DataError,
        naming the cell with ``locate`` (default: ``source``, row and column)."""
        return self.normalize(self.preprocessing.encode(columns, source=source, locate=locate))

    def normalize(self, encoded: np.ndarray) -> np.ndarray:
        return self.normalizer.apply(encoded, np.dtype(self.checkpoint.config.dtype))

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """a^L for the normalized rows, as float64."""
        return self.net.forward(x).astype(np.float64)

    def predict_columns(
        self, columns: Mapping[str, Sequence[object]], *, source: str, locate: CellLocator | None = None
    ) -> list[dict]:
        return self.answers(self.outputs(self.encode(columns, source=source, locate=locate)))

    def answers(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        """One dict per row: label and probabilities, labels and probabilities, or values."""
        targets = self.checkpoint.target_names
        if self.task == "regression":
            return [{"values": dict(zip(targets, row, strict=True))} for row in outputs.tolist()]
        if self.task == "multilabel":
            return [
                {
                    "labels": [name for name, p in zip(targets, row, strict=True) if p >= 0.5],
                    "probabilities": dict(zip(targets, row, strict=True)),
                }
                for row in outputs.tolist()
            ]
        classes = self.encoder.classes or []
        labels = self.encoder.decode(outputs).tolist()
        if outputs.shape[1] == 1:  # one logistic unit: p is the second class's probability
            outputs = np.column_stack([1.0 - outputs[:, 0], outputs[:, 0]])
        return [
            {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
            for label, row in zip(labels, outputs.tolist(), strict=True)
        ]
