"""Where every value of a function lives while the program runs.

Parameters live in the caller's argument buffers and results in the result
buffers the runtime allocates (a value returned by the function is computed
straight into its result buffer). Everything else, and the scratch some kernels
need, lives in the arena at an offset fixed at compile time.

A value returned twice, or a parameter returned as a result, is copied into the
extra result buffers at the end of the program (``MemoryPlan.copies``): results
never alias each other or the arguments.

``assign_arena_offsets`` is the one place that decides arena offsets. Today it
bump-allocates (no reuse); liveness-based reuse replaces it later, and must
keep a kernel's outputs disjoint from its inputs (kernels take them ``noalias``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from ir.core import Eqn, Function, Value

__all__ = ["Location", "MemoryPlan", "plan_memory", "assign_arena_offsets", "ARENA_ALIGNMENT"]

ARENA_ALIGNMENT = 64  # bytes: a cache line, and the widest vector (zmm)


@dataclass(frozen=True)
class Location:
    """``kind`` is "param" or "result" (``position`` = its index) or "arena"
    (``position`` = byte offset)."""

    kind: str
    position: int


@dataclass
class MemoryPlan:
    locations: dict[Value, Location] = field(default_factory=dict)
    scratch: dict[Eqn, int] = field(default_factory=dict)  # arena offset of each kernel's scratch
    copies: list[tuple[Value, int]] = field(default_factory=list)  # (value, result index)
    arena_bytes: int = 0


def assign_arena_offsets(sizes: Sequence[int]) -> tuple[list[int], int]:
    """Offsets for blocks of ``sizes`` bytes, each ``ARENA_ALIGNMENT``-aligned; and the total."""
    offsets, top = [], 0
    for size in sizes:
        offsets.append(top)
        top += -(-size // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    return offsets, top


def plan_memory(fn: Function, scratch_bytes: Callable[[Eqn], int]) -> MemoryPlan:
    """Locate every parameter, result, intermediate and kernel scratch of ``fn``."""
    plan = MemoryPlan()
    for i, param in enumerate(fn.params):
        plan.locations[param] = Location("param", i)
    for j, value in enumerate(fn.outputs):
        if value in plan.locations:  # a parameter, or a value already returned
            plan.copies.append((value, j))
        else:
            plan.locations[value] = Location("result", j)
    requests: list[tuple[object, int]] = []
    for eqn in fn.eqns:
        for value in eqn.outputs:
            if value not in plan.locations:
                requests.append((value, value.type.nbytes))
        need = scratch_bytes(eqn)
        if need:
            requests.append((eqn, need))
    offsets, plan.arena_bytes = assign_arena_offsets([size for _, size in requests])
    for (owner, _), offset in zip(requests, offsets, strict=True):
        if isinstance(owner, Value):
            plan.locations[owner] = Location("arena", offset)
        else:
            plan.scratch[owner] = offset
    return plan
