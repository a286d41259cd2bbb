"""Automatic differentiation as IR -> IR passes.

``grad_function`` and ``vjp_function`` append the reverse-mode gradient of a
``Function`` to it, ``jvp_function`` builds the forward-mode Jacobian-vector
product (by transposing the VJP); ``RULES`` holds one VJP rule per primitive and
``NONDIFFERENTIABLE`` the ops that carry no gradient (see ``rules.py``).
"""

from compiler.autodiff.grad import DifferentiationError, grad_function, vjp_function
from compiler.autodiff.jvp import jvp_function
from compiler.autodiff.rules import NONDIFFERENTIABLE, RULES

__all__ = [
    "DifferentiationError", "grad_function", "vjp_function", "jvp_function",
    "RULES", "NONDIFFERENTIABLE",
]
