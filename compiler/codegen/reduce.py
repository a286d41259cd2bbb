"""Reduction kernels: reduce_sum/max/min and argmax/argmin.

NOTE: [Reduction loop order]
The input is walked in row-major order, so the innermost loop is contiguous
whichever axes are reduced. Split the input dims into a prefix and the longest
suffix of reduced dims. The suffix is reduced in registers (loop-carried phis,
which LLVM's vectoriser recognises as reductions); across the prefix, partial
results live in the output buffer (for argmax/argmin, the running best value
lives in an arena scratch buffer next to the index output). When no reduced
dim is in the prefix, every output element is visited exactly once: the
accumulator starts from the identity and the buffers need no initial fill.
argmax/argmin along the last axis use two vectorisable passes per row instead
(``_argreduce_innermost``).

NOTE: [Reduction tolerance]
Integer sums wrap and are exact. Float ``reduce_sum`` adds with the
``reassoc`` flag so LLVM may vectorise and reorder it: the result differs from
numpy's pairwise sum by rounding only, bounded by about
``n * eps * sum(|x|)`` for n terms (the tests use twice that). Inf and nan
propagate as in any order (no ``nnan``/``ninf`` flags); only an overflow that
depends on the order (1e38 + 1e38 - 1e38 in f32) can differ. max/min/argmax/
argmin are exact: nan propagates (``llvm.maximum``), argmax/argmin return the
first index of the extreme and count a nan as the extreme, as numpy does.
Float max/min combine with ``nsz``: a zero result may be -0 or +0 when both
occur (numpy's own SIMD max leaves that to the order too). Without it
``llvm.maximum`` orders -0 below +0 with three more operations per vector on
x86 (6 instead of vmaxps + a nan check + blend), half the cost of a
softmax's max pass.
"""

from __future__ import annotations

from typing import Callable, Sequence

import llvmlite.ir as ll

from ir.core import Eqn
from ir.dtypes import DType, TensorType
from compiler.codegen.arrays import Array, Index
from compiler.codegen.elemental import Generator
from compiler.codegen.intrinsics import call_intrinsic, intrinsic
from compiler.codegen.llvm_types import constant
from compiler.codegen.loops import for_range, loop_nest

__all__ = ["emit_reduce", "emit_argreduce", "argreduce_scratch_bytes"]

_REASSOC = ("reassoc",)

# body(builder, input index, states) -> new states
Body = Callable[[ll.IRBuilder, Index, list], list]


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _split(shape: Sequence[int], axes) -> int:
    """Where the longest suffix of reduced dims starts."""
    start = len(shape)
    while start > 0 and (start - 1) in axes:
        start -= 1
    return start


def _reduction_nest(b: ll.IRBuilder, in_shape, axes, inits: list, arrays: list, body: Body) -> None:
    """Drive a reduction (see [Reduction loop order]); ``arrays`` hold the states."""
    axes = frozenset(axes)
    out_shape = tuple(d for i, d in enumerate(in_shape) if i not in axes)
    if _size(out_shape) == 0:
        return
    split = _split(in_shape, axes)
    single_visit = not any(i in axes for i in range(split))
    empty_input = _size(in_shape) == 0
    if empty_input or not single_visit:
        with for_range(b, _size(out_shape), name="fill") as loop:
            index = Index(out_shape, linear=loop.index)
            for array, init in zip(arrays, inits, strict=True):
                array.store(b, index, init)
    if empty_input:
        return
    with loop_nest(b, in_shape[:split], name="p") as prefix:
        out_index = Index(out_shape, dims=[v for i, v in enumerate(prefix) if i not in axes])
        states = list(inits) if single_visit else [a.load(b, out_index) for a in arrays]
        states = _carried_nest(b, in_shape, prefix, in_shape[split:], states, body)
        for array, state in zip(arrays, states, strict=True):
            if array is not None:
                array.store(b, out_index, state)


def _carried_nest(b, in_shape, outer: list, dims: Sequence[int], states: list, body: Body) -> list:
    """Loops over ``dims`` carrying ``states``; returns their final values."""
    if not dims:
        return body(b, Index(in_shape, dims=outer), states)
    with for_range(b, dims[0], name=f"r{len(outer)}", carry=states) as loop:
        loop.update(*_carried_nest(b, in_shape, outer + [loop.index], dims[1:], loop.carried, body))
    return loop.results


def _identity_and_combine(op: str, dtype: DType):
    if op == "reduce_sum":
        if dtype.is_float:
            return 0, lambda b, acc, x: b.fadd(acc, x, flags=_REASSOC)
        return 0, lambda b, acc, x: b.add(acc, x)  # wraps
    maximum = op == "reduce_max"
    if dtype.is_float:
        identity = float("-inf") if maximum else float("inf")
        name = "llvm.maximum" if maximum else "llvm.minimum"

        def combine(b, acc, x):
            fn = intrinsic(b.module, name, acc.type, 2)
            return b.call(fn, [acc, x], fastmath=("nsz",))  # [Reduction tolerance]

        return identity, combine
    else:
        bits = dtype.itemsize * 8
        identity = -(1 << (bits - 1)) if maximum else (1 << (bits - 1)) - 1
        name = "llvm.smax" if maximum else "llvm.smin"
    return identity, lambda b, acc, x: call_intrinsic(b, name, [acc, x])


