"""The SSA data structures: values, equations and functions.

NOTE: [SSA invariants]
A ``Value`` is defined exactly once: as a parameter of its ``Function`` or as an
output of one ``Eqn``. ``Function.eqns`` is kept in a valid (topological) order,
so printing, interpreting and lowering are simple linear walks. Values are
compared by identity; ``Value.id`` only serves as a stable name hint, the printer
renumbers values in definition order. Uses are derived (``uses``), never stored.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ir.dtypes import TensorType

__all__ = ["Value", "Eqn", "Function", "Module", "uses"]

_ids = itertools.count()


class Value:
    """An SSA value of a static ``TensorType``."""

    __slots__ = ("type", "id")

    def __init__(self, type: TensorType):
        self.type = type
        self.id = next(_ids)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def __repr__(self) -> str:
        return f"Value(%v{self.id}: {self.type})"


@dataclass(eq=False)
class Eqn:
    """One operation: ``outputs = op(inputs) {attrs}``, with the user's source location.

    ``attrs`` maps attribute names to ints, floats, bools, strings, DTypes or
    tuples of those; ``body`` is the nested region of ops that carry one (fusion).
    ``loc`` is ``"file.py:12"`` of the user line that created it, with a
    ``" (grad)"`` suffix for equations the differentiation pass derived from it.
    """

    op: str
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    loc: str | None = None
    body: "Function | None" = None

    @property
    def output(self) -> Value:
        return self.outputs[0]


@dataclass(eq=False)
class Function:
    """Typed parameters, an ordered equation list and results."""

    name: str
    params: list[Value]
    eqns: list[Eqn]
    outputs: list[Value]

    @property
    def param_types(self) -> list[TensorType]:
        return [p.type for p in self.params]

    @property
    def output_types(self) -> list[TensorType]:
        return [v.type for v in self.outputs]

    def __str__(self) -> str:
        from ir.printer import print_function

        return print_function(self)


@dataclass(eq=False)
class Module:
    """Named functions compiled together (e.g. several entry points)."""

    functions: dict[str, Function] = field(default_factory=dict)

    def add(self, fn: Function) -> Function:
        self.functions[fn.name] = fn
        return fn


def uses(fn: Function) -> dict[Value, list[Eqn]]:
    """Map every value of ``fn`` to the equations that read it (derived, not cached)."""
    result: dict[Value, list[Eqn]] = {v: [] for v in fn.params}
    for eqn in fn.eqns:
        for v in eqn.outputs:
            result.setdefault(v, [])
        for v in eqn.inputs:
            result.setdefault(v, []).append(eqn)
    return result
