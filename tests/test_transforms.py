"""Gradient transforms (engine/transforms.py): L2 penalty and global-norm clipping, composed once in
the order the trainer applies them."""

from __future__ import annotations

import math

import numpy as np

from nnctl.engine.transforms import ClipGlobalNorm, L2Penalty, gradient_transforms


def problem() -> tuple[list[np.ndarray], list[np.ndarray], list[bool]]:
    rng = np.random.default_rng(0)
    params = [
        rng.standard_normal((3, 2)),
        rng.standard_normal(3),
        rng.standard_normal((1, 3)),
        rng.standard_normal(1),
    ]
    grads = [rng.standard_normal(p.shape) for p in params]
    return params, grads, [True, False, True, False]


def test_the_chain_penalises_weights_only_then_clips_the_penalised_gradient() -> None:
    params, grads, mask = problem()
    wd, max_norm = 0.5, 0.1
    penalised = [g + wd * p if decays else g.copy() for g, p, decays in zip(grads, params, mask, strict=True)]
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in penalised))
    expected = [g * (max_norm / norm) for g in penalised]
    chain = gradient_transforms(wd, max_norm)
    assert [type(t) for t in chain.transforms] == [L2Penalty, ClipGlobalNorm]
    chain.update(grads, chain.init(params), params, mask)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert math.isclose(math.sqrt(sum(float(np.sum(g * g)) for g in grads)), max_norm, rel_tol=1e-12)


def test_off_means_absent_and_gradients_untouched() -> None:
    params, grads, mask = problem()
    before = [g.copy() for g in grads]
    chain = gradient_transforms(0.0, None)
    assert chain.transforms == ()
    chain.update(grads, chain.init(params), params, mask)
    for got, want in zip(grads, before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_clipping_leaves_a_small_gradient_alone() -> None:
    params, grads, mask = problem()
    before = [g.copy() for g in grads]
    chain = gradient_transforms(0.0, 1e6)
    chain.update(grads, chain.init(params), params, mask)
    for got, want in zip(grads, before, strict=True):
        np.testing.assert_array_equal(got, want)
