"""Parallel loops in generated code: outline a chunk body, run it on the thread pool.

``emit_parallel(b, name, captured, chunks, team, body)`` outlines
``body(builder, values, chunk, thread)`` into
``define internal void @<name>(ptr ctx, i64 chunk, i64 thread)``, stores
``captured`` (pointers and i64s of the calling function) into a context
struct on the caller's stack and calls
``xlac_parallel_for(@<name>, ctx, chunks, team)`` (runtime/threadpool.py):
every chunk runs once, on the caller (``thread`` 0) or on one of up to
``team - 1`` workers, in any order. Inside the body only ``values`` (the
captured values reloaded from the context) may be used: values of the
caller do not exist in another function.

``max_threads()`` decides the team size when a program is compiled:
``XLAC_NUM_THREADS`` or the cores this process may use, and 1 (serial code,
no pool) when the pool cannot run in this process, with one warning per
process. Kernels decide per kernel whether the work is worth splitting.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import llvmlite.ir as ll

from compiler import flags
from compiler.codegen.errors import LoweringError
from compiler.codegen.llvm_types import I32, I64, PTR, VOID
from runtime import parallel as parallel_runtime
from runtime.threadpool import POOL_SYMBOL

__all__ = ["max_threads", "emit_parallel", "outline", "call_parallel"]

_warned = False

# body(builder, captured values, chunk index, thread index)
Body = Callable[[ll.IRBuilder, list, ll.Value, ll.Value], None]


def max_threads() -> int:
    """Threads a kernel compiled now may use (>= 1)."""
    global _warned
    raw = flags.get("num_threads")
    if raw is None or str(raw).strip() == "":
        count = parallel_runtime.default_thread_count()
    else:
        try:
            count = int(raw)
        except ValueError:
            raise LoweringError(
                f"XLAC_NUM_THREADS must be a positive integer, got {raw!r}") from None
        if count < 1:
            raise LoweringError(f"XLAC_NUM_THREADS must be a positive integer, got {raw!r}")
    if count > 1 and not parallel_runtime.threads_available():
        if not _warned:
            _warned = True
            warnings.warn(
                f"xla-py: {parallel_runtime.thread_library_error()}; compiled programs run on "
                "one thread",
                RuntimeWarning, stacklevel=2)
        return 1
    return count


def _declare(module: ll.Module, name: str, ret, args) -> ll.Function:
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = ll.Function(module, ll.FunctionType(ret, args), name)
    fn.attributes.add("nounwind")
    return fn


def emit_parallel(b: ll.IRBuilder, name: str, captured: Sequence[ll.Value], chunks: int,
                  team: int, body: Body) -> None:
    """Run ``body`` for every chunk on the thread pool (see the module docstring)."""
    outlined = outline(b.module, name, [value.type for value in captured], body)
    call_parallel(b, outlined, captured, chunks, team)


def outline(module: ll.Module, name: str, types: Sequence[ll.Type], body: Body) -> ll.Function:
    """``define internal void @<name>(ptr ctx, i64 chunk, i64 thread)`` running
    ``body`` on the values of ``types`` loaded from ``ctx``; ``call_parallel``
    runs it (once or more: one body can serve several parallel loops)."""
    for t in types:
        if t not in (PTR, I64):
            raise LoweringError(f"emit_parallel captures pointers and i64 only, got {t}")
    ctx_type = ll.LiteralStructType(types)
    outlined = ll.Function(module, ll.FunctionType(VOID, [PTR, I64, I64]), name)
    outlined.linkage = "internal"
    outlined.attributes.add("nounwind")
    for arg, arg_name in zip(outlined.args, ["ctx", "chunk", "thread"], strict=True):
        arg.name = arg_name
    inner = ll.IRBuilder(outlined.append_basic_block("entry"))
    zero = ll.Constant(I32, 0)
    values = []
    for i, t in enumerate(types):
        slot = inner.gep(outlined.args[0], [zero, ll.Constant(I32, i)], inbounds=True,
                         source_etype=ctx_type)
        values.append(inner.load(slot, typ=t, align=8, name=f"captured{i}"))
    body(inner, values, outlined.args[1], outlined.args[2])
    inner.ret_void()
    return outlined


def call_parallel(b: ll.IRBuilder, outlined: ll.Function, captured: Sequence[ll.Value],
                  chunks: int, team: int) -> None:
    """Run the chunks ``0 .. chunks-1`` of ``outlined`` (made by ``outline`` for
    the types of ``captured``) on the thread pool, from the builder's position."""
    if team < 2 or chunks < 1:
        raise LoweringError(f"emit_parallel needs a team of 2+ and 1+ chunks, got {team}, {chunks}")
    ctx_type = ll.LiteralStructType([value.type for value in captured])
    with b.goto_entry_block():  # a static slot, even when called in a loop
        ctx = b.alloca(ctx_type, name="parallel.ctx")
    # llvmlite gives an alloca a typed pointer (and a bitcast to ``ptr`` is a
    # no-op to it); the module uses opaque pointers everywhere else.
    ctx.type = PTR
    zero = ll.Constant(I32, 0)
    for i, value in enumerate(captured):
        slot = b.gep(ctx, [zero, ll.Constant(I32, i)], inbounds=True, source_etype=ctx_type)
        b.store(value, slot, align=8)
    pool = _declare(b.module, POOL_SYMBOL, VOID, [PTR, PTR, I64, I64])
    b.call(pool, [outlined, ctx, ll.Constant(I64, chunks), ll.Constant(I64, team)])
