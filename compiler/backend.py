"""The backend: a verified IR Function -> a native ``runtime.Executable``."""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Callable, Mapping

import runtime
from ir.core import Function
from ir.printer import print_function
from compiler import flags
from compiler.codegen import lower
from compiler.codegen.lower import memory_plan_text
from compiler.kernel_library import KernelSymbols, library_id

try:  # ir/verify.py is being written concurrently; lower() re-checks types regardless
    from ir.verify import verify as _verify
except ImportError:  # pragma: no cover - until ir.verify lands
    _verify = None

__all__ = ["compile_function", "compile_traced", "codegen_salt"]


def compile_function(fn: Function, *, donated: Mapping[int, int] | None = None,
                     cache: runtime.CompileCache | None = None) -> runtime.Executable:
    """Verify ``fn``, lower it to LLVM IR and JIT-compile it for the host CPU.

    Raises ``ir.VerifyError`` (or ``LoweringError``) for IR that must not be
    lowered; nothing is compiled from it. ``donated`` maps result indices to
    parameter indices whose buffers receive those results (codegen/donation.py).
    The persistent compile cache (``cache``, default: ``XLAC_CACHE_DIR`` or the
    user's cache folder) is consulted with the IR text before any LLVM IR is
    built; a hit links stored object code and skips LLVM.
    """
    if _verify is not None:
        _verify(fn)
    return _load(fn, lambda: fn, donated, cache, stage="as given")


def compile_traced(traced: Function, optimize: Callable[[Function], Function], *,
                   donated: Mapping[int, int] | None = None,
                   cache: runtime.CompileCache | None = None) -> runtime.Executable:
    """``compile_function(optimize(traced))``, with the cache keyed on ``traced``.

    A cache hit then skips the optimisation passes as well as LLVM (together
    most of a warm start); the key's salt covers the passes' sources. The
    optimised function is verified before it is lowered, as always.
    """
    optimized = []

    def get_optimized() -> Function:
        if not optimized:
            if _verify is not None:  # the passes trust their input (a hit was verified before)
                _verify(traced)
            fn = optimize(traced)
            if _verify is not None:
                _verify(fn)
            optimized.append(fn)
        return optimized[0]

    return _load(traced, get_optimized, donated, cache, stage="through the passes")


def _load(key_fn: Function, optimized: Callable[[], Function], donated, cache, *, stage: str
          ) -> runtime.Executable:
    donated = dict(donated or {})
    # The same text is lowered as given by compile_function and optimised first
    # by compile_traced: different object code (and memory plan), so different keys.
    text = f"{print_function(key_fn, show_locs=False)}\nlowered {stage}\n"
    if donated:
        text += f"\ndonated {sorted(donated.items())}\n"
    if cache is None:
        cache = runtime.CompileCache(flags.get("cache_dir"))
    linked = library_id()
    kernels = KernelSymbols() if linked != "inline" else None
    exe = runtime.load_cached(
        text, lambda: lower(optimized(), donated=donated, library=kernels), name=key_fn.name,
        salt=codegen_salt(linked), cache=cache, donated=sorted(donated.items()),
        # On a miss: compiled in parts while it is lowered (runtime/loader.py).
        build_in_parts=lambda parts: lower(optimized(), donated=donated, parts=parts,
                                           library=kernels),
        # What dumps show and AOT objects are made of when the program links
        # the kernel library: the kernels defined in the module, from the
        # same generator as the library's.
        standalone=lambda: lower(optimized(), donated=donated).llvm_ir,
    )
    # Text about the IR, not the object code: made when asked for (dump.py writes it).
    exe.memory_plan = lambda: memory_plan_text(optimized(), donated)
    return exe


def codegen_salt(kernels: str | None = None) -> str:
    """What, besides the IR text, decides the generated code: the sources of the
    passes and the code generator, the knobs they read, the cores a default
    thread count comes from, and the kernel library it links (``kernels``:
    ``kernel_library.library_id()``, looked up if not given)."""
    knobs = {name: flags.get(name) for name in flags.FLAGS if name not in flags.NOT_IN_CACHE_KEY}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from compiler import __version__

    return (f"xla-py {__version__} {_codegen_sources()} cores={cores} "
            f"knobs={sorted(knobs.items())} kernels={kernels or library_id()}")


@functools.cache
def _codegen_sources() -> str:
    # Everything between a traced function and its object code: the IR's op
    # definitions, the passes, the code generator (not the front end).
    compiler_dir = pathlib.Path(__file__).resolve().parent
    ir_dir = compiler_dir.parent / "ir"
    sources = [p for p in compiler_dir.iterdir() if p.suffix == ".py" or p.is_dir()]
    sources = [p for p in sources if p.name not in ("frontend", "__pycache__")]
    return runtime.cache.source_fingerprint(sorted(sources) + [ir_dir])
