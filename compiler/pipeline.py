"""The compilation pipeline: IR Function -> optimised IR -> native Executable.

``PASSES`` is the optimisation pipeline, read top to bottom; each pass is a
named function ``Function -> Function`` that never mutates its input. The pass
manager (``optimize``) times every pass, verifies the IR after each one when
asked (``verify=True`` or ``XLAC_VERIFY=1``; a failure names the pass), and can
dump the IR after every pass (``dump_dir`` or ``XLAC_DUMP_DIR``).
``compile_cached`` memoises executables by the structure of the traced IR (its
text without source locations), so a training loop compiles once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import runtime
from compiler import flags
from compiler.passes import (eliminate_common_subexpressions, eliminate_dead_code,
                             fold_constants, fuse, simplify)
from compiler.passes.dot_layout import fold_dot_transposes
from compiler.passes.gemm_epilogue import fuse_gemm_epilogues
from compiler.program_cache import ProgramCache
from ir import Function, print_function
from ir.verify import verify

__all__ = ["PASSES", "PassRecord", "optimize", "compile_function", "compile_cached", "clear_cache"]

Pass = Callable[[Function], Function]

PASSES: list[tuple[str, Pass]] = [
    ("simplify", simplify),
    ("fold_constants", fold_constants),
    ("cse", eliminate_common_subexpressions),
    ("simplify_again", simplify),
    ("dce", eliminate_dead_code),
    ("dot_layout", fold_dot_transposes),  # before fuse: it would clone the transposes
    ("fuse", fuse),  # a fusion is opaque to the passes above
    ("gemm_epilogue", fuse_gemm_epilogues),  # a dot takes its elementwise reader
]


@dataclass
class PassRecord:
    """What one pass did: its name, time and the equation count before and after."""

    name: str
    seconds: float
    eqns_before: int
    eqns_after: int


def _truthy(value) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def optimize(fn: Function, *, verify_each: bool | None = None, dump=None,
             records: list[PassRecord] | None = None) -> Function:
    """Run every pass of ``PASSES`` in order and return the optimised function.

    ``dump`` (a ``compiler.dump.Dump``) receives the IR after each pass;
    ``records`` receives one ``PassRecord`` per pass.
    """
    check = _truthy(flags.get("verify_passes", verify_each)) if verify_each is None else verify_each
    if check:
        verify(fn, pass_name="trace")
    if dump is not None:
        dump.ir("traced", fn)
    for name, run_pass in PASSES:
        start = time.perf_counter()
        result = run_pass(fn)
        seconds = time.perf_counter() - start
        if check:
            verify(result, pass_name=name)
        if records is not None:
            records.append(PassRecord(name, seconds, len(fn.eqns), len(result.eqns)))
        if dump is not None:
            dump.ir(name, result)
        fn = result
    return fn


def compile_function(fn: Function, *, dump_dir: str | None = None, verify_each: bool | None = None,
                     donated: dict[int, int] | None = None, cache_dir: str | None = None):
    """Optimise and lower ``fn``; returns a ``runtime.Executable``.

    ``donated`` maps result indices to the parameters whose buffers receive them;
    ``cache_dir`` overrides the persistent compile cache's folder (``"off"``
    disables it; default ``XLAC_CACHE_DIR`` or the user's cache folder).
    """
    from compiler.backend import compile_function as lower_and_load, compile_traced
    from compiler.dump import Dump

    dump_dir = flags.get("dump_dir", dump_dir)
    dump = Dump(dump_dir) if dump_dir else None
    cache = runtime.CompileCache(flags.get("cache_dir", cache_dir))
    if dump is None:
        # Keyed on the traced IR: a disk-cache hit skips the passes too.
        return compile_traced(fn, lambda f: optimize(f, verify_each=verify_each),
                              donated=donated, cache=cache)
    records: list[PassRecord] = []
    optimized = optimize(fn, verify_each=verify_each, dump=dump, records=records)
    start = time.perf_counter()
    exe = lower_and_load(optimized, donated=donated, cache=cache)
    records.append(PassRecord("lower_and_load", time.perf_counter() - start, len(optimized.eqns),
                              len(optimized.eqns)))
    if dump is not None:
        dump.executable(exe)
        dump.summary(records)
    return exe


def structural_key(fn: Function) -> str:
    return print_function(fn, show_locs=False)


_CACHE = ProgramCache(capacity=512)
_DUMPED: set[tuple[str, str]] = set()  # (program, dump folder) pairs already written


def compile_cached(fn: Function, donated: dict[int, int] | None = None,
                   dump_dir: str | None = None):
    """``compile_function`` memoised by the structure of ``fn`` (and the donations).

    With ``dump_dir``, the first request per folder compiles again with dumps,
    so the folder is written even when the program was compiled before.
    """
    key = structural_key(fn)
    if donated:
        key += f"\ndonated {sorted(donated.items())}"
    # Knobs that change the generated code (e.g. XLAC_NUM_THREADS) are part of the key.
    knobs = [(k, flags.get(k)) for k in sorted(flags.FLAGS) if k not in flags.NOT_IN_CACHE_KEY]
    key += f"\nknobs {knobs}"
    exe = _CACHE.get(key)
    if exe is None or (dump_dir and (key, dump_dir) not in _DUMPED):
        exe = _CACHE[key] = compile_function(fn, donated=donated, dump_dir=dump_dir)
        if dump_dir:
            _DUMPED.add((key, dump_dir))
    return exe


def clear_cache() -> None:
    """Forget every compiled executable (they are freed when no longer referenced)."""
    _CACHE.clear()
    _DUMPED.clear()
