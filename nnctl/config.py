"""The YAML schema: Pydantic models, safe YAML reading, ``--set`` overrides and error rendering.

Components (activations, costs, initializers, optimizers) are validated against their registries:
each family's discriminated union is built from the registry, so a new component needs no edit here.
Every problem becomes one ``ConfigError`` whose message names the key path (``model.layers[2].units``),
the bad value and what is allowed, with a did-you-mean for misspelt keys and names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from nnctl.engine.activations import ACTIVATIONS
from nnctl.engine.costs import COSTS
from nnctl.engine.initializers import INITIALIZERS, Auto
from nnctl.engine.metrics import TASKS
from nnctl.engine.optimizers import OPTIMIZERS, SGD
from nnctl.engine.schedules import SCHEDULES, Constant
from nnctl.errors import ConfigError, did_you_mean, unknown_key_suffix

#: Refuse networks whose parameters, gradients and optimizer state alone would exceed this.
MAX_PARAMETER_BYTES = 8 * 1024**3


def _shorthand(value: Any) -> Any:
    """Let YAML write ``activation: relu`` for ``activation: {name: relu}``."""
    return {"name": value} if isinstance(value, str) else value


def component_field(registry: dict[str, type]) -> Any:
    """A registry's classes as one discriminated union on ``name``, with the string shorthand:
    the registry is the only list of valid names."""
    union = Union[tuple(registry.values())]  # noqa: UP007
    return Annotated[union, Field(discriminator="name"), BeforeValidator(_shorthand)]


AnyCost = component_field(COSTS)
AnyInitializer = component_field(INITIALIZERS)
AnyOptimizer = component_field(OPTIMIZERS)
ActivationSpec = component_field(ACTIVATIONS)
ScheduleSpec = component_field(SCHEDULES)

REGISTRIES: dict[str, dict[str, type]] = {
    "activation": ACTIVATIONS,
    "cost": COSTS,
    "initializer": INITIALIZERS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
}


class Strict(BaseModel):
    """Unknown keys are errors; inf/NaN are refused everywhere; models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FoldsConfig(Strict):
    """One fold of k-fold cross-validation (``nnctl cv`` writes it into each fold's config): the
    non-test rows are dealt into ``k`` seeded folds (stratified for classification); fold ``index``
    is the validation split and the other folds train. ``data.validation`` is then not used."""

    k: int = Field(ge=2, le=1000, description="number of folds")
    index: int = Field(ge=1, description="the held-out fold, 1..k")

    @model_validator(mode="after")
    def _index_within_k(self) -> FoldsConfig:
        if self.index > self.k:
            raise ValueError(f"data.folds.index: {self.index} is not a fold of {self.k} (use 1..{self.k})")
        return self


class ColumnConfig(Strict):
    """Settings of one table column (``data.columns.NAME``); unset keys take the type's default."""

    type: Literal["numeric", "categorical"] | None = Field(None, description="default: inferred")
    missing: (
        Literal["median", "mean", "constant", "drop_row", "error", "category", "most_frequent"] | None
    ) = Field(
        None,
        description="numeric: median (default) | mean | constant | drop_row | error; "
        "categorical: category (default) | most_frequent | drop_row | error",
    )
    fill: float | None = Field(None, description="the value for missing: constant")
    indicator: bool = Field(True, description="numeric: add a NAME_missing 0/1 input")
    unknown: Literal["ignore", "error"] = Field("ignore", description="a category never seen in training")
    min_frequency: PositiveFloat | None = Field(
        None, description="categories rarer than this count (or fraction < 1) fold into <other>"
    )
    max_categories: PositiveInt | None = Field(None, description="keep this many categories, fold the rest")


DEFAULT_MISSING_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "None", "?")


