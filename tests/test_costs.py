"""Costs: values (1.14)/(2.18)/(2.23), gradients lambda' (1.15)/(2.19)/(2.27), the output
sensitivity rules (fused (2.20)/(2.21)/(2.28) vs generalized (2.16)), and stability on logits."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import config_component

from nnctl.engine.activations import ACTIVATIONS, Activation, Elu, Logistic, Softmax
from nnctl.engine.costs import (
    COSTS,
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Cost,
    Quadratic,
    generalized_rule,
    output_rule,
)
from nnctl.errors import ConfigError

RAISE = {"over": "raise", "divide": "raise", "invalid": "raise"}  # underflow is harmless
OUTPUTS: dict[str, Activation] = {
    **{name: cls() for name, cls in ACTIVATIONS.items()},
    "elu(alpha=0.5)": Elu(alpha=0.5),
    "logistic(k=0.5,x0=1)": Logistic(k=0.5, x0=1.0),
    "logistic(L=2,k=0.5,x0=1)": Logistic(L=2.0, k=0.5, x0=1.0),
}
VALID_PAIRS = [
    pytest.param(COSTS[c](), act, id=f"{c}-{name}")
    for c in COSTS
    for name, act in OUTPUTS.items()
    if COSTS[c]().check_output(act).error is None
]


def targets(cost: Cost, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(cost, CategoricalCrossEntropy):
        return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    return rng.uniform(0.0, 1.0, size=shape)


# -- values and gradients ------------------------------------------------------------------


def test_values_by_hand() -> None:
    a = np.array([[0.5, 0.25]])
    t = np.array([[1.0, 0.0]])
    # (1.14): no 1/2 factor
    assert Quadratic().per_sample(a, t)[0] == 0.25 + 0.0625
    assert CategoricalCrossEntropy().per_sample(np.array([[0.25, 0.75]]), np.array([[0.0, 1.0]]))[
        0
    ] == -np.log(0.75)
    np.testing.assert_allclose(
        BinaryCrossEntropy().per_sample(a, t)[0], -np.log(0.5) - np.log(0.75), rtol=1e-15
    )
    # value() is the mean over the batch
    a2 = np.array([[0.5, 0.25], [1.0, 0.0]])
    t2 = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert Quadratic().value(a2, t2) == (0.3125 + 1.0) / 2


@pytest.mark.parametrize("cost", [cls() for cls in COSTS.values()], ids=list(COSTS))
def test_gradient_equals_finite_differences(cost: Cost) -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.05, 0.95, size=(4, 3))
    t = targets(cost, rng, a.shape)
    eps = 1e-6
    numeric = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        plus, minus = a.copy(), a.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (cost.per_sample(plus, t)[idx[0]] - cost.per_sample(minus, t)[idx[0]]) / (2 * eps)
    np.testing.assert_allclose(cost.gradient(a, t), numeric, rtol=1e-7, atol=1e-9)


def test_gradients_by_formula() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0.05, 0.95, size=(3, 2))
    t = rng.uniform(0.0, 1.0, size=(3, 2))
    np.testing.assert_allclose(Quadratic().gradient(a, t), 2 * (a - t), rtol=1e-15)  # (1.15)
    np.testing.assert_allclose(CategoricalCrossEntropy().gradient(a, t), -t / a, rtol=1e-15)  # (2.19)
    np.testing.assert_allclose(
        BinaryCrossEntropy().gradient(a, t), (a - t) / (a * (1 - a)), rtol=1e-14
    )  # (2.27)


# -- output sensitivity rules ------------------------------------------------------------


def test_pair_validity() -> None:
    for name in ("relu", "elu", "tanh", "identity"):
        assert CategoricalCrossEntropy().check_output(ACTIVATIONS[name]()).error is not None
        assert BinaryCrossEntropy().check_output(ACTIVATIONS[name]()).error is not None
    assert CategoricalCrossEntropy().check_output(Softmax()).error is None
    logistic_cce = CategoricalCrossEntropy().check_output(Logistic())
    assert logistic_cce.error is None and logistic_cce.warning is not None
    assert BinaryCrossEntropy().check_output(Softmax()).error is not None
    assert BinaryCrossEntropy().check_output(Logistic(k=0.5, x0=1.0)).error is None
    assert BinaryCrossEntropy().check_output(Logistic(L=2.0)).error is not None
    for act in OUTPUTS.values():
        assert Quadratic().check_output(act).error is None


def test_rule_selection() -> None:
    assert output_rule(CategoricalCrossEntropy(), Softmax()).fused
    assert output_rule(BinaryCrossEntropy(), Logistic()).fused
    assert output_rule(BinaryCrossEntropy(), Logistic(k=0.5, x0=1.0)).fused
    assert not output_rule(CategoricalCrossEntropy(), Softmax(), allow_fused=False).fused
    assert not output_rule(CategoricalCrossEntropy(), Logistic()).fused
    assert not output_rule(Quadratic(), Softmax()).fused
    assert not output_rule(Quadratic(), Logistic()).fused
    assert output_rule(CategoricalCrossEntropy(), Softmax()).equation.startswith("(2.20)")
    assert output_rule(BinaryCrossEntropy(), Logistic()).equation == "(2.28)"


FUSED_CASES = [
    pytest.param(CategoricalCrossEntropy(), Softmax(), "onehot", id="softmax-cce-onehot"),
    pytest.param(CategoricalCrossEntropy(), Softmax(), "soft", id="softmax-cce-soft-unnormalized"),
    pytest.param(BinaryCrossEntropy(), Logistic(), "binary", id="logistic-bce-k1"),
    pytest.param(BinaryCrossEntropy(), Logistic(k=0.5, x0=1.0), "binary", id="logistic-bce-k0.5-x0=1"),
    pytest.param(BinaryCrossEntropy(), Logistic(k=0.5, x0=1.0), "soft", id="logistic-bce-k0.5-soft"),
]


@pytest.mark.parametrize(("cost", "act", "kind"), FUSED_CASES)
def test_fused_equals_generalized(cost: Cost, act: Activation, kind: str) -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 2.0, size=(8, 4))
    a = act.forward(z)
    if kind == "onehot":
        t = np.eye(4)[rng.integers(0, 4, 8)]
    elif kind == "soft":
        t = rng.uniform(0.0, 1.0, size=z.shape)  # rows do not sum to 1
    else:
        t = rng.integers(0, 2, size=z.shape).astype(np.float64)
    fused = output_rule(cost, act)
    general = generalized_rule(cost, act)
    assert fused.fused and not general.fused
    s_fused = fused.sensitivity(z, a, t)
    s_general = general.sensitivity(z, a, t)
    np.testing.assert_allclose(s_fused, s_general, rtol=1e-12, atol=1e-12)
    assert np.linalg.norm(s_fused) > 0.1


def test_fused_softmax_cce_is_2_20_not_2_21_for_soft_targets() -> None:
    """s = a sum(t) - t (2.20) is exact; a - t (2.21) only holds when each row of t sums to 1."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(5, 3))
    a = Softmax().forward(z)
    t = rng.uniform(0.2, 1.0, size=z.shape)
    s = output_rule(CategoricalCrossEntropy(), Softmax()).sensitivity(z, a, t)
    np.testing.assert_allclose(s, a * t.sum(axis=1, keepdims=True) - t, rtol=1e-15)
    assert not np.allclose(s, a - t)
    onehot = np.eye(3)[[0, 2, 1, 1, 0]]
    np.testing.assert_array_equal(
        output_rule(CategoricalCrossEntropy(), Softmax()).sensitivity(z, a, onehot), a - onehot
    )


