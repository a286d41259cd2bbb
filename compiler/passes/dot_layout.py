"""Dot layout: transposes of a dot's operands (or result) become dot attributes.

Gradients and user code transpose matrices on their way into a product
(``x.T @ g``, ``g @ w.T``). A ``transpose`` that swaps the last two axes and
feeds a ``dot`` is folded into the dot's ``transpose_lhs``/``transpose_rhs``
attribute (the backend reads the operand through strides, see
compiler/codegen/dot.py), so the transposed copy is never written::

    %2 = transpose %0 {perm=[1, 0]} : f32[4,3]        %3 = dot %0, %1 {transpose_lhs=true}
    %3 = dot %2, %1 : f32[4,5]                   ->       : f32[4,5]

A transpose of a dot's result (``(A @ B)^T = B^T @ A^T``) becomes the dot of
the swapped operands with their layouts flipped, when the transpose is the
dot's only reader. A transpose still read elsewhere stays for its other
readers; DCE removes the unused ones.

Pre: valid IR. Post: no ``dot`` reads a transpose of its operand's last two
axes; results are unchanged (same products, summed in the same order).
Runs before fusion, which would otherwise clone the transposes into fused
loops of their own.
"""

from __future__ import annotations

from ir import Eqn, Function, Value, uses
from compiler.passes.dce import eliminate_dead_code
from compiler.passes.rewrite import Rewriter

__all__ = ["fold_dot_transposes"]


def _swaps_last_two(eqn: Eqn) -> bool:
    perm = tuple(eqn.attrs.get("perm", ()))
    rank = len(perm)
    return (eqn.op == "transpose" and rank >= 2
            and perm == (*range(rank - 2), rank - 1, rank - 2))


def _dot_attrs(transpose_lhs: bool, transpose_rhs: bool) -> dict:
    """Attributes of a dot, listing only the true flags (the canonical form)."""
    return {name: True for name, flag in (("transpose_lhs", transpose_lhs),
                                          ("transpose_rhs", transpose_rhs)) if flag}


def fold_dot_transposes(fn: Function) -> Function:
    """Fold last-two-axes transposes into the dots that read or produce them."""
    if not any(e.op == "dot" for e in fn.eqns):
        return fn
    producers: dict[Value, Eqn] = {v: e for e in fn.eqns for v in e.outputs}
    readers = uses(fn)
    rewriter = Rewriter(fn)
    # The operands and layout flags each dot of ``fn`` was emitted with.
    dots: dict[Value, tuple[list[Value], tuple[bool, bool], str | None]] = {}
    changed = False
    for eqn in fn.eqns:
        if _swaps_last_two(eqn) and eqn.inputs[0] in dots \
                and len(readers[eqn.inputs[0]]) == 1 and eqn.inputs[0] not in fn.outputs:
            # (op(A) @ op(B))^T = op(B)^T @ op(A)^T
            (lhs, rhs), (t_lhs, t_rhs), loc = dots[eqn.inputs[0]]
            flipped = rewriter.emit("dot", [rhs, lhs], _dot_attrs(not t_rhs, not t_lhs), loc)
            rewriter.replace(eqn.outputs[0], flipped)
            changed = True
            continue
        if eqn.op != "dot":
            rewriter.keep(eqn)
            continue
        inputs, flags = [], []
        for operand, name in zip(eqn.inputs, ("transpose_lhs", "transpose_rhs"), strict=True):
            flag = bool(eqn.attrs.get(name, False))
            source = producers.get(operand)
            if source is not None and _swaps_last_two(source):
                operand, flag = source.inputs[0], not flag
            inputs.append(rewriter.resolve(operand))
            flags.append(flag)
        original = [rewriter.resolve(v) for v in eqn.inputs]
        if inputs == original and eqn.attrs == _dot_attrs(*flags):
            kept = rewriter.keep(eqn)
            dots[eqn.outputs[0]] = (list(kept.inputs), tuple(flags), eqn.loc)
            continue
        changed = True
        new = rewriter.emit("dot", inputs, _dot_attrs(*flags), eqn.loc)
        rewriter.replace(eqn.outputs[0], new)
        dots[eqn.outputs[0]] = (inputs, tuple(flags), eqn.loc)
    if not changed:
        return fn
    return eliminate_dead_code(rewriter.finish())