class DataConfig(Strict):
    path: str = Field(
        description="CSV (header row), .npz (arrays x, y) or builtin:NAME; relative to the config"
    )
    target: str | list[str] | None = Field(None, description="target column(s); default: the last column")
    validation: float = Field(0.15, ge=0.0, lt=1.0, description="fraction held out for validation")
    test: float = Field(0.15, ge=0.0, lt=1.0, description="fraction held out for test")
    folds: FoldsConfig | None = Field(None, description="k-fold cross-validation: the held-out fold")
    normalize: Literal["none", "standard", "minmax"] = Field("standard", description="feature scaling")
    shuffle: bool = Field(True, description="reshuffle minibatches every epoch")
    task: Literal[("auto", *TASKS)] = Field("auto", description="task")  # type: ignore[valid-type]
    mmap: bool = Field(False, description="memory-map x.npy of a folder dataset instead of loading it")
    features: list[str] | None = Field(None, description="feature columns; default: all but the target")
    drop: list[str] = Field(default_factory=list, description="columns never used")
    columns: dict[str, ColumnConfig] = Field(default_factory=dict, description="per-column settings")
    missing_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MISSING_VALUES), description="cells read as missing"
    )
    delimiter: str | None = Field(None, description="CSV delimiter; default: detected from the header")

    @model_validator(mode="after")
    def _splits_leave_training_rows(self) -> DataConfig:
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"data.delimiter: {self.delimiter!r} must be one character, e.g. ';'")
        if self.validation + self.test >= 1.0:
            raise ValueError(
                f"validation + test = {self.validation + self.test:g} leaves no training rows; "
                "keep their sum below 1"
            )
        return self


class LayerConfig(Strict):
    units: PositiveInt = Field(description="neurons in the layer (the last layer is the output)")
    activation: ActivationSpec = Field(description="relu, elu, logistic, tanh, softmax or identity")
    initializer: AnyInitializer | None = Field(None, description="overrides model.initializer")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="inverted dropout on this layer's output")


class ModelConfig(Strict):
    initializer: AnyInitializer = Field(default_factory=Auto, description="auto, he or xavier")
    layers: list[LayerConfig] = Field(min_length=1, description="hidden layers and the output layer")


class EarlyStoppingConfig(Strict):
    monitor: str = Field("val_loss", description="history column: val_loss, val_accuracy, val_r2 ...")
    patience: PositiveInt = Field(10, description="epochs without improvement before stopping")
    min_delta: NonNegativeFloat = Field(0.0, description="smallest change that counts as an improvement")
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto: max for accuracy/r2, else min")


class TrainingConfig(Strict):
    epochs: PositiveInt = Field(description="passes over the training rows")
    batch_size: PositiveInt = Field(32, description="rows per step; >= the training rows means full batch")
    learning_rate: PositiveFloat = Field(description="eta in W <- W - eta dC/dW (1.32)")
    optimizer: AnyOptimizer = Field(default_factory=SGD, description="sgd, momentum, adam, adamw, rmsprop")
    schedule: ScheduleSpec = Field(default_factory=Constant, description="learning-rate schedule")
    weight_decay: NonNegativeFloat = Field(0.0, description="L2 penalty on weights (not biases)")
    clip_norm: PositiveFloat | None = Field(None, description="clip the global gradient norm")
    early_stopping: EarlyStoppingConfig | None = Field(None, description="stop when the monitor stalls")
    deterministic: bool = Field(False, description="pin BLAS to one thread for bit-identical results")
    trace: bool = Field(False, description="per-layer diagnostics in history.csv")
    class_weight: Literal["balanced"] | dict[str, PositiveFloat] | None = Field(
        None, description="cce/bce: weight each sample's cost by its class: balanced or {LABEL: weight}"
    )


class Config(Strict):
    name: str | None = Field(None, description="run name; default: the config file's stem")
    seed: int = Field(0, description="drives initialization, splits, shuffling and dropout")
    dtype: Literal["float32", "float64"] = Field("float32", description="weights and data")
    data: DataConfig = Field(description="the dataset and how its rows are split")
    model: ModelConfig = Field(description="the layers")
    cost: AnyCost = Field(description="quadratic (1.14), cce (2.18) or bce (2.23)")
    training: TrainingConfig = Field(description="epochs, batch size, learning rate, optimizer")

    @model_validator(mode="after")
    def _output_fits_cost(self) -> Config:
        layers = self.model.layers
        output = layers[-1]
        check = self.cost.check_output(output.activation)
        if check.error:
            raise ValueError(f"cost: {check.error}")
        if output.dropout:
            raise ValueError(f"model.layers[{len(layers) - 1}].dropout: the output layer takes no dropout")
        if output.activation.name == "softmax" and output.units == 1:
            raise ValueError(
                f"model.layers[{len(layers) - 1}]: softmax over 1 unit is always 1; "
                "use 2+ units, or one logistic unit with bce"
            )
        return self

    def warnings(self) -> list[str]:
        """Legal but suspicious choices, shown before training."""
        check = self.cost.check_output(self.model.layers[-1].activation)
        return [check.warning] if check.warning else []


