"""The functional API: ``grad``, ``value_and_grad``, ``vjp``, ``jvp``,
``jacobian`` and ``hessian`` of pure functions, compiled like ``jit``.

Each transformed function traces ``f`` once per input signature, appends the
gradient with the differentiation pass, and compiles the result. Called with
Variables (inside another trace, e.g. ``grad(grad(f))``), it joins their graph
instead, which is how derivatives of any order work.

>>> from compiler import Tensor, functional
>>> def square(x):
...     return x * x
>>> functional.grad(square)(Tensor([3.0], ())).data()[0]
np.float32(6.0)
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from compiler.autodiff import grad_function, jvp_function, vjp_function
from compiler.frontend import numpy_api as fnp
from compiler.frontend.tensor import Tensor
from compiler.frontend.tracing import (Signature, Traced, leaf_array, leaf_type, run_traced,
                                       split_args, trace, weak_leaves)
from compiler.frontend.variable import Variable
from compiler.pipeline import compile_cached
from compiler.pytree import TreeDef, flatten, unflatten
from ir import Function
from compiler.frontend.source_info import user_location
from ir.errors import DTypeError, IRError, ShapeError

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacobian", "hessian"]


def grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """The gradient of scalar-valued ``f`` with respect to the arguments ``argnums``.

    With ``has_aux``, ``f`` returns ``(value, aux)`` and the result is ``(grads, aux)``.
    Gradients have the structure of their arguments (nested containers too).
    """
    vg = value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def grad_f(*args, **kwargs):
        value, grads = vg(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    return grad_f


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """``f``'s value together with its gradient (see ``grad``)."""
    return _ValueAndGrad(f, argnums, has_aux)


class _ValueAndGrad:
    def __init__(self, f, argnums, has_aux):
        self.f = f
        self.argnums = argnums
        self.has_aux = has_aux
        self._cache: dict[Signature, tuple[Traced, list[TreeDef]]] = {}
        functools.update_wrapper(self, f)

    def _wrt(self, num_args: int) -> tuple[int, ...]:
        nums = (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)
        for n in nums:
            if not -num_args <= n < num_args:
                raise IRError(f"grad: argnums {self.argnums} out of range for {num_args} argument(s)")
        return tuple(n % num_args for n in nums)

    def __call__(self, *args, **kwargs):
        name = getattr(self.f, "__name__", "function")
        if not args:
            raise IRError(f"grad of {name}: needs at least one positional argument to differentiate")
        wrt_args = self._wrt(len(args))
        leaves, tree, static = split_args(name, args, kwargs, (), ())
        signature = Signature(tree, tuple(leaf_type(x) for x in leaves), (), (wrt_args, self.has_aux),
                              weak_leaves(leaves))
        cached = self._cache.get(signature)
        if cached is None:
            cached = self._trace(signature, args, wrt_args)
            if cached[0].reusable:
                self._cache[signature] = cached
        traced, arg_trees = cached
        outputs, symbolic = run_traced(traced, leaves, compile_cached)
        if not symbolic:
            outputs = [Tensor._wrap(o) for o in outputs]
        num_values = traced.out_tree.num_leaves
        value = unflatten(traced.out_tree, outputs[:num_values])
        grads = _split_per_argument(outputs[num_values:], arg_trees)
        return value, grads[0] if isinstance(self.argnums, int) else tuple(grads)

    def _trace(self, signature: Signature, args, wrt_args) -> tuple[Traced, list[TreeDef]]:
        # Leaf offsets of each positional argument in the flattened call.
        offsets, arg_trees, start = [], [], 0
        for a in args:
            n = len(flatten(a)[0])
            offsets.append(range(start, start + n))
            arg_trees.append(flatten(a)[1])
            start += n
        wrt = [i for a in wrt_args for i in offsets[a]]
        for i in wrt:
            t = signature.leaf_types[i]
            if not t.dtype.is_float:
                raise DTypeError(
                    f"grad of {getattr(self.f, '__name__', 'function')}: argument leaf of type "
                    f"{t} is not floating-point (at {user_location()}); gradients only flow "
                    "through f32/f64 values (pass integer inputs as non-differentiated arguments)"
                )

        has_aux = self.has_aux

        def finish(result):
            # Check before unpacking: a 2-vector Variable would unpack as (value, aux).
            if has_aux and not (isinstance(result, tuple) and len(result) == 2):
                raise IRError("grad(has_aux=True): the function must return a pair (value, aux), "
                              f"got {type(result).__name__} (at {user_location()})")
            value, aux = (result if has_aux else (result, None))
            value = value if isinstance(value, Variable) else fnp.asvariable(value)
            if value.shape != () or not value.dtype.is_float:
                error = ShapeError if value.shape != () else DTypeError
                made = f", made at {value._loc}" if value._loc else ""
                raise error(
                    f"grad of {getattr(self.f, '__name__', 'function')}: the function must "
                    f"return a floating-point scalar, got {value.type} (at {user_location()}"
                    f"{made}); reduce it (e.g. .sum() or .mean()) or use functional.vjp with "
                    "a cotangent"
                )
            aux_leaves, aux_tree = flatten(aux)
            tree = flatten((value, aux) if has_aux else value)[1]
            return [value] + [fnp.asvariable(x) for x in aux_leaves], tree

        traced = trace(self.f, signature, "grad", finish)
        fn = grad_function(traced.fn, wrt, output_index=0)
        return Traced(fn, traced.captures, traced.out_tree, traced.num_inputs), \
            [arg_trees[a] for a in wrt_args]


