"""Tracing a Python function into an IR Function, shared by ``jit`` and ``functional``.

A call's arguments are split into static values (part of the cache key, passed
to the function as they are) and dynamic leaves of nested containers (each
becomes an abstract Variable, i.e. a parameter of the traced Function). The
traced Function's parameters are the dynamic leaves followed by the values it
captured (closed-over Variables and arrays), which are read at each call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from compiler.frontend.evaluate import build_function, inline
from compiler.frontend.numpy_api import asvariable
from compiler.frontend.tensor import Tensor, as_array
from compiler.frontend.variable import Trace, Variable
from compiler.pytree import TreeDef, flatten, unflatten
from ir import Function, TensorType

__all__ = ["Signature", "Traced", "split_args", "trace", "leaf_array", "leaf_type", "run_traced",
           "weak_leaves"]


@dataclass(frozen=True)
class Signature:
    """What selects a compiled program: structure, leaf types and static values."""

    in_tree: TreeDef
    leaf_types: tuple[TensorType, ...]
    static: tuple
    transform: tuple = ()  # e.g. grad's argnums and has_aux
    weak: tuple[bool, ...] = ()  # per leaf: a Python number (weakly typed, NEP 50)


@dataclass
class Traced:
    fn: Function
    captures: list[Variable]
    out_tree: TreeDef
    num_inputs: int
    # The compiled program, once run_traced has needed it: later calls skip the
    # structural lookup (printing the IR) that finding it again would cost.
    executable: Any = None

    @property
    def reusable(self) -> bool:
        """False if it captured values of an enclosing trace (valid only there)."""
        return all(c._trace is None for c in self.captures)

    def capture_arrays(self) -> list[np.ndarray]:
        return [c.data._array for c in self.captures]


def leaf_type(x) -> TensorType:
    if isinstance(x, (Variable, Tensor)):
        return x.type
    arr = as_array(x)
    return TensorType(arr.dtype, arr.shape)


def weak_leaves(leaves) -> tuple[bool, ...]:
    """Which leaves are Python numbers (weakly typed, like Python scalars in numpy)."""
    return tuple(type(x) in (bool, int, float) for x in leaves)


def leaf_array(x) -> np.ndarray:
    if isinstance(x, Tensor):
        return x._array
    return as_array(x)


def split_args(fn_name: str, args: tuple, kwargs: dict, static_argnums: Sequence[int],
               static_argnames: Sequence[str]) -> tuple[list, TreeDef, tuple]:
    """(dynamic leaves, their structure, static values) of one call."""
    static_nums = {i % max(len(args), 1) if i < 0 else i for i in static_argnums}
    dynamic_args = tuple(a for i, a in enumerate(args) if i not in static_nums)
    dynamic_kwargs = {k: v for k, v in kwargs.items() if k not in static_argnames}
    static = tuple((i, a) for i, a in enumerate(args) if i in static_nums) + tuple(
        sorted((k, v) for k, v in kwargs.items() if k in static_argnames))
    try:
        hash(static)
    except TypeError:
        raise TypeError(
            f"{fn_name}: static arguments must be hashable (they select the compiled program), "
            f"got {static!r}"
        ) from None
    leaves, tree = flatten((dynamic_args, dynamic_kwargs))
    return leaves, tree, static


def rebuild_call(tree: TreeDef, leaves, static: tuple):
    """The positional and keyword arguments of the original call, with new leaves."""
    dynamic_args, dynamic_kwargs = unflatten(tree, leaves)
    args = list(dynamic_args)
    kwargs = dict(dynamic_kwargs)
    for key, value in static:
        if isinstance(key, int):
            args.insert(key, value)
        else:
            kwargs[key] = value
    return args, kwargs


def trace(fn: Callable, signature: Signature, purpose: str,
          finish: Callable[[Any], tuple[list[Variable], TreeDef]] | None = None) -> Traced:
    """Trace ``fn`` for ``signature``.

    ``finish(result)`` turns the function's return value into output Variables
    and their structure (default: every leaf of the result, in order).
    """
    session = Trace(purpose)
    params = [Variable._abstract(t, session) for t in signature.leaf_types]
    for param, weak in zip(params, signature.weak):
        param._weak = weak
    args, kwargs = rebuild_call(signature.in_tree, params, signature.static)
    with session:
        result = fn(*args, **kwargs)
        if finish is None:
            out_leaves, out_tree = flatten(result)
            outputs = [_as_output(x, purpose) for x in out_leaves]
        else:
            outputs, out_tree = finish(result)
    name = getattr(fn, "__name__", "fn")
    name = name if name.isidentifier() else "fn"
    ir_fn, captures = build_function(outputs, params, name=name)
    return Traced(ir_fn, captures, out_tree, len(params))


def _as_output(x, purpose: str) -> Variable:
    if isinstance(x, Variable):
        return x
    try:
        return asvariable(x)
    except Exception:
        raise TypeError(
            f"{purpose}: the function returned {type(x).__name__}, which is not an array; "
            "return Variables, arrays or nested tuples/lists/dicts of them"
        ) from None


def run_traced(traced: Traced, leaves: list, executable_for: Callable[[Function], Any]):
    """Run a traced function on call leaves: natively when all are concrete,
    otherwise by inlining it into the enclosing lazy graph or trace. A function that
    captured values of an enclosing trace is inlined there even for concrete leaves."""
    if not traced.reusable or any(isinstance(x, Variable) for x in leaves):
        inputs = [asvariable(x) for x in leaves] + list(traced.captures)
        return inline(traced.fn, inputs), True
    arrays = [leaf_array(x) for x in leaves] + traced.capture_arrays()
    if traced.executable is None:
        traced.executable = executable_for(traced.fn)
    return traced.executable(*arrays), False
