"""The backend: a verified IR Function -> a native ``runtime.Executable``."""

from __future__ import annotations

import runtime
from ir.core import Function
from compiler.codegen import lower

try:  # ir/verify.py is being written concurrently; lower() re-checks types regardless
    from ir.verify import verify as _verify
except ImportError:  # pragma: no cover - until ir.verify lands
    _verify = None

__all__ = ["compile_function"]


def compile_function(fn: Function) -> runtime.Executable:
    """Verify ``fn``, lower it to LLVM IR and JIT-compile it for the host CPU.

    Raises ``ir.VerifyError`` (or ``LoweringError``) for IR that must not be
    lowered; nothing is compiled from it.
    """
    if _verify is not None:
        _verify(fn)
    program = lower(fn)
    return runtime.load_program(
        program.llvm_ir, name=fn.name, param_types=program.param_types,
        result_types=program.result_types, arena_bytes=program.arena_bytes,
        entry=program.entry,
    )
