"""Forward-mode differentiation (Jacobian-vector products) by transposing the VJP.

NOTE: [JVP as the VJP of the VJP]
``vjp_function(fn, wrt)`` computes ``g -> J^T g``, a function that is linear in
the cotangents ``g``. Differentiating it again with respect to ``g``, with the
tangents ``t`` as the seed cotangents, gives ``(J^T)^T t = J t``: the JVP. So no
JVP rules are needed; the VJP rules, applied twice, do the work (the rules of the
ops a backward pass contains are each other's transposes: mul by a forward value,
broadcast <-> reduce_sum, pad <-> slice, ...). ``J t`` does not depend on ``g``,
so the cotangent parameters are replaced by zero constants and everything the
tangents do not need (including the backward pass itself) is swept away.
"""

from __future__ import annotations

from typing import Sequence

from ir import DType, Eqn, Function, Value
from ir.ops import infer_types

from compiler.autodiff.grad import _check_wrt, _sweep_dead, vjp_function

__all__ = ["jvp_function"]


def jvp_function(fn: Function, wrt: Sequence[int]) -> Function:
    """The Jacobian-vector product of ``fn`` w.r.t. the parameters ``wrt`` (forward mode).

    Pre: ``fn`` is valid IR; ``wrt`` indexes floating-point parameters. ``fn`` is
    not modified.

    Post: the result has parameters ``fn.params + [one tangent per index in wrt,
    of that parameter's type]`` and outputs ``fn.outputs + [one tangent per output
    of fn, of the output's type]``, where the tangent of output ``j`` is
    ``sum_i d out_j / d param_i . tangent_i`` (zeros for non-float outputs).
    Forward equations that no output needs are removed. Equations derived from
    ``model.py:12`` are located at ``model.py:12 (jvp)``.

    >>> import numpy as np
    >>> from ir import Builder, TensorType, interpret
    >>> b = Builder("f")
    >>> x = b.param(TensorType("f64", (2,)))
    >>> f = jvp_function(b.finish([b.mul(x, x)]), wrt=[0])
    >>> [a.tolist() for a in interpret(f, [np.array([1.0, 3.0]), np.array([1.0, 10.0])])]
    [[1.0, 9.0], [2.0, 60.0]]
    """
    wrt = _check_wrt(fn, wrt)
    n_params, n_outputs = len(fn.params), len(fn.outputs)
    backward = vjp_function(fn, wrt)
    # Cotangents of non-float outputs carry nothing (and cannot be differentiated).
    float_cts = [n_params + j for j, v in enumerate(fn.outputs) if v.dtype.is_float]
    transposed = vjp_function(backward, float_cts)
    # transposed.params: fn.params, g (one per output), cotangents of backward's outputs:
    # first of fn.outputs (unused: they do not depend on g), then of the gradients: the
    # tangents, one per wrt index with the parameter's type.
    zeroed = transposed.params[n_params : n_params + 2 * n_outputs]
    tangents = transposed.params[n_params + 2 * n_outputs :]
    zeros = [_zero_constant(v) for v in zeroed]
    first_tangent = len(transposed.outputs) - len(float_cts)
    by_float_index = dict(zip(float_cts, transposed.outputs[first_tangent:], strict=True))
    tangent_outputs = []
    for j, out in enumerate(fn.outputs):
        tangent = by_float_index.get(n_params + j)
        if tangent is None:
            zero = Value(out.type)
            zeros.append(_zero_constant(zero))
            tangent = zero
        tangent_outputs.append(tangent)
    outputs = list(fn.outputs) + tangent_outputs
    n_forward, n_backward = len(fn.eqns), len(backward.eqns)
    eqns = zeros + [
        _relabel(eqn, passes=0 if i < n_forward else 1 if i < n_backward else 2)
        for i, eqn in enumerate(transposed.eqns)
    ]
    eqns = _sweep_dead(eqns, outputs)
    return Function(f"{fn.name}_jvp", list(fn.params) + list(tangents), eqns, outputs)


def _zero_constant(value: Value) -> Eqn:
    """``value = constant 0``: defines ``value`` itself, so its uses need no rewriting."""
    zero = 0.0 if value.dtype.is_float else False if value.dtype == DType.bool else 0
    attrs = {"value": zero, "dtype": value.dtype, "shape": value.shape}
    attrs, _ = infer_types("constant", [], attrs)
    return Eqn("constant", (), (value,), attrs)


def _relabel(eqn: Eqn, passes: int) -> Eqn:
    """Turn the ``" (grad)"`` suffixes the two VJP passes added into one ``" (jvp)"``."""
    if passes == 0 or not eqn.loc:
        return eqn
    loc = eqn.loc
    for _ in range(passes):
        loc = loc.removesuffix(" (grad)")
    return Eqn(eqn.op, eqn.inputs, eqn.outputs, dict(eqn.attrs), f"{loc} (jvp)", eqn.body)
