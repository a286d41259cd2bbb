"""The blocked, packed GEMM: the loop nest around the micro-kernel, and its threads.

See [GEMM blocking] (gemm_plan.py) for the loop nest, [Packed layout] and
[Transposing packs] (gemm_pack.py) for the panels and [Micro-kernel]
(gemm_kernel.py) for the register tile. A serial product (and each chunk of
a product split by columns or batches) runs ``@<kernel>.gemm``, which
computes the output rows ``[r0, r1)`` and columns ``[c0, c1)`` of batches
``[b0, b1)`` with private packing buffers at ``ws``:

    void gemm(ptr c, ptr a, ptr b, ptr ws, ptr epilogue..., i64 b0, i64 b1,
              i64 r0, i64 r1, i64 c0, i64 c1)

A product split by rows shares its packed blocks between the threads, one
fork-join per (k block, column block) step ([Shared packing] in
gemm_plan.py: ``_emit_shared_rows``). Shares along rows
(columns) are whole micro-tiles, so only the chunk holding the last rows
(columns) meets the edge tile, and every output element is written by exactly
one thread with the same arithmetic as the serial code: results do not
depend on the thread count. An ``Epilogue`` runs on each finished tile of
the last k block (gemm_fusion.py).

NOTE: [Staged tiles]
An epilogue may write its result over a buffer it reads (a donated weight
``W - lr * x^T dz`` written into W: gemm_fusion.py, [Epilogue in place]). The
product must then not be stored into that buffer before the epilogue has read
it, so a ``staged`` epilogue gets each finished micro-tile in a private
``mr x nr`` buffer on the stack of the thread computing it (the micro-kernel
called with a row stride of ``nr``; L1-resident, like C's tile) and reads
W[i, j] before writing the result at [i, j]. Only a plan with one k block
can stage: with several, partial sums accumulate in C across k blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import llvmlite.ir as ll

from compiler.codegen.gemm_kernel import PanelLayout, call_micro_kernel
from compiler.codegen.gemm_pack import counted_loop, if_then, pack_block
from compiler.codegen.errors import LoweringError
from compiler.codegen.gemm_plan import GemmPlan, even_shares
from compiler.codegen.llvm_types import I8, I64, PTR, VOID, index_constant, value_type
from compiler.codegen.parallel import call_parallel, emit_parallel, outline

__all__ = ["Epilogue", "emit_gemm", "can_stage"]

_NUW_NSW = ("nuw", "nsw")


def _const(value: int) -> ll.Constant:
    return index_constant(value)


def _block(b, i, base, size: int, end):
    """Start and extent of block ``i`` of ``size`` in ``[base, end)`` (the last may be short)."""
    start = b.add(base, b.mul(i, _const(size), flags=_NUW_NSW), flags=_NUW_NSW)
    return start, _umin(b, _const(size), b.sub(end, start))


def _umin(b: ll.IRBuilder, x, y):
    return b.select(b.icmp_unsigned("<", x, y), x, y)


def _ceil_div(b: ll.IRBuilder, x, step: int):
    return b.udiv(b.add(x, _const(step - 1), flags=_NUW_NSW), _const(step))


def _gep(b, pointer, offset, etype):
    return b.gep(pointer, [offset], inbounds=True, source_etype=etype)


@dataclass(frozen=True)
class Epilogue:
    """Elementwise work applied to each finished tile of C, while it is in L1.

    ``pointers`` are values of the calling kernel (buffers the epilogue reads
    or writes, never C itself); they reach the GEMM's functions as extra
    arguments. ``apply(b, c, pointers, batch, row, col, rows, cols, tile=None)``
    emits the work for rows ``[row, row+rows)`` and columns ``[col, col+cols)``
    of batch ``batch`` (i64 values), given C and ``pointers`` as seen inside
    the function being built; ``tile`` is the staged product tile, if any.
    """

    pointers: Sequence[ll.Value]
    apply: Callable[..., None]
    # True: the product tile is not stored into C but into a private tile,
    # passed to ``apply`` as ``tile=`` (rows of ``nr``): [Staged tiles].
    staged: bool = False


def emit_gemm(b: ll.IRBuilder, plan: GemmPlan, name: str, c: ll.Value, a: ll.Value,
              bmat: ll.Value, scratch: ll.Value, epilogue: Epilogue | None = None) -> None:
    """C = A @ B for every batch, at the builder's position (see the module docstring);
    ``epilogue`` runs on every tile of C once its last k block is stored."""
    extra = list(epilogue.pointers) if epilogue is not None else []
    if epilogue is not None and epilogue.staged and not can_stage(plan):
        raise LoweringError(f"a staged GEMM epilogue needs one k block, {plan.shape} has "
                            f"{-(-plan.shape.k // plan.kc)} (kc={plan.kc})")
    gemm = _define_gemm(b.module, plan, f"{name}.gemm", epilogue) if not plan.shared else None
    shape = plan.shape
    if scratch is None:  # nothing is packed (both operands are read in place)
        scratch = ll.Constant(PTR, None)
    if plan.threads == 1:
        b.call(gemm, [c, a, bmat, scratch, *extra, _const(0), _const(shape.batch), _const(0),
                      _const(shape.m), _const(0), _const(shape.n)])
        return
    if plan.shared:
        _emit_shared_rows(b, plan, name, c, a, bmat, scratch, epilogue)
        return

    totals = {"batch": (shape.batch, 1), "rows": (shape.m, plan.mr), "cols": (shape.n, plan.nr)}

    def body(inner: ll.IRBuilder, values, chunk, thread) -> None:
        c_in, a_in, b_in, ws_in, *extra_in = values
        bounds = {}
        for axis, (total, unit) in totals.items():
            if axis != plan.split:
                bounds[axis] = (_const(0), _const(total))
                continue
            step = plan.chunk_units * unit
            lo = inner.mul(chunk, _const(step))
            bounds[axis] = (lo, _umin(inner, inner.add(lo, _const(step)), _const(total)))
        ws = _gep(inner, ws_in, inner.mul(thread, _const(plan.slot_bytes)), I8)
        inner.call(gemm, [c_in, a_in, b_in, ws, *extra_in, *bounds["batch"], *bounds["rows"],
                          *bounds["cols"]])

    emit_parallel(b, f"{name}.chunk", [c, a, bmat, scratch, *extra], plan.chunks, plan.threads,
                  body)


def can_stage(plan: GemmPlan) -> bool:
    """Whether ``plan`` may stage its tiles ([Staged tiles]): one k block."""
    return plan.kc >= plan.shape.k


def _stage(b: ll.IRBuilder, plan: GemmPlan, epilogue: Epilogue | None):
    """This thread's staging tile (a static stack slot), or None if not staged."""
    if epilogue is None or not epilogue.staged:
        return None
    with b.goto_entry_block():
        tile = b.alloca(ll.ArrayType(value_type(plan.shape.dtype), plan.mr * plan.nr),
                        name="stage")
    tile.align = 64
    tile.type = PTR  # llvmlite types an alloca as a typed pointer; the module is opaque
    return tile


