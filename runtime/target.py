"""The host target: LLVM initialisation, the host CPU and target machines.

NOTE: [Target machines are never shared with MCJIT]
``create_mcjit_compiler`` takes ownership of its TargetMachine and a TM reused
after that engine is gone crashes the process (notes/llvmlite.md §10). This
runtime uses ORC LLJIT, which copies the TM's settings, so one cached host TM
(``host_target_machine``) serves the optimiser, JIT code generation and
assembly listings. Anything that wants a TM to give away must call
``create_target_machine`` for a fresh one.
"""

from __future__ import annotations

import ctypes.util
import functools
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm

__all__ = ["HostTarget", "initialize_llvm", "host_target", "host_target_machine",
           "create_target_machine"]

_init_lock = threading.Lock()
_initialized = False


def initialize_llvm() -> None:
    """Initialise LLVM's native target once per process (idempotent, thread-safe).

    Also loads libm permanently so the JIT resolves the libm calls that
    transcendental ops lower to (``expm1f``, ``tanhf``...).
    """
    global _initialized
    with _init_lock:
        if _initialized:
            return
        llvm.initialize_native_target()
        # Without the asm printer code generation aborts the process (notes §1).
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()
        libm = ctypes.util.find_library("m")
        if libm:
            llvm.load_library_permanently(libm)
        _initialized = True


@dataclass(frozen=True)
class HostTarget:
    """What the generated code is specialised for: triple, CPU name, features."""

    triple: str
    cpu: str
    features: str

    def __str__(self) -> str:
        return f"{self.triple} ({self.cpu})"


@functools.cache
def host_target() -> HostTarget:
    """The machine this process runs on (e.g. ``znver4`` with its AVX-512 features)."""
    initialize_llvm()
    return HostTarget(
        triple=llvm.get_process_triple(),
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten(),
    )


def create_target_machine(*, cpu: str | None = None, features: str | None = None,
                          reloc: str = "default", codemodel: str = "jitdefault",
                          opt: int = 3) -> llvm.TargetMachine:
    """A new TargetMachine; ``cpu``/``features`` default to the host's.

    Object files meant for shared libraries need ``reloc='pic'`` and
    ``codemodel='default'`` (notes §7).
    """
    host = host_target()
    target = llvm.Target.from_triple(host.triple)
    return target.create_target_machine(
        cpu=host.cpu if cpu is None else cpu,
        features=host.features if features is None else features,
        opt=opt, reloc=reloc, codemodel=codemodel,
    )


@functools.cache
def host_target_machine() -> llvm.TargetMachine:
    """The process-wide host TM: optimiser, JIT codegen, assembly listings.

    Never hand it to MCJIT (see [Target machines are never shared with MCJIT]).
    """
    return create_target_machine()
