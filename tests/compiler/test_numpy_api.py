"""The numpy-style functions of the ``compiler`` namespace against numpy itself.

Every public function is run through the public API on random inputs of the
dtypes where it means something, and its values *and* result dtype are compared
with numpy 2 (NEP 50 promotion: Python scalars are weak). Tables of cases are
evaluated through one ``jit`` per function, so each table compiles once.
"""

from __future__ import annotations

import numpy as np
import pytest

import compiler as xp
from compiler import Tensor, Variable, functional, jit
from compiler.pytree import tree_map
from ir.errors import DTypeError, IRError, ShapeError

pytestmark = pytest.mark.llvm

NUMERIC = ("float32", "float64", "int32", "int64")
ALL_DTYPES = NUMERIC + ("bool",)


def _sample(dtype: str, shape, rng, positive: bool = False) -> np.ndarray:
    if dtype == "bool":
        return np.ones(shape, bool) if positive else rng.random(shape) > 0.5
    if np.issubdtype(np.dtype(dtype), np.integer):
        return rng.integers(1 if positive else -5, 6, size=shape).astype(dtype)
    x = rng.standard_normal(shape)
    return (np.abs(x) + 0.1 if positive else x).astype(dtype)


def _run(fn, *args):
    """``fn`` compiled with jit on ``args``; the results as numpy arrays."""
    return tree_map(lambda t: t.numpy(), jit(fn)(*args))


def _tolerance(dtype) -> dict:
    if np.dtype(dtype) == np.float32:
        return {"rtol": 2e-5, "atol": 1e-6}
    return {"rtol": 1e-12, "atol": 1e-12}


def _check(got: np.ndarray, expected: np.ndarray, label="") -> None:
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype, f"{label}: dtype {got.dtype}, numpy gives {expected.dtype}"
    assert got.shape == expected.shape, f"{label}: shape {got.shape}, numpy gives {expected.shape}"
    if expected.dtype.kind in "fc":
        np.testing.assert_allclose(got, expected, err_msg=label, **_tolerance(expected.dtype))
    else:
        np.testing.assert_array_equal(got, expected, err_msg=label)


# --- elementwise, one operand ---------------------------------------------------------------

def _sigmoid(x):
    x = np.asarray(x)
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _rsqrt(x):
    return 1 / np.sqrt(x)