def emit_reduce(b: ll.IRBuilder, eqn: Eqn, operands: list[Generator], outs: list[Array],
                scratch: ll.Value | None) -> None:
    """reduce_sum / reduce_max / reduce_min over ``eqn.attrs['axes']``."""
    source = eqn.inputs[0].type
    identity, combine = _identity_and_combine(eqn.op, source.dtype)
    element = operands[0]

    def body(b, index, states):
        return [combine(b, states[0], element(b, index))]

    _reduction_nest(b, source.shape, eqn.attrs["axes"], [constant(source.dtype, identity)], outs, body)


def _argreduce_single_visit(eqn: Eqn) -> bool:
    source = eqn.inputs[0].type
    return _split(source.shape, {eqn.attrs["axis"]}) <= eqn.attrs["axis"]


def argreduce_scratch_bytes(eqn: Eqn) -> int:
    """Arena bytes for the running best values (none when the axis is innermost)."""
    if _argreduce_single_visit(eqn):
        return 0
    return eqn.outputs[0].type.size * eqn.inputs[0].dtype.itemsize


def emit_argreduce(b: ll.IRBuilder, eqn: Eqn, operands: list[Generator], outs: list[Array],
                   scratch: ll.Value | None) -> None:
    """argmax / argmin along ``eqn.attrs['axis']`` (first index; nan is the extreme)."""
    source = eqn.inputs[0].type
    if _argreduce_single_visit(eqn):
        _argreduce_innermost(b, eqn, operands[0], outs[0])
        return
    dtype = source.dtype
    axis = eqn.attrs["axis"]
    maximum = eqn.op == "argmax"
    out_type = eqn.outputs[0].type
    best_values = Array(scratch, TensorType(dtype, out_type.shape))
    element = operands[0]

    def body(b, index, states):
        best, best_index = states
        x = element(b, index)
        if dtype.is_float:
            # Strictly better keeps the first of equal values; the first nan wins
            # and then nothing beats it (comparisons with nan are false).
            better = b.fcmp_ordered(">" if maximum else "<", x, best)
            first_nan = b.and_(b.fcmp_unordered("uno", x, x), b.fcmp_ordered("ord", best, best))
            better = b.or_(better, first_nan)
        else:
            better = b.icmp_signed(">" if maximum else "<", x, best)
        position = index.dims(b)[axis]
        return [b.select(better, x, best), b.select(better, position, best_index)]

    inits = [constant(dtype, _worst(eqn.op, dtype)), constant(DType.i64, 0)]
    _reduction_nest(b, source.shape, (axis,), inits, [best_values, outs[0]], body)


def _worst(op: str, dtype: DType):
    """The identity of the max (argmax) or min (argmin) reduction."""
    reduce_op = "reduce_max" if op == "argmax" else "reduce_min"
    return _identity_and_combine(reduce_op, dtype)[0]


def _argreduce_innermost(b: ll.IRBuilder, eqn: Eqn, element: Generator, out: Array) -> None:
    """argmax/argmin along the last axis in two vectorisable passes per row.

    A running (best, index) pair is a serial dependency chain that LLVM does
    not vectorise. Instead: pass 1 reduces the row to its extreme value m
    (``llvm.maximum`` propagates nan); pass 2 finds the first i with
    x[i] == m (or x[i] is nan when m is), as an unsigned-min reduction of
    ``match ? i : n``. Both passes vectorise.
    """
    source = eqn.inputs[0].type
    dtype = source.dtype
    if out.type.size == 0:
        return
    n = source.shape[-1]
    identity, combine = _identity_and_combine("reduce_max" if eqn.op == "argmax" else "reduce_min", dtype)
    with loop_nest(b, source.shape[:-1], name="p") as prefix:
        def at(i):
            return Index(source.shape, dims=prefix + [i])

        with for_range(b, n, name="extreme", carry=[constant(dtype, identity)]) as loop:
            loop.update(combine(b, loop.carried[0], element(b, at(loop.index))))
        extreme = loop.results[0]
        extreme_is_nan = b.fcmp_unordered("uno", extreme, extreme) if dtype.is_float else None
        with for_range(b, n, name="first", carry=[constant(DType.i64, n)]) as loop:
            x = element(b, at(loop.index))
            if dtype.is_float:
                match = b.or_(b.fcmp_ordered("==", x, extreme),
                              b.and_(extreme_is_nan, b.fcmp_unordered("uno", x, x)))
            else:
                match = b.icmp_signed("==", x, extreme)
            candidate = b.select(match, loop.index, constant(DType.i64, n))
            loop.update(call_intrinsic(b, "llvm.umin", [loop.carried[0], candidate]))
        out.store(b, Index(out.type.shape, dims=prefix), loop.results[0])
