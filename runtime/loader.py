"""Turn LLVM IR text of a program into a callable ``Executable``."""

from __future__ import annotations

import time
from typing import Sequence

import llvmlite.binding as llvm

from ir.dtypes import TensorType
from runtime.errors import JitError
from runtime.executable import Executable
from runtime.jit import jit_engine
from runtime.llvm_module import optimize_module, parse_module
from runtime.pyabi import numpy_data_offset, wrapper_llvm_ir, wrapper_name
from runtime.target import host_target_machine

__all__ = ["load_program"]


def _check_externals(module: llvm.ModuleRef, name: str) -> None:
    """Name unresolvable external functions here: the JIT would only say that
    linking failed (and print the symbol to stderr)."""
    missing = sorted(
        fn.name for fn in module.functions
        if fn.is_declaration and not fn.name.startswith("llvm.")
        and llvm.address_of_symbol(fn.name) is None
    )
    if missing:
        raise JitError(
            f"'{name}' calls external function(s) {', '.join(missing)} that this process "
            "does not define; load their library first (llvmlite.binding.load_library_permanently)"
        )


def load_program(llvm_ir: str, *, name: str, param_types: Sequence[TensorType],
                 result_types: Sequence[TensorType], arena_bytes: int,
                 entry: str = "entry") -> Executable:
    """Verify, optimise (O3, host CPU) and JIT-link one module; returns its Executable.

    ``llvm_ir`` must define ``void @<entry>(ptr table)`` following the calling
    convention of runtime/executable.py for the given parameter and result
    types and arena size. Raises ``JitError`` if LLVM rejects the module.
    """
    times = {}
    start = time.perf_counter()
    tm = host_target_machine()
    offset = numpy_data_offset()
    num_arrays = len(param_types) + len(result_types)
    text = llvm_ir
    if offset is not None:
        text += "\n" + wrapper_llvm_ir(entry, num_arrays, offset)
    module = parse_module(text, tm, name=name)
    times["parse"] = time.perf_counter() - start
    optimize_module(module, tm)
    _check_externals(module, name)
    optimized = str(module)
    times["optimize"] = time.perf_counter() - start - sum(times.values())
    object_code = tm.emit_object(module)
    times["codegen"] = time.perf_counter() - start - sum(times.values())
    call_symbol = wrapper_name(entry) if offset is not None else entry
    library = jit_engine().add_object(object_code, [entry, call_symbol], name_hint=name)
    times["link"] = time.perf_counter() - start - sum(times.values())
    return Executable(
        name=name, param_types=param_types, result_types=result_types,
        arena_bytes=arena_bytes, entry=entry, llvm_ir=llvm_ir, optimized_llvm_ir=optimized,
        library=library, call_symbol=call_symbol, takes_objects=offset is not None,
        compile_seconds=times,
    )
