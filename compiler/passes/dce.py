"""Dead-code elimination."""

from __future__ import annotations

from ir import Function

__all__ = ["eliminate_dead_code"]


def eliminate_dead_code(fn: Function) -> Function:
    """Remove equations none of whose outputs is used.

    Pre: valid IR. Post: every remaining equation has an output that reaches a
    result of the function (all primitives are pure, so removal is safe).
    """
    live = set(fn.outputs)
    kept = []
    for eqn in reversed(fn.eqns):
        if any(v in live for v in eqn.outputs):
            kept.append(eqn)
            live.update(eqn.inputs)
    if len(kept) == len(fn.eqns):
        return fn
    return Function(fn.name, list(fn.params), list(reversed(kept)), list(fn.outputs))
