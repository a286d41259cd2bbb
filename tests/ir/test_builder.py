"""The Builder: type-checked equations, and errors that name the op, the types and the loc."""

from __future__ import annotations

import numpy as np
import pytest

from ir import Builder, DType, DTypeError, IRError, ShapeError, TensorType, Value, verify

F3 = TensorType(DType.f32, (3,))
F4 = TensorType(DType.f32, (4,))
D3 = TensorType(DType.f64, (3,))


def test_shape_error_names_op_both_types_and_loc():
    b = Builder("f")
    x, y = b.param(F3), b.param(F4)
    with b.at("model.py:12"), pytest.raises(ShapeError) as info:
        b.add(x, y)
    message = str(info.value)
    assert message.startswith("add: incompatible shapes f32[3] and f32[4]")
    assert message.endswith("(at model.py:12)")
    assert isinstance(info.value, TypeError)  # a ShapeError is a TypeError, as in JAX
    assert b.eqns == []  # nothing is appended on failure


def test_dtype_error_names_op_both_types_and_loc():
    b = Builder("f", loc="train.py:3")
    x, y = b.param(F3), b.param(D3)
    with pytest.raises(DTypeError, match=r"^mul: mismatched dtypes f32\[3\] and f64\[3\]; .*"
                                         r"\(insert a cast\) \(at train.py:3\)$"):
        b.mul(x, y)


def test_dot_error_names_both_operands():
    b = Builder("f")
    x = b.param(TensorType(DType.f32, (2, 3)))
    w = b.param(TensorType(DType.f32, (4, 5)))
    with b.at("mlp.py:8"), pytest.raises(ShapeError) as info:
        b.dot(x, w)
    assert str(info.value) == ("dot: contracting dims differ: f32[2,3] has k=3, f32[4,5] has k=4 "
                               "(at mlp.py:8)")


def test_without_loc_the_message_has_no_suffix():
    b = Builder("f")
    with pytest.raises(DTypeError) as info:
        b.exp(b.param(TensorType(DType.i32, (2,))))
    assert str(info.value) == "exp: operand has dtype i32; exp accepts f32, f64"


def test_at_sets_and_restores_the_loc():
    b = Builder("f", loc="outer.py:1")
    x = b.param(F3)
    with b.at("model.py:5"):
        y = b.neg(x)
        with b.at("model.py:6 (grad)"):
            z = b.neg(y)
        w = b.neg(z)
    v = b.neg(w)
    locs = [e.loc for e in b.eqns]
    assert locs == ["model.py:5", "model.py:6 (grad)", "model.py:5", "outer.py:1"]
    assert b.loc == "outer.py:1"
    with pytest.raises(ShapeError), b.at("boom.py:1"):
        b.add(v, b.param(F4))
    assert b.loc == "outer.py:1"  # restored after an error too


def test_equations_record_op_inputs_outputs_and_normalised_attrs():
    b = Builder("f")
    x = b.param(TensorType(DType.f32, (2, 3)))
    s = b.reduce_sum(x, axes=[1])
    (eqn,) = b.eqns
    assert (eqn.op, eqn.inputs, eqn.outputs) == ("reduce_sum", (x,), (s,))
    assert eqn.attrs == {"axes": (1,)} and s.type == TensorType(DType.f32, (2,))
    fn = b.finish([s])
    assert fn.params == [x] and fn.outputs == [s]
    verify(fn)


def test_unknown_op_suggests_close_names():
    b = Builder("f")
    with pytest.raises(IRError, match="unknown op 'mull'; did you mean mul"):
        b.mull
    with pytest.raises(AttributeError):
        b._private


def test_is_elementwise_answers_for_any_name():
    from ir.ops import is_elementwise

    assert is_elementwise("add") and is_elementwise("tanh")
    assert not is_elementwise("reduce_sum") and not is_elementwise("dot")
    assert not is_elementwise("fusion") and not is_elementwise("mull")  # not registered


@pytest.mark.parametrize("call, part", [
    (lambda b, x: b.reduce_sum(x), "reduce_sum: missing attribute(s) axes"),
    (lambda b, x: b.reduce_sum(x, axes=[0], keep=True), "reduce_sum: unknown attribute(s) keep"),
    (lambda b, x: b.reduce_sum(x, axes=0), "reduce_sum: attribute axes=0 must be a list"),
    (lambda b, x: b.emit("add", [x]), "add: expected 2 operand(s), got 1"),
    (lambda b, x: b.add(x, 2.0), "add: operand 2.0 is not an IR Value"),
    (lambda b, x: b.cast(x, "f16x"), "unknown dtype 'f16x'"),
    (lambda b, x: b.compare(x, x, "lte"), "compare: unknown direction 'lte'"),
])
def test_malformed_calls_are_ir_errors_with_loc(call, part):
    b = Builder("f", loc="m.py:1")
    x = b.param(F3)
    with pytest.raises(IRError) as info:
        call(b, x)
    assert part in str(info.value)
    if "unknown dtype" not in part:  # Builder.cast normalises the dtype before emit
        assert str(info.value).endswith("(at m.py:1)")


def test_source_op_conveniences():
    b = Builder("f")
    c = b.constant(np.arange(6, dtype=np.float32).reshape(2, 3), DType.f32)
    s = b.constant(2, "i64")
    i = b.iota([2, 3], 1, DType.i32)
    k = b.cast(i, np.float32)
    assert c.type == TensorType(DType.f32, (2, 3)) and s.type == TensorType(DType.i64, ())
    assert k.type == TensorType(DType.f32, (2, 3))
    assert b.eqns[0].attrs["value"] == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    verify(b.finish([c, s, k]))


def test_values_have_identity_not_equality():
    a, b = Value(F3), Value(F3)
    assert a != b and a.id != b.id and len({a, b}) == 2
    assert a.shape == (3,) and a.dtype is DType.f32
