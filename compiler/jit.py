"""``jit``: trace a function once per input signature, compile it, run natively.

>>> import numpy as np
>>> from compiler import jit
>>> @jit
... def f(x, y):
...     return (x * y).sum()
>>> float(f(np.ones(3, np.float32), np.arange(3, dtype=np.float32)).item())
3.0
>>> print(f.lower(np.ones(3, np.float32), np.ones(3, np.float32)).as_text(), end="")  # doctest: +ELLIPSIS
func @f(%0: f32[3], %1: f32[3]) -> (f32[]) {
  %2 = mul %0, %1 : f32[3]  # ...
  %3 = reduce_sum %2 {axes=[0]} : f32[]  # ...
  return %3
}
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from compiler.frontend.tensor import Tensor
from compiler.frontend.tracing import Signature, Traced, leaf_type, run_traced, split_args, trace
from compiler.pipeline import compile_cached, optimize
from compiler.pytree import unflatten
from ir import Function, print_function

__all__ = ["jit", "Jitted", "Lowered"]


def jit(fn: Callable | None = None, *, static_argnums: Sequence[int] | int = (),
        static_argnames: Sequence[str] | str = ()):
    """Compile ``fn`` for each distinct input signature (shapes, dtypes, structure
    of nested tuples/lists/dicts, and the values of static arguments).

    Returns Tensors (in the structure ``fn`` returned). Called with Variables, the
    compiled function joins their graph instead (e.g. inside ``functional.grad``).
    """
    if fn is None:
        return functools.partial(jit, static_argnums=static_argnums, static_argnames=static_argnames)
    return Jitted(fn, static_argnums, static_argnames)


class Jitted:
    """A jit-compiled function; ``.lower(*args)`` shows what it compiles to."""

    def __init__(self, fn: Callable, static_argnums=(), static_argnames=()):
        self.fn = fn
        self.static_argnums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        self.static_argnames = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        self._traces: dict[Signature, Traced] = {}
        functools.update_wrapper(self, fn)

    def _signature(self, args, kwargs) -> tuple[Signature, list]:
        name = getattr(self.fn, "__name__", "function")
        leaves, tree, static = split_args(name, args, kwargs, self.static_argnums, self.static_argnames)
        return Signature(tree, tuple(leaf_type(x) for x in leaves), static), leaves

    def _traced(self, signature: Signature) -> Traced:
        traced = self._traces.get(signature)
        if traced is None:
            traced = trace(self.fn, signature, "jit")
            if traced.reusable:
                self._traces[signature] = traced
        return traced

    def __call__(self, *args, **kwargs):
        signature, leaves = self._signature(args, kwargs)
        traced = self._traced(signature)
        outputs, symbolic = run_traced(traced, leaves, compile_cached)
        if not symbolic:
            outputs = [Tensor._wrap(o) for o in outputs]
        return unflatten(traced.out_tree, outputs)

    def lower(self, *args, **kwargs) -> "Lowered":
        """The traced IR for these arguments; ``.as_text()`` prints it."""
        signature, _ = self._signature(args, kwargs)
        return Lowered(self._traced(signature).fn)

    @property
    def cache_size(self) -> int:
        """How many signatures have been traced."""
        return len(self._traces)


class Lowered:
    """A traced function, ready to show or compile.

    ``as_text("ir")`` is the traced IR, ``"optimized-ir"`` the IR after the
    optimisation passes, ``"llvm"`` / ``"optimized-llvm"`` the LLVM IR before and
    after LLVM's optimiser, ``"asm"`` the host assembly.
    """

    KINDS = ("ir", "optimized-ir", "llvm", "optimized-llvm", "asm")

    def __init__(self, fn: Function):
        self.function = fn

    def compile(self):
        """The native executable (``runtime.Executable``)."""
        return compile_cached(self.function)

    def as_text(self, kind: str = "ir") -> str:
        if kind == "ir":
            return print_function(self.function)
        if kind == "optimized-ir":
            return print_function(optimize(self.function))
        exe = self.compile()
        if kind == "llvm":
            return exe.llvm_ir
        if kind == "optimized-llvm":
            return exe.optimized_llvm_ir
        if kind == "asm":
            return exe.asm
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(self.KINDS)}")
