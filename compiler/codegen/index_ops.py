"""Elemental emitters of the data-movement and source ops.

``INDEX_EMITTERS[op](builder, eqn, index, operands)`` computes the output
element at ``index`` by mapping it to the operand element(s) it reads and
asking the operand *generators* for them (``operands[i](builder, operand_index)``).
Whether a generator loads from a buffer or computes the element inline is not
these functions' business: that is what lets fusion reuse them unchanged.

Every mapped index is in bounds: broadcast/reshape/transpose/slice map in-bounds
indices to in-bounds indices (their type rules guarantee it), and pad/concat
only ask an operand for an element inside a branch that checked the bounds.
"""

from __future__ import annotations

import weakref
from typing import Callable

import llvmlite.ir as ll
import numpy as np

from ir.core import Eqn
from ir.dtypes import DType, TensorType
from ir.ops import get_op
from compiler.codegen.arrays import Array, Index
from compiler.codegen.llvm_types import constant, index_constant, storage_type
from compiler.codegen.scalar_ops import convert

__all__ = ["INDEX_EMITTERS", "Generator", "IndexEmitter"]

Generator = Callable[[ll.IRBuilder, Index], ll.Value]
IndexEmitter = Callable[[ll.IRBuilder, Eqn, Index, list], ll.Value]

INDEX_EMITTERS: dict[str, IndexEmitter] = {}

_NUW_NSW = ("nuw", "nsw")


def _emitter(name: str):
    def register(fn: IndexEmitter) -> IndexEmitter:
        INDEX_EMITTERS[name] = fn
        return fn

    return register


@_emitter("broadcast")
def _broadcast(b, eqn, index, operands):
    shape = eqn.inputs[0].shape
    out = index.dims(b)
    mapped = [index_constant(0) if shape[i] == 1 else out[d] for i, d in enumerate(eqn.attrs["dims"])]
    return operands[0](b, Index(shape, dims=mapped))


@_emitter("reshape")
def _reshape(b, eqn, index, operands):
    # Row-major order is unchanged: the same linear position.
    return operands[0](b, Index(eqn.inputs[0].shape, linear=index.linear(b)))


@_emitter("transpose")
def _transpose(b, eqn, index, operands):
    out = index.dims(b)
    mapped = [None] * len(out)
    for i, p in enumerate(eqn.attrs["perm"]):
        mapped[p] = out[i]
    return operands[0](b, Index(eqn.inputs[0].shape, dims=mapped))


@_emitter("slice")
def _slice(b, eqn, index, operands):
    mapped = []
    for o, start, step in zip(index.dims(b), eqn.attrs["start"], eqn.attrs["step"], strict=True):
        if step != 1:
            o = b.mul(o, index_constant(step), flags=_NUW_NSW)
        if start != 0:
            o = b.add(o, index_constant(start), flags=_NUW_NSW)
        mapped.append(o)
    return operands[0](b, Index(eqn.inputs[0].shape, dims=mapped))


@_emitter("reverse")
def _reverse(b, eqn, index, operands):
    shape = eqn.inputs[0].shape
    mapped = [b.sub(index_constant(shape[a] - 1), o, flags=_NUW_NSW) if a in eqn.attrs["axes"] else o
              for a, o in enumerate(index.dims(b))]
    return operands[0](b, Index(shape, dims=mapped))


@_emitter("pad")
def _pad(b, eqn, index, operands):
    shape = eqn.inputs[0].shape
    dtype = eqn.inputs[0].dtype
    zero = constant(dtype, 0)
    if 0 in shape:
        return zero  # all padding
    conditions, mapped = [], []
    for o, size, low, high, interior in zip(index.dims(b), shape, eqn.attrs["low"], eqn.attrs["high"],
                                             eqn.attrs["interior"], strict=True):
        # p = o - low is the position in the interior-dilated operand; it holds
        # an operand element iff 0 <= p, p % (interior + 1) == 0 and p / (interior + 1) < size.
        p = b.sub(o, index_constant(low)) if low else o
        if low:
            conditions.append(b.icmp_signed(">=", p, index_constant(0)))
        q = p
        if interior:
            conditions.append(b.icmp_signed("==", b.srem(p, index_constant(interior + 1)), index_constant(0)))
            q = b.sdiv(p, index_constant(interior + 1))
        if high or interior:  # otherwise q <= size - 1 follows from o < out extent
            conditions.append(b.icmp_signed("<", q, index_constant(size)))
        mapped.append(q)
    if not conditions:
        return operands[0](b, Index(shape, dims=mapped))
    inside = conditions[0]
    for c in conditions[1:]:
        inside = b.and_(inside, c)
    return _if_else_value(b, inside, lambda: operands[0](b, Index(shape, dims=mapped)), lambda: zero,
                          name="pad")


