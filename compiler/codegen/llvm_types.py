"""LLVM types and constants of IR dtypes.

A value of dtype ``bool`` is an ``i1`` in registers and one byte (0 or 1) in
memory; every other dtype has one LLVM type for both. Pointers are opaque.
"""

from __future__ import annotations

import functools

import llvmlite.ir as ll
import numpy as np

from ir.dtypes import DType

__all__ = ["F32", "F64", "I1", "I8", "I32", "I64", "PTR", "VOID",
           "value_type", "storage_type", "constant", "index_constant", "vector_constant"]

F32 = ll.FloatType()
F64 = ll.DoubleType()
I1 = ll.IntType(1)
I8 = ll.IntType(8)
I32 = ll.IntType(32)
I64 = ll.IntType(64)
PTR = ll.PointerType()
VOID = ll.VoidType()

_VALUE = {DType.f32: F32, DType.f64: F64, DType.i32: I32, DType.i64: I64, DType.bool: I1}
_STORAGE = {**_VALUE, DType.bool: I8}


def value_type(dtype: DType) -> ll.Type:
    """The register type of an element of ``dtype``."""
    return _VALUE[dtype]


def storage_type(dtype: DType) -> ll.Type:
    """The in-memory type of an element of ``dtype``."""
    return _STORAGE[dtype]


def constant(dtype: DType, value) -> ll.Constant:
    """An element constant of ``dtype``: floats round to the dtype's precision,
    integers wrap to its width, anything nonzero is true for bool."""
    if dtype is DType.bool:
        return ll.Constant(I1, int(bool(value)))
    if dtype.is_float:
        with np.errstate(all="ignore"):  # 1e39 -> inf in f32 is intended
            return ll.Constant(_VALUE[dtype], float(dtype.numpy.type(value)))
    bits = _VALUE[dtype].width
    wrapped = (int(value) + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
    return ll.Constant(_VALUE[dtype], wrapped)


def index_constant(value: int) -> ll.Constant:
    """An i64 index constant."""
    return ll.Constant(I64, int(value))


@functools.lru_cache(maxsize=4096)
def vector_constant(element: ll.Type, values: tuple) -> ll.Constant:
    """The constant vector ``<values>`` of ``element``s (masks, shuffle masks),
    one shared object per distinct vector: llvmlite wraps and prints a vector
    constant element by element (~50 us per use), a shared one once."""
    return ll.Constant(ll.VectorType(element, len(values)), list(values))
