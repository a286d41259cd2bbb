"""Algebraic simplification: identities that remove work without changing results.

Rules (x any value, 1 and 0 splat constants, possibly behind a broadcast):
``x*1, 1*x, x/1, x+0, 0+x, x-0 -> x``; ``neg(neg(x)) -> x``;
``reshape(reshape(x)) -> reshape(x)``; ``reshape`` / ``transpose`` /
``broadcast`` that change nothing ``-> x``; ``transpose(transpose(x))`` and
``broadcast(broadcast(x))`` compose into one op; ``cast`` to the same dtype
``-> x``; ``stop_gradient(x) -> x`` (differentiation already ran). ``x + 0 -> x`` differs only for x = -0.0 (the sign of zero), as in
XLA; nothing here changes a nan or inf result.
"""

from __future__ import annotations

from ir import Eqn, Function, Value

from compiler.passes.rewrite import Rewriter

__all__ = ["simplify"]


def simplify(fn: Function) -> Function:
    """Apply the rules above until none applies (one forward sweep suffices,
    since rules only look at producers, which are already simplified)."""
    rw = Rewriter(fn)
    producers: dict[Value, Eqn] = {}
    for eqn in fn.eqns:
        inputs = tuple(rw.resolve(v) for v in eqn.inputs)
        result = None if eqn.body is not None else _simplify(rw, producers, eqn, inputs)
        if result is not None:
            rw.replace(eqn.outputs[0], result)
            continue
        kept = rw.keep(eqn)
        for v in kept.outputs:
            producers[v] = kept
    return rw.finish()


def _splat_value(producers, v: Value):
    """The scalar a value is filled with, if it is a splat constant (maybe broadcast)."""
    eqn = producers.get(v)
    while eqn is not None and eqn.op in ("broadcast", "reshape"):
        eqn = producers.get(eqn.inputs[0])
    if eqn is None or eqn.op != "constant":
        return None
    value = eqn.attrs["value"]
    if isinstance(value, tuple):
        return value[0] if value and all(x == value[0] for x in value) and value[0] == value[0] else None
    return value


def _is(producers, v, scalar) -> bool:
    value = _splat_value(producers, v)
    return value is not None and not isinstance(value, bool) and value == scalar


def _simplify(rw: Rewriter, producers, eqn: Eqn, inputs) -> Value | None:
    op, out = eqn.op, eqn.outputs[0]
    producer = producers.get(inputs[0]) if inputs else None
    if op == "mul":
        if _is(producers, inputs[1], 1):
            return inputs[0]
        if _is(producers, inputs[0], 1):
            return inputs[1]
    elif op == "div" and _is(producers, inputs[1], 1):
        return inputs[0]
    elif op == "add":
        if _is(producers, inputs[1], 0):
            return inputs[0]
        if _is(producers, inputs[0], 0):
            return inputs[1]
    elif op == "sub" and _is(producers, inputs[1], 0):
        return inputs[0]
    elif op == "neg" and producer is not None and producer.op == "neg":
        return producer.inputs[0]
    elif op == "cast" and inputs[0].dtype == out.dtype:
        return inputs[0]
    elif op == "stop_gradient":  # only the differentiation pass (run before) cares
        return inputs[0]
    elif op == "reshape":
        if inputs[0].shape == out.shape:
            return inputs[0]
        if producer is not None and producer.op == "reshape":
            return rw.emit("reshape", [producer.inputs[0]], {"shape": out.shape}, eqn.loc)
    elif op == "transpose":
        perm = eqn.attrs["perm"]
        if list(perm) == list(range(len(perm))):
            return inputs[0]
        if producer is not None and producer.op == "transpose":
            inner = producer.attrs["perm"]
            composed = [inner[p] for p in perm]
            if composed == list(range(len(composed))):
                return producer.inputs[0]
            return rw.emit("transpose", [producer.inputs[0]], {"perm": composed}, eqn.loc)
    elif op == "broadcast":
        dims = eqn.attrs["dims"]
        if inputs[0].shape == out.shape and list(dims) == list(range(len(dims))):
            return inputs[0]
        if producer is not None and producer.op == "broadcast":
            inner_dims = producer.attrs["dims"]
            composed = [dims[d] for d in inner_dims]
            return rw.emit("broadcast", [producer.inputs[0]],
                           {"shape": out.shape, "dims": composed}, eqn.loc)
    return None
