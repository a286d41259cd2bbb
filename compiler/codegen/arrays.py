"""Element indices and typed views of buffers (XLA's ``IrArray`` and its ``Index``).

An ``Index`` addresses one element of a tensor of static shape. It carries a
multi-dimensional form (one i64 per axis), a linear (row-major) form, or both,
and derives the missing one on demand, so elementwise chains can run over a
flat loop while transposes and broadcasts see per-axis coordinates. Derived
forms are recomputed at each request instead of cached, because a request may
come from a block the first computation does not dominate; LLVM's CSE merges
the duplicates.

Every index an emitter builds is in bounds by construction (the loop drivers
only produce in-bounds indices and the index maps of shape ops preserve that),
which is why the arithmetic carries ``nuw nsw`` and the GEPs ``inbounds``.
"""

from __future__ import annotations

from typing import Sequence

import llvmlite.ir as ll

from ir.dtypes import DType, TensorType
from compiler.codegen.llvm_types import I1, index_constant, storage_type

__all__ = ["Index", "Array", "row_major_strides"]

_NUW_NSW = ("nuw", "nsw")


def row_major_strides(shape: Sequence[int]) -> list[int]:
    """Element strides of a C-contiguous tensor of ``shape``."""
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= extent
    return strides[::-1]


class Index:
    """The position of one element in a tensor of static ``shape``."""

    __slots__ = ("shape", "_dims", "_linear")

    def __init__(self, shape: Sequence[int], *, dims: Sequence[ll.Value] | None = None,
                 linear: ll.Value | None = None):
        self.shape = tuple(shape)
        if dims is None and linear is None:
            raise ValueError("an Index needs per-axis indices, a linear index or both")
        if dims is not None and len(dims) != len(self.shape):
            raise ValueError(f"index of rank {len(dims)} for a tensor of shape {list(self.shape)}")
        self._dims = list(dims) if dims is not None else None
        self._linear = linear

    def dims(self, b: ll.IRBuilder) -> list[ll.Value]:
        """One i64 per axis (size-1 axes give the constant 0)."""
        if self._dims is not None:
            return list(self._dims)
        result = []
        for extent, stride in zip(self.shape, row_major_strides(self.shape), strict=True):
            if extent == 1:
                result.append(index_constant(0))
                continue
            q = self._linear if stride == 1 else b.udiv(self._linear, index_constant(stride))
            # The leading axis needs no remainder: the linear index is in bounds.
            if stride * extent != _size(self.shape):
                q = b.urem(q, index_constant(extent))
            result.append(q)
        return result

    def linear(self, b: ll.IRBuilder) -> ll.Value:
        """The row-major position as one i64."""
        if self._linear is not None:
            return self._linear
        total = None
        for value, extent, stride in zip(self._dims, self.shape, row_major_strides(self.shape),
                                         strict=True):
            if extent == 1:
                continue
            term = value if stride == 1 else b.mul(value, index_constant(stride), flags=_NUW_NSW)
            total = term if total is None else b.add(total, term, flags=_NUW_NSW)
        return total if total is not None else index_constant(0)


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class Array:
    """A C-contiguous buffer of ``type`` at ``pointer``: loads and stores elements."""

    def __init__(self, pointer: ll.Value, type: TensorType):
        self.pointer = pointer
        self.type = type
        self._storage = storage_type(type.dtype)
        self._align = type.dtype.itemsize

    def address(self, b: ll.IRBuilder, index: Index) -> ll.Value:
        return b.gep(self.pointer, [index.linear(b)], inbounds=True, source_etype=self._storage)

    def load(self, b: ll.IRBuilder, index: Index) -> ll.Value:
        """The element at ``index`` as a register value (bool: ``i1``)."""
        value = b.load(self.address(b, index), typ=self._storage, align=self._align)
        if self.type.dtype is DType.bool:
            # Any nonzero byte is true, as in numpy.
            value = b.icmp_unsigned("!=", value, ll.Constant(self._storage, 0))
        return value

    def store(self, b: ll.IRBuilder, index: Index, value: ll.Value) -> None:
        if self.type.dtype is DType.bool and value.type == I1:
            value = b.zext(value, self._storage)
        b.store(value, self.address(b, index), align=self._align)
