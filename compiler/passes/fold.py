"""Constant folding: evaluate equations whose operands are all constants."""

from __future__ import annotations

import numpy as np

from ir import Eqn, Function, Value, get_op

from compiler.passes.rewrite import Rewriter

__all__ = ["fold_constants", "MAX_FOLDED_ELEMENTS"]

# Literal constants larger than this stay computed at run time: folding them
# would bloat the IR (and its text) more than it saves.
MAX_FOLDED_ELEMENTS = 64


def fold_constants(fn: Function) -> Function:
    """Replace equations computable now by constants.

    Operands that are splats (one value everywhere) fold for any shape when the
    result is a splat too (elementwise ops and shape ops over splats);
    otherwise results of up to ``MAX_FOLDED_ELEMENTS`` elements fold into
    literal constants. Evaluation uses the ops' numpy reference semantics, so
    folded results are exactly what the interpreter computes.
    """
    rw = Rewriter(fn)
    constants: dict[Value, np.ndarray] = {}   # small literal values, as arrays
    splats: dict[Value, object] = {}          # splat values, as numpy scalars
    for eqn in fn.eqns:
        inputs = tuple(rw.resolve(v) for v in eqn.inputs)
        if eqn.op == "constant":
            kept = rw.keep(eqn)
            _record(kept, constants, splats)
            continue
        folded = None
        if eqn.body is None and len(eqn.outputs) == 1 and inputs and all(
                v in splats or v in constants for v in inputs):
            folded = _fold(eqn, inputs, constants, splats)
        if folded is None:
            rw.keep(eqn)
            continue
        out = eqn.outputs[0]
        value = rw.emit("constant", [], {"value": folded, "dtype": out.dtype, "shape": out.shape}, eqn.loc)
        _record(rw.eqns[-1], constants, splats)
        rw.replace(out, value)
    return rw.finish()


def _record(eqn: Eqn, constants, splats) -> None:
    value, out = eqn.attrs["value"], eqn.outputs[0]
    if not isinstance(value, tuple):
        splats[out] = out.dtype.numpy.type(value)
    elif out.type.size <= MAX_FOLDED_ELEMENTS:
        constants[out] = np.array(value, dtype=out.dtype.numpy).reshape(out.shape)


def _fold(eqn: Eqn, inputs, constants, splats):
    out = eqn.outputs[0]
    kind = get_op(eqn.op).kind
    if all(v in splats for v in inputs) and (kind == "elementwise" or eqn.op in ("broadcast", "reshape", "transpose")):
        scalars = [np.asarray(splats[v]) for v in inputs]
        if kind == "elementwise":
            result = np.asarray(get_op(eqn.op).ref(scalars, eqn.attrs)).astype(out.dtype.numpy)
        else:
            result = scalars[0]
        return result.item()
    if out.type.size > MAX_FOLDED_ELEMENTS or any(v.type.size > MAX_FOLDED_ELEMENTS for v in inputs):
        return None
    arrays = [constants[v] if v in constants else np.full(v.shape, splats[v], v.dtype.numpy)
              for v in inputs]
    result = np.asarray(get_op(eqn.op).ref(arrays, eqn.attrs)).astype(out.dtype.numpy)
    flat = result.reshape(-1)
    if flat.size and np.array_equal(flat, np.full_like(flat, flat[0])) and not (
            out.dtype.is_float and (np.isnan(flat[0]) or np.any(np.signbit(flat) != np.signbit(flat[0])))):
        return flat[0].item()
    return result.reshape(-1).tolist()
