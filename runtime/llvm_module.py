"""Parse, verify and optimise one LLVM module for the host.

NOTE: [Verify before optimising, optimise once]
The new-pass-manager pipeline segfaults on invalid IR and a ModulePassManager
aborts if run twice (notes/llvmlite.md §10), so ``parse_module`` always
verifies and ``optimize_module`` builds a fresh PassBuilder for every module.
Each pipeline run leaks ~90 KiB inside LLVM: compile many kernels per module
rather than many modules.
"""

from __future__ import annotations

import llvmlite.binding as llvm

from runtime.errors import JitError
from runtime.target import initialize_llvm

__all__ = ["parse_module", "optimize_module"]


def parse_module(llvm_ir: str, tm: llvm.TargetMachine, *, name: str = "module") -> llvm.ModuleRef:
    """Parse LLVM IR text, stamp it with ``tm``'s triple and data layout, verify it."""
    initialize_llvm()
    try:
        mod = llvm.parse_assembly(llvm_ir)
    except RuntimeError as error:
        raise JitError(f"LLVM IR of {name!r} does not parse: {error}") from None
    mod.name = name
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    try:
        mod.verify()
    except RuntimeError as error:
        raise JitError(f"LLVM IR of {name!r} is invalid: {error}") from None
    return mod


def optimize_module(mod: llvm.ModuleRef, tm: llvm.TargetMachine, *, speed_level: int = 3) -> None:
    """Run LLVM's standard ``O<speed_level>`` pipeline on a verified module, in place."""
    pto = llvm.create_pipeline_tuning_options(speed_level=speed_level)
    pto.loop_vectorization = True
    # SLP is off by default in llvmlite; it packs straight-line code (unrolled
    # small loops, the pointer-table loads) into vectors.
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
