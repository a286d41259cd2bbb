"""``compiler.nn``: the numerically stable composites against numpy, their
gradients against closed forms and finite differences, and their behaviour with
logits as large as 1e4 (finite values and gradients). PyTorch, when installed,
is an extra oracle."""

from __future__ import annotations

import numpy as np
import pytest

import compiler as xp
from compiler import functional, jit, nn
from ir.errors import DTypeError, ShapeError

pytestmark = pytest.mark.llvm

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((4, 5))
LABELS = np.array([0, 4, 2, 2], np.int32)
HUGE = np.array([[1e4, -1e4, 0.0, 3.0], [0.0, 1e4, 1e4, -1e4], [-1e4, -1e4, -1e4, -1e4]])


# --- numpy references -------------------------------------------------------------------------

def _logsumexp(x, axis=-1, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    return x - _logsumexp(x, axis=axis, keepdims=True)


def _cross_entropy(logits, labels):
    logp = _log_softmax(logits)
    if labels.dtype.kind == "i":
        return -np.mean(np.take_along_axis(logp, labels[..., None], -1))
    return -np.mean(np.sum(labels * logp, -1))


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


ELEMENTWISE = {
    "relu": (nn.relu, lambda x: np.maximum(x, 0)),
    "sigmoid": (nn.sigmoid, _sigmoid),
    "gelu": (nn.gelu, _gelu),
    "softplus": (nn.softplus, _softplus),
}


def _close(got, expected, rtol=1e-12, atol=0.0):
    np.testing.assert_allclose(np.asarray(got.numpy() if hasattr(got, "numpy") else got), expected,
                               rtol=rtol, atol=atol)


def _numeric_grad(f, x, eps=1e-6):
    run = jit(f)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        g[i] = (run(x + step).item() - run(x - step).item()) / (2 * eps)
    return g


# --- values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_activations_match_numpy(name, dtype):
    ours, ref = ELEMENTWISE[name]
    x = np.concatenate([LOGITS.ravel(), [0.0, -30.0, 30.0]]).astype(dtype)
    got = ours(x).numpy()
    assert got.dtype == np.dtype(dtype)
    single = dtype == "float32"
    _close(got, ref(x.astype(np.float64)), rtol=2e-6 if single else 1e-9,
           atol=1e-6 if single else 1e-12)


def test_sigmoid_is_also_the_namespace_function_and_a_method():
    _close(xp.sigmoid(LOGITS), _sigmoid(LOGITS))
    _close(xp.asvariable(LOGITS).sigmoid(), _sigmoid(LOGITS))
    _close(xp.asvariable(LOGITS).relu(), np.maximum(LOGITS, 0))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_log_softmax_logsumexp(axis):
    _close(nn.softmax(LOGITS, axis=axis), _softmax(LOGITS, axis))
    _close(nn.log_softmax(LOGITS, axis=axis), _log_softmax(LOGITS, axis))
    for keep in (False, True):
        _close(nn.logsumexp(LOGITS, axis=axis, keepdims=keep), _logsumexp(LOGITS, axis, keep))


def test_logsumexp_over_several_axes_and_in_f32():
    x = RNG.standard_normal((2, 3, 4))
    _close(nn.logsumexp(x, axis=(0, 2)), _logsumexp(x, (0, 2)))
    _close(nn.logsumexp(x, axis=None), _logsumexp(x, None))
    got = nn.logsumexp(x.astype(np.float32)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _logsumexp(x), rtol=1e-6)


def test_logsumexp_of_all_minus_infinity_is_minus_infinity():
    x = np.array([[-np.inf, -np.inf], [0.0, -np.inf]], np.float32)
    got = nn.logsumexp(x).numpy()
    np.testing.assert_array_equal(got, np.array([-np.inf, 0.0], np.float32))
    g = functional.grad(lambda z: nn.logsumexp(z)[1])(x)
    np.testing.assert_array_equal(g.numpy()[1], [1.0, 0.0])


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_cross_entropy_with_integer_labels(dtype):
    labels = LABELS.astype(dtype)
    got = nn.cross_entropy(LOGITS, labels)
    assert got.shape == () and got.dtype == xp.f64
    np.testing.assert_allclose(got.item(), _cross_entropy(LOGITS, labels), rtol=1e-12)
    f32 = nn.cross_entropy(LOGITS.astype(np.float32), labels)
    assert f32.dtype == xp.f32
    np.testing.assert_allclose(f32.item(), _cross_entropy(LOGITS, labels), rtol=1e-6)


def test_cross_entropy_with_one_hot_and_soft_labels():
    one_hot = np.eye(5)[LABELS]
    _close(nn.cross_entropy(LOGITS, one_hot), _cross_entropy(LOGITS, LABELS))
    soft = _softmax(RNG.standard_normal((4, 5)))
    np.testing.assert_allclose(nn.cross_entropy(LOGITS, soft).item(), _cross_entropy(LOGITS, soft),
                               rtol=1e-12)
    np.testing.assert_allclose(nn.cross_entropy(LOGITS, xp.one_hot(LABELS, 5, xp.f64)).item(),
                               _cross_entropy(LOGITS, LABELS), rtol=1e-12)


def test_cross_entropy_of_a_single_example():
    np.testing.assert_allclose(nn.cross_entropy(LOGITS[0], np.int32(3)).item(),
                               -_log_softmax(LOGITS[0])[3], rtol=1e-12)


def test_cross_entropy_out_of_range_labels_contribute_only_the_log_normaliser():
    labels = np.array([0, 5, 100, -6], np.int32)  # all but the first are out of range for 5 classes
    got = nn.cross_entropy(LOGITS, labels).item()
    lse = _logsumexp(LOGITS)
    expected = (lse[0] - LOGITS[0, 0] + lse[1:].sum()) / 4
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_cross_entropy_ignore_index_leaves_examples_out_of_the_mean():
    labels = np.array([1, -100, 4, -100], np.int64)
    got = nn.cross_entropy(LOGITS, labels, ignore_index=-100).item()
    lse = _logsumexp(LOGITS)
    expected = ((lse[0] - LOGITS[0, 1]) + (lse[2] - LOGITS[2, 4])) / 2
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    g = functional.grad(lambda z: nn.cross_entropy(z, labels, ignore_index=-100))(LOGITS).numpy()
    np.testing.assert_array_equal(g[[1, 3]], 0.0)  # ignored rows get no gradient
    expected_rows = _softmax(LOGITS[[0, 2]]) - np.eye(5)[[1, 4]]
    np.testing.assert_allclose(g[[0, 2]], expected_rows / 2, rtol=1e-12)
    assert np.isnan(nn.cross_entropy(LOGITS, np.full(4, 7), ignore_index=7).item())
    # Without ignore_index, -1 is the last class, as numpy indexing has it.
    np.testing.assert_allclose(nn.cross_entropy(LOGITS, np.full(4, -1)).item(),
                               nn.cross_entropy(LOGITS, np.full(4, 4)).item(), rtol=1e-12)
    with pytest.raises(DTypeError, match="ignore_index needs integer"):
        nn.cross_entropy(LOGITS, np.eye(5)[LABELS], ignore_index=0)


def test_cross_entropy_shape_checks():
    with pytest.raises(ShapeError, match="batch shape"):
        nn.cross_entropy(LOGITS, np.zeros(3, np.int32))
    with pytest.raises(ShapeError, match="must match"):
        nn.cross_entropy(LOGITS, np.zeros((4, 4)))


def test_mse():
    pred, target = RNG.standard_normal((3, 2)), RNG.standard_normal((3, 2))
    _close(nn.mse(pred, target), np.mean((pred - target) ** 2))
    g = functional.grad(nn.mse)(pred, target)
    np.testing.assert_allclose(g.numpy(), 2 * (pred - target) / 6, rtol=1e-12)
    np.testing.assert_allclose(nn.mse(pred, 0.5).item(), np.mean((pred - 0.5) ** 2), rtol=1e-12)


# --- gradients --------------------------------------------------------------------------------

def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    g = functional.grad(nn.cross_entropy)(LOGITS, LABELS)
    np.testing.assert_allclose(g.numpy(), (_softmax(LOGITS) - np.eye(5)[LABELS]) / 4, rtol=1e-10,
                               atol=1e-14)
    g1 = functional.grad(nn.cross_entropy)(LOGITS, np.eye(5)[LABELS])
    np.testing.assert_allclose(g1.numpy(), g.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp", "gelu", "sigmoid",
                                  "softplus"])
