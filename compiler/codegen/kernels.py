"""One LLVM function per equation: the kernel table and the kernel builder.

``KERNEL_EMITTERS`` holds the ops with loop nests of their own (reductions,
dot); every other op is elemental (elemental.py). A kernel is ``define internal
void @k<n>_<op>(ptr noalias %out..., ptr noalias %in..., [ptr noalias %scratch]) noinline``:
the entry function calls it with buffers that never overlap (inputs may be the
same buffer as each other: ``noalias`` permits that for buffers only read); an
output written over an input's buffer has no parameter of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import llvmlite.ir as ll

from ir.core import Eqn
from compiler.codegen.arrays import Array
from compiler.codegen.dot import dot_scratch_bytes, emit_dot
from compiler.codegen.elemental import array_generator, emit_elemental_kernel, is_elemental
from compiler.codegen.errors import LoweringError
from compiler.codegen.fused import emit_fusion, fusion_scratch_bytes
from compiler.codegen.gemm_fusion import (emit_gemm_fusion, gemm_fusion_scratch_bytes,
                                          is_gemm_fusion)
from compiler.codegen.parallel_fusion import (emit_parallel_fusion, fusion_split,
                                              parallel_fusion_scratch_bytes)
from compiler.codegen.llvm_types import PTR, VOID
from compiler.codegen.reduce import argreduce_scratch_bytes, emit_argreduce, emit_reduce

__all__ = ["KernelRule", "KERNEL_EMITTERS", "scratch_bytes", "emit_kernel", "lowered_ops"]


@dataclass(frozen=True)
class KernelRule:
    """How to emit an op that is not elemental, and the arena scratch it needs."""

    emit: Callable[[ll.IRBuilder, Eqn, list, list, ll.Value | None], None]
    scratch_bytes: Callable[[Eqn], int] = lambda eqn: 0
    # True: ``emit`` gets the input buffers (Arrays), not generators (the GEMM
    # packs from raw pointers and may read them from other threads).
    buffers: bool = False


KERNEL_EMITTERS: dict[str, KernelRule] = {
    "reduce_sum": KernelRule(emit_reduce),
    "reduce_max": KernelRule(emit_reduce),
    "reduce_min": KernelRule(emit_reduce),
    "argmax": KernelRule(emit_argreduce, argreduce_scratch_bytes),
    "argmin": KernelRule(emit_argreduce, argreduce_scratch_bytes),
    "dot": KernelRule(emit_dot, dot_scratch_bytes, buffers=True),
}


def lowered_ops() -> set[str]:
    """Every op name the backend can lower."""
    from compiler.codegen.index_ops import INDEX_EMITTERS
    from compiler.codegen.scalar_ops import ELEMENTWISE_EMITTERS

    return set(ELEMENTWISE_EMITTERS) | set(INDEX_EMITTERS) | set(KERNEL_EMITTERS)


def scratch_bytes(eqn: Eqn) -> int:
    """Arena bytes ``eqn``'s kernel needs besides its outputs."""
    if is_gemm_fusion(eqn):
        return gemm_fusion_scratch_bytes(eqn)
    if eqn.body is not None:
        split = fusion_split(eqn)
        if split is not None:
            return parallel_fusion_scratch_bytes(eqn, split)
        return fusion_scratch_bytes(eqn)
    rule = KERNEL_EMITTERS.get(eqn.op)
    return rule.scratch_bytes(eqn) if rule is not None else 0


def emit_kernel(module: ll.Module, name: str, eqn: Eqn,
                in_place: Mapping[int, int] | None = None) -> ll.Function:
    """Define the kernel computing ``eqn`` (outputs, then inputs, then scratch).

    ``in_place`` maps outputs to the inputs whose buffers they are written
    over (the memory plan's in-place results, donated parameters): such an
    output gets no parameter of its own and is written through the input's
    pointer, since two ``noalias`` pointers to one buffer that is written
    would let LLVM reorder the loads and stores of it.
    """
    in_place = dict(in_place or {})
    has_scratch = scratch_bytes(eqn) > 0
    own = [k for k in range(len(eqn.outputs)) if k not in in_place]
    arity = len(own) + len(eqn.inputs) + int(has_scratch)
    fn = ll.Function(module, ll.FunctionType(VOID, [PTR] * arity), name)
    fn.linkage = "internal"
    # Called once, from the entry: inlining gains nothing, and kernels must
    # compile alike in whichever part of the module they go to (lower.py).
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    args = list(fn.args)
    n_out, n_in = len(own), len(eqn.inputs)
    names = [f"out{i}" for i in own] + [f"in{i}" for i in range(n_in)] + ["scratch"]
    for arg, arg_name in zip(args, names, strict=False):  # scratch is optional
        arg.name = arg_name
        arg.add_attribute("noalias")
    in_pointers = args[n_out:n_out + n_in]
    out_pointers = dict(zip(own, args[:n_out], strict=True))
    outs = [Array(out_pointers[k] if k in out_pointers else in_pointers[in_place[k]], v.type)
            for k, v in enumerate(eqn.outputs)]
    ins = [Array(p, v.type) for p, v in zip(in_pointers, eqn.inputs, strict=True)]
    scratch = args[-1] if has_scratch else None
    operands = [array_generator(a) for a in ins]
    b = ll.IRBuilder(fn.append_basic_block("entry"))
    rule = KERNEL_EMITTERS.get(eqn.op)
    if is_gemm_fusion(eqn):  # a dot and its elementwise epilogue (gemm_fusion.py)
        emit_gemm_fusion(b, eqn, ins, outs, scratch, in_place)
    elif eqn.body is not None:  # a fusion: one loop nest for its whole body (fused.py)
        split = fusion_split(eqn)
        if split is not None:  # large: chunks of it on the thread pool
            emit_parallel_fusion(b, eqn, split, ins, outs, scratch)
        else:
            emit_fusion(b, eqn, ins, outs, scratch)
    elif rule is not None:
        rule.emit(b, eqn, ins if rule.buffers else operands, outs, scratch)
    elif is_elemental(eqn.op):
        if len(outs) != 1:
            raise LoweringError(f"elemental op '{eqn.op}' must have one output, has {len(outs)}")
        emit_elemental_kernel(b, eqn, operands, outs[0])
    else:
        raise LoweringError(f"no LLVM lowering for op '{eqn.op}'")
    b.ret_void()
    return fn
