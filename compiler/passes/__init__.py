"""Optimisation passes: each a named function ``Function -> Function`` that never
mutates its input. ``compiler/pipeline.py`` lists them in order."""

from compiler.passes.cse import eliminate_common_subexpressions
from compiler.passes.dce import eliminate_dead_code
from compiler.passes.fold import fold_constants
from compiler.passes.fuse import explain_fusion, fuse
from compiler.passes.simplify import simplify

__all__ = ["simplify", "fold_constants", "eliminate_common_subexpressions", "eliminate_dead_code",
           "fuse", "explain_fusion"]
