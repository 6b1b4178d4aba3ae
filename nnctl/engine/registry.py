"""The one registry mechanism: a component family (activations, costs, initializers, optimizers,
schedules) is a ``{yaml_name: class}`` dict made here from its classes. ``nnctl.config`` builds each
family's discriminated union from that dict and validates the YAML against it, so adding a class to
its family's ``registry(...)`` call is all it takes to register a component."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


def registry(*classes: type[T]) -> dict[str, type[T]]:
    """Each class under its YAML name, the default of its ``name`` field, in the order given."""
    return {cls.model_fields["name"].default: cls for cls in classes}
