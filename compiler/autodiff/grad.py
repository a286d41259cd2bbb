"""Reverse-mode differentiation as an IR -> IR pass.

NOTE: [How the pass works]
The forward equations are kept as they are (copied, not re-traced) and the
backward equations are appended after them:

1. Activity: a value is *active* if it is floating point and depends on a
   differentiated (``wrt``) parameter through ops that are not in
   ``NONDIFFERENTIABLE``. Only active values get cotangents.
2. Walk the equations in reverse. An equation whose output has a cotangent gets
   its VJP rule applied; the cotangents of its active operands are accumulated
   (fan-out is summed with ``add`` here, once, never in the rules). Outputs
   without a cotangent are skipped, which prunes zeros: no equation is ever
   emitted for a cotangent that is known to be zero.
3. A ``wrt`` parameter that no cotangent reached gets a zero constant.
4. Rules compute a cotangent for every operand; the ones nobody needed (e.g. for
   a constant operand) are removed again by a dead-code sweep over the appended
   equations only. Forward equations are never removed.

Every gradient equation records the forward equation's location with a
``" (grad)"`` suffix, so ``model.py:12`` becomes ``model.py:12 (grad)``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ir import Builder, Eqn, Function, Value
from ir.errors import IRError

from compiler.autodiff.rules import NONDIFFERENTIABLE, RULES

__all__ = ["DifferentiationError", "vjp_function", "grad_function"]


class DifferentiationError(IRError, TypeError):
    """The function cannot be differentiated as asked (no rule, integer input, ...)."""


def vjp_function(fn: Function, wrt: Sequence[int]) -> Function:
    """Append the vector-Jacobian product of ``fn`` w.r.t. the parameters ``wrt``.

    Pre: ``fn`` is valid IR (SSA, topological order); ``wrt`` indexes
    floating-point parameters. ``fn`` is not modified.

    Post: the result has parameters ``fn.params + [one cotangent per output of fn,
    of the output's type]`` and outputs ``fn.outputs + [one gradient per index in
    wrt, of that parameter's type]``, where the gradient of parameter ``i`` is
    ``sum_j ct_j . d out_j / d param_i``. Its first equations are (copies of)
    ``fn``'s; cotangents of non-float outputs are accepted and ignored.

    >>> import numpy as np
    >>> from ir import Builder, TensorType, interpret
    >>> b = Builder("f")
    >>> x = b.param(TensorType("f64", (2,)))
    >>> f = vjp_function(b.finish([b.mul(x, x)]), wrt=[0])
    >>> [a.tolist() for a in interpret(f, [np.array([1.0, 3.0]), np.array([1.0, 10.0])])]
    [[1.0, 9.0], [2.0, 60.0]]
    """
    wrt = _check_wrt(fn, wrt)
    b = _extend(fn, f"{fn.name}_vjp")
    seeds = [b.param(v.type) for v in fn.outputs]
    grads = _append_backward(b, fn, wrt, list(zip(fn.outputs, seeds, strict=True)))
    return _finish(b, len(fn.eqns), list(fn.outputs), grads)


def grad_function(fn: Function, wrt: Sequence[int], *, output_index: int = 0) -> Function:
    """Append the gradient of the scalar output ``output_index`` w.r.t. the parameters ``wrt``.

    Pre: output ``output_index`` of ``fn`` is a float scalar (type ``f32[]`` or
    ``f64[]``); ``wrt`` indexes floating-point parameters. ``fn`` is not modified.

    Post: the result has ``fn``'s parameters and outputs ``fn.outputs + [one
    gradient per index in wrt, of that parameter's type]``: the value and any
    auxiliary outputs pass through unchanged, then the gradients.

    >>> import numpy as np
    >>> from ir import Builder, TensorType, interpret
    >>> b = Builder("f")
    >>> x = b.param(TensorType("f64", (3,)))
    >>> loss = b.reduce_sum(b.mul(x, x), axes=[0])
    >>> g = grad_function(b.finish([loss]), wrt=[0])
    >>> [a.tolist() for a in interpret(g, [np.array([1.0, 2.0, 3.0])])]
    [14.0, [2.0, 4.0, 6.0]]
    """
    wrt = _check_wrt(fn, wrt)
    if not 0 <= output_index < len(fn.outputs):
        raise DifferentiationError(
            f"grad_function: output_index {output_index} is out of range; @{fn.name} has "
            f"{len(fn.outputs)} output(s)"
        )
    out = fn.outputs[output_index]
    if out.shape != () or not out.dtype.is_float:
        raise DifferentiationError(
            f"grad_function needs a float scalar output, but output {output_index} of "
            f"@{fn.name} is {out.type}; reduce it to a scalar first, or use vjp_function "
            "with a seed cotangent"
        )
    b = _extend(fn, f"{fn.name}_grad")
    seed = b.constant(1.0, out.dtype, ())
    grads = _append_backward(b, fn, wrt, [(out, seed)])
    return _finish(b, len(fn.eqns), list(fn.outputs), grads)


# --- the driver ----------------------------------------------------------------------------


def _check_wrt(fn: Function, wrt: Sequence[int]) -> list[int]:
    wrt = list(wrt)
    for i in wrt:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(fn.params):
            raise DifferentiationError(
                f"wrt index {i!r} is not a parameter index of @{fn.name}, which has "
                f"{len(fn.params)} parameter(s)"
            )
        t = fn.params[i].type
        if not t.dtype.is_float:
            raise DifferentiationError(
                f"cannot differentiate @{fn.name} with respect to parameter {i} of type {t}: "
                "gradients only flow through floating values (f32, f64); cast it to a "
                "float type inside the function, or leave it out of wrt"
            )
    return wrt


def _extend(fn: Function, name: str) -> Builder:
    """A builder continuing a copy of ``fn``: same parameters, copied equations."""
    b = Builder(name)
    b.params = list(fn.params)
    # Eqns are mutable dataclasses: copy them so the result never aliases the input's.
    b.eqns = [dataclasses.replace(e, attrs=dict(e.attrs)) for e in fn.eqns]
    return b


def _active_values(fn: Function, wrt_params: set[Value]) -> set[Value]:
    active = {p for p in wrt_params if p.dtype.is_float}
    for eqn in fn.eqns:
        if eqn.op in NONDIFFERENTIABLE or not any(v in active for v in eqn.inputs):
            continue
        active.update(v for v in eqn.outputs if v.dtype.is_float)
    return active


def _grad_loc(loc: str | None) -> str | None:
    return f"{loc} (grad)" if loc else None


def _append_backward(
    b: Builder, fn: Function, wrt: list[int], seeds: list[tuple[Value, Value]]
) -> list[Value]:
    """Emit the backward equations into ``b``; returns one gradient per ``wrt`` index."""
    active = _active_values(fn, {fn.params[i] for i in wrt})
    cotangents: dict[Value, Value] = {}

    def accumulate(value: Value, ct: Value) -> None:
        previous = cotangents.get(value)
        cotangents[value] = ct if previous is None else b.add(previous, ct)

    for out, seed in seeds:
        if out in active:
            accumulate(out, seed)
    for eqn in reversed(fn.eqns):
        if eqn.op in NONDIFFERENTIABLE or not any(v in cotangents for v in eqn.outputs):
            continue  # off the path, or a zero cotangent: nothing to emit
        rule = RULES.get(eqn.op)
        if rule is None or len(eqn.outputs) != 1:  # rules handle single-output ops only
            raise DifferentiationError(
                f"no VJP rule for '{eqn.op}' (used at {eqn.loc or 'an unknown location'} in "
                f"@{fn.name}); add one to compiler/autodiff/rules.py or list the op in "
                "NONDIFFERENTIABLE"
            )
        with b.at(_grad_loc(eqn.loc)):
            operand_cts = rule(b, eqn, cotangents[eqn.output])
            if len(operand_cts) != len(eqn.inputs):
                raise DifferentiationError(
                    f"the VJP rule of '{eqn.op}' returned {len(operand_cts)} cotangent(s) for "
                    f"{len(eqn.inputs)} operand(s)"
                )
            for x, x_ct in zip(eqn.inputs, operand_cts, strict=True):
                if x_ct is None or x not in active:
                    continue
                if x_ct.type != x.type:
                    raise DifferentiationError(
                        f"the VJP rule of '{eqn.op}' gave a cotangent of type {x_ct.type} for "
                        f"an operand of type {x.type}"
                    )
                accumulate(x, x_ct)
    grads = []
    for i in wrt:
        param = fn.params[i]
        grad = cotangents.get(param)
        grads.append(grad if grad is not None else b.constant(0.0, param.dtype, param.shape))
    return grads


def _finish(b: Builder, n_forward: int, outputs: list[Value], grads: list[Value]) -> Function:
    """The function with the gradient equations nobody uses removed (forward ones all kept)."""
    eqns = _sweep_dead(b.eqns, grads, keep_first=n_forward)
    return Function(b.name, list(b.params), eqns, outputs + grads)


def _sweep_dead(eqns: list[Eqn], roots: Sequence[Value], keep_first: int = 0) -> list[Eqn]:
    """``eqns[:keep_first]`` and the later equations that ``roots`` depend on, in order."""
    needed = set(roots)
    kept = []
    for eqn in reversed(eqns[keep_first:]):
        if any(v in needed for v in eqn.outputs):
            kept.append(eqn)
            needed.update(eqn.inputs)
    return eqns[:keep_first] + kept[::-1]
