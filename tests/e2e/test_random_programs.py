"""Property: random small programs built from the op set compute the same
thing natively (through the whole pipeline) as in the reference interpreter,
and their gradients agree too."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from compiler.autodiff import grad_function
from compiler.pipeline import compile_function
from ir import Builder, DType, TensorType, interpret

pytestmark = pytest.mark.llvm

SHAPE = (3, 4)
UNARY = ["neg", "abs", "exp", "tanh", "logistic", "sin", "cos", "expm1"]
SAFE_DOMAIN = {"log": "pos", "sqrt": "pos", "log1p": "pos", "rsqrt": "pos"}
BINARY = ["add", "sub", "mul", "maximum", "minimum"]


@st.composite
def programs(draw):
    dtype = draw(st.sampled_from([DType.f32, DType.f64]))
    t = TensorType(dtype, SHAPE)
    b = Builder("random")
    values = [b.param(t), b.param(t)]
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["unary", "safe", "binary", "reduce", "shape", "select"]))
        x = draw(st.sampled_from(values))
        if kind == "unary":
            y = b.emit(draw(st.sampled_from(UNARY)), [x])[0]
        elif kind == "safe":  # keep the domain valid: f(1 + x*x)
            one = b.constant(1.0, dtype, SHAPE)
            y = b.emit(draw(st.sampled_from(sorted(SAFE_DOMAIN))), [b.add(one, b.mul(x, x))])[0]
        elif kind == "binary":
            y = b.emit(draw(st.sampled_from(BINARY)), [x, draw(st.sampled_from(values))])[0]
        elif kind == "reduce":
            axis = draw(st.sampled_from([0, 1]))
            r = b.emit(draw(st.sampled_from(["reduce_sum", "reduce_max"])), [x], {"axes": [axis]})[0]
            y = b.broadcast(r, shape=list(SHAPE), dims=[1 - axis])
        elif kind == "shape":
            y = b.reshape(b.transpose(x, perm=[1, 0]), shape=list(SHAPE))
        else:
            pred = b.compare(x, draw(st.sampled_from(values)), draw(st.sampled_from(["lt", "ge", "eq"])))
            y = b.select(pred, x, draw(st.sampled_from(values)))
        values.append(y)
    out = b.reduce_sum(values[-1], axes=[0, 1])
    return b.finish([out, values[-1]])


def _close(native, reference, dtype):
    rtol = 2e-4 if dtype == DType.f32 else 1e-9
    np.testing.assert_allclose(native, reference, rtol=rtol, atol=rtol, equal_nan=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.integers(0, 2**31 - 1))
def test_native_matches_interpreter(fn, seed):
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(p.shape).astype(p.dtype.numpy) for p in fn.params]
    native = compile_function(fn)(*args)
    for n, r in zip(native, interpret(fn, args), strict=True):
        _close(n, r, fn.params[0].dtype)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.integers(0, 2**31 - 1))
def test_native_gradients_match_interpreter(fn, seed):
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(p.shape).astype(p.dtype.numpy) for p in fn.params]
    g = grad_function(fn, wrt=[0, 1])
    native = compile_function(g)(*args)
    for n, r in zip(native, interpret(g, args), strict=True):
        _close(n, r, fn.params[0].dtype)
