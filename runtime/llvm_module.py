"""Parse, verify and optimise one LLVM module for the host.

NOTE: [Verify before optimising, optimise once]
The new-pass-manager pipeline segfaults on invalid IR and a ModulePassManager
aborts if run twice (notes/llvmlite.md §10), so ``parse_module`` always
verifies and ``optimize_module`` builds a fresh PassBuilder for every module.
Each pipeline run leaks ~90 KiB inside LLVM: compile many kernels per module
rather than many modules.

NOTE: [O1 with the vectorisers]
LLVM's O1 pipeline with the loop and SLP vectorisers switched on (they run
at any level when the tuning options ask) compiles the W4 training step in
~74% of O3's time (opt + codegen 964 -> 712 ms) and its kernels are as fast
or faster, measured side by side in one process (XLAC_NUM_THREADS=1):
W4 step, gelu (W1), softmax cross-entropy fwd+bwd (W2), 256^3 and
transposed 512^3 GEMMs, a transcendental chain and f64 exp/tanh: equal
within 1%; row layernorm 0.77x and column sums 0.85x of O3's time. What O3
adds (GVN, jump threading, DSE, more inlining, higher unroll thresholds)
finds nothing in loops that are generated vectorisable with ``noalias``
operands, and the GEMM's are scheduled by hand.

NOTE: [No loop strength reduction, no post-RA scheduling]
Code generation spends ~12% of its time in loop strength reduction and ~6%
in the post-register-allocation scheduler (the W4 step: 246 -> 180 ms of
emit_object without LSR, 178 with neither). Neither finds anything in loops
that index with ``nuw nsw`` offsets from a few base pointers (LLVM's address
modes already fold them), measured side by side in one process: W4 step,
256^3 and transposed 512^3 GEMMs, gelu (W1), softmax cross-entropy (W2),
row layernorm and column sums all within +-3% (noise) with bitwise equal
results. Both are process-wide LLVM options, set before the first module is
parsed, so every compile of a process (and so the object code a cache key
names) sees the same settings.
"""

from __future__ import annotations

import functools

import llvmlite.binding as llvm

from runtime.errors import JitError
from runtime.target import initialize_llvm

__all__ = ["parse_module", "optimize_module"]


def parse_module(llvm_ir: str, tm: llvm.TargetMachine, *, name: str = "module") -> llvm.ModuleRef:
    """Parse LLVM IR text, stamp it with ``tm``'s triple and data layout, verify it."""
    initialize_llvm()
    _set_codegen_options()
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


@functools.cache
def _set_codegen_options() -> None:
    # See [No loop strength reduction, no post-RA scheduling].
    llvm.set_option("", "-disable-lsr")
    llvm.set_option("", "-disable-post-ra")


def optimize_module(mod: llvm.ModuleRef, tm: llvm.TargetMachine, *, speed_level: int = 1) -> None:
    """Run LLVM's ``O<speed_level>`` pipeline with the loop and SLP vectorisers
    on a verified module, in place (see [O1 with the vectorisers])."""
    pto = llvm.create_pipeline_tuning_options(speed_level=speed_level)
    pto.loop_vectorization = True
    # SLP is off by default in llvmlite; it packs straight-line code (unrolled
    # small loops, the pointer-table loads) into vectors.
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
