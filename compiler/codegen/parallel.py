"""Fork-join regions in generated code: outline a body, run it on a thread team.

``emit_parallel(b, name, captured, threads, body)`` outlines
``body(builder, values, thread_id, num_threads)`` into
``define internal void @<name>(ptr ctx)``, stores ``captured`` (pointers and
i64s of the calling function) into a context struct on the caller's stack and
calls ``GOMP_parallel(@<name>, ctx, threads, 0)`` (see runtime/parallel.py).
Inside the body only ``values`` (the captured values reloaded from the
context) may be used: values of the caller do not exist in another function.

``max_threads()`` decides the team size when a program is compiled:
``XLAC_NUM_THREADS`` or the cores this process may use, and 1 (serial code,
no libgomp calls) when libgomp cannot be loaded, with one warning per process.
Kernels decide per kernel whether the work is worth a fork-join.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import llvmlite.ir as ll

from compiler import flags
from compiler.codegen.errors import LoweringError
from compiler.codegen.llvm_types import I32, I64, PTR, VOID
from runtime import parallel as parallel_runtime

__all__ = ["max_threads", "emit_parallel"]

_warned = False

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
                "one thread (install libgomp, e.g. the Debian package libgomp1, for more)",
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


def emit_parallel(b: ll.IRBuilder, name: str, captured: Sequence[ll.Value], threads: int,
                  body: Body) -> None:
    """Run ``body`` on a team of ``threads`` (see the module docstring)."""
    if threads < 2:
        raise LoweringError(f"emit_parallel needs a team of at least 2 threads, got {threads}")
    module = b.module
    types = [value.type for value in captured]
    for t in types:
        if t not in (PTR, I64):
            raise LoweringError(f"emit_parallel captures pointers and i64 only, got {t}")
    ctx_type = ll.LiteralStructType(types)

    outlined = ll.Function(module, ll.FunctionType(VOID, [PTR]), name)
    outlined.linkage = "internal"
    outlined.attributes.add("nounwind")
    outlined.args[0].name = "ctx"
    inner = ll.IRBuilder(outlined.append_basic_block("entry"))
    zero = ll.Constant(I32, 0)
    values = []
    for i, t in enumerate(types):
        slot = inner.gep(outlined.args[0], [zero, ll.Constant(I32, i)], inbounds=True,
                         source_etype=ctx_type)
        values.append(inner.load(slot, typ=t, align=8, name=f"captured{i}"))
    thread_id = inner.call(_declare(module, "omp_get_thread_num", I32, []), [])
    team = inner.call(_declare(module, "omp_get_num_threads", I32, []), [])
    body(inner, values, inner.zext(thread_id, I64), inner.zext(team, I64))
    inner.ret_void()

    ctx = b.alloca(ctx_type, name="parallel.ctx")
    # llvmlite gives an alloca a typed pointer (and a bitcast to ``ptr`` is a
    # no-op to it); the module uses opaque pointers everywhere else.
    ctx.type = PTR
    for i, value in enumerate(captured):
        slot = b.gep(ctx, [zero, ll.Constant(I32, i)], inbounds=True, source_etype=ctx_type)
        b.store(value, slot, align=8)
    gomp = _declare(module, "GOMP_parallel", VOID, [PTR, PTR, I32, I32])
    b.call(gomp, [outlined, ctx, ll.Constant(I32, threads), zero])
