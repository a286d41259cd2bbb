"""Deliberately wrong user code, and the message it gets.

Every error is of the project's own hierarchy (``ir.errors.IRError``) and also a
``TypeError`` or ``ValueError``; its message names the op, the operand types and
the user's own line: THIS file's name and the line of the offending call, never
a frame inside the compiler. Each case puts the offending call on the first
line of a lambda (or a one-line function), whose line number is the expected one.
"""

from __future__ import annotations

import numpy as np
import pytest

import compiler as xp
from compiler import ConcretizationError, Variable, functional, jit, nn
from ir.errors import DTypeError, IRError, ShapeError

F3 = np.ones(3, np.float32)
F4 = np.ones(4, np.float32)
M23 = np.ones((2, 3), np.float32)
I3 = np.arange(3, dtype=np.int32)
B2 = np.array([True, False])


def _raises(kind, fn, *fragments, line_of=None):
    """Call ``fn``; check the error's classes and that its message has every fragment and
    ``test_errors.py:<line>`` of ``line_of`` (default: ``fn``'s own first line)."""
    with pytest.raises(kind) as info:
        fn()
    error = info.value
    message = str(error)
    assert isinstance(error, IRError), f"{type(error).__mro__} is not the project's own error"
    assert isinstance(error, (TypeError, ValueError)), type(error).__mro__
    line = (line_of or fn).__code__.co_firstlineno
    assert f"test_errors.py:{line}" in message, f"no test_errors.py:{line} in: {message}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert ".py:" not in message.replace("tests/compiler/test_errors.py:", ""), message
    return message


# --- shapes -----------------------------------------------------------------------------------

def test_shape_mismatch_in_eager_code():
    _raises(ShapeError, lambda: Variable(F3) + Variable(F4), "add", "f32[3]", "f32[4]", "broadcast")
    _raises(ShapeError, lambda: Variable(F3) * F4, "mul", "f32[3]", "f32[4]")
    _raises(ShapeError, lambda: Variable(M23) @ Variable(M23), "matmul", "f32[2,3]", "3", "2")
    _raises(ShapeError, lambda: xp.concatenate([M23, F4[None]], axis=0),
            "concat", "f32[1,4]", "f32[2,3]")
    _raises(ShapeError, lambda: Variable(M23).reshape(4, 2), "reshape", "f32[2,3]", "[4, 2]")
    _raises(ShapeError, lambda: xp.where(B2, F3, 0.0), "where", "[2]", "[3]")
    _raises(ShapeError, lambda: xp.broadcast_to(F3, (2, 4)), "broadcast_to", "[3]", "[2, 4]")


def test_shape_mismatch_inside_jit_and_grad_points_at_the_traced_line():
    _raises(ShapeError, lambda: jit(lambda a, b: a - b)(F3, F4), "sub", "f32[3]", "f32[4]")
    _raises(ShapeError, lambda: functional.grad(lambda a, b: (a * b).sum())(F3, F4),
            "mul", "f32[3]", "f32[4]")


def _helper_that_adds(a, b):
    return a + b  # the innermost user line is the one reported


def test_the_innermost_user_frame_is_reported():
    with pytest.raises(ShapeError) as info:
        _helper_that_adds(Variable(F3), F4)
    line = _helper_that_adds.__code__.co_firstlineno + 1
    assert f"test_errors.py:{line}" in str(info.value)


def test_cross_entropy_label_shapes():
    _raises(ShapeError, lambda: nn.cross_entropy(M23, I3), "cross_entropy", "i32[3]", "[2]")
    _raises(ShapeError, lambda: nn.cross_entropy(M23, F3), "cross_entropy", "f32[3]", "f32[2,3]")


# --- dtypes -----------------------------------------------------------------------------------

def test_dtype_problems():
    _raises(DTypeError, lambda: Variable(B2) + Variable(B2), "add", "bool[2]")
    _raises(DTypeError, lambda: -Variable(B2), "negative", "bool[2]")
    _raises(DTypeError, lambda: xp.one_hot(F3, 3), "one_hot", "f32[3]", "integer")
    _raises(DTypeError, lambda: xp.matmul(Variable(B2), B2), "matmul", "bool[2]")
    _raises(DTypeError, lambda: xp.max(Variable(B2)), "max", "bool[2]")


def test_differentiating_with_respect_to_an_integer_argument():
    _raises(DTypeError, lambda: functional.grad(lambda a: (a * 2.0).sum())(I3), "grad", "i32[3]",
            "floating-point")
    _raises(DTypeError, lambda: functional.vjp(lambda a: a * 2.0, I3), "vjp", "i32[3]")
    _raises(DTypeError, lambda: Variable(np.int32(2)).backward(), "backward", "i32[]")


