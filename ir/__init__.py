"""The IR of xla-py: types, SSA values and equations, the op registry, builder,
text printer and parser, verifier and the numpy reference interpreter.

This package depends on numpy and networkx only; it never imports the compiler
or the runtime.
"""

from ir.builder import Builder
from ir.core import Eqn, Function, Module, Value, uses
from ir.dtypes import DType, TensorType, dtype_of, parse_type
from ir.errors import DTypeError, InterpError, IRError, ParseError, ShapeError, VerifyError
from ir.graph import to_dot
from ir.interp import interpret
from ir.ops import OpDef, all_ops, get_op
from ir.parser import parse_function
from ir.printer import print_function
from ir.verify import verify

__all__ = [
    "Builder", "Eqn", "Function", "Module", "Value", "uses",
    "DType", "TensorType", "dtype_of", "parse_type",
    "IRError", "ShapeError", "DTypeError", "VerifyError", "ParseError", "InterpError",
    "interpret", "OpDef", "all_ops", "get_op", "print_function",
    "parse_function", "verify", "to_dot",
]