# name: (ours, numpy's, positive-only domain, dtypes)
UNARY = {
    "exp": (xp.exp, np.exp, False, NUMERIC),
    "log": (xp.log, np.log, True, NUMERIC),
    "log1p": (xp.log1p, np.log1p, True, NUMERIC),
    "expm1": (xp.expm1, np.expm1, False, NUMERIC),
    "sqrt": (xp.sqrt, np.sqrt, True, NUMERIC),
    "rsqrt": (xp.rsqrt, _rsqrt, True, NUMERIC),
    "tanh": (xp.tanh, np.tanh, False, NUMERIC),
    "sin": (xp.sin, np.sin, False, NUMERIC),
    "cos": (xp.cos, np.cos, False, NUMERIC),
    "floor": (xp.floor, np.floor, False, NUMERIC),
    "sigmoid": (xp.sigmoid, _sigmoid, False, NUMERIC),
    "abs": (xp.abs, np.abs, False, NUMERIC),
    "sign": (xp.sign, np.sign, False, NUMERIC),
    "negative": (xp.negative, np.negative, False, NUMERIC),
    "square": (xp.square, np.square, False, NUMERIC),
    "logical_not": (xp.logical_not, np.logical_not, False, ALL_DTYPES),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_matches_numpy_for_every_dtype(name):
    ours, ref, positive, dtypes = UNARY[name]
    rng = np.random.default_rng(1)
    args = [_sample(d, (2, 3), rng, positive) for d in dtypes]
    if name == "floor":  # exercise the rounding of negative non-integers too
        args[0][0, 0], args[1][0, 1] = -1.5, -2.25
    results = _run(lambda *xs: [ours(x) for x in xs], *args)
    for dtype, arg, got in zip(dtypes, args, results, strict=True):
        _check(got, ref(arg), f"{name}({dtype})")


def test_unary_edge_values():
    x = np.array([0.0, -0.0, 1e-30, 1e30, -1e30, 88.0, -88.0], np.float32)
    got = _run(lambda v: [xp.exp(v), xp.tanh(v), xp.sigmoid(v), xp.abs(v), xp.sign(v)], x)
    with np.errstate(over="ignore"):
        expected = [np.exp(x), np.tanh(x), _sigmoid(x), np.abs(x), np.sign(x)]
    for g, e in zip(got, expected, strict=True):
        _check(g, e)


def test_unary_functions_accept_lists_and_tensors():
    _check(xp.exp([0.0, 1.0]).numpy(), np.exp(np.array([0.0, 1.0], np.float32)))
    _check(xp.sqrt(Tensor([4.0, 9.0], (2,))).numpy(), np.array([2.0, 3.0], np.float32))


# --- elementwise, two operands --------------------------------------------------------------

BINARY = {
    "add": (xp.add, np.add),
    "subtract": (xp.subtract, np.subtract),
    "multiply": (xp.multiply, np.multiply),
    "divide": (xp.divide, np.divide),
    "maximum": (xp.maximum, np.maximum),
    "minimum": (xp.minimum, np.minimum),
    "power": (xp.power, np.power),
    "less": (xp.less, np.less),
    "less_equal": (xp.less_equal, np.less_equal),
    "greater": (xp.greater, np.greater),
    "greater_equal": (xp.greater_equal, np.greater_equal),
    "equal": (xp.equal, np.equal),
    "not_equal": (xp.not_equal, np.not_equal),
}
ARITHMETIC = {"add", "subtract", "multiply", "maximum", "minimum"}


def _binary_pairs(name):
    pairs = [(a, b) for a in ALL_DTYPES for b in ALL_DTYPES]
    if name in ARITHMETIC:  # bool with bool is refused on purpose: test_bool_arithmetic_is_refused
        pairs.remove(("bool", "bool"))
    if name == "power":  # integer powers are float-only for now: test_integer_power_stays_integer
        pairs = [(a, b) for a, b in pairs if "float" in a + b]
    return pairs


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_matches_numpy_for_every_dtype_pair(name):
    ours, ref = BINARY[name]
    rng = np.random.default_rng(2)
    pairs = _binary_pairs(name)
    positive = name in ("divide", "power")
    lhs = [_sample(a, (2, 3), rng, positive=name == "power") for a, _ in pairs]
    rhs = [_sample(b, (2, 3), rng, positive=positive) for _, b in pairs]
    for r in rhs:  # some ties, so that the comparisons and max/min see equal operands
        r.flat[0] = 1
    for x in lhs:
        x.flat[0] = 1
    results = _run(lambda xs, ys: [ours(x, y) for x, y in zip(xs, ys, strict=True)], lhs, rhs)
    for (a, b), x, y, got in zip(pairs, lhs, rhs, results, strict=True):
        _check(got, ref(x, y), f"{name}({a}, {b})")


def test_integer_power_stays_integer():
    x = np.array([1, -2, 3], np.int32)
    _check((Variable(x) ** 5).numpy(), x ** 5)


def test_small_integer_powers_are_exact_and_defined_for_negative_bases():
    x = np.array([-2.0, -0.5, 0.0, 3.0], np.float32)
    got = _run(lambda v: [v ** 0, v ** 1, v ** 2, v ** 3, v ** 4.0, v ** -1], x)
    with np.errstate(divide="ignore"):
        expected = [x ** 0, x ** 1, x ** 2, x ** 3, x ** 4.0, x ** -1.0]
    for g, e in zip(got, expected, strict=True):
        _check(g, e)
    i = np.array([-2, 3], np.int32)
    _check((Variable(i) ** 2).numpy(), i ** 2)


@pytest.mark.parametrize("name", ["exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "tanh", "sin",
                                  "cos", "floor", "abs", "sign", "square", "sigmoid"])
def test_unary_methods_match_the_functions(name):
    x = _sample("float64", (2, 3), np.random.default_rng(9), positive=True)
    _check(getattr(Variable(x), name)().numpy(), UNARY[name][1](x), f"Variable.{name}()")


def test_bool_arithmetic_is_refused():
    t = Variable(np.array([True, False]))
    for fn in (xp.add, xp.subtract, xp.multiply):
        with pytest.raises(DTypeError, match="bool"):
            fn(t, t)


def test_operators_and_reflected_operators_match_numpy():
    rng = np.random.default_rng(3)
    a = _sample("float32", (3,), rng, positive=True)
    v = Variable(a)
    cases = [
        (v + 1.5, a + 1.5), (1.5 + v, 1.5 + a), (v - 2, a - 2), (2 - v, 2 - a),
        (v * 3, a * 3), (3 * v, 3 * a), (v / 4, a / 4), (4 / v, 4 / a),
        (v ** 2.5, a ** 2.5), (2.0 ** v, 2.0 ** a), (-v, -a), (+v, +a), (abs(-v), np.abs(-a)),
        (v < 1, a < 1), (v <= 1, a <= 1), (v > 1, a > 1), (v >= 1, a >= 1),
        (v == a[0], a == a[0]), (v != a[0], a != a[0]),
        (a * v, a * a), (a + v, a + a),  # a numpy array on the left defers to the Variable
    ]
    for i, (got, expected) in enumerate(cases):
        assert isinstance(got, Variable), f"case {i}: {type(got)}"
        _check(got.numpy(), expected, f"case {i}")


# --- NEP 50 promotion ---------------------------------------------------------------------

_i32 = np.array([1, 2, 3], np.int32)
_i64 = np.array([1, 2, 3], np.int64)
_f32 = np.array([0.5, 1.5, 2.5], np.float32)
_f64 = np.array([0.5, 1.5, 2.5], np.float64)
_b = np.array([True, False, True])

PROMOTION = [
    # (left, right, op): the left operand becomes a Variable; Python scalars stay weak.
    (_f32, 2.0, "mul"), (_f32, 2, "mul"), (_i32, 2.0, "mul"), (_i32, 2, "mul"),
    (_i64, 2.0, "mul"), (_i32, _i32, "div"), (_i32, 2, "div"), (_i64, _i64, "div"),
    (_f32, _f32, "div"), (_b, 1, "mul"), (_b, 1.0, "mul"), (_i32, True, "mul"),
    (_f32, np.float64(2.0), "mul"), (_f32, np.float32(2.0), "mul"), (_i32, np.int64(2), "add"),
    (_f32, _f64, "add"), (_i32, _i64, "add"), (_i32, _f32, "add"), (_i64, _f32, "add"),
    (_b, _f32, "add"), (_b, _i32, "add"), (_i32, 2.0, "sub"), (_f32, 2, "maximum"),
    (_i32, 2.5, "minimum"), (_i32, 2.5, "less"), (_f32, 2, "equal"),
    (2.0, _f32, "sub"), (2, _i32, "sub"), (2.0, _i32, "div"),
]
_OPS = {"mul": (xp.multiply, np.multiply), "div": (xp.divide, np.divide),
        "add": (xp.add, np.add), "sub": (xp.subtract, np.subtract),
        "maximum": (xp.maximum, np.maximum), "minimum": (xp.minimum, np.minimum),
        "less": (xp.less, np.less), "equal": (xp.equal, np.equal)}


def _name(x) -> str:
    return type(x).__name__ if not isinstance(x, np.ndarray) else str(x.dtype)


@pytest.mark.parametrize("left, right, op", PROMOTION,
                         ids=[f"{_name(a)}-{op}-{_name(b)}" for a, b, op in PROMOTION])
def test_nep50_promotion(left, right, op):
    ours, ref = _OPS[op]
    x = Variable(left) if isinstance(left, np.ndarray) else left
    y = Variable(right) if isinstance(right, np.ndarray) and x is left else right
    expected = ref(left, right)
    _check(ours(x, y).numpy(), expected, f"{_name(left)} {op} {_name(right)}")


def test_promotion_examples_from_the_issue():
    f32 = Variable(np.ones(3, np.float32))
    i32 = Variable(np.ones(3, np.int32))
    assert (f32 * 2.0).dtype == xp.f32
    assert (i32 * 2.0).dtype == xp.f64
    assert (i32 / i32).dtype == xp.f64
    assert (i32 > 0).sum().dtype == xp.i64
    assert i32.sum().dtype == xp.i64
    assert i32.mean().dtype == xp.f64
    assert (f32 * 2.0).numpy().dtype == np.float32


def test_python_int_out_of_range_for_the_dtype_raises_like_numpy():
    with pytest.raises(OverflowError):
        Variable(_i32) + 2 ** 40


# --- broadcasting -------------------------------------------------------------------------

@pytest.mark.parametrize("shapes", [((3,), (2, 3)), ((2, 1), (1, 3)), ((4, 1, 3), (2, 1)),
                                    ((), (2, 3)), ((1,), (3,)), ((2, 3), (2, 3))])
def test_broadcasting_binary_and_where(shapes):
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    cond = rng.random(shapes[1]) > 0.5
    got = _run(lambda a, b, c: [a + b, b * a, xp.where(c, a, b), xp.maximum(a, b)], a, b, cond)
    expected = [a + b, b * a, np.where(cond, a, b), np.maximum(a, b)]
    for g, e in zip(got, expected, strict=True):
        _check(g, e)


def test_broadcast_to():
    a = np.arange(3, dtype=np.int32)
    _check(xp.broadcast_to(a, (2, 3)).numpy(), np.broadcast_to(a, (2, 3)))
    _check(xp.broadcast_to(a[:, None], (3, 4)).numpy(), np.broadcast_to(a[:, None], (3, 4)))
    with pytest.raises(ShapeError):
        xp.broadcast_to(a, (4,))
    with pytest.raises(ShapeError):
        xp.broadcast_to(np.ones((2, 3), np.float32), (3,))


def test_where_promotes_and_casts_the_condition():
    x = np.array([[-1.0, 2.0, 0.5]], np.float32)
    i = np.array([1, 0, 3], np.int32)
    _check(xp.where(Variable(x) > 0, x, 0).numpy(), np.where(x > 0, x, 0))
    _check(xp.where(Variable(x) > 0, 1.0, 0).numpy(), np.where(x > 0, 1.0, 0))
    _check(xp.where(Variable(x) > 0, 1, 0).numpy(), np.where(x > 0, 1, 0))
    _check(xp.where(Variable(x) > 0, i, x).numpy(), np.where(x > 0, i, x))
    _check(xp.where(i, x, -x).numpy(), np.where(i, x, -x))  # a non-bool condition: nonzero is true


def test_clip_matches_numpy():
    x = np.array([-3.0, -0.5, 0.25, 4.0], np.float32)
    i = np.array([-3, 0, 2, 9], np.int32)
    _check(xp.clip(x, -1.0, 1.0).numpy(), np.clip(x, -1.0, 1.0))
    _check(xp.clip(i, 0, 5).numpy(), np.clip(i, 0, 5))
    _check(xp.clip(i, 0.5, 5).numpy(), np.clip(i, 0.5, 5))
    _check(Variable(x).clip(0, 1).numpy(), np.clip(x, 0, 1))
    _check(xp.clip(x, None, 1.0).numpy(), np.clip(x, None, 1.0))
    _check(Variable(i).clip(0).numpy(), np.clip(i, 0, None))


# --- casts and constructors ---------------------------------------------------------------

def test_astype_truncates_toward_zero_and_casts_to_bool():
    x = np.array([-2.7, -0.5, 0.0, 0.5, 2.7], np.float32)
    _check(xp.astype(x, xp.i32).numpy(), x.astype(np.int32))
    _check(xp.astype(x, "int64").numpy(), x.astype(np.int64))
    _check(xp.astype(x, xp.bool_).numpy(), x.astype(bool))
    _check(Variable(x).astype(xp.f64).numpy(), x.astype(np.float64))
    _check(xp.astype(np.array([True, False]), np.float32).numpy(), np.array([1.0, 0.0], np.float32))


def test_zeros_like_and_ones_like():
    x = np.ones((2, 3), np.int64)
    _check(xp.zeros_like(x).numpy(), np.zeros_like(x))
    _check(xp.ones_like(x).numpy(), np.ones_like(x))
    _check(xp.ones_like(x, xp.f32).numpy(), np.ones_like(x, np.float32))
    _check(xp.zeros_like(x, "bool").numpy(), np.zeros_like(x, bool))
    _check(xp.ones_like(x, xp.bool_).numpy(), np.ones_like(x, bool))


def test_asvariable():
    v = Variable(np.ones(2, np.float32))
    assert xp.asvariable(v) is v
    assert xp.asvariable(v, xp.f64).dtype == xp.f64
    c = xp.asvariable(np.arange(3))
    assert isinstance(c, Variable) and c.dtype == xp.i64 and not c.requires_grad
    assert xp.asvariable([1.0, 2.0]).dtype == xp.f32  # Python floats default to f32 (JAX, PyTorch)
    assert xp.asvariable([1, 2]).dtype == xp.i32


# --- reductions ---------------------------------------------------------------------------

AXES = [None, 0, -1, 1, (0, 2), (-1, 0), ()]
REDUCTIONS = {
    "sum": (xp.sum, np.sum, ALL_DTYPES),
    "mean": (xp.mean, np.mean, ALL_DTYPES),
    "max": (xp.max, np.max, NUMERIC),
    "min": (xp.min, np.min, NUMERIC),
    "var": (xp.var, np.var, NUMERIC),
    "std": (xp.std, np.std, NUMERIC),
    "any": (xp.any, np.any, ALL_DTYPES),
    "all": (xp.all, np.all, ALL_DTYPES),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reductions_match_numpy(name):
    ours, ref, dtypes = REDUCTIONS[name]
    rng = np.random.default_rng(5)
    cases = [(d, axis, keep) for d in dtypes for axis in AXES for keep in (False, True)]
    arrays = {d: _sample(d, (2, 3, 4), rng) for d in dtypes}
    if "float32" in arrays:  # ties for max/min
        arrays["float32"][0, :, 0] = 7.0
    results = _run(lambda arrs: [ours(arrs[d], axis=a, keepdims=k) for d, a, k in cases], arrays)
    for (d, axis, keep), got in zip(cases, results, strict=True):
        _check(got, ref(arrays[d], axis=axis, keepdims=keep),
               f"{name}({d}, axis={axis}, keepdims={keep})")


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_reductions_match_numpy(name):
    ours, ref = getattr(xp, name), getattr(np, name)
    x = np.array([[[3, 1, 3, 0], [2, 2, 5, 5], [0, 9, 9, 1]]] * 2, np.float32)  # ties: first wins
    x[1] *= -1
    cases = [(axis, keep) for axis in (None, 0, 1, -1, 2) for keep in (False, True)]
    dtypes = ["float32", "int32", "float64", "int64"]
    results = _run(lambda xs: [ours(xs[d], axis=a, keepdims=k) for d in dtypes for a, k in cases],
                   {d: x.astype(d) for d in dtypes})
    i = 0
    for d in dtypes:
        for axis, keep in cases:
            _check(results[i], ref(x.astype(d), axis=axis, keepdims=keep),
                   f"{name}({d}, axis={axis}, keepdims={keep})")
            i += 1


def test_reduction_methods():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 10
    v = Variable(x)
    _check(v.sum().numpy(), x.sum())
    _check(v.sum(axis=-1, keepdims=True).numpy(), x.sum(axis=-1, keepdims=True))
    _check(v.mean(axis=(0, 1)).numpy(), x.mean(axis=(0, 1)))
    _check(v.max(axis=1).numpy(), x.max(axis=1))
    _check(v.min(keepdims=True).numpy(), x.min(keepdims=True))
    _check(v.argmax(axis=-1).numpy(), x.argmax(axis=-1))
    _check(v.argmin().numpy(), np.asarray(x.argmin()))


def test_var_and_std_with_ddof_methods_and_numpy_functions():
    x = np.random.default_rng(3).standard_normal((4, 5))
    v = Variable(x)
    _check(xp.var(x, axis=0, ddof=1).numpy(), np.var(x, axis=0, ddof=1))
    _check(v.std(axis=-1, keepdims=True).numpy(), x.std(axis=-1, keepdims=True))
    _check(np.var(v, axis=1).numpy(), np.var(x, axis=1))
    _check(np.std(v).numpy(), np.std(x))
    assert np.isnan(xp.var(np.ones(3), ddof=3).numpy())  # numpy too: N - ddof <= 0


def test_std_gradient_against_finite_differences():
    x = np.random.default_rng(4).standard_normal((3, 4))
    f = lambda a: xp.sum(xp.std(a, axis=1) * np.arange(1.0, 4.0))  # noqa: E731
    g = functional.grad(f)(x).numpy()
    eps, numeric = 1e-6, np.zeros_like(x)
    for index in np.ndindex(x.shape):
        dx = np.zeros_like(x)
        dx[index] = eps
        numeric[index] = (f(x + dx).numpy() - f(x - dx).numpy()) / (2 * eps)
    np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8)


def test_any_and_all_methods():
    x = np.array([[0.0, 2.0], [0.0, 0.0]], np.float32)
    v = Variable(x)
    _check(v.any(axis=1).numpy(), x.any(axis=1))
    _check(v.all(keepdims=True).numpy(), x.all(keepdims=True))
    _check(np.any(v, axis=0).numpy(), np.any(x, axis=0))
    _check(xp.all(np.array([np.nan])).numpy(), np.all(np.array([np.nan])))  # nan is true



def test_any_and_all_over_empty_axes_are_false_and_true():
    """Review regression: reduce_max/min have no identity for an empty axis
    (ShapeError); numpy's any of nothing is False and all of nothing True."""
    for x in (np.zeros((0, 3), np.float32), np.zeros((3, 0), np.int32)):
        for axis in (None, 0, 1):
            for keepdims in (False, True):
                for name in ("any", "all"):
                    got = getattr(xp, name)(x, axis=axis, keepdims=keepdims).numpy()
                    want = getattr(np, name)(x, axis=axis, keepdims=keepdims)
                    assert got.dtype == np.bool_ and got.shape == np.shape(want)
                    np.testing.assert_array_equal(got, want)

def test_max_propagates_nan():
    x = np.array([1.0, np.nan, 3.0], np.float32)
    _check(xp.max(x).numpy(), np.max(x))
    _check(xp.min(x).numpy(), np.min(x))


# --- shapes -------------------------------------------------------------------------------

def test_reshape_forms():
    x = np.arange(24, dtype=np.int32)
    v = Variable(x)
    _check(xp.reshape(v, (2, 3, 4)).numpy(), x.reshape(2, 3, 4))
    _check(v.reshape(4, -1).numpy(), x.reshape(4, -1))
    _check(v.reshape((-1, 2, 3)).numpy(), x.reshape(-1, 2, 3))
    _check(v.reshape([24]).numpy(), x)
    _check(xp.reshape(np.float32(3.0), (1, 1)).numpy(), np.full((1, 1), 3.0, np.float32))
    with pytest.raises(ShapeError):
        v.reshape(5, -1)
    with pytest.raises(ShapeError):
        v.reshape(-1, -1)


def test_transpose_forms():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    v = Variable(x)
    _check(xp.transpose(v).numpy(), x.transpose())
    _check(xp.transpose(v, (1, 0, 2)).numpy(), x.transpose(1, 0, 2))
    _check(xp.transpose(v, (-1, 0, 1)).numpy(), np.transpose(x, (-1, 0, 1)))
    _check(v.transpose(2, 0, 1).numpy(), x.transpose(2, 0, 1))
    _check(v.transpose((2, 0, 1)).numpy(), x.transpose((2, 0, 1)))
    _check(v.transpose().numpy(), x.transpose())
    _check(v[0].T.numpy(), x[0].T)


def test_expand_dims_and_squeeze():
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    for axis in (0, 1, 2, -1, -3, (0, 2), (0, -1)):
        _check(xp.expand_dims(x, axis).numpy(), np.expand_dims(x, axis), f"expand_dims {axis}")
    y = x.reshape(1, 2, 1, 3, 1)
    for axis in (None, 0, 2, -1, (0, 4), (-5, 2)):
        _check(xp.squeeze(y, axis).numpy(), np.squeeze(y, axis), f"squeeze {axis}")
    _check(Variable(y).squeeze().numpy(), y.squeeze())
    _check(Variable(x).expand_dims(1).numpy(), np.expand_dims(x, 1))
    with pytest.raises(ShapeError):
        xp.squeeze(y, 1)


def test_ravel_swapaxes_and_outer():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    v = Variable(x)
    _check(v.ravel().numpy(), x.ravel())
    _check(v.flatten().numpy(), x.flatten())
    _check(np.ravel(v).numpy(), np.ravel(x))
    _check(xp.swapaxes(x, 0, -1).numpy(), np.swapaxes(x, 0, -1))
    _check(v.swapaxes(1, 2).numpy(), x.swapaxes(1, 2))
    _check(xp.outer(x[0, 0], x[1]).numpy(), np.outer(x[0, 0], x[1]))
    _check(np.outer(v[0, 0], [1, 2]).numpy(), np.outer(x[0, 0], [1, 2]))
    with pytest.raises(ShapeError, match="swapaxes: axis 3"):
        xp.swapaxes(x, 0, 3)


@pytest.mark.parametrize("make, expected", [
    (lambda: xp.zeros((2, 3)), np.zeros((2, 3))),
    (lambda: xp.zeros(4, xp.f32), np.zeros(4, np.float32)),
    (lambda: xp.ones((2,), np.int32), np.ones(2, np.int32)),
    (lambda: xp.full((2, 2), 7), np.full((2, 2), 7)),
    (lambda: xp.full(3, 0.5, dtype=np.float32), np.full(3, 0.5, np.float32)),
    (lambda: xp.arange(5), np.arange(5)),
    (lambda: xp.arange(2, 11, 3), np.arange(2, 11, 3)),
    (lambda: xp.arange(5, 0, -2), np.arange(5, 0, -2)),
    (lambda: xp.arange(0.0, 1.0, 0.25), np.arange(0.0, 1.0, 0.25)),
    (lambda: xp.arange(3, dtype=np.float32), np.arange(3, dtype=np.float32)),
    (lambda: xp.arange(4, 2), np.arange(4, 2)),
    (lambda: xp.linspace(-1.0, 1.0, 5), np.linspace(-1.0, 1.0, 5)),
    (lambda: xp.linspace(0.0, 1.0, 4, endpoint=False), np.linspace(0.0, 1.0, 4, endpoint=False)),
    (lambda: xp.eye(3), np.eye(3)),
    (lambda: xp.eye(2, 4, dtype=np.float32), np.eye(2, 4, dtype=np.float32)),
], ids=lambda v: "" if callable(v) else None)
def test_creation_functions_match_numpy(make, expected):
    _check(make().numpy(), expected)
    _check(jit(make)().numpy(), expected)  # inside a traced program too



@pytest.mark.parametrize("start, stop, num", [(-1.7, 2.9, 13), (0.3, 1.1, 9), (0.1, 0.7, 7),
                                              (3.0, -2.0, 6), (0.0, 1.0, 1)])
def test_linspace_is_numpy_bit_for_bit(start, stop, num):
    """Review regression: the last value is ``stop`` exactly (it was start +
    12 * delta, 1 ulp below 2.9), and float32 is float64 rounded once (it was
    computed in float32: 1 ulp off)."""
    for endpoint in (True, False):
        for dtype in (np.float64, np.float32):
            want = np.linspace(start, stop, num, endpoint=endpoint, dtype=dtype)
            got = jit(lambda: xp.linspace(start, stop, num, endpoint, dtype))().numpy()
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("bounds", [(0.3, 2.0, 0.15), (-1.0, 1.0, 0.3), (1e3, 1e3 + 1, 0.07),
                                    (-0.10031727307740211, 13.756255548327923, 0.32389947196684776)])
def test_float_arange_is_numpy_bit_for_bit(bounds):
    """Review regression: numpy fills first + i * (second - first) in the dtype,
    the second value being start + step rounded; start + i * step was 1 ulp
    off (0.3, 2.0, 0.15: 4.4e-16; float32 1000.07: 1.2e-4)."""
    for dtype in (None, np.float32, np.float64):
        want = np.arange(*bounds, dtype=dtype)
        got = jit(lambda: xp.arange(*bounds, dtype=dtype))().numpy()
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()

def test_creation_errors():
    with pytest.raises(ShapeError, match="zeros: shape"):
        xp.zeros((2, -1))
    with pytest.raises(ValueError, match="arange: step must not be zero"):
        xp.arange(0, 3, 0)
    with pytest.raises(TypeError, match="the length of a traced array is static"):
        jit(lambda n: xp.arange(n))(np.int32(3))


def test_concatenate_and_stack():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(3, dtype=np.int32).reshape(1, 3)
    c = np.ones((2, 3), np.float32)
    _check(xp.concatenate([a, b]).numpy(), np.concatenate([a, b]))
    _check(xp.concatenate([a, c], axis=-1).numpy(), np.concatenate([a, c], axis=-1))
    _check(xp.concatenate([Variable(a), c, a], axis=1).numpy(), np.concatenate([a, c, a], axis=1))
    _check(xp.concatenate([a]).numpy(), a)
    for axis in (0, 1, 2, -1, -3):
        _check(xp.stack([a, c], axis=axis).numpy(), np.stack([a, c], axis=axis), f"stack {axis}")
    _check(xp.stack([np.float32(1.0), np.float32(2.0)]).numpy(), np.array([1.0, 2.0], np.float32))


def test_pad_forms():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for width in (1, (1, 2), ((0, 1), (2, 0)), [[1, 1], [0, 0]], 0):
        _check(xp.pad(x, width).numpy(), np.pad(x, width), f"pad {width}")
    i = np.array([1, 2], np.int32)
    _check(xp.pad(i, (2, 1)).numpy(), np.pad(i, (2, 1)))


# --- indexing -----------------------------------------------------------------------------

INDICES = [
    (slice(1, 5), slice(None, None, 2)), (slice(None), 0), -1, (-2, -3), 0, (1, 2),
    (None,), (None, Ellipsis, 1), (Ellipsis, None), (Ellipsis,), (1, Ellipsis), (Ellipsis, -1),
    (slice(-3, None), slice(None, -2)), (slice(2, 100),), (slice(4, 2),),
    (slice(None, None, 3), None, 3),
    (slice(1, None, 4), slice(7, 2)), (np.int64(2), slice(None)), (),
]


def _index_id(index) -> str:
    return repr(index).replace("slice", "s").replace("Ellipsis", "...").replace(" ", "")


@pytest.mark.parametrize("index", INDICES, ids=[_index_id(i) for i in INDICES])
def test_basic_indexing_matches_numpy(index):
    x = np.arange(60, dtype=np.float32).reshape(6, 10)
    _check(Variable(x)[index].numpy(), x[index], _index_id(index))


def test_indexing_three_dims_and_iteration():
    x = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    v = Variable(x)
    _check(v[:, 1:, ::3].numpy(), x[:, 1:, ::3])
    _check(v[..., 0].numpy(), x[..., 0])
    _check(v[1, None, :, -1].numpy(), x[1, None, :, -1])
    assert len(v) == 2
    for row, expected in zip(v, x, strict=True):
        _check(row.numpy(), expected)


def test_negative_slice_steps():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    _check(Variable(x)[::-1, 1::-2].numpy(), x[::-1, 1::-2])


def test_unsupported_and_out_of_range_indices_raise_index_error():
    v = Variable(np.zeros((2, 3), np.float32))
    for index in ((2,), (0, -4), (0, 0, 0), ([0, 1],), (Ellipsis, Ellipsis), ([1, 0], [0, 1]),
                  (np.arange(2), [0, 3]), (np.arange(2), [[0], [1]])):
        with pytest.raises(IndexError):
            v[index]


def test_row_pick_with_arange_rows_and_integer_labels():
    """``x[np.arange(n), labels]``, the usual negative log-likelihood, inside and
    outside jit, with its gradient (a one-hot scatter)."""
    x = np.random.default_rng(6).standard_normal((4, 3))
    labels = np.array([2, 0, -1, 1])
    _check(Variable(x)[np.arange(4), labels].numpy(), x[np.arange(4), labels])
    _check(Variable(x)[range(4), list(labels)].numpy(), x[np.arange(4), labels])
    picked = jit(lambda x, y: x[np.arange(4), y])(x, labels.astype(np.int32))
    _check(picked.numpy(), x[np.arange(4), labels])
    grad = functional.grad(lambda x, y: -x[np.arange(len(y)), y].sum())(x, labels)
    expected = np.zeros_like(x)
    expected[np.arange(4), labels] = -1.0
    _check(grad.numpy(), expected)
    # A traced label out of range picks 0 (no out-of-bounds read), as take_along_axis does.
    assert jit(lambda x, y: x[np.arange(4), y])(x, np.array([0, 7, 0, 0])).numpy()[1] == 0.0


# --- linear algebra -----------------------------------------------------------------------

MATMUL_SHAPES = [
    ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)), ((2, 1, 2, 3), (5, 3, 4)), ((3,), (2, 3, 4)), ((2, 3, 4), (4,)),
    ((1, 2, 3), (4, 3, 2)),
]