def test_gradients_match_finite_differences(name):
    fn = getattr(nn, name)
    weights = RNG.standard_normal((3, 4))
    x = RNG.standard_normal((3, 4))
    if name == "logsumexp":
        weights = weights[:, 0]

    def f(z):
        return (fn(z) * weights).sum()

    _close(functional.grad(f)(x), _numeric_grad(f, x), rtol=1e-6, atol=1e-9)


def test_relu_gradient_is_zero_at_zero():
    g = functional.grad(lambda z: nn.relu(z).sum())(np.array([-2.0, 0.0, 3.0], np.float32))
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0, 1.0])


def test_second_derivative_of_softplus_is_sigmoid_derivative():
    x = np.float64(0.3)
    d2 = functional.grad(functional.grad(nn.softplus))(x).item()
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(d2, s * (1 - s), rtol=1e-12)


# --- huge logits ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_logits_give_finite_values_and_gradients(dtype):
    x = HUGE.astype(dtype)
    labels = np.array([1, 2, 3], np.int32)
    for name in ("softmax", "log_softmax", "logsumexp", "sigmoid", "softplus", "gelu", "relu"):
        fn = getattr(nn, name)
        value = fn(x).numpy()
        grad = functional.grad(lambda z: (fn(z) * xp.reshape(np.arange(fn(z).size, dtype=dtype),
                                                             fn(z).shape)).sum())(x).numpy()
        assert np.all(np.isfinite(value)), name
        assert np.all(np.isfinite(grad)), name
    value, grad = functional.value_and_grad(nn.cross_entropy)(x, labels)
    assert np.isfinite(value.item()) and np.all(np.isfinite(grad.numpy()))
    np.testing.assert_allclose(value.item(), _cross_entropy(HUGE, labels), rtol=1e-6)
    np.testing.assert_allclose(grad.numpy(), (_softmax(HUGE) - np.eye(4)[labels]) / 3, atol=1e-6)
    np.testing.assert_allclose(nn.softmax(x).numpy(), _softmax(HUGE), atol=1e-7)
    np.testing.assert_allclose(nn.sigmoid(x).numpy(), _sigmoid(HUGE), atol=1e-7)


# --- an independent oracle --------------------------------------------------------------------

def test_optional_oracle_torch():
    torch = pytest.importorskip("torch")
    x = torch.tensor(LOGITS, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(x, torch.tensor(LABELS, dtype=torch.long))
    loss.backward()
    value, grad = functional.value_and_grad(nn.cross_entropy)(LOGITS, LABELS)
    np.testing.assert_allclose(value.item(), loss.item(), rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), x.grad.numpy(), rtol=1e-10, atol=1e-14)
    t = torch.tensor(LOGITS)
    _close(nn.log_softmax(LOGITS), torch.log_softmax(t, -1).numpy())
    np.testing.assert_allclose(nn.softplus(LOGITS).numpy(), torch.nn.functional.softplus(t).numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(nn.gelu(LOGITS).numpy(),
                               torch.nn.functional.gelu(t, approximate="tanh").numpy(), rtol=1e-9)
