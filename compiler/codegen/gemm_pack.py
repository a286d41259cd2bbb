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

from compiler.codegen.llvm_types import I64, index_constant, vector_constant

__all__ = ["counted_loop", "if_then", "loop_hints", "pack_block"]

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
                _transpose_panel(b, etype, panel_dst, panel_src, depth, width, stride_t, lanes,
                                 f"{name}.v")
            else:
                _pack_panel(b, etype, panel_dst, panel_src, depth, width, width, stride_t,
                            stride_k, pad, f"{name}.p")
    if edge:
        rest = b.sub(extent, _mul(b, full, width))
        has_edge = b.icmp_unsigned("!=", rest, index_constant(0))
        with if_then(b, has_edge, name=f"{name}.edge"):
            panel_dst = _gep(b, dst, b.mul(full, panel_elems, flags=_NUW_NSW), etype)
            panel_src = _gep(b, src, _mul(b, full, width * stride_t), etype)
            _pack_panel(b, etype, panel_dst, panel_src, depth, width, edge, stride_t, stride_k,
                        pad, f"{name}.e")


def _pack_panel(b, etype, dst, src, depth, width, valid, stride_t, stride_k, pad, name) -> None:
    """One panel: ``valid`` of ``width`` elements per k step, for ``depth`` k steps."""
    if stride_t == 1 or stride_k != 1:
        _call_shared(b, etype, f"cpack{width}.v{valid}.t{stride_t}{'z' if pad else ''}",
                     dst, src, depth, stride_k,
                     lambda fb, d, s, n, step: _emit_strided_copy(fb, etype, d, s, n, step, width,
                                                                  valid, stride_t, pad, "cpack"))
        return
    _call_shared(b, etype, f"tcopy{width}.v{valid}{'z' if pad else ''}", dst, src, depth,
                 stride_t,
                 lambda fb, d, s, n, step: _emit_transposing_copy(fb, etype, d, s, n, step, width,
                                                                  valid, pad, "tcopy"))


def _emit_transposing_copy(b, etype, dst, src, depth, stride_t, width, valid, pad,
                           name) -> None:
    """k is contiguous in the source: read each element's row along k
    contiguously and write with stride ``width`` (the transposing copy).
    Vectorised, this loop becomes scatters (slow, and a lot of code). The row
    loop stays rolled: one copy loop instead of ``width`` unrolled ones."""
    zero = ll.Constant(etype, 0.0)
    with counted_loop(b, index_constant(valid), name=f"{name}.r") as r:
        row_src = _gep(b, src, b.mul(r, stride_t, flags=_NUW_NSW), etype)
        with counted_loop(b, depth, name=name, unroll=True) as p:
            out = _gep(b, dst, b.add(_mul(b, p, width), r, flags=_NUW_NSW), etype)
            b.store(b.load(_gep(b, row_src, p, etype), typ=etype), out)
    if pad and valid < width:
        with counted_loop(b, index_constant(width - valid), name=f"{name}.z") as z:
            r = b.add(z, index_constant(valid), flags=_NUW_NSW)
            with counted_loop(b, depth, name=f"{name}.zp") as p:
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


def _call_shared(b, etype, kind: str, dst, src, depth, stride: int, emit) -> None:
    """Call the module's panel packer ``xlac.gemm.<dtype>.<kind>(dst, src,
    depth, stride)``, defining it with ``emit(builder, dst, src, depth,
    stride)`` on first use. Packers take the source stride as an argument, so
    every product of the module whose panels have the same width shares one
    (compile time: each copy cost LLVM ~10-40 ms)."""
    scalar = "f32" if isinstance(etype, ll.FloatType) else "f64"
    fn_name = f"xlac.gemm.{scalar}.{kind}"
    fn = b.module.globals.get(fn_name)
    if fn is None:
        fn = ll.Function(b.module, ll.FunctionType(ll.VoidType(), [dst.type, src.type, I64, I64]),
                         fn_name)
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        fn.attributes.add("noinline")  # one copy, called per panel
        for arg, arg_name in zip(fn.args, ["dst", "src", "depth", "stride"], strict=True):
            arg.name = arg_name
        fn.args[0].add_attribute("noalias")
        fn.args[1].add_attribute("noalias")
        inner = ll.IRBuilder(fn.append_basic_block("entry"))
        emit(inner, *fn.args)
        inner.ret_void()
    b.call(fn, [dst, src, depth, index_constant(stride)])


def _emit_strided_copy(b, etype, dst, src, depth, stride_k, width, valid, stride_t, pad,
                       name) -> None:
    """Each k step reads ``valid`` contiguous (or evenly spaced) elements:
    one pass over k, the short static loop over the panel innermost."""
    zero = ll.Constant(etype, 0.0)
    with counted_loop(b, depth, name=name) as p:
        row_src = _gep(b, src, b.mul(p, stride_k, flags=_NUW_NSW), etype)
        row_dst = _gep(b, dst, _mul(b, p, width), etype)
        for r in range(width):
            out = _gep(b, row_dst, index_constant(r), etype)
            if r < valid:
                value = b.load(_gep(b, row_src, index_constant(r * stride_t), etype), typ=etype)
                b.store(value, out)
            elif pad:
                b.store(zero, out)


def _transpose_panel(b, etype, dst, src, depth, width, stride_t, lanes, name) -> None:
    _call_shared(b, etype, f"tpack{width}.l{lanes}", dst, src, depth, stride_t,
                 lambda fb, d, s, n, stride: _emit_transpose_panel(fb, etype, d, s, n, stride,
                                                                   width, lanes, "tpack"))


def _emit_transpose_panel(b, etype, dst, src, depth, stride_t, width, lanes, name) -> None:
    from compiler.codegen.gemm_kernel import masked_store

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