# ---------------------------------------------------------------------------------------------
# YAML reading: safe loader only, duplicate keys refused, 1e-3 read as a number.


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads ``1e-3`` (YAML 1.1: a string) as a float."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges are allowed to repeat keys
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML with the safe loader; errors name the file, line and column."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in problem:
            problem = f"{problem}; nnctl configs are plain YAML and never run code"
        raise ConfigError(f"{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    except (ValueError, TypeError, IndexError, OverflowError, RecursionError) as exc:
        # PyYAML's constructors raise plain exceptions for values like `!!float ;`
        raise ConfigError(f"{source}: invalid YAML value ({type(exc).__name__}: {exc})") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a config file into a plain mapping (not yet validated)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file", hint="check the path, or run `nnctl init`"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(f"{path}: the config is empty", hint="run `nnctl init` for a starter config")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the config must be a mapping of keys (name, data, model, cost, training), "
            f"not a {type(raw).__name__}"
        )
    return raw


# ---------------------------------------------------------------------------------------------
# base: configs that compose


def read_composed_config(path: Path) -> dict[str, Any]:
    """A config file with its ``base:`` chain merged in: each file deep-merges over the file its
    ``base:`` names (relative to itself); mappings merge key by key, lists and scalars are replaced
    whole. A cycle is refused with the chain named. ``data.path`` stays relative to the file that
    wrote it (a base's path is rewritten relative to the config that names the base)."""
    return _compose(path, [])


def _compose(path: Path, chain: list[Path]) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in chain:
        loop = " -> ".join(str(p) for p in [*chain[chain.index(resolved) :], resolved])
        raise ConfigError(f"{chain[0]}: its base: configs form a cycle: {loop}", hint="remove one base: link")
    raw = read_config_file(path)
    if "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base = {base!r}: expected the path of another config file")
    base_path = Path(base).expanduser()
    base_path = base_path if base_path.is_absolute() else path.parent / base_path
    if not base_path.exists():
        raise ConfigError(f"{path}: base: {base}: no such config file ({base_path})")
    parent = _compose(base_path, [*chain, resolved])
    _rebase_data_path(parent, base_path.parent, path.parent)
    return deep_merge(parent, raw)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: nested mappings merge, anything else (lists too) replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _rebase_data_path(raw: dict[str, Any], from_dir: Path, to_dir: Path) -> None:
    data = raw.get("data")
    path = data.get("path") if isinstance(data, dict) else None
    if not isinstance(path, str) or path.startswith("builtin:") or Path(path).expanduser().is_absolute():
        return
    data["path"] = Path(os.path.relpath(from_dir / path, to_dir)).as_posix()


# ---------------------------------------------------------------------------------------------
# --set KEY.PATH=VALUE

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key_path(path: str) -> list[str | int]:
    """``model.layers[0].units`` -> ['model', 'layers', 0, 'units']."""
    parts: list[str | int] = []
    position = 0
    for match in _PATH_PART.finditer(path):
        gap = path[position : match.start()]
        if gap not in ("", "."):
            break
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    if not parts or position != len(path):
        raise ConfigError(
            f"--set {path!r}: not a key path", hint="write KEY.PATH=VALUE, e.g. model.layers[0].units=32"
        )
    return parts


