"""Dtypes and tensor types: spelling, parsing, properties and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ir import DType, IRError, TensorType, dtype_of, parse_type


@pytest.mark.parametrize("text, dtype, shape", [
    ("f32[4,3]", DType.f32, (4, 3)),
    ("i64[]", DType.i64, ()),
    ("bool[2]", DType.bool, (2,)),
    ("f64[0,5]", DType.f64, (0, 5)),
    ("  i32[ 1 , 2 ]  ", DType.i32, (1, 2)),
])
def test_parse_type(text, dtype, shape):
    t = parse_type(text)
    assert t == TensorType(dtype, shape) and t.dtype is dtype and t.shape == shape


@pytest.mark.parametrize("text, part", [
    ("f16[3]", "malformed tensor type 'f16[3]'"),
    ("f32", "expected e.g. f32[4,3] or i64[]"),
    ("[3]", "malformed tensor type"),
    ("f32[3", "malformed tensor type"),
    ("f32[3]x", "malformed tensor type"),
    ("f32[a,3]", "malformed shape in tensor type 'f32[a,3]'"),
    ("f32[3,]", "malformed shape"),
    ("f32[-1]", "negative dimension in shape [-1]"),
])
def test_parse_type_errors(text, part):
    with pytest.raises(IRError) as info:
        parse_type(text)
    assert part in str(info.value)


@given(st.sampled_from(list(DType)), st.lists(st.integers(0, 10_000), max_size=5))
@settings(max_examples=100, deadline=None)
def test_type_spelling_round_trips(dtype, shape):
    t = TensorType(dtype, tuple(shape))
    assert str(t) == f"{dtype.value}[{','.join(map(str, shape))}]"
    assert parse_type(str(t)) == t


def test_tensor_type_properties():
    t = TensorType("f64", [2, 3, 4])
    assert t.dtype is DType.f64 and t.shape == (2, 3, 4)  # normalised from str and list
    assert (t.rank, t.size, t.nbytes) == (3, 24, 192)
    assert t.with_shape([6]) == TensorType(DType.f64, (6,))
    assert t.with_dtype("i32") == TensorType(DType.i32, (2, 3, 4))
    assert TensorType(DType.bool, ()).size == 1 and str(TensorType(DType.bool, ())) == "bool[]"
    assert len({TensorType(DType.f32, (2,)), TensorType("f32", [2])}) == 1
    with pytest.raises(IRError, match="negative dimension"):
        TensorType(DType.f32, (2, -3))


@pytest.mark.parametrize("spelling", [DType.i32, "i32", np.int32, np.dtype("int32"),
                                      np.zeros(2, np.int32)])
def test_dtype_of_accepts_every_spelling(spelling):
    assert dtype_of(spelling) is DType.i32


@pytest.mark.parametrize("bad", [np.float16, "f17", "xyz", None, 3, np.complex64])
def test_dtype_of_rejects_unsupported_with_the_supported_list(bad):
    with pytest.raises(IRError, match="supported dtypes are f32, f64, i32, i64, bool"):
        dtype_of(bad)
    with pytest.raises(IRError):
        TensorType(bad, (2,))


def test_dtype_properties():
    assert [d.value for d in DType] == ["f32", "f64", "i32", "i64", "bool"]
    assert [d for d in DType if d.is_float] == [DType.f32, DType.f64]
    assert [d for d in DType if d.is_int] == [DType.i32, DType.i64]
    assert [d.itemsize for d in DType] == [4, 8, 4, 8, 1]
    assert DType.bool.numpy == np.dtype(np.bool_) and str(DType.f32) == "f32"
    assert repr(DType.i64) == "DType.i64"
