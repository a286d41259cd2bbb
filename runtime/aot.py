"""Ahead-of-time output: object files and assembly for use outside this process.

Objects are position independent with the small code model, so ``gcc -shared``
links them into a shared library without text relocations (notes §7). The
default CPU is the host's; pass ``cpu="x86-64-v3"`` (and ``features=""``) for
code that runs on other x86-64 machines.
"""

from __future__ import annotations

from runtime.llvm_module import optimize_module, parse_module
from runtime.target import create_target_machine
from runtime.threadpool import POOL_SYMBOL, aot_pool_llvm_ir

__all__ = ["emit_object", "emit_assembly"]


def _aot_machine(cpu, features):
    return create_target_machine(cpu=cpu, features=features, reloc="pic", codemodel="default")


def _parse_with_pool(llvm_ir: str, tm, name: str):
    """The module, with the thread pool linked in if it calls it (a parallel
    kernel): the object then needs only libc's pthreads (runtime/threadpool.py)."""
    mod = parse_module(llvm_ir, tm, name=name)
    if any(fn.name == POOL_SYMBOL and fn.is_declaration for fn in mod.functions):
        mod.link_in(parse_module(aot_pool_llvm_ir(), tm, name="xlac_pool"))
    return mod


def emit_object(llvm_ir: str, *, name: str = "module", cpu: str | None = None,
                features: str | None = None) -> bytes:
    """Verify, optimise and compile LLVM IR text to an ELF object file image."""
    tm = _aot_machine(cpu, features)
    mod = _parse_with_pool(llvm_ir, tm, name)
    optimize_module(mod, tm)
    return tm.emit_object(mod)


def emit_assembly(llvm_ir: str, *, name: str = "module", cpu: str | None = None,
                  features: str | None = None) -> str:
    """Like ``emit_object`` but returns the assembly listing."""
    tm = _aot_machine(cpu, features)
    mod = _parse_with_pool(llvm_ir, tm, name)
    optimize_module(mod, tm)
    return tm.emit_assembly(mod)
