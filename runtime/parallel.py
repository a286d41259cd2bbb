"""The parallel runtime's public face: may kernels use threads, and how many.

Large kernels run their chunks on the thread pool of runtime/threadpool.py
(see [Thread pool] there for the mechanism and why it is not libgomp).
``threads_available()`` says whether this process can use the pool (Linux
with pthreads and futexes) and starts compiling it in a forked child; when
it cannot, the compiler emits serial code and says so once
(compiler/codegen/parallel.py).
"""

from __future__ import annotations

import functools
import os
import threading

from runtime import threadpool

__all__ = ["threads_available", "thread_library_error", "default_thread_count"]

_lock = threading.Lock()
_error: str | None = None
_checked = False


def _check() -> None:
    global _error, _checked
    with _lock:
        if _checked:
            return
        _checked = True
        try:
            reason = threadpool.pool_unavailable_reason()
        except Exception as error:  # any failure means: run serially
            reason = str(error)
        if reason is not None:
            _error = f"the thread pool is unavailable: {reason}"
            return
        # The pool itself is compiled on first use (linking the first parallel
        # program); meanwhile a forked child compiles it, off the lowering's path.
        try:
            threadpool.prefetch()
        except Exception:  # pragma: no cover - the pool then compiles on first use
            pass


def threads_available() -> bool:
    """Whether generated code may call the thread pool in this process."""
    _check()
    return _error is None


def thread_library_error() -> str | None:
    """Why ``threads_available()`` is False, or None."""
    _check()
    return _error


@functools.cache
def default_thread_count() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
