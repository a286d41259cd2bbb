"""Functions a module may take from the kernel library instead of defining them.

NOTE: [Shape-generic kernels]
The GEMM's micro-kernels (gemm_kernel.py) and panel packers (gemm_pack.py)
take every stride and count as an argument and are specialised only on what
shapes their register code: dtype, tile, the rows of a tile and its column
vectors, whether A's rows are strided. There are a few hundred of them per
machine, so they are compiled once, ahead of the programs that call them
(compiler/kernel_library.py: at install time, or by ``xlac kernels build``),
and linked into the JIT once per process; a program then only declares the
ones it calls, and LLVM compiles only its own drivers and epilogues (the
W4 training step: ~190 of ~385 ms of LLVM CPU were these kernels).
Without the library (not built, or for an ahead-of-time object file) each
module defines the kernels it calls, internal, from the same generator:
the code, and so the results, are the same either way.

``use_library(module, symbols)`` marks a module as linked against a library
defining ``symbols`` (any container: compiler/kernel_library.py looks the
library up on the first question); ``library_function`` then declares those
instead of defining them, and ``links_library(module)`` says whether it did.
``export_library(module)`` marks the library's own module, whose definitions
are external.
"""

from __future__ import annotations

from typing import Callable, Container

import llvmlite.ir as ll

__all__ = ["library_function", "use_library", "export_library", "links_library"]

_LINKED = "xlac_library_symbols"
_DECLARED = "xlac_declares_library"
_EXPORTING = "xlac_exports_library"


def use_library(module: ll.Module, symbols: Container[str]) -> None:
    """Let ``module`` call the library's ``symbols`` instead of defining them."""
    setattr(module, _LINKED, symbols)


def links_library(module: ll.Module) -> bool:
    """Whether ``module`` declares a function of the library it links."""
    return getattr(module, _DECLARED, False)


def export_library(module: ll.Module) -> None:
    """Make ``module`` the library: its library functions are defined external."""
    setattr(module, _EXPORTING, True)


def library_function(module: ll.Module, name: str, fn_type: ll.FunctionType,
                     define: Callable[[ll.Function], None], arg_names: list[str], *,
                     noalias: int = 0) -> ll.Function:
    """The module's function ``name``: declared if the library it links provides
    it, else defined (once) by ``define(fn)``. Its first ``noalias`` pointer
    arguments do not alias each other or anything else the function reads."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = ll.Function(module, fn_type, name)
    fn.attributes.add("nounwind")
    for arg, arg_name in zip(fn.args, arg_names, strict=True):
        arg.name = arg_name
    for arg in fn.args[:noalias]:
        arg.add_attribute("noalias")
    if name in getattr(module, _LINKED, ()):
        setattr(module, _DECLARED, True)
        return fn  # the JIT links the library's definition
    if not getattr(module, _EXPORTING, False):
        fn.linkage = "internal"
    fn.attributes.add("noinline")  # one copy, called per tile or panel
    define(fn)
    return fn
