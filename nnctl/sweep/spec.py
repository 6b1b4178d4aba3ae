"""The sweep spec: ``--grid``/``--random`` options or a ``sweep:`` section, parsed into dimensions
and sampled into trial assignments (each a list of ``--set`` key paths and values)."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnctl.config import (
    format_key_path,
    parse_key_path,
    parse_yaml,
)
from nnctl.errors import ConfigError, NnctlError, unknown_key_suffix

SPEC_KEYS = ("config", "grid", "random", "trials", "seed", "monitor")
DISTRIBUTIONS = ("uniform", "loguniform", "choice")


@dataclass
class Dimension:
    """One swept key: a grid list, or a distribution to sample from."""

    key: str  # the --set path, normalized (model.layers[0].units)
    kind: str  # grid | uniform | loguniform | choice
    values: list[Any]  # grid/choice: the values; uniform/loguniform: [low, high]
    integer: bool = False  # round samples of uniform/loguniform to integers


@dataclass
class SweepSpec:
    grid: list[Dimension] = field(default_factory=list)
    random: list[Dimension] = field(default_factory=list)
    trials: int | None = None
    seed: int | None = None
    monitor: str | None = None

    @property
    def dimensions(self) -> list[Dimension]:
        return [*self.grid, *self.random]


def _normalize_key(key: str, where: str) -> str:
    try:
        return format_key_path(parse_key_path(key.strip()))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {key!r} is not a key path", hint=exc.hint) from None


def parse_grid_option(text: str) -> Dimension:
    """``KEY.PATH=[v1, v2]`` -> a grid dimension (VALUE is a YAML list, never split on commas)."""
    key, sep, value_text = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--grid {text!r}: expected KEY.PATH=[v1, v2, ...]")
    key = _normalize_key(key, "--grid")
    values = parse_yaml(value_text, f"--grid {key}") if value_text.strip() else None
    return _grid_dimension(key, values, f"--grid {key}")


def _grid_dimension(key: str, values: Any, where: str) -> Dimension:
    if not isinstance(values, list) or not values:
        shown = "nothing" if values is None else repr(values)
        raise ConfigError(
            f"{where}: expected a non-empty YAML list of values, got {shown}",
            hint=f"write {key}=[0.01, 0.1] (quote it for the shell: '{key}=[0.01, 0.1]')",
        )
    return Dimension(key, "grid", values)


def parse_sweep_section(section: Any, source: str) -> tuple[SweepSpec, str | None]:
    """A ``sweep:`` mapping -> (spec, the base config path it names or None)."""
    where = f"{source}: sweep"
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a mapping with grid:, random:, trials: ...")
    for key in section:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key{unknown_key_suffix(str(key), SPEC_KEYS)}")
    spec = SweepSpec()
    for path, values in _keyed_entries(section, "grid", where, "a list of values"):
        spec.grid.append(_grid_dimension(path, values, f"{where}.grid.{path}"))
    for path, entry in _keyed_entries(section, "random", where, "{uniform|loguniform|choice: ...}"):
        spec.random.append(_distribution(path, entry, f"{where}.random.{path}"))
    for name in ("trials", "seed"):
        value = section.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ConfigError(f"{where}.{name} = {value!r}: must be a non-negative integer")
    spec.trials, spec.seed = section.get("trials"), section.get("seed")
    monitor = section.get("monitor")
    if monitor is not None and not isinstance(monitor, str):
        raise ConfigError(f"{where}.monitor = {monitor!r}: must be a metric name such as val_loss")
    spec.monitor = monitor
    base = section.get("config")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{where}.config = {base!r}: must be the path of the base config")
    return spec, base


def _keyed_entries(section: dict, name: str, where: str, what: str) -> list[tuple[str, Any]]:
    """The (normalized key path, value) pairs of ``sweep.grid`` or ``sweep.random``."""
    entries = section.get(name) or {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{where}.{name}: must map KEY.PATH to {what}")
    return [(_normalize_key(str(key), f"{where}.{name}"), value) for key, value in entries.items()]


def _distribution(key: str, entry: Any, where: str) -> Dimension:
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where}: expected {{uniform: [low, high]}}, {{loguniform: [low, high]}} or {{choice: [...]}}"
        )
    kinds = [k for k in entry if k in DISTRIBUTIONS]
    unknown = [k for k in entry if k not in (*DISTRIBUTIONS, "integer")]
    if unknown:
        options = (*DISTRIBUTIONS, "integer")
        raise ConfigError(f"{where}.{unknown[0]}: unknown key{unknown_key_suffix(str(unknown[0]), options)}")
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(DISTRIBUTIONS)}")
    kind = kinds[0]
    values = entry[kind]
    integer = entry.get("integer", False)
    if not isinstance(integer, bool):
        raise ConfigError(f"{where}.integer = {integer!r}: must be true or false")
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.choice: expected a non-empty list of values")
        return Dimension(key, kind, values)
    if (
        not isinstance(values, list)
        or len(values) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        or not all(math.isfinite(v) for v in values)
        or not values[0] < values[1]
    ):
        raise ConfigError(f"{where}.{kind} = {values!r}: expected [low, high] numbers with low < high")
    if kind == "loguniform" and values[0] <= 0:
        raise ConfigError(f"{where}.loguniform = {values!r}: the bounds must be positive")
    return Dimension(key, kind, [float(values[0]), float(values[1])], integer)


def merge_specs(file_spec: SweepSpec, grid_options: Sequence[str]) -> SweepSpec:
    """Command-line ``--grid`` entries replace the file's entries for the same key, or add to them."""
    spec = copy.deepcopy(file_spec)
    for text in grid_options:
        dimension = parse_grid_option(text)
        spec.random = [d for d in spec.random if d.key != dimension.key]
        spec.grid = [d for d in spec.grid if d.key != dimension.key] + [dimension]
    keys = [d.key for d in spec.dimensions]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"sweep: {', '.join(repeated)} appear(s) in both grid: and random:")
    return spec


