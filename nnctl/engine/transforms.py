"""Gradient transforms: what happens to the batch gradients between backprop and the optimizer.

Modelled on optax's ``(init, update)`` pairs: ``init(params)`` makes a transform's state (both
transforms here are stateless: an empty dict) and ``update(grads, state, params, decay_mask)``
changes the gradients in place. ``gradient_transforms`` composes the config's transforms in the
one order they apply, so the training loop runs a single chain and hard-wires none of them.

``params``, ``grads`` and ``decay_mask`` are parallel lists, as for the optimizers: ``decay_mask[i]``
says whether ``params[i]`` is a weight matrix (penalties never touch biases).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Array = np.ndarray
TransformState = dict[str, Any]
Grads = list[Array]  # changed in place
Params = Sequence[Array]
Mask = Sequence[bool]  # True for a weight matrix, False for a bias


class GradientTransform(Protocol):
    def init(self, params: Params) -> TransformState: ...

    def update(self, grads: Grads, state: TransformState, params: Params, decay_mask: Mask) -> None: ...


class Stateless:
    """A transform that keeps no state: ``init`` gives an empty dict."""

    def init(self, params: Params) -> TransformState:
        return {}


@dataclass(frozen=True)
class L2Penalty(Stateless):
    """Adds the gradient of (wd/2) ||W||^2 to each weight matrix's gradient: g <- g + wd W."""

    weight_decay: float

    def update(self, grads: Grads, state: TransformState, params: Params, decay_mask: Mask) -> None:
        for grad, param, decays in zip(grads, params, decay_mask, strict=True):
            if decays:
                grad += self.weight_decay * param


@dataclass(frozen=True)
class ClipGlobalNorm(Stateless):
    """Scales all gradients together so that their joint L2 norm is at most ``max_norm``."""

    max_norm: float

    def update(self, grads: Grads, state: TransformState, params: Params, decay_mask: Mask) -> None:
        clip_global_norm(grads, self.max_norm)


@dataclass(frozen=True)
class Chain:
    """Transforms applied one after the other; its state is theirs, by position."""

    transforms: tuple[GradientTransform, ...]

    def init(self, params: Params) -> TransformState:
        return {str(i): t.init(params) for i, t in enumerate(self.transforms)}

    def update(self, grads: Grads, state: TransformState, params: Params, decay_mask: Mask) -> None:
        for i, transform in enumerate(self.transforms):
            transform.update(grads, state[str(i)], params, decay_mask)


def gradient_transforms(weight_decay: float, clip_norm: float | None) -> Chain:
    """The config's transforms in the order they apply: the L2 penalty first, so that clipping
    bounds the gradient of the penalised cost; neither is there when it is off."""
    transforms: list[GradientTransform] = []
    if weight_decay:
        transforms.append(L2Penalty(weight_decay))
    if clip_norm is not None:
        transforms.append(ClipGlobalNorm(clip_norm))
    return Chain(tuple(transforms))


def clip_global_norm(grads: list[Array], max_norm: float) -> float:
    """Scale all gradients together so their joint L2 norm is at most ``max_norm``; returns the
    norm before clipping."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads:
            g *= scale
    return norm
