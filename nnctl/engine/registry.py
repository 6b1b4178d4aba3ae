"""One builder for every component family (activations, costs, initializers, optimizers).

Each family keeps its own ``{yaml_name: class}`` registry; this turns a YAML name or a
``{name: ..., param: ...}`` mapping into an instance, or passes an instance through.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def build_component(family: str, registry: dict[str, type[T]], base: type[T], spec: str | dict | Any) -> T:
    if isinstance(spec, base):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    name = spec.get("name")
    if name not in registry:
        raise ValueError(f"unknown {family} {name!r}; choose one of {', '.join(registry)}")
    return registry[name](**spec)
