"""The lowering's own safety check: never emit code from ill-typed IR.

The verifier (ir.verify) runs before lowering; this check repeats the part the
generated code's memory safety rests on, so native code never reads or writes
out of bounds even if it is handed IR that skipped verification: every operand
is defined before use, every value is defined once, attributes fit the op's
schema, and every result type is exactly what the op's type rule infers (the
kernels trust these types for every loop bound and index).
"""

from __future__ import annotations

from ir.core import Eqn, Function, Value
from ir.dtypes import TensorType
from ir.errors import IRError
from ir.ops import check_attrs, get_op
from compiler.codegen.errors import LoweringError

__all__ = ["checked_equations"]


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
        defined.add(param)
    checked = []
    for n, eqn in enumerate(fn.eqns):
        where = _where(eqn, n)
        if eqn.body is not None:
            raise LoweringError(f"{where}: equations with a body (fusions) are not lowered yet")
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
            defined.add(value)
        checked.append(Eqn(eqn.op, eqn.inputs, eqn.outputs, attrs, eqn.loc))
    for j, value in enumerate(fn.outputs):
        if value not in defined:
            raise LoweringError(f"@{fn.name}: result {j} is not defined")
    return checked
