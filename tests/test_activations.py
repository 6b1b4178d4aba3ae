"""Activations: backward is the VJP of forward (central differences), softmax's Jacobian (2.5),
and stability of the forward pass on extreme inputs.

Every test that takes ``activation`` runs over the registry ``ACTIVATIONS`` (default
parameters) plus a few non-default variants, so a newly registered activation is tested for free.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnctl.engine.activations import ACTIVATIONS, Activation, Elu, Logistic, Softmax, Tanh

VARIANTS: dict[str, Activation] = {
    **{name: cls() for name, cls in ACTIVATIONS.items()},
    "elu(alpha=0.5)": Elu(alpha=0.5),
    "logistic(L=2,k=0.5,x0=1)": Logistic(L=2.0, k=0.5, x0=1.0),
}
RAISE = {"over": "raise", "divide": "raise", "invalid": "raise"}  # underflow is harmless


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def activation(request: pytest.FixtureRequest) -> Activation:
    return VARIANTS[request.param]


def away_from_kinks(z: np.ndarray, gap: float = 1e-3) -> np.ndarray:
    """Move entries with |z| <= gap (relu/elu kinks at 0) out of that band."""
    z = np.where(np.abs(z) <= gap, np.sign(z + 1e-300) * 0.1, z)
    assert np.abs(z).min() > gap
    return z


def sample_z(seed: int, shape: tuple[int, int] = (5, 4), scale: float = 2.0) -> np.ndarray:
    return away_from_kinks(np.random.default_rng(seed).normal(0.0, scale, size=shape))


def numeric_vjp(activation: Activation, z: np.ndarray, g: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of f(z) = sum(forward(z) * g) w.r.t. each entry of z: J^T g per row."""
    grad = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        plus, minus = z.copy(), z.copy()
        plus[idx] += eps
        minus[idx] -= eps
        f_plus = np.sum(activation.forward(plus) * g)
        f_minus = np.sum(activation.forward(minus) * g)
        grad[idx] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def numeric_jacobian(activation: Activation, z: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-sample d a_i / d z_k by central differences, shape (batch, I, I)."""
    batch, width = z.shape
    jac = np.zeros((batch, width, width))
    for k in range(width):
        plus, minus = z.copy(), z.copy()
        plus[:, k] += eps
        minus[:, k] -= eps
        jac[:, :, k] = (activation.forward(plus) - activation.forward(minus)) / (2.0 * eps)
    return jac


def test_registry_names_match_yaml_names() -> None:
    assert set(ACTIVATIONS) >= {"relu", "elu", "logistic", "tanh", "softmax", "identity"}
    for name, cls in ACTIVATIONS.items():
        assert cls().name == name


# -- backward is the vector-Jacobian product of forward ---------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_backward_equals_finite_difference_vjp(activation: Activation, seed: int) -> None:
    z = sample_z(seed)
    g = np.random.default_rng(100 + seed).normal(size=z.shape)
    a = activation.forward(z)
    analytic = activation.backward(z, a, g)
    numeric = numeric_vjp(activation, z, g)
    assert analytic.shape == z.shape and analytic.dtype == np.float64
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_backward_is_not_a_trivial_map(activation: Activation) -> None:
    """Guard for the VJP test: the gradient is neither zero nor just g."""
    z = sample_z(3)
    g = np.random.default_rng(4).normal(size=z.shape)
    grad = activation.backward(z, activation.forward(z), g)
    assert np.linalg.norm(grad) > 0.01 * np.linalg.norm(g)


def test_jacobian_equals_finite_differences(activation: Activation) -> None:
    z = sample_z(5, shape=(3, 4))
    np.testing.assert_allclose(activation.jacobian(z), numeric_jacobian(activation, z), rtol=1e-6, atol=1e-8)


def test_backward_equals_jacobian_transpose_times_g(activation: Activation) -> None:
    z = sample_z(6)
    g = np.random.default_rng(7).normal(size=z.shape)
    a = activation.forward(z)
    jtg = np.einsum("bik,bi->bk", activation.jacobian(z, a), g)  # (J^T g) per sample
    np.testing.assert_allclose(activation.backward(z, a, g), jtg, rtol=1e-12, atol=1e-14)


def test_backward_out_buffer_and_inputs_untouched(activation: Activation) -> None:
    z = sample_z(8)
    g = np.random.default_rng(9).normal(size=z.shape)
    a = activation.forward(z)
    z0, a0, g0 = z.copy(), a.copy(), g.copy()
    expected = activation.backward(z, a, g)
    assert np.array_equal(z, z0) and np.array_equal(a, a0) and np.array_equal(g, g0)
    # the network writes s over its incoming gradient buffer: out=grad_a must be allowed
    result = activation.backward(z, a, g, out=g)
    assert result is g
    np.testing.assert_array_equal(result, expected)


def test_forward_out_buffer(activation: Activation) -> None:
    z = sample_z(10)
    out = np.empty_like(z)
    result = activation.forward(z, out=out)
    assert result is out
    np.testing.assert_array_equal(out, activation.forward(z))


@pytest.mark.parametrize("activation", list(VARIANTS.values()), ids=list(VARIANTS))
def test_forward_in_place(activation: Activation) -> None:
    """forward(z, out=z), as NumPy ufuncs allow, gives the same values as forward(z)."""
    z = sample_z(11)
    expected = activation.forward(z)
    result = activation.forward(z, out=z)
    assert result is z
    np.testing.assert_array_equal(result, expected)


# -- closed forms of table 1.1 and section 2.1 ------------------------------------------------


def test_table_1_1_values() -> None:
    z = np.array([[-2.0, -0.5, 0.5, 3.0]])
    np.testing.assert_array_equal(ACTIVATIONS["relu"]().forward(z), [[0.0, 0.0, 0.5, 3.0]])
    np.testing.assert_allclose(
        Elu(alpha=0.5).forward(z), [[0.5 * (np.exp(-2.0) - 1), 0.5 * (np.exp(-0.5) - 1), 0.5, 3.0]]
    )
    np.testing.assert_allclose(Tanh().forward(z), np.tanh(z))
    np.testing.assert_allclose(Logistic().forward(z), 1.0 / (1.0 + np.exp(-z)), rtol=1e-15)
    # (1.7): L / (1 + e^{k (x0 - z)})
    np.testing.assert_allclose(
        Logistic(L=2.0, k=0.5, x0=1.0).forward(z), 2.0 / (1.0 + np.exp(0.5 * (1.0 - z))), rtol=1e-15
    )
    assert Logistic().forward(np.zeros((1, 1)))[0, 0] == 0.5
    assert Logistic(L=2.0, k=0.5, x0=1.0).forward(np.ones((1, 1)))[0, 0] == 1.0  # L/2 at the midpoint


def test_logistic_derivative_is_1_10_generalized() -> None:
    z = sample_z(12)
    act = Logistic(L=2.0, k=0.5, x0=1.0)
    a = act.forward(z)
    sig = 1.0 / (1.0 + np.exp(-0.5 * (z - 1.0)))
    np.testing.assert_allclose(act.derivative(z, a), 2.0 * 0.5 * sig * (1.0 - sig), rtol=1e-12)
    a1 = Logistic().forward(z)
    np.testing.assert_allclose(Logistic().derivative(z, a1), a1 * (1.0 - a1), rtol=1e-15)  # (1.10)


def test_softmax_forward_is_2_1() -> None:
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    e = np.exp(z)
    np.testing.assert_allclose(Softmax().forward(z), e / e.sum(axis=1, keepdims=True), rtol=1e-15)


def test_softmax_jacobian_structure() -> None:
    """(2.5) with the README's fix: symmetric, a_i (1 - a_i) on the diagonal, -a_i a_k off it."""
    z = np.random.default_rng(13).normal(size=(4, 5))
    a = Softmax().forward(z)
    jac = Softmax().jacobian(z)
    assert jac.shape == (4, 5, 5)
    np.testing.assert_array_equal(jac, np.swapaxes(jac, 1, 2))
    for b in range(4):
        for i in range(5):
            for k in range(5):
                expected = a[b, i] * (1.0 - a[b, i]) if i == k else -a[b, i] * a[b, k]
                np.testing.assert_allclose(jac[b, i, k], expected, rtol=1e-14, atol=1e-17)
    # every row of J sums to 0 because the outputs sum to 1
    np.testing.assert_allclose(jac.sum(axis=2), 0.0, atol=1e-15)


def test_softmax_backward_equals_jacobian_times_g() -> None:
    """(2.12)/(2.16): the O(I) product a * (g - a.g) equals J g per sample."""
    z = np.random.default_rng(14).normal(0.0, 3.0, size=(6, 5))
    g = np.random.default_rng(15).normal(size=(6, 5))
    act = Softmax()
    a = act.forward(z)
    jac = act.jacobian(z, a)
    for b in range(6):
        np.testing.assert_allclose(act.backward(z, a, g)[b], jac[b] @ g[b], rtol=1e-12, atol=1e-15)


def test_elementwise_jacobians_are_diagonal(activation: Activation) -> None:
    if not activation.elementwise:
        pytest.skip("vector function")
    z = sample_z(16, shape=(2, 4))
    jac = activation.jacobian(z)
    off = jac * (1.0 - np.eye(4))
    assert np.all(off == 0.0)
    np.testing.assert_allclose(
        np.diagonal(jac, axis1=1, axis2=2), activation.derivative(z, activation.forward(z))
    )


# -- stability ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logistic_saturates_exactly_without_warnings(dtype: type) -> None:
    z = np.array([[-1000.0, 1000.0, -800.0, 800.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(**RAISE):
            a = Logistic().forward(z)
            # u = k (z - x0) must be as far out: e^{-u} underflows to 0 only past |u| ~ 745
            a2 = Logistic(L=2.0, k=0.5, x0=1.0).forward(4 * z)
    assert a.dtype == dtype and a2.dtype == dtype
    np.testing.assert_array_equal(a, [[0.0, 1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(a2, [[0.0, 2.0, 0.0, 2.0]])


@pytest.mark.parametrize("activation", list(VARIANTS.values()), ids=list(VARIANTS))
@pytest.mark.parametrize(("dtype", "big"), [(np.float64, 1000.0), (np.float32, 100.0)])
def test_forward_and_backward_finite_on_large_inputs(activation: Activation, dtype: type, big: float) -> None:
    z = np.array([[big, -big, 0.5], [-big, big, -0.5]], dtype=dtype)
    g = np.ones_like(z)
    with np.errstate(**RAISE):
        a = activation.forward(z)
        grad = activation.backward(z, a, g)
    assert a.dtype == dtype and grad.dtype == dtype
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(grad))


def test_softmax_of_huge_logits_is_exact() -> None:
    with np.errstate(**RAISE):
        a = Softmax().forward(np.array([[1000.0, 0.0, -1000.0], [1e300, 1e300, -1e300]]))
    np.testing.assert_array_equal(a, [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    )
)
def test_softmax_rows_are_distributions(z: np.ndarray) -> None:
    with np.errstate(**RAISE):
        a = Softmax().forward(z)
    assert a.shape == z.shape
    assert np.all(a >= 0.0) and np.all(a <= 1.0)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # the largest logit of each row gets the largest probability
    assert np.array_equal(a.max(axis=1), a[np.arange(len(a)), z.argmax(axis=1)])