def _strides(plan: GemmPlan) -> tuple[int, int, int, int]:
    """Element strides of A as [m, k] and of B as [k, n], whatever their storage."""
    shape = plan.shape
    a_stride_m, a_stride_k = (1, shape.m) if shape.trans_a else (shape.k, 1)
    b_stride_k, b_stride_n = (1, shape.k) if shape.trans_b else (shape.n, 1)
    return a_stride_m, a_stride_k, b_stride_k, b_stride_n


# A chunk table entry: kind << 40 | lo << 20 | hi (tile rows or B panels [lo, hi)).
_TILES, _PACK = 0, 1
_FIELD_BITS = 20


def _schedule(plan: GemmPlan) -> list[tuple[int, int, int]]:
    """The chunks of one shared step: (kind, lo, hi), see [Shared packing]."""
    tiles = plan.row_shares
    packs = []
    if plan.pack_b and plan.shared_steps > 1:
        packs = even_shares(-(-plan.shared_cols // plan.nr), 2 * plan.threads)
    # The next step's packing goes in the middle: done while tile chunks remain
    # to even out the finishing times.
    entries, half = [], tiles[-1][1] / 2
    for lo, hi in tiles:
        entries.append((_TILES, lo, hi))
        if packs and hi >= half:
            entries += [(_PACK, p_lo, p_hi) for p_lo, p_hi in packs]
            packs = []
    if max(hi for _, _, hi in entries) >= 1 << _FIELD_BITS:
        raise LoweringError(f"GEMM too large for its chunk table: {plan.shape}")
    return entries


def _schedule_table(module: ll.Module, name: str, entries) -> ll.Constant:
    words = [kind << (2 * _FIELD_BITS) | lo << _FIELD_BITS | hi for kind, lo, hi in entries]
    table_type = ll.ArrayType(I64, len(words))
    table = ll.GlobalVariable(module, table_type, f"{name}.schedule")
    table.global_constant = True
    table.linkage = "internal"
    table.initializer = ll.Constant(table_type, words)
    return table.bitcast(PTR)  # captured by chunk bodies as a plain pointer


def _emit_shared_rows(b: ll.IRBuilder, plan: GemmPlan, name: str, c, a, bmat, scratch,
                      epilogue: Epilogue | None) -> None:
    """The parallel GEMM split by rows, packed blocks shared ([Shared packing])."""
    shape = plan.shape
    m, n, k, mr, nr = shape.m, shape.n, shape.k, plan.mr, plan.nr
    etype = value_type(shape.dtype)
    a_stride_m, a_stride_k, b_stride_k, b_stride_n = _strides(plan)
    extra = list(epilogue.pointers) if epilogue is not None else []
    team, steps = plan.threads, plan.shared_steps
    cols = plan.shared_cols
    col_blocks = -(-n // cols)
    null = ll.Constant(PTR, None)
    a_pack = scratch if plan.pack_a else null
    b_packs = _gep(b, scratch, _const(plan.shared_a_bytes), I8) if plan.pack_b else null

    def step_of(inner, s):
        """(pc, kcur, jb, nb) of step ``s``: k blocks outside, column blocks inside."""
        pc = inner.mul(inner.udiv(s, _const(col_blocks)), _const(plan.kc))
        jb = inner.mul(inner.urem(s, _const(col_blocks)), _const(cols))
        kcur = _umin(inner, _const(plan.kc), inner.sub(_const(k), pc))
        nb = _umin(inner, _const(cols), inner.sub(_const(n), jb))
        return pc, kcur, jb, nb

    def b_buffer(inner, b_packs_in, s):
        if steps == 1:
            return b_packs_in
        offset = inner.mul(inner.urem(s, _const(2)), _const(plan.shared_b_bytes))
        return _gep(inner, b_packs_in, offset, I8)

    def pack_b(inner, b_b, b_packs_in, s, lo, hi):
        """B panels [lo, hi) of step ``s`` (those within its column block)."""
        pc, kcur, jb, nb = step_of(inner, s)
        first = inner.mul(lo, _const(nr))
        last = _umin(inner, inner.mul(hi, _const(nr)), nb)
        with if_then(inner, inner.icmp_unsigned("<", first, last), name="some"):
            src = _gep(inner, b_b, inner.add(inner.mul(pc, _const(b_stride_k)),
                                             inner.mul(inner.add(jb, first),
                                                       _const(b_stride_n))), etype)
            dst = _gep(inner, b_buffer(inner, b_packs_in, s), inner.mul(first, kcur), etype)
            pack_block(inner, etype=etype, dst=dst, src=src, extent=inner.sub(last, first),
                       depth=kcur, width=nr, edge=n % nr, stride_t=b_stride_n,
                       stride_k=b_stride_k, pad=True, name="packb", lanes=plan.lanes)

    def tiles(inner, c_b, a_b, ap, b_b, b_packs_in, s, batch, c_base, extra_in, lo, hi):
        """Row tiles [lo, hi) of step ``s``; their A rows are packed here, by the
        chunk that uses them (in the step of the first column block)."""
        pc, kcur, jb, nb = step_of(inner, s)
        row = inner.mul(lo, _const(mr))
        mcur = inner.sub(_umin(inner, inner.mul(hi, _const(mr)), _const(m)), row)
        a_src = _gep(inner, a_b, inner.add(inner.mul(row, _const(a_stride_m)),
                                           inner.mul(pc, _const(a_stride_k))), etype)
        if plan.pack_a:
            a_block = _gep(inner, ap, inner.mul(row, kcur), etype)
            with if_then(inner, inner.icmp_unsigned("==", jb, _const(0)), name="a"):
                pack_block(inner, etype=etype, dst=a_block, src=a_src, extent=mcur,
                           depth=kcur, width=mr, edge=m % mr, stride_t=a_stride_m,
                           stride_k=a_stride_k, pad=False, name="packa", lanes=plan.lanes)
        else:
            a_block = a_src
        accumulate = inner.icmp_unsigned("!=", pc, _const(0))
        last = inner.icmp_unsigned("==", inner.add(pc, kcur), _const(k))
        finish = None
        if epilogue is not None:
            def finish(fb, r, col, rows, cols_, tile):
                with if_then(fb, last, name="epilogue"):
                    epilogue.apply(fb, c_base, extra_in, batch, r, col, rows, cols_, tile=tile)
        stage = _stage(inner, plan, epilogue)
        bp = b_buffer(inner, b_packs_in, s) if plan.pack_b else None
        # L2-sized column blocks of the shared B block.
        with counted_loop(inner, _ceil_div(inner, nb, plan.nc), name="jc") as jc_i:
            offset = inner.mul(jc_i, _const(plan.nc))
            ncur = _umin(inner, _const(plan.nc), inner.sub(nb, offset))
            col = inner.add(jb, offset)
            if plan.pack_b:
                b_block = _gep(inner, bp, inner.mul(offset, kcur), etype)
            else:
                b_block = _gep(inner, b_b, inner.add(inner.mul(pc, _const(b_stride_k)), col),
                               etype)
            _emit_tiles(inner, plan, etype, c_b, a_block, b_block, row, mcur, col, ncur, kcur,
                        accumulate, finish, stage)

    entries = _schedule(plan)
    first_packs = [(_PACK, lo, hi) for lo, hi in even_shares(-(-min(cols, n) // nr), 2 * team)]
    field = _const((1 << _FIELD_BITS) - 1)

    def step_body(inner, values, chunk, thread) -> None:
        """Chunk ``chunk`` of ``table``: row tiles of step ``s`` or B panels of step
        ``s + 1`` (the first fork-join packs step 0's with ``s = -1``)."""
        table, c_b, a_b, ap, b_b, b_packs_in, s, batch, c_base, *extra_in = values
        word = inner.load(_gep(inner, table, chunk, I64), typ=I64, align=8)
        kind = inner.lshr(word, _const(2 * _FIELD_BITS))
        lo = inner.and_(inner.lshr(word, _const(_FIELD_BITS)), field)
        hi = inner.and_(word, field)
        with if_then(inner, inner.icmp_unsigned("==", kind, _const(_TILES)), name="tiles"):
            tiles(inner, c_b, a_b, ap, b_b, b_packs_in, s, batch, c_base, extra_in, lo, hi)
        if plan.pack_b:
            next_s = inner.add(s, _const(1))
            is_pack = inner.icmp_unsigned("==", kind, _const(_PACK))
            more = inner.icmp_unsigned("<", next_s, _const(steps))
            with if_then(inner, inner.and_(is_pack, more), name="pack"):
                pack_b(inner, b_b, b_packs_in, next_s, lo, hi)

    tables = [_schedule_table(b.module, f"{name}.{kind}", rows)
              for kind, rows in (("steps", entries), ("first", first_packs))]
    captured = [tables[0], c, a, a_pack, bmat, b_packs, _const(0), _const(0), c, *extra]
    body = outline(b.module, f"{name}.step", [v.type for v in captured], step_body)
    with counted_loop(b, _const(shape.batch), name="batch") as batch:
        c_b = _gep(b, c, b.mul(batch, _const(m * n)), etype)
        a_b = _gep(b, a, b.mul(batch, _const(m * k)), etype)
        b_b = _gep(b, bmat, b.mul(batch, _const(k * n)), etype)
        operands = [c_b, a_b, a_pack, b_b, b_packs]
        if plan.pack_b:
            call_parallel(b, body, [tables[1], *operands, _const(-1), batch, c, *extra],
                          len(first_packs), team)
        with counted_loop(b, _const(steps), name="step") as s:
            call_parallel(b, body, [tables[0], *operands, s, batch, c, *extra], len(entries),
                          team)


def _define_gemm(module: ll.Module, plan: GemmPlan, name: str,
                 epilogue: Epilogue | None) -> ll.Function:
    n_extra = len(epilogue.pointers) if epilogue is not None else 0
    fn = ll.Function(module, ll.FunctionType(VOID, [PTR] * (4 + n_extra) + [I64] * 6), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    names = ["c", "a", "b", "ws"] + [f"e{i}" for i in range(n_extra)] + \
        ["b0", "b1", "r0", "r1", "c0", "c1"]
    for arg, arg_name in zip(fn.args, names, strict=True):
        arg.name = arg_name
    for arg in fn.args[:4 + n_extra]:
        arg.add_attribute("noalias")
    b = ll.IRBuilder(fn.append_basic_block("entry"))
    pointers = list(fn.args[:4 + n_extra])
    ranges = list(fn.args[4 + n_extra:])
    _emit_gemm_body(b, plan, *pointers[:4], *ranges, epilogue=epilogue,
                    extra=pointers[4:])
    b.ret_void()
    return fn


def _emit_gemm_body(b: ll.IRBuilder, plan: GemmPlan, c, a, bmat, ws, b0, b1, r0, r1, c0, c1, *,
                    epilogue: Epilogue | None, extra: list):
    shape = plan.shape
    m, n, k = shape.m, shape.n, shape.k
    etype = value_type(shape.dtype)
    a_stride_m, a_stride_k, b_stride_k, b_stride_n = _strides(plan)
    a_pack = ws
    b_pack = _gep(b, ws, _const(-(-plan.a_block_elems * plan.itemsize // 64) * 64), I8)

    stage = _stage(b, plan, epilogue)
    nonempty = b.and_(b.and_(b.icmp_unsigned("<", b0, b1), b.icmp_unsigned("<", r0, r1)),
                      b.icmp_unsigned("<", c0, c1))
    with if_then(b, nonempty, name="work"):
        with counted_loop(b, b.sub(b1, b0), name="batch") as i:
            batch = b.add(b0, i, flags=_NUW_NSW)
            c_b = _gep(b, c, b.mul(batch, _const(m * n), flags=_NUW_NSW), etype)
            a_b = _gep(b, a, b.mul(batch, _const(m * k), flags=_NUW_NSW), etype)
            b_b = _gep(b, bmat, b.mul(batch, _const(k * n), flags=_NUW_NSW), etype)
            with counted_loop(b, _ceil_div(b, b.sub(r1, r0), plan.mc), name="ic") as ic_i:
                ic, mcur = _block(b, ic_i, r0, plan.mc, r1)
                with counted_loop(b, _const(-(-k // plan.kc)), name="pc") as pc_i:
                    pc = b.mul(pc_i, _const(plan.kc), flags=_NUW_NSW)
                    kcur = _umin(b, _const(plan.kc), b.sub(_const(k), pc))
                    a_src = _gep(b, a_b, b.add(b.mul(ic, _const(a_stride_m)),
                                               b.mul(pc, _const(a_stride_k))), etype)
                    if plan.pack_a:
                        pack_block(b, etype=etype, dst=a_pack, src=a_src, extent=mcur,
                                   depth=kcur, width=plan.mr, edge=m % plan.mr,
                                   stride_t=a_stride_m, stride_k=a_stride_k, pad=False,
                                   name="packa", lanes=plan.lanes)
                        a_block = a_pack
                    else:
                        a_block = a_src
                    accumulate = b.icmp_unsigned("!=", pc, _const(0))
                    last = b.icmp_unsigned("==", pc_i, _const(-(-k // plan.kc) - 1))
                    finish = None
                    if epilogue is not None:
                        def finish(b, row, col, rows, cols, tile, batch=batch, last=last):
                            with if_then(b, last, name="epilogue"):
                                epilogue.apply(b, c, extra, batch, row, col, rows, cols,
                                               tile=tile)
                    with counted_loop(b, _ceil_div(b, b.sub(c1, c0), plan.nc), name="jc") as jc_i:
                        jc, ncur = _block(b, jc_i, c0, plan.nc, c1)
                        b_src = _gep(b, b_b, b.add(b.mul(pc, _const(b_stride_k)),
                                                   b.mul(jc, _const(b_stride_n))), etype)
                        if plan.pack_b:
                            pack_block(b, etype=etype, dst=b_pack, src=b_src, extent=ncur,
                                       depth=kcur, width=plan.nr, edge=n % plan.nr,
                                       stride_t=b_stride_n, stride_k=b_stride_k, pad=True,
                                       name="packb", lanes=plan.lanes)
                            b_block = b_pack
                        else:
                            b_block = b_src
                        _emit_tiles(b, plan, etype, c_b, a_block, b_block, ic, mcur, jc, ncur,
                                    kcur, accumulate, finish, stage)


def _emit_tiles(b, plan: GemmPlan, etype, c_b, a_block, b_block, ic, mcur, jc, ncur, kcur,
                accumulate, finish, stage=None) -> None:
    """Every micro-tile of the blocks: rows [ic, ic+mcur), columns [jc, jc+ncur);
    ``finish(b, row, col, rows, cols, tile)`` (if any) runs after each tile is
    stored: into C, or into ``stage`` (rows of ``nr``, passed as ``tile``)."""
    shape = plan.shape
    m, n = shape.m, shape.n
    module = b.module
    row_edge, col_edge = m % plan.mr, n % plan.nr
    a_stride_m, a_stride_k = (1, m) if shape.trans_a else (shape.k, 1)
    if plan.pack_a:
        a_panel_step = b.mul(kcur, _const(plan.mr), flags=_NUW_NSW)
        a_row, a_k = 1, plan.mr
    else:
        a_panel_step = _const(plan.mr * a_stride_m)
        a_row, a_k = a_stride_m, a_stride_k
    if plan.pack_b:
        b_panel_step = b.mul(kcur, _const(plan.nr), flags=_NUW_NSW)
        b_k = plan.nr
    else:
        b_panel_step = _const(plan.nr)
        b_k = n
    layout = PanelLayout(a_row, a_k, b_k, n if stage is None else plan.nr)
    with counted_loop(b, _ceil_div(b, mcur, plan.mr), name="ir") as ir_i:
        row = b.add(ic, b.mul(ir_i, _const(plan.mr), flags=_NUW_NSW), flags=_NUW_NSW)
        a_panel = _gep(b, a_block, b.mul(ir_i, a_panel_step, flags=_NUW_NSW), etype)
        full_rows = b.icmp_unsigned("<=", b.add(row, _const(plan.mr)), _const(m))
        with counted_loop(b, _ceil_div(b, ncur, plan.nr), name="jr") as jr_i:
            col = b.add(jc, b.mul(jr_i, _const(plan.nr), flags=_NUW_NSW), flags=_NUW_NSW)
            b_panel = _gep(b, b_block, b.mul(jr_i, b_panel_step, flags=_NUW_NSW), etype)
            c_tile = stage if stage is not None else \
                _gep(b, c_b, b.add(b.mul(row, _const(n), flags=_NUW_NSW), col), etype)
            args = [a_panel, b_panel, c_tile, kcur, accumulate]
            full_cols = b.icmp_unsigned("<=", b.add(col, _const(plan.nr)), _const(n))
            # No full tiles along a dim shorter than the tile: no kernel for them
            # (it would never run, yet cost compile time).
            row_cases = ([(plan.mr, full_rows)] if m >= plan.mr else []) + \
                ([(row_edge, None)] if row_edge else [])
            col_cases = ([(plan.nr, full_cols)] if n >= plan.nr else []) + \
                ([(col_edge, None)] if col_edge else [])
            _dispatch(b, module, plan, layout, row_cases, col_cases, args)
            if finish is not None:
                finish(b, row, col, _umin(b, _const(plan.mr), b.sub(_const(m), row)),
                       _umin(b, _const(plan.nr), b.sub(_const(n), col)), stage)


def _dispatch(b, module, plan, layout, row_cases, col_cases, args) -> None:
    """Call the micro-kernel of the tile's (rows, cols); the last case of each is the fallback."""
    (rows, rows_test), *rest_rows = row_cases
    if rest_rows:
        then = b.append_basic_block("tile.rows")
        other = b.append_basic_block("tile.rows.edge")
        after = b.append_basic_block("tile.rows.end")
        b.cbranch(rows_test, then, other)
        b.position_at_end(then)
        _dispatch(b, module, plan, layout, [(rows, None)], col_cases, args)
        b.branch(after)
        b.position_at_end(other)
        _dispatch(b, module, plan, layout, rest_rows, col_cases, args)
        b.branch(after)
        b.position_at_end(after)
        return
    (cols, cols_test), *rest_cols = col_cases
    if rest_cols:
        then = b.append_basic_block("tile.cols")
        other = b.append_basic_block("tile.cols.edge")
        after = b.append_basic_block("tile.cols.end")
        b.cbranch(cols_test, then, other)
        b.position_at_end(then)
        call_micro_kernel(b, plan, rows, cols, layout, *args)
        b.branch(after)
        b.position_at_end(other)
        _dispatch(b, module, plan, layout, [(rows, None)], rest_cols, args)
        b.branch(after)
        b.position_at_end(after)
        return
    call_micro_kernel(b, plan, rows, cols, layout, *args)
