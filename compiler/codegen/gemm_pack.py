"""Packing GEMM operands into micro-panels, and the runtime-bounded loops of the GEMM.

NOTE: [Packed layout]
A block of an operand, ``extent`` elements along the tile dim (rows of A,
columns of B) by ``depth`` along k, is copied into consecutive panels of
``width`` (mr or nr): panel q holds elements ``t = q*width + r`` as
``dst[q*width*depth + p*width + r]``, so the micro-kernel reads each k step's
``width`` elements contiguously. The source element ``(t, p)`` lives at
``src + t*stride_t + p*stride_k``; a transposed operand only swaps the
strides, so transposes are packed, never materialised. Every panel but the
last of the whole operand is full; the last holds ``edge = total % width``
elements and, with ``pad``, zeros after them (B panels: the micro-kernel
loads whole vectors).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import llvmlite.ir as ll

from compiler.codegen.intrinsics import masked_load, masked_store, splat
from compiler.codegen.library import library_function
from compiler.codegen.llvm_types import I64, PTR, index_constant, vector_constant

__all__ = ["counted_loop", "if_then", "loop_hints", "pack_block", "copy_packer",
           "transposing_copy_packer", "transposing_packer"]

_NUW_NSW = ("nuw", "nsw")


def loop_hints(module: ll.Module, vectorize: bool, unroll: bool, width: int = 0):
    """Loop metadata ``!{self, hints...}`` turning off the vectoriser and/or the
    unroller; with ``width``, vectorise ``width`` lanes wide, tail folded."""
    hints = []
    if not vectorize:
        hints.append(module.add_metadata([
            ll.MetaDataString(module, "llvm.loop.vectorize.enable"),
            ll.Constant(ll.IntType(1), 0)]))
    elif width:
        # One masked vector loop: no scalar remainder, no interleaved copies
        # and no vectorised epilogue (each costs compile time, and a loop of a
        # tile's row runs at most a few vectors).
        for key, value in (("llvm.loop.vectorize.enable", ll.Constant(ll.IntType(1), 1)),
                           ("llvm.loop.vectorize.width", ll.Constant(ll.IntType(32), width)),
                           ("llvm.loop.interleave.count", ll.Constant(ll.IntType(32), 1)),
                           ("llvm.loop.vectorize.predicate.enable",
                            ll.Constant(ll.IntType(1), 1))):
            hints.append(module.add_metadata([ll.MetaDataString(module, key), value]))
    if not unroll:
        hints.append(module.add_metadata([ll.MetaDataString(module, "llvm.loop.unroll.disable")]))
    node = module.add_metadata([None, *hints])  # cached: one node per set of hints
    if node.operands[0] is not node:  # new: make it refer to itself, as loop IDs do
        node.operands = (node, *hints)
    return node


@contextlib.contextmanager
def counted_loop(b: ll.IRBuilder, count: ll.Value, *, name: str, vectorize: bool = False,
                 unroll: bool = False, width: int = 0) -> Iterator[ll.Value]:
    """``for i in range(count)`` for a runtime (or constant) ``count >= 1``.

    The GEMM's loops are scheduled by hand (the vector code is explicit), so
    LLVM's vectoriser and unroller stay off them unless asked: they would only
    add code and compile time (scatters, epilogues, unrolled driver loops)."""
    if isinstance(count, ll.Constant) and count.constant == 1:
        yield index_constant(0)
        return
    pre = b.block
    body = b.append_basic_block(f"{name}.loop")
    b.branch(body)
    b.position_at_end(body)
    index = b.phi(I64, name=name)
    index.add_incoming(index_constant(0), pre)
    yield index
    next_index = b.add(index, index_constant(1), flags=_NUW_NSW, name=f"{name}.next")
    more = b.icmp_unsigned("<", next_index, count)
    latch = b.block
    exit_block = b.append_basic_block(f"{name}.exit")
    branch = b.cbranch(more, body, exit_block)
    if not (vectorize and unroll) or width:
        branch.set_metadata("llvm.loop", loop_hints(b.module, vectorize, unroll, width))
    index.add_incoming(next_index, latch)
    b.position_at_end(exit_block)


@contextlib.contextmanager
def if_then(b: ll.IRBuilder, condition: ll.Value, *, name: str) -> Iterator[None]:
    then = b.append_basic_block(f"{name}.then")
    after = b.append_basic_block(f"{name}.end")
    b.cbranch(condition, then, after)
    b.position_at_end(then)
    yield
    b.branch(after)
    b.position_at_end(after)


def _mul(b, x, c: int):
    return x if c == 1 else b.mul(x, index_constant(c), flags=_NUW_NSW)


def _gep(b, pointer, offset, etype):
    return b.gep(pointer, [offset], inbounds=True, source_etype=etype)


def pack_block(b: ll.IRBuilder, *, etype: ll.Type, dst: ll.Value, src: ll.Value, extent: ll.Value,
               depth: ll.Value, width: int, edge: int, stride_t: int, stride_k: int,
               pad: bool, name: str, lanes: int = 0) -> None:
    """Pack ``extent x depth`` elements of ``src`` into panels at ``dst`` ([Packed layout]);
    with ``lanes``, full panels read along k transpose in registers ([Transposing packs])."""
    full = b.udiv(extent, index_constant(width)) if width > 1 else extent
    has_full = b.icmp_unsigned("!=", full, index_constant(0))
    panel_elems = _mul(b, depth, width)
    with if_then(b, has_full, name=f"{name}.full"):
        with counted_loop(b, full, name=f"{name}.q") as q:
            panel_dst = _gep(b, dst, b.mul(q, panel_elems, flags=_NUW_NSW), etype)
            panel_src = _gep(b, src, _mul(b, q, width * stride_t), etype)
            if lanes and stride_t != 1 and stride_k == 1:
                _transpose_panel(b, etype, panel_dst, panel_src, depth, width, stride_t, lanes)
            else:
                _pack_panel(b, etype, panel_dst, panel_src, depth, width, index_constant(width),
                            stride_t, stride_k, pad, lanes)
    if edge:
        rest = b.sub(extent, _mul(b, full, width))
        has_edge = b.icmp_unsigned("!=", rest, index_constant(0))
        with if_then(b, has_edge, name=f"{name}.edge"):
            panel_dst = _gep(b, dst, b.mul(full, panel_elems, flags=_NUW_NSW), etype)
            panel_src = _gep(b, src, _mul(b, full, width * stride_t), etype)
            _pack_panel(b, etype, panel_dst, panel_src, depth, width, index_constant(edge),
                        stride_t, stride_k, pad, lanes)


def _pack_panel(b, etype, dst, src, depth, width, valid, stride_t, stride_k, pad, lanes) -> None:
    """One panel: ``valid`` of ``width`` elements per k step, for ``depth`` k steps
    (``lanes``: elements per host vector; 0 for a scalar copy)."""
    if stride_t == 1 or stride_k != 1:
        fn = copy_packer(b.module, etype, width, pad, lanes)
        extra = [stride_k, stride_t, valid]
    else:
        fn = transposing_copy_packer(b.module, etype, width, pad)
        extra = [stride_t, valid]
    _call(b, fn, dst, src, depth, extra)


def copy_packer(module: ll.Module, etype, width: int, pad: bool, lanes: int) -> ll.Function:
    """``(dst, src, depth, stride_k, stride_t, valid)``: each k step's ``valid``
    elements, ``stride_t`` apart, with zeros up to ``width`` if ``pad``."""
    return _packer(module, etype, f"cpack{width}.l{lanes}{'z' if pad else ''}", 3,
                   lambda b, d, s, n, step_k, step_t, count: _emit_strided_copy(
                       b, etype, d, s, n, step_k, step_t, count, width, lanes, pad))


def transposing_copy_packer(module: ll.Module, etype, width: int, pad: bool) -> ll.Function:
    """``(dst, src, depth, stride_t, valid)``: rows of the source run along k."""
    return _packer(module, etype, f"tcopy{width}{'z' if pad else ''}", 2,
                   lambda b, d, s, n, step_t, count: _emit_transposing_copy(
                       b, etype, d, s, n, step_t, count, width, pad))


def transposing_packer(module: ll.Module, etype, width: int, lanes: int) -> ll.Function:
    """``(dst, src, depth, stride_t)``: a full panel whose source rows run
    along k, transposed in registers ([Transposing packs])."""
    return _packer(module, etype, f"tpack{width}.l{lanes}", 1,
                   lambda b, d, s, n, stride: _emit_transpose_panel(b, etype, d, s, n, stride,
                                                                   width, lanes, "tpack"))


def _emit_transposing_copy(b, etype, dst, src, depth, stride_t, valid, width, pad) -> None:
    """k is contiguous in the source: read each element's row along k
    contiguously and write with stride ``width`` (the transposing copy).
    Vectorised, this loop becomes scatters (slow, and a lot of code)."""
    zero = ll.Constant(etype, 0.0)
    with counted_loop(b, valid, name="tcopy.r") as r:
        row_src = _gep(b, src, b.mul(r, stride_t, flags=_NUW_NSW), etype)
        with counted_loop(b, depth, name="tcopy", unroll=True) as p:
            out = _gep(b, dst, b.add(_mul(b, p, width), r, flags=_NUW_NSW), etype)
            b.store(b.load(_gep(b, row_src, p, etype), typ=etype), out)
    if pad:
        missing = b.sub(index_constant(width), valid)
        with if_then(b, b.icmp_unsigned("!=", missing, index_constant(0)), name="tcopy.pad"):
            with counted_loop(b, missing, name="tcopy.z") as z:
                r = b.add(z, valid, flags=_NUW_NSW)
                with counted_loop(b, depth, name="tcopy.zp") as p:
                    out = _gep(b, dst, b.add(_mul(b, p, width), r, flags=_NUW_NSW), etype)
                    b.store(zero, out)


# NOTE: [Transposing packs]
# A panel whose source rows run along k (A as stored, or a transposed B) is
# a transpose: panel element (t, p) comes from row t, column p. Scalar, it
# costs a load and a store per element (~1 cycle). Here each group of up to
# ``lanes`` rows is loaded as ``lanes`` vectors of ``lanes`` consecutive k
# (rows past the group are zeros) and transposed in registers by log2(lanes)
# rounds of two-input shuffles that swap one bit of the row and lane indices
# (the butterfly transpose; LLVM lowers the shuffles to unpck/shufps/vpermt2ps).
# Vector p then holds column p: its first ``rows`` lanes are stored (under a
# mask) at panel row p. The last ``depth % lanes`` k steps go the scalar way.


def _transpose_masks(lanes: int) -> list[tuple[int, list[int], list[int]]]:
    """(h, low mask, high mask) for each butterfly round: vectors i and i + h
    (bit h of i clear) become low/high, swapping bit h of row and lane."""
    rounds, h = [], 1
    while h < lanes:
        low = [(lanes if j & h else 0) + (j & ~h) for j in range(lanes)]
        high = [(lanes if j & h else 0) + (j | h) for j in range(lanes)]
        rounds.append((h, low, high))
        h *= 2
    return rounds


def _packer(module: ll.Module, etype, kind: str, extra: int, emit) -> ll.Function:
    """The panel packer ``xlac.gemm.<dtype>.<kind>(dst, src, depth, ...)`` with
    ``extra`` more i64 arguments (strides, counts), defined by ``emit(builder,
    dst, src, depth, *extra)`` unless the kernel library provides it. Packers
    take strides and counts as arguments, so every product of every program
    whose panels have the same width shares one ([Shape-generic kernels] in
    library.py)."""
    scalar = "f32" if isinstance(etype, ll.FloatType) else "f64"
    fn_type = ll.FunctionType(ll.VoidType(), [PTR, PTR, I64] + [I64] * extra)

    def define(fn: ll.Function) -> None:
        inner = ll.IRBuilder(fn.append_basic_block("entry"))
        emit(inner, *fn.args)
        inner.ret_void()

    return library_function(module, f"xlac.gemm.{scalar}.{kind}", fn_type, define,
                            ["dst", "src", "depth"] + [f"arg{i}" for i in range(extra)],
                            noalias=2)


def _call(b: ll.IRBuilder, fn: ll.Function, dst, src, depth, extra: list) -> None:
    b.call(fn, [dst, src, depth] + [v if isinstance(v, ll.Value) else index_constant(v)
                                    for v in extra])


def _emit_strided_copy(b, etype, dst, src, depth, stride_k, stride_t, valid, width, lanes,
                       pad) -> None:
    """Each k step copies ``valid`` elements ``stride_t`` apart (zeros after
    them up to ``width`` with ``pad``). Contiguous ones (``stride_t == 1``,
    the common case) move as masked vectors, a k step at a time."""
    zero = ll.Constant(etype, 0.0)
    contiguous = b.icmp_unsigned("==", stride_t, index_constant(1))
    if lanes:
        vec = ll.VectorType(etype, lanes)
        item = 4 if isinstance(etype, ll.FloatType) else 8
        lane = vector_constant(I64, tuple(range(lanes)))
        with b.if_else(contiguous) as (vectors, scalars):
            with vectors:
                count = splat(b, valid, ll.VectorType(I64, lanes))
                masks = [b.icmp_unsigned("<", b.add(lane, _splat_constant(v * lanes, lanes)),
                                         count) for v in range(-(-width // lanes))]
                with counted_loop(b, depth, name="cpack.v") as p:
                    row_src = _gep(b, src, b.mul(p, stride_k, flags=_NUW_NSW), etype)
                    row_dst = _gep(b, dst, _mul(b, p, width), etype)
                    for v, mask in enumerate(masks):
                        value = masked_load(b, vec, _gep(b, row_src, index_constant(v * lanes),
                                                             etype), mask, item)
                        at = _gep(b, row_dst, index_constant(v * lanes), etype)
                        inside = min(lanes, width - v * lanes)
                        if inside == lanes:
                            b.store(value, at, align=item)
                        else:  # the panel's last k step ends inside this vector
                            masked_store(b, value, at, vector_constant(
                                ll.IntType(1), tuple(int(i < inside) for i in range(lanes))), item)
            with scalars:
                _scalar_strided_copy(b, etype, dst, src, depth, stride_k, stride_t, valid, width,
                                     pad, zero)
    else:
        _scalar_strided_copy(b, etype, dst, src, depth, stride_k, stride_t, valid, width, pad,
                             zero)


def _scalar_strided_copy(b, etype, dst, src, depth, stride_k, stride_t, valid, width, pad,
                         zero) -> None:
    with counted_loop(b, depth, name="cpack") as p:
        row_src = _gep(b, src, b.mul(p, stride_k, flags=_NUW_NSW), etype)
        row_dst = _gep(b, dst, _mul(b, p, width), etype)
        with counted_loop(b, valid, name="cpack.r") as r:
            value = b.load(_gep(b, row_src, b.mul(r, stride_t, flags=_NUW_NSW), etype), typ=etype)
            b.store(value, _gep(b, row_dst, r, etype))
        if pad:
            missing = b.sub(index_constant(width), valid)
            with if_then(b, b.icmp_unsigned("!=", missing, index_constant(0)), name="cpack.pad"):
                with counted_loop(b, missing, name="cpack.z") as z:
                    b.store(zero, _gep(b, row_dst, b.add(z, valid, flags=_NUW_NSW), etype))


def _splat_constant(value: int, lanes: int):
    return vector_constant(I64, (value,) * lanes)


def _transpose_panel(b, etype, dst, src, depth, width, stride_t, lanes) -> None:
    _call(b, transposing_packer(b.module, etype, width, lanes), dst, src, depth, [stride_t])


def _emit_transpose_panel(b, etype, dst, src, depth, stride_t, width, lanes, name) -> None:
    vec = ll.VectorType(etype, lanes)
    i32 = ll.IntType(32)
    item = 4 if isinstance(etype, ll.FloatType) else 8
    blocks = b.udiv(depth, index_constant(lanes))
    with if_then(b, b.icmp_unsigned("!=", blocks, index_constant(0)), name=f"{name}.any"):
        with counted_loop(b, blocks, name=name) as blk:
            p0 = _mul(b, blk, lanes)
            for first in range(0, width, lanes):
                rows = min(lanes, width - first)
                vectors = []
                for r in range(lanes):
                    if r < rows:
                        row_start = b.mul(index_constant(first + r), stride_t, flags=_NUW_NSW)
                        at = _gep(b, src, b.add(p0, row_start), etype)
                        vectors.append(b.load(at, typ=vec, align=item))
                    else:
                        vectors.append(ll.Constant(vec, None))
                for h, low, high in _transpose_masks(lanes):
                    for i in range(lanes):
                        if i & h:
                            continue
                        x, y = vectors[i], vectors[i + h]
                        vectors[i] = b.shuffle_vector(x, y, vector_constant(i32, tuple(low)))
                        vectors[i + h] = b.shuffle_vector(x, y, vector_constant(i32, tuple(high)))
                for p in range(lanes):
                    row = b.add(p0, index_constant(p))
                    at = _gep(b, dst, b.add(_mul(b, row, width), index_constant(first)), etype)
                    if rows == lanes:
                        b.store(vectors[p], at, align=item)
                    else:
                        masked_store(b, vectors[p], at, rows, item)
    done = _mul(b, blocks, lanes)
    rest = b.sub(depth, done)
    with if_then(b, b.icmp_unsigned("!=", rest, index_constant(0)), name=f"{name}.tail"):
        with counted_loop(b, index_constant(width), name=f"{name}.tr") as r:
            row_src = _gep(b, src, b.mul(r, stride_t, flags=_NUW_NSW), etype)
            with counted_loop(b, rest, name=f"{name}.tp") as q:
                p = b.add(done, q)
                out = _gep(b, dst, b.add(_mul(b, p, width), r, flags=_NUW_NSW), etype)
                b.store(b.load(_gep(b, row_src, p, etype), typ=etype), out)
