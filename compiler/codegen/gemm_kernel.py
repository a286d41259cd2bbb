"""The GEMM micro-kernel: a ``rows x cols`` tile of C from two panels.

NOTE: [Micro-kernel]
``void ukr(ptr a, ptr b, ptr c, i64 kc, i1 accumulate, i64 a_stride, i64 b_k,
i64 ldc, i64 cols)``:

    for p in 0..kc:                  acc[r][v] += splat(A(r, p)) * b[p*b_k + v*lanes ...]
    C[r*ldc + v*lanes ...] = acc[r][v]    (+ C[...] when ``accumulate``)

``a`` holds the tile's rows of A: a packed micro-panel (``mr`` elements per k
step, ``rows <= mr`` of them used: A(r, p) = a[p*mr + r]), A^T read in place
(A(r, p) = a[p*lda + r]; both "unit" kernels, ``a_stride`` the k stride) or
A's rows read in place (A(r, p) = a[r*lda + p]: "strided" kernels,
``a_stride`` the row stride; rows go in groups of six from one pointer, so
the row offsets fold into x86 address modes). ``b`` is a packed B
micro-panel (``nr`` elements per k step, zero-padded past the last column)
or B's rows in place (``b_k`` = ldb). The accumulators are explicit LLVM
vectors (``<lanes x float>``) carried by phis and updated with ``llvm.fma``,
so the register blocking does not depend on the auto-vectoriser; operand
pointers advance by their strides (no multiply per k step). Only ``vectors``
= ceil(cols / lanes) column vectors are computed; in a "partial" kernel the
last is loaded and stored under a lane mask made from ``cols``, so no lane
past the tile is read or written (whole kernels load plainly: masked loads of
B in the k loop cost the W4 step ~1%, measured). The main tile's k loop is
unrolled by LLVM, edge tiles' stay rolled (less code).

A kernel is specialised only on dtype, tile, ``rows``, ``vectors``, whether
the last vector is partial and the A layout (its name spells them): every
stride and count is an argument, so the kernel library holds them all
([Shape-generic kernels] in library.py).
Each sum runs k-ascending within a k block, blocks add up in order; the FMA
rounds once per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ll

from compiler.codegen.gemm_pack import loop_hints
from compiler.codegen.intrinsics import call_intrinsic, declare, masked_load, masked_store, splat
from compiler.codegen.gemm_plan import GemmPlan, Tile
from compiler.codegen.library import library_function
from compiler.codegen.llvm_types import (I1, I32, I64, PTR, VOID, index_constant, value_type,
                                        vector_constant)

__all__ = ["PanelLayout", "micro_kernel", "call_micro_kernel", "kernel_name", "vector_type"]

_NUW_NSW = ("nuw", "nsw")
_ROW_GROUP = 6


def vector_type(tile: Tile) -> ll.VectorType:
    return ll.VectorType(value_type(tile.dtype), tile.lanes)


@dataclass(frozen=True)
class PanelLayout:
    """Where the micro-kernel finds its operands: A element (r, p) at
    ``a + r*a_row + p*a_k``, B element (p, j) at ``b + p*b_k + j``, C element
    (r, j) at ``c + r*ldc + j``. Packed panels: ``a_row = 1, a_k = mr``,
    ``b_k = nr``; an operand read in place has its own strides. The strides
    are arguments of the kernel, not part of it ([Shape-generic kernels])."""

    a_row: int
    a_k: int
    b_k: int
    ldc: int

    @property
    def a_rows_strided(self) -> bool:
        """A's rows are ``a_row`` apart (A read in place along its rows); else
        the ``rows`` elements of one k step are adjacent (packed, or A^T)."""
        return self.a_row != 1


def kernel_name(dtype_name: str, mr: int, nr: int, rows: int, vectors: int,
                a_rows_strided: bool, partial: bool) -> str:
    """The symbol of one shape-generic micro-kernel."""
    return (f"xlac.gemm.{dtype_name}.ukr{mr}x{nr}.r{rows}.v{vectors}"
            f".{'s' if a_rows_strided else 'u'}{'.m' if partial else ''}")


def call_micro_kernel(b: ll.IRBuilder, plan: GemmPlan, rows: int, cols: int, layout: PanelLayout,
                      a_panel, b_panel, c_tile, kc, accumulate) -> None:
    """Call the micro-kernel computing a ``rows x cols`` tile (``rows <= mr``,
    ``cols <= nr``) with ``layout``'s strides."""
    vectors = -(-cols // plan.lanes)
    fn = micro_kernel(b.module, plan.tile, rows, vectors, layout.a_rows_strided,
                      partial=cols != vectors * plan.lanes)
    a_stride = layout.a_row if layout.a_rows_strided else layout.a_k
    b.call(fn, [a_panel, b_panel, c_tile, kc, accumulate, index_constant(a_stride),
                index_constant(layout.b_k), index_constant(layout.ldc), index_constant(cols)])


def micro_kernel(module: ll.Module, tile: Tile, rows: int, vectors: int,
                 a_rows_strided: bool, *, partial: bool) -> ll.Function:
    """The micro-kernel for tiles of ``rows`` rows (``<= tile.mr``) and
    ``vectors`` host vectors of columns (``<= tile.nr / lanes``), the last
    one ``partial`` (``cols`` says how full) or whole;
    ``void(ptr a, ptr b, ptr c, i64 kc, i1 accumulate, i64 a_stride, i64 b_k,
    i64 ldc, i64 cols)`` ([Micro-kernel])."""
    fn_type = ll.FunctionType(VOID, [PTR, PTR, PTR, I64, I1, I64, I64, I64, I64])
    # Unrolling the k loop of the main tile was worth ~2% (measured); edge
    # tiles are rare and stay rolled (less code to compile).
    unroll = rows == tile.mr and vectors * tile.lanes == tile.nr

    def define(fn: ll.Function) -> None:
        _emit_body(ll.IRBuilder(fn.append_basic_block("entry")), tile, rows, vectors,
                   a_rows_strided, partial, *fn.args, unroll)

    return library_function(
        module, kernel_name(tile.dtype.name, tile.mr, tile.nr, rows, vectors, a_rows_strided,
                            partial),
        fn_type, define, ["a", "b", "c", "kc", "accumulate", "a_stride", "b_k", "ldc", "cols"],
        noalias=3)


def _emit_body(b: ll.IRBuilder, tile: Tile, rows: int, nvec: int, a_rows_strided: bool,
               partial: bool, a_panel, b_panel, c, kc, accumulate, a_stride, b_k, ldc, cols,
               unroll: bool) -> None:
    scalar = value_type(tile.dtype)
    vec = vector_type(tile)
    lanes, item = tile.lanes, tile.itemsize
    # Lanes of the last column vector that hold columns of the tile.
    last_valid = b.sub(cols, index_constant((nvec - 1) * lanes))
    lane_index = vector_constant(I64, tuple(range(lanes)))
    splat_valid = splat(b, last_valid, ll.VectorType(I64, lanes))
    last_mask = b.icmp_unsigned("<", lane_index, splat_valid)
    # Touch the C tile early: its lines arrive while the k loop runs.
    prefetch = declare(b.module, "llvm.prefetch.p0", VOID, [PTR, I32, I32, I32])
    row_ptrs = []
    for r in range(rows):
        row = b.gep(c, [_scaled_by(b, ldc, r)], inbounds=True, source_etype=scalar)
        row_ptrs.append(row)
        for line in range(0, nvec * lanes * item, 64):
            at = b.gep(row, [index_constant(line // item)], source_etype=scalar)
            b.call(prefetch, [at, ll.Constant(I32, 1), ll.Constant(I32, 3), ll.Constant(I32, 1)])
    if a_rows_strided:
        # Rows in groups of six from one pointer each, at 0..5 row strides: the
        # strides 1, 2, 4 (and 3, 5 as one register each) fold into x86
        # address modes, so the loop needs a few registers, not one per row.
        row_offsets = [_scaled_by(b, a_stride, j) for j in range(min(rows, _ROW_GROUP))]
        group_starts = [b.gep(a_panel, [_scaled_by(b, a_stride, g)], inbounds=True,
                              source_etype=scalar) for g in range(0, rows, _ROW_GROUP)]

    entry = b.block
    loop = b.append_basic_block("k")
    b.branch(loop)
    b.position_at_end(loop)
    p = b.phi(I64, name="p")
    p.add_incoming(index_constant(0), entry)
    # Operand pointers advance by their k stride (no multiply per step:
    # code generation runs without loop strength reduction).
    b_row = b.phi(PTR, name="b.k")
    b_row.add_incoming(b_panel, entry)
    if not a_rows_strided:
        a_row = b.phi(PTR, name="a.k")
        a_row.add_incoming(a_panel, entry)
    zero = ll.Constant(vec, None)
    accs = [[b.phi(vec, name=f"acc{r}_{v}") for v in range(nvec)] for r in range(rows)]
    for row in accs:
        for phi in row:
            phi.add_incoming(zero, entry)
    b_vecs = []
    for v in range(nvec):
        at = b.gep(b_row, [index_constant(v * lanes)], inbounds=True, source_etype=scalar)
        if v < nvec - 1 or not partial:
            b_vecs.append(b.load(at, typ=vec, align=item))
        else:  # lanes past the last column are not ours to read
            b_vecs.append(masked_load(b, vec, at, last_mask, item))
    if a_rows_strided:
        groups = [b.gep(start, [p], inbounds=True, source_etype=scalar) for start in group_starts]
    updated = []
    for r in range(rows):
        if a_rows_strided:
            at = b.gep(groups[r // _ROW_GROUP], [row_offsets[r % _ROW_GROUP]], inbounds=True,
                       source_etype=scalar)
        else:
            at = b.gep(a_row, [index_constant(r)], inbounds=True, source_etype=scalar)
        a_val = splat(b, b.load(at, typ=scalar, align=item), vec)
        updated.append([call_intrinsic(b, "llvm.fma", [a_val, b_vecs[v], accs[r][v]]) for v in range(nvec)])
    p_next = b.add(p, index_constant(1), flags=_NUW_NSW, name="p.next")
    b_next = b.gep(b_row, [b_k], inbounds=True, source_etype=scalar)
    if not a_rows_strided:
        a_next = b.gep(a_row, [a_stride], inbounds=True, source_etype=scalar)
    more = b.icmp_unsigned("<", p_next, kc)
    latch = b.block
    done = b.append_basic_block("store")
    branch = b.cbranch(more, loop, done)
    if not unroll:
        branch.set_metadata("llvm.loop", loop_hints(b.module, vectorize=False, unroll=False))
    p.add_incoming(p_next, latch)
    b_row.add_incoming(b_next, latch)
    if not a_rows_strided:
        a_row.add_incoming(a_next, latch)
    for row, new_row in zip(accs, updated, strict=True):
        for phi, new in zip(row, new_row, strict=True):
            phi.add_incoming(new, latch)

    b.position_at_end(done)
    add_block = b.append_basic_block("store.add")
    set_block = b.append_basic_block("store.set")
    exit_block = b.append_basic_block("exit")
    b.cbranch(accumulate, add_block, set_block)
    for block, add in ((add_block, True), (set_block, False)):
        b.position_at_end(block)
        for r in range(rows):
            for v in range(nvec):
                at = b.gep(row_ptrs[r], [index_constant(v * lanes)], inbounds=True,
                           source_etype=scalar)
                value = updated[r][v]
                if v < nvec - 1 or not partial:
                    if add:
                        value = b.fadd(value, b.load(at, typ=vec, align=item))
                    b.store(value, at, align=item)
                else:
                    if add:
                        value = b.fadd(value, masked_load(b, vec, at, last_mask, item))
                    masked_store(b, value, at, last_mask, item)
        b.branch(exit_block)
    b.position_at_end(exit_block)
    b.ret_void()


def _scaled_by(b: ll.IRBuilder, stride, factor: int):
    if factor == 0:
        return index_constant(0)
    return stride if factor == 1 else b.mul(stride, index_constant(factor), flags=_NUW_NSW)
