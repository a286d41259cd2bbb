"""The compilation pipeline: IR Function -> optimised IR -> native Executable.

``PASSES`` is the optimisation pipeline, read top to bottom; each pass is a
named function ``Function -> Function`` that never mutates its input.
``compile_cached`` memoises executables by the structure of the IR (its text
without source locations), so a training loop that re-traces the same step
compiles once.
"""

from __future__ import annotations

from typing import Callable

from ir import Function, print_function

__all__ = ["PASSES", "optimize", "compile_function", "compile_cached", "clear_cache"]

Pass = Callable[[Function], Function]

PASSES: list[Pass] = []

_CACHE: dict[str, object] = {}


def optimize(fn: Function) -> Function:
    """Run every pass of ``PASSES`` in order."""
    for run_pass in PASSES:
        fn = run_pass(fn)
    return fn


def compile_function(fn: Function):
    """Optimise and lower ``fn``; returns a ``runtime.Executable``."""
    from compiler.backend import compile_function as lower_and_load

    return lower_and_load(optimize(fn))


def structural_key(fn: Function) -> str:
    return print_function(fn, show_locs=False)


def compile_cached(fn: Function):
    """``compile_function`` memoised by the structure of ``fn``."""
    key = structural_key(fn)
    exe = _CACHE.get(key)
    if exe is None:
        exe = _CACHE[key] = compile_function(fn)
    return exe


def clear_cache() -> None:
    _CACHE.clear()
