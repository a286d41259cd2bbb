"""The ``dot`` kernel: batched matrix product ``[..., m, k] @ [..., k, n]``.

Loop order batch, i, k, j: the innermost loop walks a row of the rhs and of the
output contiguously (an axpy that vectorises). Float products and sums carry
the ``contract`` flag, so they become FMAs; the summation order is k-ascending
for each output element, so results differ from BLAS (numpy's matmul) by
rounding only: about ``k * eps * sum_k |a_ik * b_kj|``. Integers wrap.
A blocked GEMM replaces this later.
"""

from __future__ import annotations

import llvmlite.ir as ll

from ir.core import Eqn
from compiler.codegen.arrays import Array, Index
from compiler.codegen.elemental import Generator
from compiler.codegen.llvm_types import constant
from compiler.codegen.loops import for_range, loop_nest

__all__ = ["emit_dot"]

_CONTRACT = ("contract",)


def emit_dot(b: ll.IRBuilder, eqn: Eqn, operands: list[Generator], outs: list[Array],
             scratch: ll.Value | None) -> None:
    lhs_shape, rhs_shape = eqn.inputs[0].shape, eqn.inputs[1].shape
    out = outs[0]
    out_shape = out.type.shape
    if out.type.size == 0:
        return
    k_extent = lhs_shape[-1]
    lhs, rhs = operands
    zero = constant(out.type.dtype, 0)
    with loop_nest(b, out_shape[:-1], name="m") as rows:  # batch dims, then i
        *batch, i = rows
        with for_range(b, out_shape[-1], name="j0") as loop:
            out.store(b, Index(out_shape, dims=rows + [loop.index]), zero)
        if k_extent > 0:
            _accumulate_row(b, lhs, rhs, out, lhs_shape, rhs_shape, batch, i, k_extent)


def _accumulate_row(b, lhs, rhs, out, lhs_shape, rhs_shape, batch, i, k_extent) -> None:
    """out[batch, i, :] += lhs[batch, i, k] * rhs[batch, k, :] for every k."""
    out_shape = out.type.shape
    is_float = out.type.dtype.is_float
    with for_range(b, k_extent, name="k") as k_loop:
        k = k_loop.index
        a = lhs(b, Index(lhs_shape, dims=batch + [i, k]))
        with for_range(b, out_shape[-1], name="j") as loop:
            j = loop.index
            out_index = Index(out_shape, dims=batch + [i, j])
            r = rhs(b, Index(rhs_shape, dims=batch + [k, j]))
            acc = out.load(b, out_index)
            if is_float:
                updated = b.fadd(acc, b.fmul(a, r, flags=_CONTRACT), flags=_CONTRACT)
            else:
                updated = b.add(acc, b.mul(a, r))  # wraps
            out.store(b, out_index, updated)
