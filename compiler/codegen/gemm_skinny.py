"""Skinny products: few columns (n <= one host vector), long rows of A.

NOTE: [Skinny GEMM]
With n this small the panel micro-kernel (gemm_kernel.py) reads A in place,
``mr`` rows at once along k: with a row stride of a few KiB those rows fall
into the same L1 sets and every broadcast load misses (measured: 18 GFLOP/s
at 4096x2048x10, half of numpy). Here each output is instead a dot product
along k, vectorised along k:

    for p in 0..k step lanes:          acc[r][j] += A[row r, p:p+lanes] * Bt[j, p:p+lanes]
    C[row r, j] = sum of the lanes of acc[r][j]

A is read in place, one contiguous stream per row (R rows at a time); B is
packed once, transposed, into ``Bt`` (n rows of ``ldt`` elements, the row
stride padded by one cache line so the rows do not share L1 sets, zeros past
k). Up to 12 columns form one group, more two groups (A is then streamed
twice, but each B load serves at least 2 rows: 512x4096x16 ran at 97
GFLOP/s against 41 with one group of 16); rows go in groups of R = 24 // J
(at most 4): R*J accumulators, R + J vector loads per R*J FMAs. The last k step
loads A under a lane mask. Each output sums its k products in lanes (k
ascending per lane) then across lanes: a different order than the panel
kernel, within the same bound (NOTE: [Dot tolerance] in dot.py), and the
same for any thread count: threads take chunks of 12 rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ll

from compiler.codegen.intrinsics import declare, intrinsic, masked_load, type_suffix
from compiler.codegen.gemm_pack import counted_loop, if_then, loop_hints, pack_block
from compiler.codegen.gemm_plan import GemmShape
from compiler.codegen.llvm_types import I64, PTR, VOID, index_constant, value_type
from compiler.codegen.parallel import emit_parallel

__all__ = ["SkinnyPlan", "plan_skinny", "emit_skinny"]

_NUW_NSW = ("nuw", "nsw")
_ACCUMULATORS = 24
_ONE_GROUP = 12
_ROW_UNIT = 12              # chunk rows: a multiple of every group height (1..4)
_MIN_K = 1024               # below, the panel kernel's A rows stay in L1 (measured)
_MIN_PARALLEL_FMAS = 96 * 96 * 96
_CHUNKS_PER_THREAD = 4


@dataclass(frozen=True)
class SkinnyPlan:
    shape: GemmShape
    lanes: int
    threads: int
    chunks: int
    chunk_rows: int       # a multiple of _ROW_UNIT

    @property
    def ldt(self) -> int:
        """Row stride of the packed Bt, in elements."""
        lanes = self.lanes
        return -(-self.shape.k // lanes) * lanes + lanes

    @property
    def scratch_bytes(self) -> int:
        return -(-self.shape.n * self.ldt * self.shape.dtype.itemsize // 64) * 64

    def column_groups(self) -> list[tuple[int, int, int]]:
        """(first column, columns J, rows R) of each column group."""
        groups, j0 = [], 0
        n = self.shape.n
        # Up to 12 columns in one group (two rows share each B load); more in
        # two groups of at least 2 rows, A streamed twice.
        width = n if n <= _ONE_GROUP else -(-n // 2)
        while j0 < n:
            cols = min(width, n - j0)
            groups.append((j0, cols, max(1, min(4, _ACCUMULATORS // cols))))
            j0 += cols
        return groups


def plan_skinny(shape: GemmShape, *, vector_bits: int, max_threads: int) -> SkinnyPlan | None:
    """The skinny plan of ``shape``, or None when the panel kernel suits it better."""
    lanes = vector_bits // (8 * shape.dtype.itemsize)
    if (shape.n > lanes or shape.trans_a or shape.batch != 1 or shape.k < _MIN_K
            or vector_bits < 256):
        return None
    units = -(-shape.m // _ROW_UNIT)
    threads, chunks, per = 1, 1, units
    if max_threads > 1 and shape.fmas >= _MIN_PARALLEL_FMAS and units >= 2:
        wanted = min(units, _CHUNKS_PER_THREAD * max_threads)
        per = -(-units // wanted)
        chunks = -(-units // per)
        threads = min(max_threads, chunks)
    return SkinnyPlan(shape, lanes, threads, chunks, per * _ROW_UNIT)


def _gep(b, pointer, offset, etype):
    return b.gep(pointer, [offset], inbounds=True, source_etype=etype)


def _const(value: int) -> ll.Constant:
    return index_constant(value)


def emit_skinny(b: ll.IRBuilder, plan: SkinnyPlan, name: str, c, a, bmat, scratch,
                epilogue=None) -> None:
    """C = A @ B by dot products along k (see [Skinny GEMM])."""
    shape = plan.shape
    m, n, k = shape.m, shape.n, shape.k
    etype = value_type(shape.dtype)
    # Bt[j, p] = B[p, j]: as a "panel" of width 1 per column, rows of ldt.
    b_stride_k, b_stride_n = (1, k) if shape.trans_b else (n, 1)
    with counted_loop(b, _const(n), name="bt") as j:
        src = _gep(b, bmat, b.mul(j, _const(b_stride_n)), etype)
        dst = _gep(b, scratch, b.mul(j, _const(plan.ldt)), etype)
        pack_block(b, etype=etype, dst=dst, src=src, extent=_const(1),
                   depth=_const(k), width=1, edge=0, stride_t=1, stride_k=b_stride_k,
                   pad=False, name="bt")
        tail = plan.ldt - k
        with counted_loop(b, _const(tail), name="bt.zero") as z:
            b.store(ll.Constant(etype, 0.0), _gep(b, dst, b.add(z, _const(k)), etype))
    extra = list(epilogue.pointers) if epilogue is not None else []

    def rows(inner, c_in, a_in, bt_in, extra_in, lo, hi, last_chunk: bool) -> None:
        count = inner.sub(hi, lo)
        for j0, cols, group in plan.column_groups():
            full = inner.udiv(count, _const(group))
            kernel = _micro_kernel(inner.module, plan, group, cols)
            with if_then(inner, inner.icmp_unsigned("!=", full, _const(0)), name="groups"):
                with counted_loop(inner, full, name="rg") as g:
                    row = inner.add(lo, inner.mul(g, _const(group)))
                    _call(inner, kernel, plan, etype, c_in, a_in, bt_in, row, j0)
                    if epilogue is not None:
                        epilogue.apply(inner, c_in, extra_in, _const(0), row, _const(j0),
                                       _const(group), _const(cols))
            edge = m % group
            if edge and last_chunk:
                row = inner.sub(hi, _const(edge))
                _call(inner, _micro_kernel(inner.module, plan, edge, cols), plan, etype,
                      c_in, a_in, bt_in, row, j0)
                if epilogue is not None:
                    epilogue.apply(inner, c_in, extra_in, _const(0), row, _const(j0),
                                   _const(edge), _const(cols))

    if plan.threads == 1:
        rows(b, c, a, scratch, extra, _const(0), _const(m), True)
        return

    def body(inner, values, chunk, thread) -> None:
        c_in, a_in, bt_in, *extra_in = values
        lo = inner.mul(chunk, _const(plan.chunk_rows))
        is_last = inner.icmp_unsigned("==", chunk, _const(plan.chunks - 1))
        with inner.if_else(is_last) as (then, otherwise):
            with then:
                rows(inner, c_in, a_in, bt_in, extra_in, lo, _const(m), True)
            with otherwise:
                rows(inner, c_in, a_in, bt_in, extra_in, lo,
                     inner.add(lo, _const(plan.chunk_rows)), False)

    emit_parallel(b, f"{name}.skinny", [c, a, scratch, *extra], plan.chunks, plan.threads, body)


def _call(b, kernel, plan, etype, c, a, bt, row, j0) -> None:
    k, n = plan.shape.k, plan.shape.n
    a_rows = _gep(b, a, b.mul(row, _const(k)), etype)
    bt_cols = _gep(b, bt, _const(j0 * plan.ldt), etype)
    c_tile = _gep(b, c, b.add(b.mul(row, _const(n)), _const(j0)), etype)
    b.call(kernel, [a_rows, bt_cols, c_tile])


def _micro_kernel(module: ll.Module, plan: SkinnyPlan, rows: int, cols: int) -> ll.Function:
    """``void(ptr a, ptr bt, ptr c)``: C[r, j] = A[r, :] . Bt[j, :] for r < rows, j < cols."""
    shape = plan.shape
    name = (f"xlac.skinny.{shape.dtype.name}.{rows}x{cols}.k{shape.k}.n{shape.n}"
            f".t{plan.ldt}")
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = ll.Function(module, ll.FunctionType(VOID, [PTR, PTR, PTR]), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")
    a, bt, c = fn.args
    for arg, arg_name in zip(fn.args, ["a", "bt", "c"], strict=True):
        arg.name = arg_name
        arg.add_attribute("noalias")
    b = ll.IRBuilder(fn.append_basic_block("entry"))
    etype = value_type(shape.dtype)
    lanes, item, k = plan.lanes, shape.dtype.itemsize, shape.k
    vec = ll.VectorType(etype, lanes)
    fma = intrinsic(module, "llvm.fma", vec, 3)
    zero = ll.Constant(vec, None)
    steps, tail = divmod(k, lanes)

    def step(b, p, accs, masked: bool):
        a_vecs = []
        for r in range(rows):
            at = _gep(b, a, b.add(p, _const(r * k)), etype)
            a_vecs.append(masked_load(b, vec, at, tail, item) if masked
                          else b.load(at, typ=vec, align=item))
        new = []
        for j in range(cols):
            bj = b.load(_gep(b, bt, b.add(p, _const(j * plan.ldt)), etype), typ=vec, align=item)
            new.append([b.call(fma, [a_vecs[r], bj, accs[r][j]]) for r in range(rows)])
        return [[new[j][r] for j in range(cols)] for r in range(rows)]

    accs = [[zero] * cols for _ in range(rows)]
    if steps:
        entry = b.block
        loop = b.append_basic_block("k")
        b.branch(loop)
        b.position_at_end(loop)
        p = b.phi(I64, name="p")
        p.add_incoming(_const(0), entry)
        phis = [[b.phi(vec) for _ in range(cols)] for _ in range(rows)]
        for row in phis:
            for phi in row:
                phi.add_incoming(zero, entry)
        updated = step(b, b.mul(p, _const(lanes), flags=_NUW_NSW), phis, masked=False)
        p_next = b.add(p, _const(1), flags=_NUW_NSW)
        latch = b.block
        done = b.append_basic_block("k.done")
        branch = b.cbranch(b.icmp_unsigned("<", p_next, _const(steps)), loop, done)
        branch.set_metadata("llvm.loop", loop_hints(module, vectorize=False, unroll=True))
        p.add_incoming(p_next, latch)
        for row, new_row in zip(phis, updated, strict=True):
            for phi, value in zip(row, new_row, strict=True):
                phi.add_incoming(value, latch)
        b.position_at_end(done)
        accs = updated
    if tail:
        accs = step(b, _const(steps * lanes), accs, masked=True)
    reduce = declare(module, f"llvm.vector.reduce.fadd.{type_suffix(vec)}", etype,
                     [etype, vec])
    for r in range(rows):
        for j in range(cols):
            total = b.call(reduce, [ll.Constant(etype, -0.0), accs[r][j]], fastmath=("reassoc",))
            b.store(total, _gep(b, c, _const(r * shape.n + j), etype), align=item)
    b.ret_void()
    return fn