@pytest.mark.parametrize("dtypes", [("float32", "float32"), ("float64", "float64"),
                                    ("int32", "int32"), ("int64", "float32"), ("int32", "int64")])
def test_matmul_matches_numpy(dtypes):
    rng = np.random.default_rng(6)
    lhs = [_sample(dtypes[0], a, rng) for a, _ in MATMUL_SHAPES]
    rhs = [_sample(dtypes[1], b, rng) for _, b in MATMUL_SHAPES]
    results = _run(lambda xs, ys: [xp.matmul(x, y) for x, y in zip(xs, ys, strict=True)], lhs, rhs)
    for shapes, a, b, got in zip(MATMUL_SHAPES, lhs, rhs, results, strict=True):
        _check(got, np.matmul(a, b), f"matmul {shapes}")


def test_matmul_operator_method_and_dot():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    u, w = rng.standard_normal(3), rng.standard_normal(3)
    _check((Variable(a) @ b).numpy(), a @ b)
    _check((a @ Variable(b)).numpy(), a @ b)
    _check(Variable(a).matmul(b).numpy(), a @ b)
    _check(Variable(a).dot(b).numpy(), a.dot(b))
    _check(xp.dot(u, w).numpy(), np.dot(u, w))
    _check(xp.dot(a, u).numpy(), np.dot(a, u))
    _check(xp.dot(u, b).numpy(), np.dot(u, b))
    _check(xp.dot(np.float64(2.0), u).numpy(), np.dot(2.0, u))


