"""``jit``: one trace per input signature, static arguments, nested containers,
composition with ``functional``, and the ``.lower(...)`` debugging dumps."""

from __future__ import annotations

import numpy as np
import pytest

import compiler as xp
import ir
from compiler import Tensor, Variable, functional, jit, nn
from compiler.pytree import tree_map

pytestmark = pytest.mark.llvm

A = np.arange(3, dtype=np.float32)
B = np.array([2.0, -1.0, 0.5], np.float32)


def _np(tree):
    return tree_map(lambda t: t.numpy(), tree)


def test_values_and_tensor_results():
    f = jit(lambda x, y: (x * y + 1.0).sum())
    out = f(A, B)
    assert isinstance(out, Tensor) and out.dtype == xp.f32 and out.shape == ()
    assert out.item() == pytest.approx((A * B + 1).sum())


def test_one_trace_per_signature():
    traces = []

    @jit
    def f(x, y):
        traces.append((x.type, y.type))
        return x * y

    f(A, B)
    f(A + 1, B)                                   # same types: no new trace
    f(Tensor(A), Tensor(B))                       # a Tensor and an array of one type: the same
    assert len(traces) == 1
    f(np.ones(4, np.float32), np.ones(4, np.float32))   # new shape
    f(A.astype(np.float64), B.astype(np.float64))       # new dtype
    f(A, np.float32(2.0))                               # new shape of one argument
    assert len(traces) == 4 and f.cache_size == 4
    f(np.ones(4, np.float32), np.ones(4, np.float32))
    assert len(traces) == 4
    np.testing.assert_array_equal(f(A, B).numpy(), A * B)


def test_structure_is_part_of_the_signature():
    traces = []

    @jit
    def f(xs):
        traces.append(1)
        return sum(xs[1:], xs[0])

    f((A, B))
    f([A, B])                                      # a list, not a tuple: a new trace
    f((A, B, A))
    f((A, B))
    assert len(traces) == 3


def test_static_argnums_and_argnames():
    traces = []

    @jit(static_argnums=1)
    def power(x, n):
        traces.append(n)
        return x ** n

    np.testing.assert_array_equal(power(A, 2).numpy(), A ** 2)
    np.testing.assert_array_equal(power(A, 2).numpy(), A ** 2)
    np.testing.assert_array_equal(power(A, 3).numpy(), A ** 3)
    assert traces == [2, 3]
    assert jit(lambda x, n: x ** n, static_argnums=-1)(A, 3).numpy().tolist() == (A ** 3).tolist()
    scale = jit(lambda x, factor=1.0: x * factor, static_argnames="factor")
    out = scale(A, factor=2.5)
    assert out.dtype == xp.f32                    # a static Python float stays weak
    np.testing.assert_array_equal(out.numpy(), A * 2.5)
    mode = jit(lambda x, mode: x * 2.0 if mode == "double" else -x, static_argnums=(1,))
    np.testing.assert_array_equal(mode(A, "double").numpy(), A * 2)
    np.testing.assert_array_equal(mode(A, "negate").numpy(), -A)


def test_unhashable_static_argument_is_a_type_error():
    f = jit(lambda x, n: x, static_argnums=1)
    with pytest.raises(TypeError, match="hashable"):
        f(A, [1, 2])


