"""Common-subexpression elimination."""

from __future__ import annotations

from ir import Function
from ir.printer import format_attr

from compiler.passes.rewrite import Rewriter

__all__ = ["eliminate_common_subexpressions"]

# x + y and y + x are the same value, bit for bit (IEEE addition and
# multiplication commute, and so does integer arithmetic). maximum/minimum are
# left out: which zero they return for (+0, -0) may depend on the order.
_COMMUTATIVE = frozenset({"add", "mul"})


def eliminate_common_subexpressions(fn: Function) -> Function:
    """Equations with the same op, operands and attributes compute the same
    value (all primitives are pure): keep the first, reuse its outputs.

    Attributes are compared by their text, so 0.0 and -0.0 stay apart; the
    operands of add and mul in either order.
    Post: no two equations without a body share (op, operands, attrs).
    """
    rw = Rewriter(fn)
    seen = {}
    for eqn in fn.eqns:
        operands = tuple(id(rw.resolve(v)) for v in eqn.inputs)
        if eqn.op in _COMMUTATIVE:
            operands = tuple(sorted(operands))
        key = None if eqn.body is not None else (
            eqn.op, operands, tuple((k, format_attr(v)) for k, v in sorted(eqn.attrs.items())),
            tuple(v.type for v in eqn.outputs))
        previous = seen.get(key) if key is not None else None
        if previous is not None:
            for old, new in zip(eqn.outputs, previous.outputs, strict=True):
                rw.replace(old, new)
            continue
        kept = rw.keep(eqn)
        if key is not None:
            seen[key] = kept
    return rw.finish()
