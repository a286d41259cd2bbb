"""xla-py: trace Python model code into an SSA IR, differentiate it, optimise it
and run it as native code.

The public front door::

    from compiler import Tensor, Variable, functional, jit, nn
    import compiler as xp        # numpy-style functions: xp.exp, xp.where, xp.matmul ...
"""

from compiler import functional, nn
from compiler.frontend.numpy_api import (
    abs, add, argmax, argmin, asvariable, astype, broadcast_to, clip, concatenate, cos, divide,
    dot, equal, exp, expand_dims, expm1, floor, greater, greater_equal, less, less_equal, log,
    log1p, logical_not, matmul, max, maximum, mean, min, minimum, multiply, negative, not_equal,
    one_hot, ones_like, pad, power, reshape, rsqrt, sign, sin, sqrt, square, squeeze, stack,
    stop_gradient, flip,
    subtract, sum, take_along_axis, tanh, transpose, where, zeros_like,
    var, std, any, all, ravel, swapaxes, outer,
)
from compiler.frontend.creation import arange, eye, full, linspace, ones, zeros
from compiler.frontend.numpy_api import logistic as sigmoid
from compiler.frontend.tensor import DonatedBufferError, Tensor
from compiler.frontend.variable import (ConcretizationError, Variable, enable_grad,
                                       is_grad_enabled, no_grad)
from compiler.jit import DonationError, jit
from ir import DType

f32, f64, i32, i64 = DType.f32, DType.f64, DType.i32, DType.i64
bool_ = DType.bool

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Variable", "functional", "nn", "jit", "ConcretizationError", "DType",
    "no_grad", "enable_grad", "is_grad_enabled",
    "DonationError", "DonatedBufferError",
    "f32", "f64", "i32", "i64", "bool_",
    "abs", "add", "argmax", "argmin", "asvariable", "astype", "broadcast_to", "clip",
    "concatenate", "cos", "divide", "dot", "equal", "exp", "expand_dims", "expm1", "floor",
    "greater", "greater_equal", "less", "less_equal", "log", "log1p", "logical_not", "matmul",
    "max", "maximum", "mean", "min", "minimum", "multiply", "negative", "not_equal", "one_hot",
    "ones_like", "pad", "power", "reshape", "rsqrt", "sigmoid", "sign", "sin", "sqrt", "square",
    "squeeze", "stack", "subtract", "sum", "take_along_axis", "tanh", "transpose", "where",
    "zeros_like", "stop_gradient", "flip", "var", "std", "any", "all", "ravel", "swapaxes",
    "outer", "arange", "eye", "full", "linspace", "ones", "zeros",
]