def test_matmul_rejects_scalars_and_mismatched_contractions():
    with pytest.raises(ShapeError):
        xp.matmul(np.float32(2.0), np.ones(3, np.float32))
    with pytest.raises(ShapeError):
        xp.matmul(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(ShapeError):
        xp.matmul(np.ones((2, 2, 3), np.float32), np.ones((3, 3, 4), np.float32))


# --- integer labels -----------------------------------------------------------------------

def _one_hot_ref(labels, n, dtype=np.float32):
    return (labels[..., None] == np.arange(n)).astype(dtype)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_one_hot_with_out_of_range_labels(dtype):
    labels = np.array([[0, 3, 1], [4, -1, 100]], dtype)  # 4, -1 and 100 are out of range: zero rows
    _check(xp.one_hot(labels, 4).numpy(), _one_hot_ref(labels, 4))
    _check(xp.one_hot(labels, 4, dtype=xp.f64).numpy(), _one_hot_ref(labels, 4, np.float64))
    _check(xp.one_hot(labels, 4, dtype=xp.i32).numpy(), _one_hot_ref(labels, 4, np.int32))
    _check(xp.one_hot(labels[0, 0], 3).numpy(), _one_hot_ref(labels[0, 0], 3))


def test_take_along_axis_matches_numpy_in_range():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    cases = [
        (rng.integers(0, 4, (2, 3, 2)), -1), (rng.integers(0, 3, (2, 5, 4)), 1),
        (rng.integers(0, 2, (1, 3, 4)), 0), (rng.integers(-4, 4, (2, 3, 3)), 2),
        (rng.integers(0, 4, (2, 1, 2)), 2),  # indices broadcast against x's other axes
    ]
    cases += [(i.astype(np.int32), axis) for i, axis in cases]
    results = _run(lambda x, idx: [xp.take_along_axis(x, i, axis) for i, (_, axis) in
                                   zip(idx, cases, strict=True)], x, [i for i, _ in cases])
    for (idx, axis), got in zip(cases, results, strict=True):
        _check(got, np.take_along_axis(x, idx, axis),
               f"take_along_axis {idx.dtype}{list(idx.shape)} axis={axis}")
    i = np.arange(12, dtype=np.int64).reshape(3, 4)
    _check(xp.take_along_axis(i, np.array([[3], [0], [1]]), 1).numpy(),
           np.take_along_axis(i, np.array([[3], [0], [1]]), 1))


def test_take_along_axis_out_of_range_gives_zero():
    x = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
    got = xp.take_along_axis(x, np.array([[4, 1], [-5, 100]], np.int32), 1).numpy()
    _check(got, np.array([[0.0, 2.0], [0.0, 0.0]], np.float32))


def test_flip_and_negative_steps_match_numpy():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    _check(xp.flip(x).numpy(), np.flip(x))
    _check(xp.flip(x, 1).numpy(), np.flip(x, 1))
    _check(xp.flip(x, (0, -1)).numpy(), np.flip(x, (0, -1)))
    v = Variable(x)
    for index in [np.s_[::-1], np.s_[:, ::-2], np.s_[1, 2:0:-1, 3::-3], np.s_[..., 5:1:-1],
                  np.s_[::-1, 0, ::-1], np.s_[:, 1:1:-1]]:
        _check(v[index].numpy(), x[index], f"x[{index}]")


def test_stop_gradient_blocks_only_the_gradient():
    x = np.array([1.0, 2.0, 3.0])
    value, grad = functional.value_and_grad(lambda x: (x * xp.stop_gradient(x)).sum())(x)
    _check(value.numpy(), np.array(14.0))
    _check(grad.numpy(), x)  # d/dx x*c = c, with c = x held constant
    detached = functional.grad(lambda x: (x * Variable.detach(x * 1.0)).sum())(x)
    _check(detached.numpy(), x)


# --- the namespace ------------------------------------------------------------------------

def test_every_public_function_is_covered_here():
    """A new name in ``compiler.__all__`` needs a test in this file (or test_nn/test_jit/...)."""
    tested = set(UNARY) | set(BINARY) | set(REDUCTIONS) | {
        "argmax", "argmin", "asvariable", "astype", "broadcast_to", "clip", "concatenate", "dot",
        "expand_dims", "matmul", "one_hot", "ones_like", "pad", "reshape", "squeeze", "stack",
        "take_along_axis", "transpose", "where", "zeros_like", "flip", "stop_gradient",
        "ravel", "swapaxes", "outer", "zeros", "ones", "full", "arange", "linspace", "eye",
    }
    elsewhere = {"Tensor", "Variable", "functional", "nn", "jit", "ConcretizationError", "DType",
                 "f32", "f64", "i32", "i64", "bool_",
                 "DonationError", "DonatedBufferError",  # tests/compiler/test_donation.py
                 "no_grad", "enable_grad", "is_grad_enabled"}  # tests/compiler/test_variable.py
    assert set(xp.__all__) - elsewhere == tested
    for name in xp.__all__:
        assert hasattr(xp, name), name