def sample_assignments(spec: SweepSpec, trials: int | None, seed: int) -> list[list[tuple[str, Any]]]:
    """The (key, value) overrides of each trial.

    Grid only: the full product (first key slowest), or ``trials`` distinct points drawn from it.
    With ``random:`` entries: ``trials`` samples, grid keys drawn uniformly from their lists.
    """
    if not spec.dimensions:
        raise NnctlError(
            "nothing to sweep", hint="give --grid KEY.PATH=[v1, v2] or a sweep: section with grid:/random:"
        )
    grid_points = [list(zip([d.key for d in spec.grid], point, strict=True)) for point in _product(spec)]
    if not spec.random and trials is None:
        return grid_points
    if trials is None:
        raise ConfigError(
            "sweep: random: entries need a number of trials", hint="add trials: N, or pass --random N"
        )
    if trials < 1:
        raise ConfigError(f"--random {trials}: need at least one trial")
    rng = np.random.default_rng(seed)
    if not spec.random:  # random search over the grid: distinct points
        picked = rng.choice(len(grid_points), size=min(trials, len(grid_points)), replace=False)
        return [grid_points[i] for i in sorted(int(i) for i in picked)]
    return [[(d.key, _draw(d, rng)) for d in spec.dimensions] for _ in range(trials)]


def _product(spec: SweepSpec) -> Iterator[tuple[Any, ...]]:
    return itertools.product(*(d.values for d in spec.grid))


def _draw(dimension: Dimension, rng: np.random.Generator) -> Any:
    if dimension.kind in ("grid", "choice"):
        return copy.deepcopy(dimension.values[int(rng.integers(len(dimension.values)))])
    low, high = dimension.values
    if dimension.kind == "uniform":
        value = float(rng.uniform(low, high))
    else:
        value = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if dimension.integer:
        return int(min(max(round(value), math.ceil(low)), math.floor(high)))
    return value
