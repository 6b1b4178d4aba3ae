"""Small built-in datasets (``builtin:xor`` and friends), generated in code from a fixed seed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnctl.data.table import Table, select_columns
from nnctl.errors import DataError, did_you_mean

# ---------------------------------------------------------------------------------------------
# Builtins


def _xor() -> Table:
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    return Table(x=x, y=y, feature_names=["x1", "x2"], target_names=["y"], source="builtin:xor")


def _spirals(points: int = 100, classes: int = 3) -> Table:
    """Three interleaved 2-D spirals (the classic non-linearly-separable toy set). The internal seed
    is fixed so the data never changes between runs or machines."""
    rng = np.random.default_rng(20240611)
    xs, ys = [], []
    radius = np.linspace(0.0, 1.0, points)
    for k in range(classes):
        theta = np.linspace(4.0 * k, 4.0 * (k + 1), points) + rng.normal(0.0, 0.2, points)
        xs.append(np.column_stack([radius * np.sin(theta), radius * np.cos(theta)]))
        ys.append(np.full((points, 1), float(k)))
    return Table(
        x=np.ascontiguousarray(np.vstack(xs)),
        y=np.vstack(ys),
        feature_names=["x1", "x2"],
        target_names=["class"],
        source="builtin:spirals",
    )


def _circles(points: int = 400) -> Table:
    """Binary toy set: 2-D points inside (label 1) or outside (0) a circle of radius 0.6, fixed seed."""
    rng = np.random.default_rng(20240612)
    x = rng.uniform(-1.0, 1.0, size=(points, 2))
    y = (np.hypot(x[:, 0], x[:, 1]) < 0.6).astype(np.float64)[:, None]
    return Table(x=x, y=y, feature_names=["x1", "x2"], target_names=["inside"], source="builtin:circles")


def _sine(points: int = 400) -> Table:
    """Regression toy set: y = sin(3 x) + noise for x in [-1, 1], fixed seed."""
    rng = np.random.default_rng(20240613)
    x = rng.uniform(-1.0, 1.0, size=(points, 1))
    y = np.sin(3.0 * x) + rng.normal(0.0, 0.05, size=(points, 1))
    return Table(x=x, y=y, feature_names=["x"], target_names=["y"], source="builtin:sine")


BUILTINS: dict[str, Callable[[], Table]] = {
    "builtin:xor": _xor,
    "builtin:spirals": _spirals,
    "builtin:circles": _circles,
    "builtin:sine": _sine,
}


def load_builtin(
    spec: str, targets: list[str] | None, feature_names: list[str] | None, require_target: bool
) -> Table:
    make = BUILTINS.get(spec)
    if make is None:
        raise DataError(
            f"unknown builtin dataset '{spec}'; builtins: {', '.join(BUILTINS)}",
            hint=did_you_mean(spec, list(BUILTINS)),
        )
    full = make()
    assert full.y is not None
    names = full.feature_names + full.target_names
    columns = np.hstack([full.x, full.y])
    fidx, tidx = select_columns(spec, names, targets, feature_names, require_target)
    return Table(
        x=np.ascontiguousarray(columns[:, fidx]),
        y=np.ascontiguousarray(columns[:, tidx]) if tidx else None,
        feature_names=[names[i] for i in fidx],
        target_names=[names[i] for i in tidx],
        source=spec,
    )
