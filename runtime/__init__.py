"""What runs compiled code: the host target, the process-wide JIT engine and
``Executable``, the object a compiled program is called through.

``load_program(llvm_ir, ...)`` JIT-compiles a module that follows the calling
convention in runtime/executable.py; ``load_cached`` does the same through the
on-disk compile cache (runtime/cache.py), whose hits and misses
``cache_stats()`` reports. This package imports ``ir`` (for tensor
types), llvmlite and numpy; it never imports ``compiler``.
"""

from runtime.aot import emit_assembly, emit_object
from runtime.cache import CacheStats, CompileCache, cache_stats, reset_cache_stats
from runtime.errors import ArgumentError, JitError
from runtime.executable import Executable
from runtime.jit import JitEngine, JitLibrary, jit_engine
from runtime.loader import load_cached, load_program
from runtime.target import (HostTarget, create_target_machine, host_target,
                            host_target_machine, initialize_llvm)

__all__ = [
    "Executable", "load_program", "ArgumentError", "JitError",
    "HostTarget", "host_target", "host_target_machine", "create_target_machine", "initialize_llvm",
    "JitEngine", "JitLibrary", "jit_engine", "emit_object", "emit_assembly",
    "load_cached", "CompileCache", "CacheStats", "cache_stats", "reset_cache_stats",
]