def format_key_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``KEY.PATH=VALUE`` (VALUE parsed as YAML) to the raw config mapping."""
    key, sep, value_text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. training.learning_rate=0.05")
    parts = parse_key_path(key.strip())
    value = parse_yaml(value_text, f"--set {key}") if value_text.strip() else None
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        node = _descend(node, part, parts[: depth + 1], parts[depth + 1])
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"--set {key}: index {last} is out of range")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {key}: {format_key_path(parts[:-1])} is not a mapping")


def _descend(node: Any, part: str | int, path: list[str | int], next_part: str | int) -> Any:
    where = format_key_path(path)
    if isinstance(part, int):
        if not isinstance(node, list) or part >= len(node):
            size = len(node) if isinstance(node, list) else 0
            raise ConfigError(f"--set {where}: index {part} is out of range (the list has {size} items)")
        child = node[part]
        if isinstance(child, str) and isinstance(next_part, str):  # "relu" -> {name: relu}
            child = node[part] = {"name": child}
        return child
    if not isinstance(node, dict):
        raise ConfigError(f"--set {where}: {format_key_path(path[:-1]) or 'the config'} is not a mapping")
    child = node.get(part)
    if child is None:
        child = node[part] = [] if isinstance(next_part, int) else {}
    elif isinstance(child, str) and isinstance(next_part, str):  # activation: elu -> {name: elu}
        child = node[part] = {"name": child}
    return child


# ---------------------------------------------------------------------------------------------
# Validation and error rendering


def load_config(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate a config file; ``name`` defaults to the file's stem."""
    path = Path(path)
    raw = read_composed_config(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    raw.setdefault("name", path.stem)
    return validate_config(raw, str(path))


def validate_config(raw: dict[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(render_validation_error(exc, raw, source)) from None


def render_validation_error(exc: ValidationError, raw: Any, source: str) -> str:
    lines = [f"{source}: invalid config ({exc.error_count()} problem{'s' * (exc.error_count() > 1)})"]
    seen = set()
    for error in exc.errors(include_url=False):
        line = "  " + describe_error(error, raw)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return "\n".join(lines)


def describe_error(error: dict[str, Any], raw: Any) -> str:
    """One line: key path, what is wrong with the value, and what is allowed."""
    loc = _user_path(error["loc"], raw)
    where = format_key_path(loc) or "config"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key{unknown_key_suffix(str(loc[-1]), _known_keys(loc[:-1], raw))}"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "union_tag_invalid":
        family = _family(loc)
        tag = error["ctx"]["tag"]
        names = list(REGISTRIES.get(family, {})) or [
            t.strip("' ") for t in error["ctx"]["expected_tags"].split(",")
        ]
        hint = _hint(str(tag), names)
        return f"{where}: unknown {family or 'name'} {tag!r}{hint} (choose one of: {', '.join(names)})"
    if kind == "union_tag_not_found":
        return f"{where}: needs a name (e.g. {{name: ...}})"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        hint = _hint(str(error.get("input")), allowed)
        return f"{where} = {error.get('input')!r}: not allowed{hint} (choose one of: {', '.join(allowed)})"
    if kind == "value_error":
        message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
        if re.match(r"^[\w.\[\]]+: ", message):  # the validator already named the key
            return message
        return f"{where}: {message}"
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return f"{where} = {shown}: {error['msg'][0].lower()}{error['msg'][1:]}"


def _user_path(loc: tuple[Any, ...], raw: Any) -> list[str | int]:
    """Drop pydantic's union-tag segments (``activation.elu.alpha`` -> ``activation.alpha``)."""
    path: list[str | int] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node and path:
            family = _family(path)
            if family and part in REGISTRIES.get(family, {}):
                continue
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return path


def _family(loc: list[Any] | tuple[Any, ...]) -> str | None:
    for part in reversed(loc):
        if isinstance(part, str):
            return part if part in REGISTRIES else None
    return None


def _known_keys(parent: list[Any] | tuple[Any, ...], raw: Any) -> list[str]:
    """Valid keys at a location, found by walking the models along the path."""
    model: Any = Config
    node = raw
    for part in parent:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return []
        model = _model_in(field.annotation, part, node)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any, key: str, node: Any) -> Any:
    """The BaseModel class an annotation refers to (following lists, optionals and registries)."""
    if key in REGISTRIES:
        name = node.get("name") if isinstance(node, dict) else node
        return REGISTRIES[key].get(name)
    for candidate in getattr(annotation, "__args__", ()) or ():
        found = _model_in(candidate, key, node)
        if found is not None:
            return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _hint(word: str, options: list[str]) -> str:
    suggestion = did_you_mean(word, options)
    return f"; {suggestion}" if suggestion else ""


# ---------------------------------------------------------------------------------------------
# Cross-checks that need the data's width


def check_parameter_budget(config: Config, input_units: int) -> None:
    """Refuse absurd sizes before allocating: parameters, gradients and optimizer state."""
    itemsize = 4 if config.dtype == "float32" else 8
    units = [input_units, *(layer.units for layer in config.model.layers)]
    parameters = sum(units[i] * units[i + 1] + units[i + 1] for i in range(len(units) - 1))
    copies = 2 + len(config.training.optimizer.slots)  # weights, gradients, optimizer slots
    # per step: z, a and the sensitivities of every layer for one batch (and 4096-row eval chunks)
    rows = max(config.training.batch_size, 4096)
    activations = 3 * rows * sum(units) * itemsize
    needed = parameters * itemsize * copies + activations
    if needed > MAX_PARAMETER_BYTES:
        raise ConfigError(
            f"model.layers: {parameters:,} parameters need about {_human_bytes(needed)} "
            f"(weights, gradients, optimizer state and one batch of activations), "
            f"over the {_human_bytes(MAX_PARAMETER_BYTES)} limit",
            hint="use fewer units per layer (or a smaller training.batch_size)",
        )


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
