"""Per-feature normalization x' = (x - shift) / scale, fitted on the training rows only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.data.arrays import release_pages
from nnctl.data.table import Array

NORMALIZERS = ("none", "standard", "minmax")
CHUNK_ROWS = 8192  # rows per chunk when fitting, normalizing or evaluating: bounds temporary memory


@dataclass
class Normalizer:
    """x' = (x - shift) / scale per feature, fitted on the training rows only (no leakage)."""

    kind: str  # "none" | "standard" | "minmax"
    shift: Array  # (f,) float64
    scale: Array  # (f,) float64, never 0

    @classmethod
    def fit(cls, kind: str, x: Array, rows: Array | None = None) -> Normalizer:
        """Statistics of ``x[rows]`` (sorted row indices; default: every row) in float64.

        One pass over chunks of ``CHUNK_ROWS`` rows, merged with Chan et al.'s pairwise update,
        so neither the training part nor a float64 copy of it is ever materialized (and
        memory-mapped data are read once).
        """
        if kind not in NORMALIZERS:
            raise ValueError(f"unknown normalization {kind!r}; expected one of: {', '.join(NORMALIZERS)}")
        if x.ndim != 2:
            raise ValueError(f"x has shape {x.shape}; expected (rows, features)")
        rows = np.arange(x.shape[0]) if rows is None else rows
        width = x.shape[1]
        if kind == "none" or rows.size == 0:
            return cls(kind=kind, shift=np.zeros(width), scale=np.ones(width))
        count, mean, m2 = 0, np.zeros(width), np.zeros(width)
        low, high = np.full(width, np.inf), np.full(width, -np.inf)
        every_row = rows.size == x.shape[0]  # rows are sorted: then they are 0..n-1 and slices do
        for start in range(0, rows.size, CHUNK_ROWS):
            part = x[start : start + CHUNK_ROWS] if every_row else x[rows[start : start + CHUNK_ROWS]]
            chunk = np.array(part, dtype=np.float64)  # always a copy: it is centred in place below
            release_pages(x)
            np.minimum(low, chunk.min(axis=0), out=low)
            np.maximum(high, chunk.max(axis=0), out=high)
            n = chunk.shape[0]
            chunk_mean = chunk.mean(axis=0)
            chunk -= chunk_mean
            chunk_m2 = np.einsum("ij,ij->j", chunk, chunk)
            delta = chunk_mean - mean
            total = count + n
            mean += delta * (n / total)
            m2 += chunk_m2 + delta * delta * (count * n / total)
            count = total
        if kind == "minmax":
            shift, scale = low, high - low
        else:
            shift, scale = mean, np.sqrt(m2 / count)
        # Constant columns by exact comparison: a rounding-noise spread would blow them up.
        return cls(kind, shift, np.where(high == low, 1.0, scale))

    def apply(self, x: Array, dtype: np.dtype | type = np.float32) -> Array:
        """(x - shift) / scale computed in float64, then cast, so float32 and float64 runs agree."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.shift):
            raise ValueError(f"x has shape {x.shape}; the normalizer expects {len(self.shift)} features")
        return np.ascontiguousarray((x - self.shift) / self.scale, dtype=dtype)