def _run_with_extras(fn: Function, traced: Traced, leaves: list, extras: list) -> list:
    """Run ``fn``, a transform of ``traced.fn`` whose parameters are the traced
    parameters, its captures, then ``extras`` (cotangents or tangents)."""
    if not traced.reusable or any(isinstance(x, Variable) for x in [*leaves, *extras]):
        with_extras = Traced(fn, list(traced.captures) + [fnp.asvariable(x) for x in extras],
                             traced.out_tree, traced.num_inputs)
        return run_traced(with_extras, list(leaves), compile_cached)[0]
    arrays = [leaf_array(x) for x in leaves] + traced.capture_arrays() + [leaf_array(x) for x in extras]
    return [Tensor._wrap(o) for o in compile_cached(fn)(*arrays)]


def _check_like(what: str, given: list, expected_types, given_tree: TreeDef, expected_tree: TreeDef):
    if given_tree != expected_tree:
        raise ShapeError(f"{what}: structure {given_tree} differs from the expected "
                         f"{expected_tree} (at {user_location()})")
    for x, t in zip(given, expected_types, strict=True):
        if leaf_type(x) != t:
            error = ShapeError if leaf_type(x).shape != t.shape else DTypeError
            raise error(f"{what}: got {leaf_type(x)} where {t} is expected (at {user_location()})")


def _split_per_argument(flat: list, arg_trees: list[TreeDef]) -> tuple:
    result = []
    for t in arg_trees:
        result.append(unflatten(t, flat[:t.num_leaves]))
        flat = flat[t.num_leaves:]
    return tuple(result)


def _trace_call(f: Callable, primals: tuple, purpose: str) -> tuple[Traced, list]:
    name = getattr(f, "__name__", "function")
    leaves, tree, _ = split_args(name, primals, {}, (), ())
    for x in leaves:
        if not leaf_type(x).dtype.is_float:
            raise DTypeError(f"{purpose}: argument leaf of type {leaf_type(x)} is not "
                             f"floating-point (at {user_location()}); derivatives only flow "
                             "through f32/f64 values")
    signature = Signature(tree, tuple(leaf_type(x) for x in leaves), (), weak=weak_leaves(leaves))
    return trace(f, signature, purpose), leaves


def vjp(f: Callable, *primals):
    """``(f(*primals), vjp_fn)`` where ``vjp_fn(cotangent)`` gives one cotangent per primal
    (a tuple, in the structure of each primal)."""
    from compiler.jit import jit

    traced, leaves = _trace_call(f, primals, "vjp")
    fn = vjp_function(traced.fn, list(range(traced.num_inputs)))
    arg_trees = [flatten(p)[1] for p in primals]

    def vjp_fn(cotangent):
        ct_leaves, ct_tree = flatten(cotangent)
        _check_like("vjp cotangent", ct_leaves, traced.fn.output_types, ct_tree, traced.out_tree)
        outputs = _run_with_extras(fn, traced, leaves, ct_leaves)
        return _split_per_argument(outputs[traced.out_tree.num_leaves:], arg_trees)

    return jit(f)(*primals), vjp_fn


def jvp(f: Callable, primals: Sequence, tangents: Sequence):
    """Forward mode: ``(f(*primals), J @ tangents)``; tangents have the primals' structure."""
    primals, tangents = tuple(primals), tuple(tangents)
    traced, leaves = _trace_call(f, primals, "jvp")
    t_leaves, t_tree = flatten(tangents)
    _check_like("jvp tangents", t_leaves, [leaf_type(x) for x in leaves], t_tree, flatten(primals)[1])
    fn = jvp_function(traced.fn, list(range(traced.num_inputs)))
    outputs = _run_with_extras(fn, traced, leaves, t_leaves)
    n = traced.out_tree.num_leaves
    return unflatten(traced.out_tree, outputs[:n]), unflatten(traced.out_tree, outputs[n:])


def jacobian(f: Callable) -> Callable:
    """The Jacobian of ``f`` (one array in, one array out): shape ``out.shape + in.shape``.

    Computed row by row in reverse mode inside one compiled program; meant for
    small outputs.
    """

    def jac(x):
        from compiler.jit import jit

        def rows(x):
            y = f(x)
            n = int(y.size) if y.ndim else 1
            grads = [grad(lambda x, i=i: fnp.reshape(f(x), (n,))[i])(x) for i in range(n)]
            return fnp.reshape(fnp.stack(grads), (*y.shape, *x.shape))

        return jit(rows)(x) if not isinstance(x, Variable) else rows(x)

    return jac


def hessian(f: Callable) -> Callable:
    """The Hessian of scalar ``f`` of one array: ``jacobian(grad(f))``."""
    return jacobian(grad(f))
