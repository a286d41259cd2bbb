"""The lowering's own safety check: never emit code from ill-typed IR.

The verifier (ir.verify) runs before lowering; this check repeats the part the
generated code's memory safety rests on, so native code never reads or writes
out of bounds even if it is handed IR that skipped verification: every operand
is defined before use, every value is defined once, attributes fit the op's
schema, and every result type is exactly what the op's type rule infers (the
kernels trust these types for every loop bound and index), and no value is too
large for the kernels' 64-bit index arithmetic (linear indices and byte offsets
are ``i64`` with ``nsw``: a value of 2**63 bytes or more would wrap them). A
fusion's body is checked the same way, as a function of its own.
"""

from __future__ import annotations

from ir.core import Eqn, Function, Value
from ir.dtypes import TensorType
from ir.errors import IRError
from ir.ops import check_attrs, get_op
from compiler.codegen.errors import LoweringError

__all__ = ["checked_equations"]


# Byte offsets (and so element counts) must stay below this: they are signed i64.
MAX_VALUE_BYTES = 2**63 - 1


def _check_extent(value: Value, what: str) -> None:
    if value.type.nbytes > MAX_VALUE_BYTES:
        raise LoweringError(
            f"{what}: {value.type} has {value.type.size} elements ({value.type.nbytes} bytes), "
            f"more than 64-bit index arithmetic can address (at most {MAX_VALUE_BYTES} bytes)")


def _where(eqn: Eqn, n: int) -> str:
    loc = f" (at {eqn.loc})" if eqn.loc else ""
    return f"equation {n} '{eqn.op}'{loc}"


def checked_equations(fn: Function) -> list[Eqn]:
    """``fn.eqns`` with normalised attributes, or a LoweringError naming the fault."""
    defined: set[Value] = set()
    for i, param in enumerate(fn.params):
        if not isinstance(param, Value) or not isinstance(param.type, TensorType):
            raise LoweringError(f"@{fn.name}: parameter {i} is not a typed IR Value: {param!r}")
        if param in defined:
            raise LoweringError(f"@{fn.name}: parameter {i} is listed twice")
        _check_extent(param, f"@{fn.name}: parameter {i}")
        defined.add(param)
    checked = []
    for n, eqn in enumerate(fn.eqns):
        where = _where(eqn, n)
        if eqn.body is not None:
            checked.append(_checked_fusion(eqn, where, defined))
            continue
        for k, value in enumerate(eqn.inputs):
            if value not in defined:
                raise LoweringError(f"{where}: operand {k} is not defined before use")
        try:
            opdef = get_op(eqn.op)
            if opdef.arity is not None and len(eqn.inputs) != opdef.arity:
                raise IRError(f"expected {opdef.arity} operand(s), got {len(eqn.inputs)}")
            attrs = check_attrs(opdef, eqn.attrs)
            types = opdef.infer([v.type for v in eqn.inputs], attrs)
        except IRError as error:
            raise LoweringError(f"{where}: {error}") from None
        declared = [v.type for v in eqn.outputs]
        if list(types) != declared:
            raise LoweringError(
                f"{where}: result type(s) {', '.join(map(str, declared))} differ from the "
                f"inferred {', '.join(map(str, types))}"
            )
        for value in eqn.outputs:
            if value in defined:
                raise LoweringError(f"{where}: redefines a value (SSA: one definition each)")
            _check_extent(value, where)
            defined.add(value)
        checked.append(Eqn(eqn.op, eqn.inputs, eqn.outputs, attrs, eqn.loc))
    for j, value in enumerate(fn.outputs):
        if value not in defined:
            raise LoweringError(f"@{fn.name}: result {j} is not defined")
    return checked


def _checked_fusion(eqn: Eqn, where: str, defined: set[Value]) -> Eqn:
    """A fusion: operands defined, its body checked like a function of its own
    (it sees only its parameters), body and equation types equal."""
    body = eqn.body
    if eqn.op != "fusion" or not isinstance(body, Function):
        raise LoweringError(f"{where}: only a 'fusion' carries a body (a Function)")
    for k, value in enumerate(eqn.inputs):
        if value not in defined:
            raise LoweringError(f"{where}: operand {k} is not defined before use")
    if [p.type for p in body.params] != [v.type for v in eqn.inputs]:
        raise LoweringError(f"{where}: body parameter types differ from the operand types")
    eqns = checked_equations(body)
    inner = {v for e in eqns for v in e.outputs} | set(body.params)
    if any(e.body is not None for e in eqns):
        raise LoweringError(f"{where}: nested fusions are not lowered")
    if inner & defined:
        raise LoweringError(f"{where}: the body redefines a value of the function")
    if [v.type for v in body.outputs] != [v.type for v in eqn.outputs]:
        raise LoweringError(f"{where}: the body's result types differ from the equation's")
    for value in eqn.outputs:
        if value in defined or value in inner:
            raise LoweringError(f"{where}: redefines a value (SSA: one definition each)")
        defined.add(value)
    checked_body = Function(body.name, list(body.params), eqns, list(body.outputs))
    return Eqn(eqn.op, eqn.inputs, eqn.outputs, dict(eqn.attrs), eqn.loc, checked_body)
