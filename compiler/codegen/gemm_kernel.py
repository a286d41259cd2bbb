"""The GEMM micro-kernel: an ``rows x cols`` tile of C from packed panels.

NOTE: [Micro-kernel]
``void ukr(ptr a, ptr b, ptr c, i64 kc, i1 accumulate)``:

    for p in 0..kc:                  acc[r][v] += splat(a[p*mr + r]) * b[p*nr + v*lanes ...]
    C[r, v*lanes ...] = acc[r][v]    (+ C[r, ...] when ``accumulate``)

``a`` holds the tile's rows of A: a packed micro-panel (``mr`` elements per k
step, ``rows <= mr`` of them used) or, for an A used only once, A itself read
in place through its strides (``PanelLayout``); ``b`` a packed B micro-panel
(``nr`` elements per k step, 64-byte aligned, zero-padded past the last
column) or B's rows in place (the last vector then loaded under a mask). The
accumulators are explicit LLVM vectors (``<lanes x float>``) carried by phis
and updated with ``llvm.fma``, so the register blocking does not depend on
the auto-vectoriser: the backend keeps them in registers and folds the
broadcast loads into the FMAs (``vfmadd231ps (mem){1to16}``). Only
``ceil(cols / lanes)`` vectors are computed; the last one is stored with a
lane mask when ``cols`` is not a multiple of ``lanes``. The main tile's k
loop is unrolled by LLVM, edge tiles' stay rolled (less code).

Each sum runs k-ascending within a k block, blocks add up in order; the FMA
rounds once per step. A kernel is shared by every GEMM of a module with the
same dtype, tile, edge and layout (its name spells them).
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ll

from compiler.codegen.gemm_pack import loop_hints
from compiler.codegen.gemm_plan import GemmPlan
from compiler.codegen.llvm_types import (I1, I32, I64, PTR, VOID, index_constant, value_type,
                                        vector_constant)

__all__ = ["PanelLayout", "micro_kernel", "vector_type", "masked_load", "masked_store"]

_NUW_NSW = ("nuw", "nsw")


def vector_type(plan: GemmPlan) -> ll.VectorType:
    return ll.VectorType(value_type(plan.shape.dtype), plan.lanes)


def _suffix(vec: ll.VectorType) -> str:
    scalar = "f32" if isinstance(vec.element, ll.FloatType) else "f64"
    return f"v{vec.count}{scalar}"


def _declare(module: ll.Module, name: str, ret, args) -> ll.Function:
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ll.Function(module, ll.FunctionType(ret, args), name)


def _fma(b: ll.IRBuilder, x, y, z):
    vec = x.type
    fn = _declare(b.module, f"llvm.fma.{_suffix(vec)}", vec, [vec, vec, vec])
    return b.call(fn, [x, y, z])


def _mask(lanes: int, valid: int) -> ll.Constant:
    return vector_constant(I1, tuple(int(i < valid) for i in range(lanes)))


def masked_load(b: ll.IRBuilder, vec: ll.VectorType, pointer, valid: int, align: int):
    """Load the first ``valid`` lanes at ``pointer``; the others are zero."""
    mask_type = ll.VectorType(I1, vec.count)
    fn = _declare(b.module, f"llvm.masked.load.{_suffix(vec)}.p0", vec,
                  [PTR, I32, mask_type, vec])
    return b.call(fn, [pointer, ll.Constant(I32, align), _mask(vec.count, valid),
                       ll.Constant(vec, None)])


def masked_store(b: ll.IRBuilder, value, pointer, valid: int, align: int) -> None:
    vec = value.type
    mask_type = ll.VectorType(I1, vec.count)
    fn = _declare(b.module, f"llvm.masked.store.{_suffix(vec)}.p0", VOID,
                  [vec, PTR, I32, mask_type])
    b.call(fn, [value, pointer, ll.Constant(I32, align), _mask(vec.count, valid)])


def _scaled(b: ll.IRBuilder, index, factor: int):
    return index if factor == 1 else b.mul(index, index_constant(factor), flags=_NUW_NSW)


def _splat(b: ll.IRBuilder, scalar, vec: ll.VectorType):
    one = b.insert_element(ll.Constant(vec, None), scalar, ll.Constant(I32, 0))
    zeros = vector_constant(I32, (0,) * vec.count)
    return b.shuffle_vector(one, ll.Constant(vec, None), zeros)


@dataclass(frozen=True)
class PanelLayout:
    """Where the micro-kernel finds its operands: A element (r, p) at
    ``a + r*a_row + p*a_k``, B element (p, j) at ``b + p*b_k + j``. Packed
    panels: ``a_row = 1, a_k = mr``, ``b_k = nr`` (``b_packed``: 64-byte
    aligned, zero-padded); an operand read in place has its own strides."""

    a_row: int
    a_k: int
    b_k: int
    b_packed: bool
    ldc: int


def micro_kernel(module: ll.Module, plan: GemmPlan, rows: int, cols: int,
                 layout: PanelLayout) -> ll.Function:
    """The micro-kernel for a ``rows x cols`` tile (``rows <= mr``, ``cols <= nr``)."""
    dtype = plan.shape.dtype
    name = (f"xlac.gemm.{dtype.name}.{plan.mr}x{plan.nr}.tile{rows}x{cols}"
            f".a{layout.a_row}_{layout.a_k}.b{layout.b_k}{'p' if layout.b_packed else ''}"
            f".c{layout.ldc}")
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = ll.Function(module, ll.FunctionType(VOID, [PTR, PTR, PTR, I64, I1]), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")  # one copy per tile shape, called per tile
    a_panel, b_panel, c, kc, accumulate = fn.args
    for arg, arg_name in zip(fn.args, ["a", "b", "c", "kc", "accumulate"], strict=True):
        arg.name = arg_name
    for arg in (a_panel, b_panel, c):
        arg.add_attribute("noalias")
    # Unrolling the k loop of the main tile was worth ~2% (measured); edge
    # tiles are rare and stay rolled (less code to compile).
    unroll = rows == plan.mr and cols == plan.nr
    _emit_body(ll.IRBuilder(fn.append_basic_block("entry")), plan, rows, cols, layout,
               a_panel, b_panel, c, kc, accumulate, unroll)
    return fn


def _emit_body(b: ll.IRBuilder, plan: GemmPlan, rows: int, cols: int, layout: PanelLayout,
               a_panel, b_panel, c, kc, accumulate, unroll: bool) -> None:
    scalar = value_type(plan.shape.dtype)
    vec = vector_type(plan)
    lanes, item = plan.lanes, plan.itemsize
    nvec = -(-cols // lanes)
    # Touch the C tile early: its lines arrive while the k loop runs.
    prefetch = _declare(b.module, "llvm.prefetch.p0", VOID, [PTR, I32, I32, I32])
    row_ptrs = []
    for r in range(rows):
        row = b.gep(c, [index_constant(r * layout.ldc)], inbounds=True, source_etype=scalar)
        row_ptrs.append(row)
        for line in range(0, cols * item, 64):
            at = b.gep(row, [index_constant(line // item)], inbounds=True, source_etype=scalar)
            b.call(prefetch, [at, ll.Constant(I32, 1), ll.Constant(I32, 3), ll.Constant(I32, 1)])

    entry = b.block
    loop = b.append_basic_block("k")
    b.branch(loop)
    b.position_at_end(loop)
    p = b.phi(I64, name="p")
    p.add_incoming(index_constant(0), entry)
    zero = ll.Constant(vec, None)
    accs = [[b.phi(vec, name=f"acc{r}_{v}") for v in range(nvec)] for r in range(rows)]
    for row in accs:
        for phi in row:
            phi.add_incoming(zero, entry)
    b_row = b.gep(b_panel, [_scaled(b, p, layout.b_k)], inbounds=True, source_etype=scalar)
    b_vecs = []
    for v in range(nvec):
        at = b.gep(b_row, [index_constant(v * lanes)], inbounds=True, source_etype=scalar)
        valid = min(lanes, cols - v * lanes)
        if layout.b_packed or valid == lanes:
            # Packed panels are 64-byte aligned when the arena is, which an
            # ahead-of-time caller may not honour: no alignment is promised
            # (unaligned vector loads of aligned data cost nothing on x86).
            b_vecs.append(b.load(at, typ=vec, align=item))
        else:  # in place: lanes past the last column are not ours to read
            b_vecs.append(masked_load(b, vec, at, valid, item))
    a_row = b.gep(a_panel, [_scaled(b, p, layout.a_k)], inbounds=True, source_etype=scalar)
    updated = []
    for r in range(rows):
        at = b.gep(a_row, [index_constant(r * layout.a_row)], inbounds=True, source_etype=scalar)
        a_val = _splat(b, b.load(at, typ=scalar, align=item), vec)
        updated.append([_fma(b, a_val, b_vecs[v], accs[r][v]) for v in range(nvec)])
    p_next = b.add(p, index_constant(1), flags=_NUW_NSW, name="p.next")
    more = b.icmp_unsigned("<", p_next, kc)
    latch = b.block
    done = b.append_basic_block("store")
    branch = b.cbranch(more, loop, done)
    if not unroll:
        branch.set_metadata("llvm.loop", loop_hints(b.module, vectorize=False, unroll=False))
    p.add_incoming(p_next, latch)
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
                valid = min(lanes, cols - v * lanes)
                at = b.gep(row_ptrs[r], [index_constant(v * lanes)], inbounds=True,
                           source_etype=scalar)
                value = updated[r][v]
                if valid == lanes:
                    if add:
                        value = b.fadd(value, b.load(at, typ=vec, align=item))
                    b.store(value, at, align=item)
                else:
                    if add:
                        value = b.fadd(value, masked_load(b, vec, at, valid, item))
                    masked_store(b, value, at, valid, item)
        b.branch(exit_block)
    b.position_at_end(exit_block)
    b.ret_void()
