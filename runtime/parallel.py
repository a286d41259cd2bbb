"""The parallel runtime: libgomp's thread team, loaded once for generated code.

NOTE: [Threads from generated code]
Large kernels split their work across a thread team by calling libgomp from
the generated code: ``GOMP_parallel(body, ctx, num_threads, 0)`` runs
``body(ctx)`` on the calling thread and ``num_threads - 1`` pooled workers
and returns when all are done; ``body`` picks its share from
``omp_get_thread_num()`` / ``omp_get_num_threads()``. Measured here
(notes/llvmlite.md §8): ~0.6 us per fork-join with 2 threads, against ~40 us
to create and join a raw pthread per call, and the pool stays alive between
calls. The workers spin briefly after a region, then sleep.

libgomp is loaded twice on purpose: ``llvm.load_library_permanently`` makes
its symbols visible to the JIT linker, and a ``ctypes.CDLL`` handle that is
never released keeps it mapped until the process ends. Without the second,
LLVM's static destructors ``dlclose`` libgomp at exit while a worker may
still be spinning in it: a crash at exit (reproduced with
``OMP_WAIT_POLICY=active``). The pool's threads belong to the process and end
with it; nothing needs joining.

Where libgomp cannot be loaded, ``threads_available()`` is False: the
compiler then emits single-threaded code and warns once (see
compiler/codegen/parallel.py). libgomp is not fork-safe: a child forked after
the pool started must not run multi-threaded programs.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import llvmlite.binding as llvm

from runtime.target import initialize_llvm

__all__ = ["THREAD_LIBRARY", "threads_available", "thread_library_error", "default_thread_count"]

# The library the generated code calls into (Debian/Ubuntu package libgomp1).
THREAD_LIBRARY = "libgomp.so.1"

_lock = threading.Lock()
_handle = None          # the ctypes handle that keeps libgomp mapped until exit
_error: str | None = None
_tried = False


def _load() -> None:
    global _handle, _error, _tried
    with _lock:
        if _tried:
            return
        _tried = True
        initialize_llvm()
        try:
            handle = ctypes.CDLL(THREAD_LIBRARY, mode=ctypes.RTLD_GLOBAL)
            llvm.load_library_permanently(THREAD_LIBRARY)
        except (OSError, RuntimeError) as error:
            _error = f"{THREAD_LIBRARY} could not be loaded ({error})"
            return
        _handle = handle


def threads_available() -> bool:
    """Whether generated code may call libgomp in this process (loads it on first call)."""
    _load()
    return _handle is not None


def thread_library_error() -> str | None:
    """Why ``threads_available()`` is False, or None."""
    _load()
    return _error


@functools.cache
def default_thread_count() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
