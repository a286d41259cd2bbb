"""The ``dot`` kernel: batched matrix product ``[..., m, k] @ [..., k, n]``.

``transpose_lhs`` / ``transpose_rhs`` (attributes set by the dot_layout pass)
mean an operand is stored with its last two axes swapped (``[..., k, m]``,
``[..., n, k]``); both paths below read it through strides, never copying it.

Float products big enough to repay packing take the blocked GEMM (gemm.py,
see [GEMM blocking] in gemm_plan.py) or, with few columns and long rows, the
skinny one (gemm_skinny.py), possibly on several threads; the rest (small
products, integers) a plain loop nest: batch, i, k, j, whose innermost
loop walks a row of the rhs and of the output contiguously (an axpy that
vectorises).

NOTE: [Dot tolerance]
Floats multiply-add with FMAs (one rounding per step). Each output element
sums its k terms in ascending order (the panel GEMM: ascending within each k
block of ``kc``, blocks added in order; the skinny GEMM for few columns:
ascending in each of ``lanes`` interleaved partial sums, then across them),
so it differs from numpy's BLAS by rounding only: within
``2 * k * eps * sum_k |a_ik * b_kj|``. An element is computed by one thread
with the same arithmetic whatever the thread count: results with 1 and with N
threads are bitwise equal. Integers wrap and are exact.
"""

from __future__ import annotations

import functools

import llvmlite.ir as ll

from ir.core import Eqn
from compiler.codegen.arrays import Array, Index
from compiler.codegen.gemm import Epilogue, emit_gemm
from compiler.codegen.gemm_skinny import SkinnyPlan, emit_skinny, plan_skinny
from compiler.codegen.gemm_plan import (GemmPlan, GemmShape, may_split, plan_gemm, use_blocked,
                                       vector_bits)
from compiler.codegen.llvm_types import constant
from compiler.codegen.loops import for_range, loop_nest
from compiler.codegen.parallel import max_threads
from runtime.target import host_target

__all__ = ["emit_dot", "emit_dot_loops", "emit_product", "dot_scratch_bytes", "dot_shape",
           "dot_plan"]

_CONTRACT = ("contract",)


def dot_shape(eqn: Eqn) -> GemmShape:
    """The GEMM problem of a ``dot`` equation."""
    out = eqn.outputs[0].type
    trans_a = bool(eqn.attrs.get("transpose_lhs", False))
    trans_b = bool(eqn.attrs.get("transpose_rhs", False))
    lhs_shape = eqn.inputs[0].type.shape
    k = lhs_shape[-2] if trans_a else lhs_shape[-1]
    batch = 1
    for extent in out.shape[:-2]:
        batch *= extent
    return GemmShape(out.dtype, batch, out.shape[-2], out.shape[-1], k, trans_a, trans_b)


def dot_plan(eqn: Eqn) -> GemmPlan | SkinnyPlan | None:
    """The GEMM plan of ``eqn`` for this host (the panel kernel or, for few
    columns and long rows, the skinny one), or None for the plain loops."""
    shape = dot_shape(eqn)
    if not use_blocked(shape):
        return None
    # Only a product worth splitting asks for threads (which starts the pool).
    return _plan(shape, max_threads() if may_split(shape) else 1)


@functools.lru_cache(maxsize=256)
def _plan(shape: GemmShape, threads: int) -> GemmPlan | SkinnyPlan:
    bits = vector_bits(host_target().features)
    skinny = plan_skinny(shape, vector_bits=bits, max_threads=threads)
    if skinny is not None:
        return skinny
    return plan_gemm(shape, vector_bits=bits, max_threads=threads)


def emit_product(b: ll.IRBuilder, plan: GemmPlan | SkinnyPlan, name: str, c, a, bmat,
                 scratch, epilogue: Epilogue | None = None) -> None:
    """C = A @ B with the kernel ``plan`` chose (and ``epilogue`` on its tiles)."""
    if isinstance(plan, SkinnyPlan):
        emit_skinny(b, plan, name, c, a, bmat, scratch, epilogue)
    else:
        emit_gemm(b, plan, name, c, a, bmat, scratch, epilogue)


def dot_scratch_bytes(eqn: Eqn) -> int:
    """Arena bytes for the packed panels of every thread (0 for the plain loops)."""
    plan = dot_plan(eqn)
    return 0 if plan is None else plan.scratch_bytes


def emit_dot(b: ll.IRBuilder, eqn: Eqn, ins: list[Array], outs: list[Array],
             scratch: ll.Value | None) -> None:
    out = outs[0]
    if out.type.size == 0:
        return
    plan = dot_plan(eqn)
    if plan is not None:
        emit_product(b, plan, b.function.name, out.pointer, ins[0].pointer, ins[1].pointer,
                     scratch)
        return
    emit_dot_loops(b, eqn, ins, out)


def emit_dot_loops(b: ll.IRBuilder, eqn: Eqn, ins: list[Array], out: Array) -> None:
    """The plain loop nest for ``eqn`` (any dtype and size; zeros when k = 0)."""
    shape = dot_shape(eqn)
    if out.type.size == 0:
        return
    if shape.k == 0:
        _fill_zero(b, out)
        return
    _emit_loops(b, eqn, shape, ins, out)


def _fill_zero(b: ll.IRBuilder, out: Array) -> None:
    zero = constant(out.type.dtype, 0)
    with for_range(b, out.type.size, name="z") as loop:
        out.store(b, Index(out.type.shape, linear=loop.index), zero)


def _emit_loops(b: ll.IRBuilder, eqn: Eqn, shape: GemmShape, ins: list[Array], out: Array):
    """Plain loops: out[..., i, :] = sum_k lhs[..., i, k] * rhs[..., k, :]."""
    lhs, rhs = ins
    out_shape = out.type.shape
    zero = constant(out.type.dtype, 0)
    is_float = out.type.dtype.is_float
    with loop_nest(b, out_shape[:-1], name="m") as rows:  # batch dims, then i
        *batch, i = rows
        with for_range(b, shape.n, name="j0") as loop:
            out.store(b, Index(out_shape, dims=rows + [loop.index]), zero)
        with for_range(b, shape.k, name="k") as k_loop:
            k = k_loop.index
            a_dims = batch + ([k, i] if shape.trans_a else [i, k])
            a = lhs.load(b, Index(lhs.type.shape, dims=a_dims))
            with for_range(b, shape.n, name="j") as loop:
                j = loop.index
                out_index = Index(out_shape, dims=batch + [i, j])
                b_dims = batch + ([j, k] if shape.trans_b else [k, j])
                r = rhs.load(b, Index(rhs.type.shape, dims=b_dims))
                acc = out.load(b, out_index)
                if is_float:
                    updated = b.fadd(acc, b.fmul(a, r, flags=_CONTRACT), flags=_CONTRACT)
                else:
                    updated = b.add(acc, b.mul(a, r))  # wraps
                out.store(b, out_index, updated)
