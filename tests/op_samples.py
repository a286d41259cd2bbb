"""Sample uses of every primitive, shared by the table-driven tests.

``SAMPLES[op]`` lists ``OpSample``s: operand types, attributes and, where the op
has a restricted domain, a function that draws valid operands. Tests generated
from this table (round trip, native vs interpreter, gradients) cover every op;
``tests/test_op_completeness.py`` fails when an op has no sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ir import Builder, DType, Function, TensorType

F32, F64, I32, I64, BOOL = DType.f32, DType.f64, DType.i32, DType.i64, DType.bool


@dataclass
class OpSample:
    op: str
    inputs: list[TensorType]
    attrs: dict = field(default_factory=dict)
    # draw(rng, type, operand_index) -> array; default: standard normal / small ints / coin flips
    draw: Callable | None = None
    differentiable: tuple[int, ...] = ()  # operand indices to check gradients for

    @property
    def id(self) -> str:
        types = ",".join(str(t) for t in self.inputs)
        attrs = ",".join(f"{k}={v}" for k, v in sorted(self.attrs.items()))
        return f"{self.op}({types}){{{attrs}}}"

    def function(self) -> Function:
        """A function applying the op to fresh parameters."""
        b = Builder(self.op)
        params = [b.param(t) for t in self.inputs]
        outputs = b.emit(self.op, params, self.attrs)
        return b.finish(list(outputs))

    def arrays(self, rng: np.random.Generator, dtype_override: DType | None = None):
        result = []
        for i, t in enumerate(self.inputs):
            if dtype_override is not None and t.dtype.is_float:
                t = t.with_dtype(dtype_override)
            result.append(_draw(self.draw, rng, t, i))
        return result


def _draw(draw, rng, t: TensorType, index: int) -> np.ndarray:
    if draw is not None:
        arr = draw(rng, t, index)
    elif t.dtype.is_float:
        arr = rng.standard_normal(t.shape)
    elif t.dtype.is_int:
        arr = rng.integers(-5, 6, size=t.shape)
    else:
        arr = rng.random(t.shape) < 0.5
    return np.asarray(arr).astype(t.dtype.numpy)


def positive(rng, t, i):
    return rng.uniform(0.2, 3.0, t.shape)


def above_minus_one(rng, t, i):
    return rng.uniform(-0.8, 3.0, t.shape)


def away_from_ties(rng, t, i):
    # Distinct values spaced apart so finite differences never cross a kink.
    n = int(np.prod(t.shape))
    return (rng.permutation(n) * 0.37 - n * 0.15).reshape(t.shape)


def away_from_integers(rng, t, i):
    return rng.integers(-4, 4, size=t.shape) + rng.uniform(0.2, 0.8, t.shape)


def nonzero(rng, t, i):
    return rng.uniform(0.5, 2.0, t.shape) * rng.choice([-1.0, 1.0], t.shape)


def pow_operands(rng, t, i):
    return rng.uniform(0.5, 2.0, t.shape) if i == 0 else rng.uniform(-2.0, 2.0, t.shape)


def with_ties(rng, t, i):
    return rng.integers(-2, 3, size=t.shape).astype(np.float64)


def _t(dtype, *shape):
    return TensorType(dtype, shape)


SAMPLES: dict[str, list[OpSample]] = {}


def _add(sample: OpSample):
    SAMPLES.setdefault(sample.op, []).append(sample)


_UNARY_DOMAINS = {
    "neg": None, "abs": nonzero, "sign": nonzero, "exp": None, "log": positive,
    "log1p": above_minus_one, "expm1": None, "sqrt": positive, "rsqrt": positive,
    "tanh": None, "logistic": None, "sin": None, "cos": None, "floor": away_from_integers,
}
_INT_UNARY = {"neg", "abs", "sign"}

for _op, _draw_fn in _UNARY_DOMAINS.items():
    _add(OpSample(_op, [_t(F32, 3, 4)], draw=_draw_fn, differentiable=(0,)))
    _add(OpSample(_op, [_t(F64, 7)], draw=_draw_fn, differentiable=(0,)))
    if _op in _INT_UNARY:
        _add(OpSample(_op, [_t(I32, 5)]))
        _add(OpSample(_op, [_t(I64, 2, 3)]))

_BINARY_DOMAINS = {
    "add": None, "sub": None, "mul": None, "div": nonzero, "pow": pow_operands,
    "maximum": away_from_ties, "minimum": away_from_ties,
}
for _op, _draw_fn in _BINARY_DOMAINS.items():
    _add(OpSample(_op, [_t(F32, 2, 3), _t(F32, 2, 3)], draw=_draw_fn, differentiable=(0, 1)))
    _add(OpSample(_op, [_t(F64, 5), _t(F64, 5)], draw=_draw_fn, differentiable=(0, 1)))
    if _op not in ("div", "pow"):
        _add(OpSample(_op, [_t(I32, 4), _t(I32, 4)]))
        _add(OpSample(_op, [_t(I64, 2, 2), _t(I64, 2, 2)]))
# Scalars (rank 0) flow through elementwise ops too.
_add(OpSample("mul", [_t(F32), _t(F32)], differentiable=(0, 1)))

for _direction in ("lt", "le", "gt", "ge", "eq", "ne"):
    _add(OpSample("compare", [_t(F32, 3, 2), _t(F32, 3, 2)], {"direction": _direction}, draw=with_ties))
_add(OpSample("compare", [_t(I32, 6), _t(I32, 6)], {"direction": "lt"}))
_add(OpSample("compare", [_t(I64, 6), _t(I64, 6)], {"direction": "eq"}))
_add(OpSample("compare", [_t(BOOL, 6), _t(BOOL, 6)], {"direction": "ne"}))

_add(OpSample("select", [_t(BOOL, 3, 4), _t(F32, 3, 4), _t(F32, 3, 4)], differentiable=(1, 2)))
_add(OpSample("select", [_t(BOOL, 5), _t(F64, 5), _t(F64, 5)], differentiable=(1, 2)))
_add(OpSample("select", [_t(BOOL, 5), _t(I32, 5), _t(I32, 5)]))
_add(OpSample("select", [_t(BOOL, 2), _t(BOOL, 2), _t(BOOL, 2)]))

for _src, _dst in [(F32, F64), (F64, F32), (F32, I32), (F64, I64), (I32, F32), (I64, F64),
                   (I32, I64), (I64, I32), (BOOL, F32), (F32, BOOL), (I32, BOOL), (BOOL, I64)]:
    _add(OpSample("cast", [_t(_src, 3, 3)], {"dtype": _dst},
                  differentiable=(0,) if _src.is_float and _dst.is_float else ()))

for _op in ("reduce_sum", "reduce_max", "reduce_min"):
    _draw_fn = away_from_ties if _op != "reduce_sum" else None
    _add(OpSample(_op, [_t(F32, 3, 4, 5)], {"axes": [1]}, draw=_draw_fn, differentiable=(0,)))
    _add(OpSample(_op, [_t(F64, 3, 4, 5)], {"axes": [0, 2]}, draw=_draw_fn, differentiable=(0,)))
    _add(OpSample(_op, [_t(F64, 6, 5)], {"axes": [0, 1]}, draw=_draw_fn, differentiable=(0,)))
    _add(OpSample(_op, [_t(F32, 7)], {"axes": []}, draw=_draw_fn, differentiable=(0,)))
    _add(OpSample(_op, [_t(I32, 4, 5)], {"axes": [1]}))
    _add(OpSample(_op, [_t(I64, 4, 5)], {"axes": [0]}))
_add(OpSample("reduce_sum", [_t(F32, 0, 3)], {"axes": [0]}))
for _op in ("argmax", "argmin"):
    _add(OpSample(_op, [_t(F32, 4, 6)], {"axis": 1}, draw=with_ties))
    _add(OpSample(_op, [_t(F64, 5, 3, 2)], {"axis": 0}))
    _add(OpSample(_op, [_t(I32, 9)], {"axis": 0}))

_add(OpSample("broadcast", [_t(F32, 3)], {"shape": [4, 3], "dims": [1]}, differentiable=(0,)))
_add(OpSample("broadcast", [_t(F64, 3, 1)], {"shape": [2, 3, 5], "dims": [1, 2]}, differentiable=(0,)))
_add(OpSample("broadcast", [_t(F64)], {"shape": [2, 2], "dims": []}, differentiable=(0,)))
_add(OpSample("broadcast", [_t(I32, 1, 4)], {"shape": [3, 4], "dims": [0, 1]}))
_add(OpSample("broadcast", [_t(BOOL, 2)], {"shape": [2, 2], "dims": [0]}))

_add(OpSample("reshape", [_t(F32, 3, 4)], {"shape": [2, 6]}, differentiable=(0,)))
_add(OpSample("reshape", [_t(F64, 2, 3, 2)], {"shape": [12]}, differentiable=(0,)))
_add(OpSample("reshape", [_t(F64, 1)], {"shape": []}, differentiable=(0,)))
_add(OpSample("reshape", [_t(I64, 6)], {"shape": [3, 2]}))

_add(OpSample("transpose", [_t(F32, 3, 4)], {"perm": [1, 0]}, differentiable=(0,)))
_add(OpSample("transpose", [_t(F64, 2, 3, 4)], {"perm": [2, 0, 1]}, differentiable=(0,)))
_add(OpSample("transpose", [_t(I32, 2, 5)], {"perm": [1, 0]}))

_add(OpSample("reverse", [_t(F32, 3, 4)], {"axes": [1]}, differentiable=(0,)))
_add(OpSample("reverse", [_t(F64, 2, 3, 4)], {"axes": [0, 2]}, differentiable=(0,)))
_add(OpSample("reverse", [_t(I32, 5)], {"axes": [0]}))
_add(OpSample("reverse", [_t(F32, 4)], {"axes": []}))
_add(OpSample("stop_gradient", [_t(F32, 3, 4)]))
_add(OpSample("stop_gradient", [_t(I64, 2)]))

_add(OpSample("slice", [_t(F32, 6, 5)], {"start": [1, 0], "stop": [5, 5], "step": [1, 2]}, differentiable=(0,)))
_add(OpSample("slice", [_t(F64, 7)], {"start": [2], "stop": [7], "step": [3]}, differentiable=(0,)))
_add(OpSample("slice", [_t(F64, 4, 3)], {"start": [0, 1], "stop": [4, 2], "step": [1, 1]}, differentiable=(0,)))
_add(OpSample("slice", [_t(I64, 5)], {"start": [3], "stop": [3], "step": [1]}))

_add(OpSample("pad", [_t(F32, 3, 2)], {"low": [1, 0], "high": [0, 2], "interior": [0, 0]}, differentiable=(0,)))
_add(OpSample("pad", [_t(F64, 4)], {"low": [2], "high": [1], "interior": [2]}, differentiable=(0,)))
_add(OpSample("pad", [_t(I32, 2, 2)], {"low": [0, 1], "high": [1, 0], "interior": [1, 0]}))

_add(OpSample("concat", [_t(F32, 2, 3), _t(F32, 4, 3)], {"axis": 0}, differentiable=(0, 1)))
_add(OpSample("concat", [_t(F64, 2, 1), _t(F64, 2, 3), _t(F64, 2, 2)], {"axis": 1}, differentiable=(0, 1, 2)))
_add(OpSample("concat", [_t(I32, 3)], {"axis": 0}))

_add(OpSample("dot", [_t(F32, 3, 4), _t(F32, 4, 5)], differentiable=(0, 1)))
_add(OpSample("dot", [_t(F64, 2, 3, 4), _t(F64, 2, 4, 2)], differentiable=(0, 1)))
_add(OpSample("dot", [_t(F64, 1, 7), _t(F64, 7, 1)], differentiable=(0, 1)))
_add(OpSample("dot", [_t(F32, 17, 33), _t(F32, 33, 9)]))
_add(OpSample("dot", [_t(I32, 3, 2), _t(I32, 2, 4)]))
_add(OpSample("dot", [_t(I64, 2, 2), _t(I64, 2, 2)]))
_add(OpSample("dot", [_t(F32, 4, 3), _t(F32, 4, 5)], {"transpose_lhs": True},
              differentiable=(0, 1)))
_add(OpSample("dot", [_t(F64, 2, 3, 4), _t(F64, 2, 5, 4)], {"transpose_rhs": True},
              differentiable=(0, 1)))
_add(OpSample("dot", [_t(F64, 4, 3), _t(F64, 5, 4)],
              {"transpose_lhs": True, "transpose_rhs": True}, differentiable=(0, 1)))
_add(OpSample("dot", [_t(I32, 2, 3), _t(I32, 4, 2)],
              {"transpose_lhs": True, "transpose_rhs": True}))

_add(OpSample("constant", [], {"value": 1.5, "dtype": F32, "shape": [2, 3]}))
_add(OpSample("constant", [], {"value": [1.0, -2.5, float("inf")], "dtype": F64, "shape": [3]}))
_add(OpSample("constant", [], {"value": 7, "dtype": I32, "shape": []}))
_add(OpSample("constant", [], {"value": [1, 2, 3, 4], "dtype": I64, "shape": [2, 2]}))
_add(OpSample("constant", [], {"value": True, "dtype": BOOL, "shape": [3]}))
_add(OpSample("iota", [], {"shape": [3, 4], "dtype": I32, "dimension": 1}))
_add(OpSample("iota", [], {"shape": [5], "dtype": F32, "dimension": 0}))
_add(OpSample("iota", [], {"shape": [2, 3], "dtype": I64, "dimension": 0}))


def all_samples() -> list[OpSample]:
    return [s for samples in SAMPLES.values() for s in samples]
