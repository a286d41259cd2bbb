"""Builder: create parameters and append type-checked equations.

>>> from ir import Builder, TensorType
>>> b = Builder("f")
>>> x = b.param(TensorType("f32", (3,)))
>>> y = b.exp(b.mul(x, x))
>>> print(b.finish([y]))  # doctest: +NORMALIZE_WHITESPACE
func @f(%0: f32[3]) -> (f32[3]) {
  %1 = mul %0, %0 : f32[3]
  %2 = exp %1 : f32[3]
  return %2
}
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np

from ir.core import Eqn, Function, Value
from ir.dtypes import DType, TensorType, dtype_of
from ir.errors import IRError
from ir.ops import get_op, infer_types

__all__ = ["Builder", "with_location"]


def with_location(error: IRError, loc: str | None) -> IRError:
    """The same kind of error with ``(at file.py:12)`` appended to its message."""
    if not loc:
        return error
    new = type(error)(f"{error} (at {loc})")
    new.__cause__ = error.__cause__
    return new


class Builder:
    """Appends equations to a function under construction.

    Every op in the registry is a method: ``b.add(x, y)``, ``b.reduce_sum(x, axes=[0])``.
    The result type comes from the op's type rule; a rule violation raises at the
    call, with the current source location (``b.loc``) in the message.
    """

    def __init__(self, name: str = "main", loc: str | None = None):
        self.name = name
        self.params: list[Value] = []
        self.eqns: list[Eqn] = []
        self.loc = loc

    def param(self, type: TensorType) -> Value:
        value = Value(type)
        self.params.append(value)
        return value

    @contextlib.contextmanager
    def at(self, loc: str | None):
        """Equations emitted inside this block record ``loc``."""
        saved, self.loc = self.loc, loc
        try:
            yield self
        finally:
            self.loc = saved

    def emit(self, op: str, inputs: Sequence[Value], attrs: dict | None = None,
             body: Function | None = None) -> tuple[Value, ...]:
        """Append ``op(inputs) {attrs}`` and return its output values."""
        inputs = tuple(inputs)
        try:
            for v in inputs:
                if not isinstance(v, Value):
                    raise IRError(f"{op}: operand {v!r} is not an IR Value")
            attrs, types = infer_types(op, [v.type for v in inputs], attrs or {})
        except IRError as error:
            raise with_location(error, self.loc) from None
        outputs = tuple(Value(t) for t in types)
        self.eqns.append(Eqn(op, inputs, outputs, attrs, self.loc, body))
        return outputs

    def __getattr__(self, op: str):
        if op.startswith("_"):
            raise AttributeError(op)
        get_op(op)  # unknown names fail here, with suggestions

        def method(*inputs: Value, **attrs):
            return self.emit(op, inputs, attrs)[0]

        method.__name__ = op
        return method

    # Conveniences for the ops whose attrs carry their type.
    def constant(self, value, dtype, shape=()) -> Value:
        """A literal: a scalar splat over ``shape``, or a numpy array / list of values."""
        if isinstance(value, np.ndarray):
            shape = value.shape
            value = value.ravel().tolist() if value.ndim else value.item()
        return self.emit("constant", (), {"value": value, "dtype": dtype_of(dtype), "shape": shape})[0]

    def iota(self, shape, dimension: int, dtype=DType.i64) -> Value:
        return self.emit("iota", (), {"shape": shape, "dimension": dimension, "dtype": dtype_of(dtype)})[0]

    def compare(self, lhs: Value, rhs: Value, direction: str) -> Value:
        return self.emit("compare", (lhs, rhs), {"direction": direction})[0]

    def cast(self, x: Value, dtype) -> Value:
        return self.emit("cast", (x,), {"dtype": dtype_of(dtype)})[0]

    def finish(self, outputs: Sequence[Value]) -> Function:
        """The built function; the builder should not be used afterwards."""
        return Function(self.name, list(self.params), list(self.eqns), list(outputs))