def test_fused_bce_uses_growth_rate() -> None:
    """(2.28) assumes k = 1; with da/dz = k a (1 - a) the exact sensitivity is k (a - t)."""
    act = Logistic(k=0.5, x0=1.0)
    z = np.array([[-1.0, 0.5, 3.0]])
    a = act.forward(z)
    t = np.array([[0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(output_rule(BinaryCrossEntropy(), act).sensitivity(z, a, t), 0.5 * (a - t))


@pytest.mark.parametrize(("cost", "act"), VALID_PAIRS)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generalized"])
def test_output_sensitivity_equals_finite_differences(cost: Cost, act: Activation, fused: bool) -> None:
    """s^L = d c / d z^L (1.16), per sample, for every valid pair, checked against c(z)."""
    rng = np.random.default_rng(4)
    z = rng.normal(0.0, 1.5, size=(4, 3))
    z = np.where(np.abs(z) < 1e-3, 0.1, z)
    t = targets(cost, rng, z.shape)
    if isinstance(act, Logistic) and act.L != 1.0:
        t = t * act.L
    s = output_rule(cost, act, allow_fused=fused).sensitivity(z, act.forward(z), t)
    eps = 1e-6
    numeric = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        plus, minus = z.copy(), z.copy()
        plus[idx] += eps
        minus[idx] -= eps
        c_plus = cost.per_sample(act.forward(plus), t)[idx[0]]
        c_minus = cost.per_sample(act.forward(minus), t)[idx[0]]
        numeric[idx] = (c_plus - c_minus) / (2 * eps)
    np.testing.assert_allclose(s, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("cost", "act"), VALID_PAIRS)
def test_generalized_rule_is_jacobian_times_lambda_prime(cost: Cost, act: Activation) -> None:
    """(2.16): s^L = J^L lambda', with the full per-sample Jacobian."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=(3, 4))
    a = act.forward(z)
    t = targets(cost, rng, z.shape)
    expected = np.einsum("bik,bi->bk", act.jacobian(z, a), cost.gradient(a, t))
    np.testing.assert_allclose(
        generalized_rule(cost, act).sensitivity(z, a, t), expected, rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize(("cost", "act"), VALID_PAIRS)
def test_loss_from_logits_equals_loss_from_outputs(cost: Cost, act: Activation) -> None:
    rng = np.random.default_rng(6)
    z = rng.normal(0.0, 2.0, size=(6, 3))
    a = act.forward(z)
    t = targets(cost, rng, z.shape)
    np.testing.assert_allclose(cost.per_sample_from_logits(z, a, t, act), cost.per_sample(a, t), rtol=1e-12)


# -- stability --------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "big"), [(np.float64, 1000.0), (np.float32, 100.0)])
def test_cce_softmax_on_huge_logits(dtype: type, big: float) -> None:
    cost, act = CategoricalCrossEntropy(), Softmax()
    z = np.array([[big, 0.0], [big, 0.0], [-big, big], [0.0, 0.0]], dtype=dtype)
    t = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    with np.errstate(**RAISE):
        a = act.forward(z)
        loss = cost.per_sample_from_logits(z, a, t, act)
        loss_from_a = cost.per_sample(a, t)
        s = output_rule(cost, act).sensitivity(z, a, t)
        g = cost.gradient(a, t)
    # exact: -log softmax([big, 0])_1 = big; a confident right answer costs 0
    np.testing.assert_array_equal(loss, np.array([big, 0.0, 2 * big, np.log(2.0)], dtype=dtype))
    assert loss.dtype == dtype and s.dtype == dtype
    assert np.all(np.isfinite(loss_from_a)) and np.all(np.isfinite(g)) and np.all(np.isfinite(s))
    np.testing.assert_array_equal(s, a - t)  # (2.21) with one-hot rows
    np.testing.assert_array_equal(s[0], [1.0, -1.0])


@pytest.mark.parametrize(("dtype", "big"), [(np.float64, 1000.0), (np.float32, 100.0)])
@pytest.mark.parametrize("act", [Logistic(), Logistic(k=0.5, x0=1.0)], ids=["k1", "k0.5-x0=1"])
def test_bce_logistic_on_huge_logits(dtype: type, big: float, act: Logistic) -> None:
    cost = BinaryCrossEntropy()
    z = np.array([[big, -big, big, -big]], dtype=dtype)
    t = np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    with np.errstate(**RAISE):
        a = act.forward(z)
        loss = cost.per_sample_from_logits(z, a, t, act)
        loss_from_a = cost.per_sample(a, t)
        s = output_rule(cost, act).sensitivity(z, a, t)
        g = cost.gradient(a, t)
    # u = k (z - x0): the two wrong answers cost |u| each, the two right ones cost e^{-|u|} ~ 0
    expected = act.k * (big - act.x0) - act.k * (-big - act.x0)
    np.testing.assert_allclose(loss, [expected], rtol=1e-6 if dtype == np.float32 else 1e-15)
    assert loss.dtype == dtype and s.dtype == dtype
    assert np.all(np.isfinite(loss_from_a)) and np.all(np.isfinite(g)) and np.all(np.isfinite(s))
    np.testing.assert_array_equal(s, act.k * (a - t))


def test_bce_single_logit_exact() -> None:
    act, cost = Logistic(), BinaryCrossEntropy()
    for z, t, expected in [
        (1000.0, 0.0, 1000.0),
        (-1000.0, 1.0, 1000.0),
        (1000.0, 1.0, 0.0),
        (0.0, 1.0, np.log(2)),
    ]:
        zz, tt = np.array([[z]]), np.array([[t]])
        with np.errstate(**RAISE):
            loss = cost.per_sample_from_logits(zz, act.forward(zz), tt, act)
        assert loss[0] == expected


def test_costs_by_yaml_name() -> None:
    assert config_component("cost", "cce") == CategoricalCrossEntropy()
    assert config_component("cost", {"name": "quadratic"}) == Quadratic()
    with pytest.raises(ConfigError, match=r"unknown cost 'mse'.*quadratic, cce, bce"):
        config_component("cost", "mse")