def test_nested_containers_in_and_out():
    @jit
    def f(params, batch):
        y = batch["x"] @ params["w"] + params["b"][0]
        return {"y": y, "parts": [y.sum(), None, (params["b"][1] * 2.0,)], "n": batch["x"].shape[0]}

    params = {"w": np.ones((3, 2), np.float32), "b": (np.zeros(2, np.float32), np.float32(3.0))}
    out = f(params, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert set(out) == {"y", "parts", "n"}
    np.testing.assert_array_equal(out["y"].numpy(), [[3.0, 3.0], [12.0, 12.0]])
    assert out["parts"][0].item() == 30.0 and out["parts"][1] is None
    assert out["parts"][2][0].item() == 6.0
    assert out["n"].item() == 2                   # a Python int result becomes a Tensor


def test_python_scalar_results_inputs_and_constants():
    assert jit(lambda x: 3.0)(A).item() == 3.0
    np.testing.assert_array_equal(jit(lambda x: x)(A).numpy(), A)
    out = jit(lambda x, y: x * y)(2.0, 3.0)
    assert out.item() == 6.0 and out.dtype == xp.f32


def test_python_scalar_arguments_stay_weakly_typed():
    f = jit(lambda x, s: x * s)
    assert f(A, 2).dtype == (Variable(A) * 2).dtype == xp.f32
    assert f(A, 2.5).dtype == xp.f32
    g = jit(lambda x, s: x * (s * 2 + 1))  # weak stays weak through arithmetic on weak values
    assert g(A, 3).dtype == xp.f32
    np.testing.assert_allclose(g(A, 3).numpy(), A * 7)
    assert f(A, np.int64(2)).dtype.numpy == (A * np.int64(2)).dtype  # numpy scalars are strong


def test_keyword_arguments_are_dynamic_unless_static():
    f = jit(lambda x, y=None: x if y is None else x + y)
    np.testing.assert_array_equal(f(A).numpy(), A)
    np.testing.assert_array_equal(f(A, y=B).numpy(), A + B)
    np.testing.assert_array_equal(f(x=A, y=B).numpy(), A + B)


def test_closed_over_variables_are_read_at_each_call():
    w = Variable(np.float32(2.0))
    f = jit(lambda x: x * w)
    np.testing.assert_array_equal(f(A).numpy(), A * 2)
    w.data = np.float32(5.0)
    np.testing.assert_array_equal(f(A).numpy(), A * 5)
    assert f.cache_size == 1


def test_called_with_variables_it_joins_the_lazy_graph():
    f = jit(lambda x: (x * x).sum())
    v = Variable(A)
    out = f(v)
    assert isinstance(out, Variable)
    out.backward()
    np.testing.assert_array_equal(v.grad.numpy(), 2 * A)


def test_jit_inside_jit_and_wrapper_metadata():
    inner = jit(lambda x: x * 2.0)

    @jit
    def outer(x):
        """Doubles twice."""
        return inner(inner(x)) + 1.0

    np.testing.assert_array_equal(outer(A).numpy(), A * 4 + 1)
    assert outer.__name__ == "outer" and outer.__doc__ == "Doubles twice."


def test_jit_of_grad_and_grad_of_jit():
    def loss(w, x, labels):
        return nn.cross_entropy(x @ w, labels)

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    labels = np.array([0, 2, 1, 1, 0], np.int32)
    step = jit(functional.value_and_grad(loss))
    value, g = step(w, x, labels)
    value2, g2 = functional.value_and_grad(jit(loss))(w, x, labels)
    np.testing.assert_allclose(value.item(), value2.item(), rtol=1e-6)
    np.testing.assert_allclose(g.numpy(), g2.numpy(), rtol=1e-5, atol=1e-7)
    p = np.exp(x @ w - (x @ w).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = x.T @ (p - np.eye(3)[labels]) / 5
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-5, atol=1e-6)
    for _ in range(3):
        step(w, x, labels)
    assert step.cache_size == 1


def test_grad_of_a_jitted_function_with_static_arguments():
    f = jit(lambda x, n: (x ** n).sum(), static_argnums=1)
    g = functional.grad(lambda x: f(x, 3))(A.astype(np.float64))
    np.testing.assert_allclose(g.numpy(), 3 * A.astype(np.float64) ** 2)


def test_lower_as_text_is_the_ir_and_parses_back():
    f = jit(lambda x, y: xp.exp(x * y).sum(axis=-1))
    x = np.ones((2, 3), np.float32)
    lowered = f.lower(x, x)
    text = lowered.as_text()
    assert text.startswith("func @") and "exp" in text and "reduce_sum" in text
    assert "test_jit.py:" in text                 # the user's line of every traced op
    assert f.cache_size == 1                      # lowering traces (and caches) like a call
    assert ir.print_function(ir.parse_function(text)) == text


def test_lower_of_a_gradient_parses_back():
    text = jit(functional.grad(lambda w: nn.logsumexp(w * 2.0))).lower(A).as_text()
    assert "(grad)" in text
    assert ir.print_function(ir.parse_function(text)) == text


def test_lower_other_kinds():
    lowered = jit(lambda x: (x * 2.0).sum()).lower(A)
    for kind in ("optimized-ir", "llvm", "optimized-llvm", "asm"):
        assert lowered.as_text(kind).strip(), kind
    assert "define" in lowered.as_text("llvm")
    with pytest.raises(ValueError, match="unknown kind"):
        lowered.as_text("png")
    (out,) = lowered.compile()(A)                 # the executable returns a list of arrays
    np.testing.assert_allclose(out, (A * 2).sum())
