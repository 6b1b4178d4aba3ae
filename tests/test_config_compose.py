"""Configs that compose (issue 14): ``base:`` chains, cycles, list replacement, ``--set`` last, and
``nnctl config [--diff]`` through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import CONFIGS, invoke

from nnctl.config import load_config
from nnctl.errors import ConfigError

IRIS = CONFIGS / "iris.yaml"


def write(path: Path, mapping: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(mapping, sort_keys=False), encoding="utf-8")
    return path


def test_base_chain_deep_merges_and_replaces_lists(tmp_path: Path) -> None:
    # grandparent (a shipped config) <- parent in another folder <- child
    parent = write(
        tmp_path / "shared" / "parent.yaml",
        {
            "base": str(IRIS),
            "training": {"learning_rate": 0.2, "optimizer": {"name": "adam", "beta1": 0.8}},
            "model": {"layers": [{"units": 3, "activation": "softmax"}]},
        },
    )
    child = write(
        tmp_path / "exp" / "child.yaml",
        {"base": "../shared/parent.yaml", "training": {"epochs": 7}, "data": {"test": 0.1}},
    )
    config = load_config(child)
    assert config.training.epochs == 7  # the child's own key
    assert config.training.learning_rate == 0.2  # from the parent
    assert config.training.optimizer.name == "adam" and config.training.optimizer.beta1 == 0.8
    assert config.training.batch_size == 8  # from the grandparent (iris)
    assert config.data.test == 0.1 and config.data.validation == 0.2 and config.data.target == "species"
    # lists are replaced whole: the parent's single layer, not a merge with iris's two
    assert [layer.units for layer in config.model.layers] == [3]
    assert config.name == "iris"  # the base's name key is inherited like any other key
    # data.path stays usable: iris's ../datasets/iris.csv rebased to the child's folder
    assert (child.parent / config.data.path).resolve() == (CONFIGS / "../datasets/iris.csv").resolve()
    assert parent.exists()


def test_set_applies_after_the_bases(tmp_path: Path) -> None:
    child = write(tmp_path / "child.yaml", {"base": str(IRIS), "training": {"epochs": 7}})
    config = load_config(child, ["training.epochs=3", "model.layers[0].units=5"])
    assert config.training.epochs == 3
    assert config.model.layers[0].units == 5


def test_cycle_is_refused_naming_the_chain(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "c.yaml"})
    write(tmp_path / "c.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError) as info:
        load_config(a)
    message = str(info.value)
    assert "cycle" in message
    chain = message.split("cycle: ")[1].split("\n")[0].split(" -> ")
    assert [Path(p).name for p in chain] == ["a.yaml", "b.yaml", "c.yaml", "a.yaml"]
    outcome = invoke("config", a)
    assert outcome.code == 2 and "cycle" in outcome.stderr


@pytest.mark.parametrize(
    ("base", "expected"),
    [("missing.yaml", "no such config file"), (["a", "b"], "expected the path of another config")],
)
def test_bad_base_is_one_clear_error(tmp_path: Path, base: object, expected: str) -> None:
    child = write(tmp_path / "child.yaml", {"base": base, "training": {"epochs": 3}})
    outcome = invoke("config", child)
    assert outcome.code == 2
    assert expected in outcome.stderr and "child.yaml" in outcome.stderr


def test_nnctl_config_prints_every_default(tmp_path: Path) -> None:
    outcome = invoke("config", IRIS, "--set", "training.epochs=3")
    assert outcome.code == 0, outcome.output
    printed = yaml.safe_load(outcome.stdout)
    assert printed == load_config(IRIS, ["training.epochs=3"]).model_dump(mode="json")
    assert printed["training"]["epochs"] == 3
    assert printed["training"]["optimizer"] == {"name": "sgd"}  # defaults filled in
    assert printed["data"]["normalize"] == "standard" and printed["dtype"] == "float32"


def test_nnctl_config_diff_is_a_minimal_equivalent_config(tmp_path: Path) -> None:
    config = CONFIGS / "digits_adam.yaml"
    outcome = invoke("config", config, "--diff")
    assert outcome.code == 0, outcome.output
    diff = yaml.safe_load(outcome.stdout)
    # only non-defaults: nothing that equals its default is printed
    assert "seed" not in diff and "dtype" not in diff and "batch_size" not in diff["training"]
    assert "normalize" not in diff["data"] and "shuffle" not in diff["data"]
    assert diff["training"]["optimizer"] == "adam"  # a component at its defaults: its name alone
    assert diff["training"]["early_stopping"] == {"patience": 8}
    # and it is the same config: written elsewhere (data path made absolute), it validates to an
    # equal Config
    assert diff["data"]["path"] == "../datasets/digits.csv"
    diff["data"]["path"] = str((config.parent / diff["data"]["path"]).resolve())
    again = load_config(write(tmp_path / "digits_adam.yaml", diff)).model_dump()
    original = load_config(config).model_dump()
    original["data"]["path"] = diff["data"]["path"]
    assert again == original


def test_train_uses_the_composed_config(tmp_path: Path) -> None:
    child = write(tmp_path / "child.yaml", {"base": str(IRIS), "training": {"epochs": 2}})
    outcome = invoke("train", child, "--out", tmp_path / "run", "--quiet")
    assert outcome.code == 0, outcome.output
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["training"]["epochs"] == 2 and stored["training"]["batch_size"] == 8
    history = (tmp_path / "run" / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 2
