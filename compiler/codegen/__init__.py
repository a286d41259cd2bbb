"""LLVM code generation: IR Function -> LLVM IR text of one module.

``lower_function(fn)`` gives the text; ``lower(fn)`` also the signature and
arena size the runtime needs. Ops are lowered through per-op emitters keyed by
op name, in three tables: ``ELEMENTWISE_EMITTERS`` (scalar math),
``INDEX_EMITTERS`` (shape and source ops as index maps) and
``KERNEL_EMITTERS`` (reductions, dot). ``lowered_ops()`` is their union; a test
checks it covers ``ir.all_ops()``.
"""

from compiler.codegen.errors import LoweringError
from compiler.codegen.index_ops import INDEX_EMITTERS
from compiler.codegen.kernels import KERNEL_EMITTERS, lowered_ops
from compiler.codegen.lower import LoweredProgram, lower, lower_function
from compiler.codegen.scalar_ops import ELEMENTWISE_EMITTERS

__all__ = ["lower_function", "lower", "LoweredProgram", "LoweringError", "lowered_ops",
           "ELEMENTWISE_EMITTERS", "INDEX_EMITTERS", "KERNEL_EMITTERS"]
