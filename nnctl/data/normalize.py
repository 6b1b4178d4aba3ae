"""Per-feature normalization x' = (x - shift) / scale, fitted on the training rows only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.data.table import Array

NORMALIZERS = ("none", "standard", "minmax")


@dataclass
class Normalizer:
    """x' = (x - shift) / scale per feature, fitted on the training rows only (no leakage)."""

    kind: str  # "none" | "standard" | "minmax"
    shift: Array  # (f,) float64
    scale: Array  # (f,) float64, never 0

    @classmethod
    def fit(cls, kind: str, x_train: Array) -> Normalizer:
        if kind not in NORMALIZERS:
            raise ValueError(f"unknown normalization {kind!r}; expected one of: {', '.join(NORMALIZERS)}")
        x = np.asarray(x_train, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"x_train has shape {x.shape}; expected (rows, features)")
        f = x.shape[1]
        if kind == "none" or len(x) == 0:
            return cls(kind=kind, shift=np.zeros(f), scale=np.ones(f))
        lo, hi = x.min(axis=0), x.max(axis=0)
        if kind == "standard":
            shift, scale = x.mean(axis=0), x.std(axis=0)
        else:
            shift, scale = lo, hi - lo
        # Constant columns by exact comparison: a rounding-noise std of 1e-17 would blow them up.
        scale = np.where(hi == lo, 1.0, scale)
        return cls(kind=kind, shift=np.ascontiguousarray(shift), scale=np.ascontiguousarray(scale))

    def apply(self, x: Array, dtype: np.dtype | type = np.float32) -> Array:
        """(x - shift) / scale computed in float64, then cast, so float32 and float64 runs agree."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.shift):
            raise ValueError(f"x has shape {x.shape}; the normalizer expects {len(self.shift)} features")
        return np.ascontiguousarray((x - self.shift) / self.scale, dtype=dtype)
