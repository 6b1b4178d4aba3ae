"""The config's JSON Schema (issue 14): generated from the models, committed for editors, and
agreeing with Pydantic on shipped configs and on bad ones (checked with the ``jsonschema`` library)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import CONFIGS, REPO, invoke
from pydantic import ValidationError

from nnctl.config import Config, parse_yaml

SHIPPED = sorted(CONFIGS.glob("*.yaml"))
SCHEMA_FILE = REPO / "docs" / "nnctl.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    outcome = invoke("schema")
    assert outcome.code == 0, outcome.output
    return json.loads(outcome.stdout)


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def read_yaml(path: Path) -> dict[str, Any]:
    return parse_yaml(path.read_text(encoding="utf-8"), str(path))


def test_committed_schema_is_current(schema: dict[str, Any]) -> None:
    assert (
        SCHEMA_FILE.read_text(encoding="utf-8") == json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    ), "docs/nnctl.schema.json is stale: regenerate it with `nnctl schema > docs/nnctl.schema.json`"


def test_schema_has_descriptions_and_defaults(schema: dict[str, Any]) -> None:
    training = schema["$defs"]["TrainingConfig"]["properties"]
    assert (
        training["batch_size"]["default"] == 32 and "rows per step" in training["batch_size"]["description"]
    )
    assert "1.32" in training["learning_rate"]["description"]
    assert schema["$defs"]["DataConfig"]["properties"]["validation"]["default"] == 0.15
    assert schema["properties"]["seed"]["default"] == 0 and schema["properties"]["seed"]["description"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_validate_and_point_at_the_schema(path: Path, validator: Any) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../docs/nnctl.schema.json"
    assert (path.parent / "../docs/nnctl.schema.json").resolve() == SCHEMA_FILE.resolve()
    raw = read_yaml(path)
    errors = [e.message for e in validator.iter_errors(raw)]
    assert errors == []
    Config.model_validate(raw)


def _set(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


BAD = [
    ("unknown top-level key", "trainig", {"epochs": 3}),
    ("unknown nested key", "training.learnin_rate", 0.1),
    ("unknown component parameter", "model.layers.0.activation", {"name": "relu", "alpha": 2}),
    ("unknown component name", "model.layers.0.activation", "rleu"),
    ("unknown optimizer", "training.optimizer", {"name": "adamax"}),
    ("wrong type: string for int", "training.epochs", "many"),
    ("wrong type: list for float", "training.learning_rate", [0.1]),
    ("wrong type: mapping for bool", "data.shuffle", {"yes": 1}),
    ("out of range: zero epochs", "training.epochs", 0),
    ("out of range: negative lr", "training.learning_rate", -0.1),
    ("out of range: validation 1.5", "data.validation", 1.5),
    ("out of range: dropout 1", "model.layers.0.dropout", 1.0),
    ("out of range: adam beta1 1", "training.optimizer", {"name": "adam", "beta1": 1.0}),
    ("not allowed: normalize", "data.normalize", "zscore"),
    ("not allowed: dtype", "dtype", "float16"),
    ("fold index 0", "data.folds", {"k": 5, "index": 0}),
    ("one fold", "data.folds", {"k": 1, "index": 1}),
    ("empty layers", "model.layers", []),
    ("component without a name", "training.schedule", {"warmup_epochs": 2}),
]


@pytest.mark.parametrize(("label", "key", "value"), BAD, ids=[b[0] for b in BAD])
def test_bad_configs_are_refused_by_both(label: str, key: str, value: Any, validator: Any) -> None:
    raw = _set(read_yaml(CONFIGS / "iris.yaml"), key, value)
    with pytest.raises(ValidationError):
        Config.model_validate(raw)
    assert list(validator.iter_errors(raw)), f"the schema accepted {label}"


def test_missing_required_key_is_refused_unless_a_base_provides_it(validator: Any) -> None:
    raw = read_yaml(CONFIGS / "iris.yaml")
    del raw["training"]["learning_rate"]
    with pytest.raises(ValidationError):
        Config.model_validate(raw)
    assert list(validator.iter_errors(raw))
    # a config that names a base: may be partial (its base holds the rest) ...
    assert list(validator.iter_errors({"base": "iris.yaml", "training": {"epochs": 3}})) == []
    # ... but still may not misspell a key or give a wrong type
    assert list(validator.iter_errors({"base": "iris.yaml", "training": {"epoch": 3}}))
    assert list(validator.iter_errors({"base": "iris.yaml", "training": {"epochs": "3 please"}}))


@pytest.mark.parametrize(
    "activation",
    ["relu", {"name": "relu"}, {"name": "elu", "alpha": 0.5}, "elu", {"name": "logistic", "k": 2}],
)
def test_schema_accepts_both_component_spellings(activation: Any, validator: Any) -> None:
    raw = _set(read_yaml(CONFIGS / "iris.yaml"), "model.layers.0.activation", activation)
    Config.model_validate(raw)
    assert list(validator.iter_errors(raw)) == []
