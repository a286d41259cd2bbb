"""Large fused loops on the thread pool: each chunk runs a span of the outer loop.

A ``loop`` or ``row`` fusion (compiler/codegen/fused.py) whose work is large
(``_MIN_ELEMENTS`` elements or more) is split along its outermost loop
(``span_extent``: the flat positions, the leading axis or the rows) into
chunks of at least ``_MIN_CHUNK_ELEMENTS`` elements, a few per thread, and
run with ``emit_parallel``. Every chunk computes its positions with the same
code as the serial kernel (the fused kernel with a ``span``), so results are
bitwise equal whatever the thread count: reductions in a row fusion reduce
whole rows, never across chunks. A row fusion's L1 scratch gets one slot per
thread. A row fusion with reductions across rows (column sums, totals) splits
at block boundaries: each chunk accumulates the partials of its own blocks (in
scratch after the threads' slots) and the epilogue combines them after the
join, in block order, so those results too are the same for any thread
count. ``nest`` reductions (over leading axes) and small kernels stay serial:
a fork-join costs ~1 us plus a worker's wake-up, the time of ~50K elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ll

from ir.core import Eqn
from compiler.codegen.arrays import Array
from compiler.codegen.fused import (emit_fusion, emit_fusion_epilogue, fusion_plan,
                                    fusion_scratch_layout, span_extent)
from compiler.codegen.llvm_types import I8, index_constant
from compiler.codegen.parallel import emit_parallel, max_threads

__all__ = ["FusionSplit", "fusion_split", "parallel_fusion_scratch_bytes", "emit_parallel_fusion"]

_MIN_ELEMENTS = 1 << 18        # 1 MiB of f32 results or inputs
_MIN_CHUNK_ELEMENTS = 1 << 15
_CHUNKS_PER_THREAD = 4


@dataclass(frozen=True)
class FusionSplit:
    team: int
    chunks: int
    per_chunk: int       # outer iterations per chunk (the last chunk: the rest)
    extent: int          # outer iterations in all


def _elements(eqn: Eqn) -> int:
    plan = fusion_plan(eqn)
    if plan.mode == "row":
        return plan.rows * plan.cols
    size = 1
    for d in plan.shape:
        size *= d
    return size


def fusion_split(eqn: Eqn) -> FusionSplit | None:
    """How fusion ``eqn`` is split across threads, or None (serial)."""
    if eqn.body is None or eqn.attrs.get("kind") not in ("loop", "reduce"):
        return None
    elements = _elements(eqn)
    if elements < _MIN_ELEMENTS:
        return None
    extent = span_extent(eqn)
    threads = max_threads()
    if extent is None or extent < 2 or threads < 2:
        return None
    per_iteration = max(1, elements // extent)
    wanted = min(_CHUNKS_PER_THREAD * threads, elements // _MIN_CHUNK_ELEMENTS, extent)
    if wanted < 2:
        return None
    per_chunk = -(-extent // wanted)
    plan = fusion_plan(eqn)
    if plan.across:  # whole blocks of rows per chunk (their partials)
        per_chunk = -(-per_chunk // plan.block_rows) * plan.block_rows
    chunks = -(-extent // per_chunk)
    if chunks < 2 or per_chunk * per_iteration < _MIN_CHUNK_ELEMENTS // 4:
        return None
    return FusionSplit(min(threads, chunks), chunks, per_chunk, extent)


def parallel_fusion_scratch_bytes(eqn: Eqn, split: FusionSplit) -> int:
    """One slot of the fused kernel's private scratch per thread, then the shared partials."""
    private, shared = fusion_scratch_layout(eqn)
    return private * split.team + shared


def emit_parallel_fusion(b: ll.IRBuilder, eqn: Eqn, split: FusionSplit, ins: list[Array],
                         outs: list[Array], scratch: ll.Value | None) -> None:
    """The kernel of fusion ``eqn`` as ``split.chunks`` chunks on the thread pool."""
    slot, shared_bytes = fusion_scratch_layout(eqn)
    # An output written over an input's buffer stays one pointer in the chunks
    # (see emit_kernel in kernels.py; NOTE: [One row function] in fused.py).
    pointers = list(dict.fromkeys(a.pointer for a in (*ins, *outs)))
    pattern = [pointers.index(a.pointer) for a in (*ins, *outs)]
    captured = pointers + ([scratch] if scratch is not None else [])
    last = split.extent - (split.chunks - 1) * split.per_chunk

    def body(inner: ll.IRBuilder, values, chunk, thread) -> None:
        arrays = [Array(values[k], a.type) for k, a in zip(pattern, (*ins, *outs), strict=True)]
        in_arrays, out_arrays = arrays[:len(ins)], arrays[len(ins):]
        own = shared = None
        if scratch is not None:
            own = inner.gep(values[-1], [inner.mul(thread, index_constant(slot))],
                            inbounds=True, source_etype=I8)
            shared = inner.gep(values[-1], [index_constant(slot * split.team)],
                               inbounds=True, source_etype=I8)
        start = inner.mul(chunk, index_constant(split.per_chunk))
        if last == split.per_chunk:
            emit_fusion(inner, eqn, in_arrays, out_arrays, own, span=(start, split.per_chunk),
                        shared=shared)
            return
        is_last = inner.icmp_unsigned("==", chunk, index_constant(split.chunks - 1))
        with inner.if_else(is_last) as (then, otherwise):
            with then:
                emit_fusion(inner, eqn, in_arrays, out_arrays, own, span=(start, last),
                            shared=shared)
            with otherwise:
                emit_fusion(inner, eqn, in_arrays, out_arrays, own,
                            span=(start, split.per_chunk), shared=shared)

    emit_parallel(b, f"{b.function.name}.chunk", captured, split.chunks, split.team, body)
    if shared_bytes:
        shared = b.gep(scratch, [index_constant(slot * split.team)], inbounds=True,
                       source_etype=I8)
        emit_fusion_epilogue(b, eqn, ins, outs, shared)
