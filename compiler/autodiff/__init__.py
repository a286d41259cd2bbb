"""Automatic differentiation as IR -> IR passes.

``grad_function`` and ``vjp_function`` append the reverse-mode gradient of a
``Function`` to it; ``RULES`` holds one VJP rule per primitive and
``NONDIFFERENTIABLE`` the ops that carry no gradient (see ``rules.py``).
"""

from compiler.autodiff.grad import DifferentiationError, grad_function, vjp_function
from compiler.autodiff.rules import NONDIFFERENTIABLE, RULES

__all__ = ["DifferentiationError", "grad_function", "vjp_function", "RULES", "NONDIFFERENTIABLE"]
