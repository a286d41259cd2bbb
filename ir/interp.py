"""The reference interpreter: evaluates a Function with each op's numpy ``ref``.

It is the living specification of the IR's semantics and the oracle every pass
and the native backend are tested against.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ir.core import Eqn, Function, Value
from ir.errors import InterpError, IRError
from ir.ops import get_op

__all__ = ["interpret"]


def interpret(fn: Function, args: Sequence) -> list[np.ndarray]:
    """Run ``fn`` on numpy arrays; returns one array per result.

    Arguments must have exactly the parameter types (shape and dtype).
    """
    if len(args) != len(fn.params):
        raise InterpError(f"@{fn.name} takes {len(fn.params)} argument(s), got {len(args)}")
    env: dict[Value, np.ndarray] = {}
    for i, (param, arg) in enumerate(zip(fn.params, args, strict=True)):
        arr = np.asarray(arg)
        if arr.shape != param.shape or arr.dtype != param.dtype.numpy:
            raise InterpError(
                f"@{fn.name} argument {i}: expected {param.type}, got "
                f"{arr.dtype}{list(arr.shape)}"
            )
        env[param] = arr
    for eqn in fn.eqns:
        try:
            results = _execute(eqn, [env[v] for v in eqn.inputs])
        except KeyError as missing:
            raise InterpError(f"operand {missing} of '{eqn.op}' is not defined before use") from None
        for value, result in zip(eqn.outputs, results, strict=True):
            env[value] = result
    return [env[v] for v in fn.outputs]


def _execute(eqn: Eqn, operands: list[np.ndarray]) -> list[np.ndarray]:
    try:
        if eqn.body is not None:
            raw = interpret(eqn.body, operands)
        else:
            raw = get_op(eqn.op).ref(operands, eqn.attrs)
            raw = [raw] if len(eqn.outputs) == 1 else list(raw)
    except IRError as error:
        raise InterpError(f"while executing {_describe(eqn)}: {error}") from error
    except Exception as error:  # a numpy failure is still reported against the equation
        raise InterpError(f"while executing {_describe(eqn)}: {type(error).__name__}: {error}") from error
    results = []
    for value, r in zip(eqn.outputs, raw, strict=True):
        arr = np.asarray(r).astype(value.dtype.numpy, copy=False)
        if arr.shape != value.shape:
            raise InterpError(
                f"while executing {_describe(eqn)}: reference gave shape {list(arr.shape)}, "
                f"the type says {value.type}"
            )
        results.append(arr)
    return results


def _describe(eqn: Eqn) -> str:
    where = f" ({eqn.loc})" if eqn.loc else ""
    return f"'{eqn.op}' -> {', '.join(str(v.type) for v in eqn.outputs)}{where}"
