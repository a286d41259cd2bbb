"""The reference interpreter against numpy on composites built from primitives."""

from __future__ import annotations

import numpy as np
import pytest

from ir import Builder, DType, Eqn, InterpError, TensorType, Value, interpret

F32 = DType.f32


def _softmax_builder(b: Builder, x: Value) -> Value:
    rows, cols = x.shape
    m = b.broadcast(b.reduce_max(x, axes=[1]), shape=[rows, cols], dims=[0])
    e = b.exp(b.sub(x, m))
    s = b.broadcast(b.reduce_sum(e, axes=[1]), shape=[rows, cols], dims=[0])
    return b.div(e, s)


def test_softmax():
    b = Builder("softmax")
    x = b.param(TensorType(F32, (4, 5)))
    fn = b.finish([_softmax_builder(b, x)])
    data = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32) * 10
    (got,) = interpret(fn, [data])
    e = np.exp(data - data.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-5)
    assert got.dtype == np.float32


def test_mlp_layer_and_mean_squared_error():
    b = Builder("mlp")
    x = b.param(TensorType(F32, (8, 3)))
    w = b.param(TensorType(F32, (3, 4)))
    bias = b.param(TensorType(F32, (4,)))
    target = b.param(TensorType(F32, (8, 4)))
    h = b.tanh(b.add(b.dot(x, w), b.broadcast(bias, shape=[8, 4], dims=[1])))
    d = b.sub(h, target)
    loss = b.div(b.reduce_sum(b.mul(d, d), axes=[0, 1]), b.constant(32.0, F32))
    fn = b.finish([h, loss])
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(s).astype(np.float32) for s in [(8, 3), (3, 4), (4,), (8, 4)]]
    got_h, got_loss = interpret(fn, args)
    want_h = np.tanh(args[0] @ args[1] + args[2])
    np.testing.assert_allclose(got_h, want_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_loss, np.mean((want_h - args[3]) ** 2), rtol=1e-5)
    assert got_loss.shape == ()


def test_cross_entropy_with_one_hot_from_iota():
    b = Builder("xent")
    logits = b.param(TensorType(F32, (3, 4)))
    labels = b.param(TensorType(DType.i64, (3,)))
    one_hot = b.compare(b.iota([3, 4], 1), b.broadcast(labels, shape=[3, 4], dims=[0]), "eq")
    m = b.broadcast(b.reduce_max(logits, axes=[1]), shape=[3, 4], dims=[0])
    shifted = b.sub(logits, m)
    lse = b.log(b.reduce_sum(b.exp(shifted), axes=[1]))
    picked = b.reduce_sum(b.select(one_hot, shifted, b.constant(0.0, F32, (3, 4))), axes=[1])
    fn = b.finish([b.sub(lse, picked)])
    data = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [5.0, -1.0, 2.0, 0.5]], np.float32)
    idx = np.array([3, 1, 0], np.int64)
    (got,) = interpret(fn, [data, idx])
    log_p = data - np.log(np.exp(data).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(got, -log_p[np.arange(3), idx], rtol=1e-5)


def test_equation_with_a_body_runs_its_body():
    b = Builder("g")
    x = b.param(TensorType(F32, (2, 3)))
    inner = Builder("fusion")
    p = inner.param(x.type)
    body = inner.finish([_softmax_builder(inner, p)])
    out = Value(x.type)
    b.eqns.append(Eqn("fusion", (x,), (out,), {}, None, body))
    fn = b.finish([out])
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    (got,) = interpret(fn, [data])
    np.testing.assert_allclose(got.sum(axis=1), [1.0, 1.0], rtol=1e-6)


def test_failing_equation_is_named_with_its_loc():
    b = Builder("f")
    x = b.param(TensorType(F32, (3,)))
    with b.at("model.py:7"):
        y = b.exp(x)
    fn = b.finish([y])
    fn.eqns[0].outputs[0].type = TensorType(F32, (4,))  # a pass recorded the wrong type
    with pytest.raises(InterpError) as info:
        interpret(fn, [np.zeros(3, np.float32)])
    message = str(info.value)
    assert message.startswith("while executing %1 = exp %0 : f32[4] (model.py:7)")
    assert "reference gave shape [3]" in message


def test_numpy_failure_inside_ref_names_the_equation():
    b = Builder("f")
    x = b.param(TensorType(F32, (6,)))
    out = Value(TensorType(F32, (4,)))
    b.eqns.append(Eqn("reshape", (x,), (out,), {"shape": (4,)}, "model.py:3"))
    fn = b.finish([out])
    with pytest.raises(InterpError, match=r"while executing %1 = reshape %0 : f32\[4\] \(model.py:3\): "
                                          "ValueError: cannot reshape"):
        interpret(fn, [np.zeros(6, np.float32)])


def test_arguments_are_checked():
    b = Builder("f")
    x = b.param(TensorType(F32, (3,)))
    fn = b.finish([b.neg(x)])
    with pytest.raises(InterpError, match="@f takes 1 argument"):
        interpret(fn, [])
    with pytest.raises(InterpError, match=r"@f argument 0: expected f32\[3\], got float64\[3\]"):
        interpret(fn, [np.zeros(3)])
