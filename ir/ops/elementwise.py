"""Elementwise primitives: unary and binary math, compare, select, cast.

Contract: operands have equal shapes (broadcasting is an explicit ``broadcast``
op inserted by the front end) and, for binary math, equal dtypes (promotion is
the front end's job too). Results have the operands' shape.
"""

from __future__ import annotations

import numpy as np

from ir.dtypes import DType, TensorType
from ir.errors import DTypeError, ShapeError
from ir.ops import defop

FLOAT = (DType.f32, DType.f64)
NUMERIC = (DType.f32, DType.f64, DType.i32, DType.i64)
ALL = tuple(DType)
COMPARE_DIRECTIONS = ("lt", "le", "gt", "ge", "eq", "ne")


def _names(dtypes) -> str:
    return ", ".join(d.value for d in dtypes)


def _check_dtype(op: str, t: TensorType, allowed) -> None:
    if t.dtype not in allowed:
        raise DTypeError(f"{op}: operand has dtype {t.dtype}; {op} accepts {_names(allowed)}")


def _check_same(op: str, types) -> None:
    first = types[0]
    for t in types[1:]:
        if t.shape != first.shape:
            raise ShapeError(
                f"{op}: incompatible shapes {first} and {t}; elementwise ops need equal "
                "shapes (insert a broadcast)"
            )
        if t.dtype != first.dtype:
            raise DTypeError(
                f"{op}: mismatched dtypes {first} and {t}; elementwise ops need equal dtypes "
                "(insert a cast)"
            )


def _unary(name, fn, allowed, doc):
    def infer(types, attrs):
        _check_dtype(name, types[0], allowed)
        return [types[0]]

    return defop(name, arity=1, infer=infer, ref=lambda xs, attrs: fn(xs[0]), kind="elementwise", doc=doc)


def _binary(name, fn, allowed, doc):
    def infer(types, attrs):
        _check_same(name, types)
        _check_dtype(name, types[0], allowed)
        return [types[0]]

    return defop(name, arity=2, infer=infer, ref=lambda xs, attrs: fn(xs[0], xs[1]), kind="elementwise", doc=doc)


def _rsqrt(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1 / np.sqrt(x)).astype(x.dtype)


def _logistic(x):
    # Two branches keep both tails exact and overflow-free.
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _quiet(fn):
    def wrapped(*xs):
        with np.errstate(all="ignore"):
            return fn(*xs)

    return wrapped


_unary("neg", np.negative, NUMERIC, "-x")
_unary("abs", np.abs, NUMERIC, "|x|")
_unary("sign", np.sign, NUMERIC, "-1, 0 or 1 (0 for 0; nan for nan)")
_unary("exp", _quiet(np.exp), FLOAT, "e**x")
_unary("log", _quiet(np.log), FLOAT, "natural logarithm; -inf at 0, nan below")
_unary("log1p", _quiet(np.log1p), FLOAT, "log(1 + x), accurate near 0")
_unary("expm1", _quiet(np.expm1), FLOAT, "exp(x) - 1, accurate near 0")
_unary("sqrt", _quiet(np.sqrt), FLOAT, "square root; nan below 0")
_unary("rsqrt", _rsqrt, FLOAT, "1 / sqrt(x)")
_unary("tanh", np.tanh, FLOAT, "hyperbolic tangent")
_unary("logistic", _logistic, FLOAT, "1 / (1 + exp(-x)), the sigmoid")
_unary("sin", np.sin, FLOAT, "sine")
_unary("cos", np.cos, FLOAT, "cosine")
_unary("floor", np.floor, FLOAT, "round toward -inf")

_binary("add", np.add, NUMERIC, "x + y")
_binary("sub", np.subtract, NUMERIC, "x - y")
_binary("mul", np.multiply, NUMERIC, "x * y")
_binary("div", _quiet(np.divide), FLOAT, "x / y (IEEE: x/0 is +-inf, 0/0 is nan)")
_binary("pow", _quiet(np.power), FLOAT, "x ** y (nan for negative x and non-integer y)")
_binary("maximum", np.maximum, NUMERIC, "larger of x and y; nan if either is nan")
_binary("minimum", np.minimum, NUMERIC, "smaller of x and y; nan if either is nan")


def _compare_infer(types, attrs):
    _check_same("compare", types)
    if attrs["direction"] not in COMPARE_DIRECTIONS:
        raise DTypeError(
            f"compare: unknown direction {attrs['direction']!r}; "
            f"expected one of {', '.join(COMPARE_DIRECTIONS)}"
        )
    return [types[0].with_dtype(DType.bool)]


_COMPARE_FNS = {
    "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal,
}

defop(
    "compare", arity=2, kind="elementwise", attrs={"direction": "str"},
    infer=_compare_infer,
    ref=lambda xs, attrs: _COMPARE_FNS[attrs["direction"]](xs[0], xs[1]),
    doc="elementwise comparison giving bool; nan compares unequal to everything",
)


def _select_infer(types, attrs):
    pred, on_true, on_false = types
    if pred.dtype != DType.bool:
        raise DTypeError(f"select: predicate has dtype {pred.dtype}; it must be bool")
    if pred.shape != on_true.shape:
        raise ShapeError(
            f"select: predicate shape {pred} differs from operand shape {on_true}; "
            "insert a broadcast"
        )
    _check_same("select", [on_true, on_false])
    return [on_true]


defop(
    "select", arity=3, kind="elementwise", infer=_select_infer,
    ref=lambda xs, attrs: np.where(xs[0], xs[1], xs[2]),
    doc="where(pred, on_true, on_false)",
)


def _cast_ref(xs, attrs):
    x = xs[0]
    target = attrs["dtype"].numpy
    if np.issubdtype(x.dtype, np.floating) and np.issubdtype(target, np.integer):
        # Float->int truncates toward zero; out-of-range and nan give 0 rather than
        # undefined behaviour (the native code saturates the same way).
        # Bounds as exact powers of two: iinfo.max itself rounds up to 2**(bits-1)
        # in floating point, which is already out of range.
        limit = 2.0 ** (np.iinfo(target).bits - 1)
        with np.errstate(invalid="ignore"):
            t = np.trunc(x)
            ok = np.isfinite(t) & (t >= -limit) & (t < limit)
            return np.where(ok, t, 0).astype(target)
    return x.astype(target)


defop(
    "cast", arity=1, kind="elementwise", attrs={"dtype": "dtype"},
    infer=lambda types, attrs: [types[0].with_dtype(attrs["dtype"])],
    ref=_cast_ref,
    doc="convert element type; float->int truncates toward zero, out-of-range or nan gives 0; "
    "to bool is x != 0",
)

defop(
    "stop_gradient", arity=1, kind="elementwise",
    infer=lambda types, attrs: [types[0]],
    ref=lambda xs, attrs: xs[0].copy(),
    doc="the identity, through which no gradient flows (simplify removes it after autodiff)",
)