@_emitter("concat")
def _concat(b, eqn, index, operands):
    axis = eqn.attrs["axis"]
    out = index.dims(b)
    pieces, start = [], 0
    for generator, value in zip(operands, eqn.inputs, strict=True):
        extent = value.shape[axis]
        if extent:  # an empty operand contributes nothing
            pieces.append((generator, value.shape, start, start + extent))
        start += extent

    def read(piece):
        # Emitted inside the branch that checked out[axis] >= begin, so the
        # subtraction never wraps.
        def value():
            generator, shape, begin, _ = piece
            dims = list(out)
            if begin:
                dims[axis] = b.sub(out[axis], index_constant(begin), flags=_NUW_NSW)
            return generator(b, Index(shape, dims=dims))

        return value

    # A chain of range tests: the last piece needs none.
    def chain(rest):
        if len(rest) == 1:
            return read(rest[0])()
        in_first = b.icmp_unsigned("<", out[axis], index_constant(rest[0][3]))
        return _if_else_value(b, in_first, read(rest[0]), lambda: chain(rest[1:]), name="concat")

    return chain(pieces)


@_emitter("iota")
def _iota(b, eqn, index, operands):
    position = index.dims(b)[eqn.attrs["dimension"]]
    return convert(b, position, DType.i64, eqn.attrs["dtype"])


@_emitter("constant")
def _constant(b, eqn, index, operands):
    # The values come from the op's reference, so they are converted exactly
    # the way the interpreter converts them.
    values = np.asarray(get_op("constant").ref([], eqn.attrs)).ravel()
    dtype = eqn.outputs[0].dtype
    bits = values.view(f"u{values.dtype.itemsize}")  # compares -0.0/+0.0 and nans bitwise
    if (bits == bits[0]).all():
        return constant(dtype, values[0].item())
    table = _constant_table(b.module, eqn, values)
    return Array(table, TensorType(dtype, (values.size,))).load(b, Index((values.size,), linear=index.linear(b)))


# One global per constant equation and module, however often its elements are asked for.
_TABLES: "weakref.WeakKeyDictionary[ll.Module, dict[int, ll.GlobalVariable]]" = weakref.WeakKeyDictionary()


def _constant_table(module: ll.Module, eqn: Eqn, values: np.ndarray) -> ll.GlobalVariable:
    tables = _TABLES.setdefault(module, {})
    if id(eqn) in tables:
        return tables[id(eqn)]
    dtype = eqn.outputs[0].dtype
    element = storage_type(dtype)
    array_type = ll.ArrayType(element, values.size)
    table = ll.GlobalVariable(module, array_type, module.get_unique_name("const"))
    table.global_constant = True
    table.linkage = "internal"
    table.unnamed_addr = True
    table.align = 64
    if dtype is DType.bool:
        items = [ll.Constant(element, int(v)) for v in values]
    else:
        items = [constant(dtype, v) for v in values.tolist()]
    table.initializer = ll.Constant(array_type, items)
    tables[id(eqn)] = table
    return table


def _if_else_value(b: ll.IRBuilder, condition, then_value, else_value, *, name: str) -> ll.Value:
    """``condition ? then_value() : else_value()`` with real branches, so each
    side's loads only execute when the side is taken."""
    then_block = b.append_basic_block(f"{name}.then")
    else_block = b.append_basic_block(f"{name}.else")
    merge_block = b.append_basic_block(f"{name}.merge")
    b.cbranch(condition, then_block, else_block)
    b.position_at_end(then_block)
    a = then_value()
    then_end = b.block
    b.branch(merge_block)
    b.position_at_end(else_block)
    c = else_value()
    else_end = b.block
    b.branch(merge_block)
    b.position_at_end(merge_block)
    phi = b.phi(a.type, name=name)
    phi.add_incoming(a, then_end)
    phi.add_incoming(c, else_end)
    return phi
