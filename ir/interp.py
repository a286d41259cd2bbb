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
        missing = [v for v in eqn.inputs if v not in env]
        if missing:
            raise InterpError(f"while executing {_describe(fn, eqn)}: an operand is not defined before use")
        results = _execute(fn, eqn, [env[v] for v in eqn.inputs])
        for value, result in zip(eqn.outputs, results, strict=True):
            env[value] = result
    undefined = [i for i, v in enumerate(fn.outputs) if v not in env]
    if undefined:
        raise InterpError(f"@{fn.name}: result {undefined[0]} is never defined")
    return [env[v] for v in fn.outputs]


def _execute(fn: Function, eqn: Eqn, operands: list[np.ndarray]) -> list[np.ndarray]:
    try:
        if eqn.body is not None:
            raw = interpret(eqn.body, operands)
        else:
            raw = get_op(eqn.op).ref(operands, eqn.attrs)
            raw = [raw] if len(eqn.outputs) == 1 else list(raw)
    except IRError as error:
        raise InterpError(f"while executing {_describe(fn, eqn)}: {error}") from error
    except Exception as error:  # a numpy failure is still reported against the equation
        raise InterpError(f"while executing {_describe(fn, eqn)}: {type(error).__name__}: {error}") from error
    results = []
    for value, r in zip(eqn.outputs, raw, strict=True):
        arr = np.asarray(r).astype(value.dtype.numpy, copy=False)
        if arr.shape != value.shape:
            raise InterpError(
                f"while executing {_describe(fn, eqn)}: reference gave shape {list(arr.shape)}, "
                f"the type says {value.type}"
            )
        results.append(arr)
    return results


def _describe(fn: Function, eqn: Eqn) -> str:
    """The equation as it prints, e.g. ``%7 = exp %6 : f32[3] (model.py:14)``."""
    from ir.graph import value_names

    names = value_names(fn)
    name = lambda v: names.get(v, "%?")  # noqa: E731
    text = f"{', '.join(name(v) for v in eqn.outputs)} = {eqn.op} {', '.join(name(v) for v in eqn.inputs)}"
    text = text.rstrip() + " : " + ", ".join(str(v.type) for v in eqn.outputs)
    return text + (f" ({eqn.loc})" if eqn.loc else "")
