"""Every shape-generic kernel of the kernel library, for one host vector width.

See [Shape-generic kernels] in library.py. The set is what ``plan_gemm`` and
``plan_skinny`` can ask for on this host: for each dtype and register tile
(gemm_plan.py ``tiles``), the micro-kernel of every row count, column vector
count and A layout, and the packers of its A panels (``mr`` wide) and B
panels (``nr`` wide, zero-padded); plus the skinny kernel's column packer.
"""

from __future__ import annotations

import llvmlite.ir as ll

from ir.dtypes import DType
from compiler.codegen.gemm_kernel import micro_kernel
from compiler.codegen.gemm_pack import copy_packer, transposing_copy_packer, transposing_packer
from compiler.codegen.gemm_plan import tiles
from compiler.codegen.library import export_library
from compiler.codegen.llvm_types import value_type

__all__ = ["library_module", "DTYPES"]

DTYPES = (DType.f32, DType.f64)


def library_module(vector_bits: int, name: str = "xlac_kernels") -> tuple[ll.Module, list[str]]:
    """The library's LLVM module and the names of the functions it exports."""
    module = ll.Module(name=name)
    export_library(module)
    for dtype in DTYPES:
        etype = value_type(dtype)
        for tile in tiles(dtype, vector_bits):
            for rows in range(1, tile.mr + 1):
                for vectors in range(1, tile.nr // tile.lanes + 1):
                    for a_rows_strided in (False, True):
                        for partial in (False, True):
                            micro_kernel(module, tile, rows, vectors, a_rows_strided,
                                         partial=partial)
            for width, pad in ((tile.mr, False), (tile.nr, True)):
                copy_packer(module, etype, width, pad, tile.lanes)
                transposing_copy_packer(module, etype, width, pad)
                transposing_packer(module, etype, width, tile.lanes)
        copy_packer(module, etype, 1, False, 0)  # the skinny GEMM's B columns
    names = [fn.name for fn in module.functions
             if not fn.is_declaration and not fn.name.startswith("llvm.")]
    return module, names
