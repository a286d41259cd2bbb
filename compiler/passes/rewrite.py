"""A small helper for passes that rebuild a function equation by equation."""

from __future__ import annotations

from ir import Eqn, Function, Value
from ir.ops import infer_types

__all__ = ["Rewriter"]


class Rewriter:
    """Builds a new equation list while substituting values.

    ``resolve(v)`` follows substitutions; ``keep(eqn)`` copies an equation with
    its operands resolved; ``emit`` appends a new type-checked equation;
    ``replace(old, new)`` makes later uses of ``old`` read ``new``.
    """

    def __init__(self, fn: Function):
        self.fn = fn
        self.eqns: list[Eqn] = []
        self._subst: dict[Value, Value] = {}

    def resolve(self, v: Value) -> Value:
        while v in self._subst:
            v = self._subst[v]
        return v

    def replace(self, old: Value, new: Value) -> None:
        if old.type != new.type:
            raise ValueError(f"replacement changes the type: {old.type} -> {new.type}")
        if old is not new:
            self._subst[old] = new

    def keep(self, eqn: Eqn) -> Eqn:
        inputs = tuple(self.resolve(v) for v in eqn.inputs)
        if inputs != eqn.inputs:
            eqn = Eqn(eqn.op, inputs, eqn.outputs, eqn.attrs, eqn.loc, eqn.body)
        self.eqns.append(eqn)
        return eqn

    def emit(self, op: str, inputs, attrs: dict, loc: str | None) -> Value:
        attrs, types = infer_types(op, [v.type for v in inputs], attrs)
        outputs = tuple(Value(t) for t in types)
        self.eqns.append(Eqn(op, tuple(inputs), outputs, attrs, loc))
        return outputs[0]

    def finish(self) -> Function:
        return Function(self.fn.name, list(self.fn.params), self.eqns,
                        [self.resolve(v) for v in self.fn.outputs])