# --- axes -------------------------------------------------------------------------------------

def test_bad_axes():
    v = Variable(M23)
    _raises(ShapeError, lambda: v.sum(axis=2), "sum", "axis 2", "f32[2,3]")
    _raises(ShapeError, lambda: xp.mean(v, axis=(0, 0)), "mean", "repeated axis")
    _raises(ShapeError, lambda: v.max(axis=-3), "max", "axis -3", "f32[2,3]")
    _raises(ShapeError, lambda: xp.argmax(v, axis=2), "argmax", "axis 2", "f32[2,3]")
    _raises(ShapeError, lambda: xp.transpose(v, (0, 5)), "transpose", "axis 5", "f32[2,3]")
    _raises(ShapeError, lambda: xp.transpose(v, (1, 1)), "transpose", "f32[2,3]")
    _raises(ShapeError, lambda: xp.expand_dims(v, 7), "expand_dims", "axis 7", "f32[2,3]")
    _raises(ShapeError, lambda: xp.squeeze(v, 0), "squeeze", "f32[2,3]", "not 1")
    _raises(ShapeError, lambda: xp.concatenate([v, v], axis=2), "concatenate", "axis 2")
    _raises(ShapeError, lambda: xp.take_along_axis(v, I3.reshape(1, 3), 3),
            "take_along_axis", "axis 3")
    _raises(ShapeError, lambda: nn.softmax(v, axis=4), "axis 4", "f32[2,3]")


def test_out_of_range_index_is_an_index_error_at_the_users_line():
    v = Variable(M23)
    check = lambda: v[2]  # noqa: E731
    with pytest.raises(IndexError) as info:
        check()
    assert f"test_errors.py:{check.__code__.co_firstlineno}" in str(info.value)


# --- reading traced values --------------------------------------------------------------------

def test_reading_a_traced_value_inside_jit():
    _raises(ConcretizationError, lambda: jit(lambda a: a * float(a.sum()))(F3),
            "traced", "f32[]", "reduce_sum")
    _raises(ConcretizationError, lambda: jit(lambda a: a.numpy())(F3), "traced", "f32[3]")
    _raises(ConcretizationError, lambda: jit(lambda a: a.item())(F3[:1]), "traced", "f32[1]")
    _raises(ConcretizationError, lambda: jit(lambda a: a if a.sum() > 0 else -a)(F3),
            "truth value", "bool[]", "compare", "where")
    _raises(ConcretizationError, lambda: functional.grad(lambda a: a.sum() * a.max().item())(F3),
            "traced", "f32[]", "reduce_max")


def test_concretization_error_is_a_type_error():
    assert issubclass(ConcretizationError, TypeError) and issubclass(ConcretizationError, IRError)


# --- grad's contract --------------------------------------------------------------------------

def test_non_scalar_grad():
    _raises(ShapeError, lambda: functional.grad(lambda a: a * 2.0)(F3), "grad", "f32[3]", "scalar")
    _raises(DTypeError, lambda: functional.grad(lambda a: (a > 0).sum())(F3), "grad", "i64[]")
    _raises(ShapeError, lambda: (Variable(F3) * 2.0).backward(), "backward", "f32[3]", "seed")
    _raises(ShapeError, lambda: (Variable(F3) * 2.0).backward(F4), "backward", "[4]", "f32[3]")


def test_non_scalar_grad_also_names_where_the_result_was_made():
    def f(a):
        return a * 2.0

    message = _raises(ShapeError, lambda: functional.grad(f)(F3), "grad of f")
    assert f"made at tests/compiler/test_errors.py:{f.__code__.co_firstlineno + 1}" in message or \
        f"test_errors.py:{f.__code__.co_firstlineno + 1}" in message


@pytest.mark.llvm  # vjp computes the primal output natively
def test_cotangents_and_tangents_of_the_wrong_type():
    x = np.ones(3)
    _, pullback = functional.vjp(lambda a: a * 2.0, x)
    _raises(ShapeError, lambda: pullback(np.ones(2)), "vjp", "f64[2]", "f64[3]")
    _raises(DTypeError, lambda: functional.jvp(lambda a: a * 2.0, (x,), (F3,)),
            "jvp", "f32[3]", "f64[3]")
    _raises(ShapeError, lambda: functional.jvp(lambda a: a * 2.0, (x,), ((x, x),)), "jvp", "structure")
