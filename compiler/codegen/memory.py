"""Where every value of a function lives while the program runs.

Parameters live in the caller's argument buffers and results in the result
buffers the runtime allocates (a value returned by the function is computed
straight into its result buffer). Everything else, and the scratch some kernels
need, lives in one arena at offsets fixed at compile time; the runtime
allocates the arena once per Executable (runtime/executable.py), so a call
allocates nothing but its results.

A value returned twice, or a parameter returned as a result, is copied into the
extra result buffers at the end of the program (``MemoryPlan.copies``): results
never alias each other or the arguments.

NOTE: [Arena reuse]
Equations run in program order, so a value's buffer is live from the equation
defining it to the last equation reading it (inclusive: a kernel's inputs and
outputs are live together, which keeps them disjoint, as their ``noalias``
pointers require; kernel scratch is live during its equation only). Buffers
whose lifetimes do not overlap may share bytes. ``assign_arena_offsets`` packs
them greedily, largest first, each at the lowest 64-byte aligned offset not
used by a buffer live at the same time; the arena is the highest end.

NOTE: [In-place results]
A result may take over the buffer of an operand that dies at its equation
(no later equation reads it, it is neither a parameter nor a result) when the
kernel reads that operand only at the position it is about to write, and never
again after writing it: an elementwise primitive, or a fusion reading the
operand only aligned (``fused.inplace_pairs``). Such a kernel loads every
operand element it needs for ``out[k]`` before storing ``out[k]``, and no other
position reads ``in[k]``. The kernel then gets one pointer for the pair: the
result is written through the operand's pointer (lower.py ``_in_place``,
kernels.py), never through a second ``noalias`` pointer to the same bytes,
which would let LLVM reorder the loads and stores of that buffer once the
kernel is compiled out of line (seen: a softmax cross-entropy's loss 0.19 off).
The operand must also *feed* that result: in a multi-result fusion a load
feeding only another result (or only a reduction) is not ordered before the
store, and such a pair is never offered; nor is an operand bound to several
of a fusion's parameters (one of which may be gathered). Donated parameters
follow the same rules (compiler/codegen/donation.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from ir.core import Eqn, Function, Value
from ir.graph import value_names

__all__ = ["Location", "Buffer", "MemoryPlan", "plan_memory", "assign_arena_offsets",
           "ARENA_ALIGNMENT"]

ARENA_ALIGNMENT = 64  # bytes: a cache line, and the widest vector (zmm)

InplacePairs = Callable[[Eqn], Sequence[tuple[int, int]]]


@dataclass(frozen=True)
class Location:
    """``kind`` is "param" or "result" (``position`` = its index) or "arena"
    (``position`` = byte offset)."""

    kind: str
    position: int


@dataclass
class Buffer:
    """One block of the arena: the values (or kernel scratch) living in it, one
    after another (several when results took over dying operands in place), the
    equations ``first``..``last`` during which it is live, its size and offset."""

    owners: list  # Values, or an Eqn for kernel scratch
    nbytes: int
    first: int
    last: int
    offset: int = 0

    @property
    def padded(self) -> int:
        return _align(self.nbytes)


@dataclass
class MemoryPlan:
    locations: dict[Value, Location] = field(default_factory=dict)
    scratch: dict[Eqn, int] = field(default_factory=dict)  # arena offset of each kernel's scratch
    copies: list[tuple[Value, int]] = field(default_factory=list)  # (value, result index)
    arena_bytes: int = 0
    buffers: list[Buffer] = field(default_factory=list)
    inplace: dict[Eqn, list[tuple[int, int]]] = field(default_factory=dict)  # (result, operand)

    @property
    def unshared_bytes(self) -> int:
        """The arena size without reuse: every value and scratch in its own block."""
        total = 0
        for buffer in self.buffers:
            for owner in buffer.owners:
                total += _align(owner.type.nbytes if isinstance(owner, Value) else buffer.nbytes)
        return total

    def describe(self, fn: Function) -> str:
        """The plan as text: one line per arena buffer (offset, bytes, live
        equations, what lives there), the peak, and where parameters and results
        are. Values are named as ``fn`` prints them."""
        names = value_names(fn)
        position = {e: i for i, e in enumerate(fn.eqns)}

        def name(owner) -> str:
            if isinstance(owner, Value):
                return f"{names.get(owner, '%?')}: {owner.type}"
            return f"scratch of eqn {position.get(owner, '?')} '{owner.op}'"

        values = sum(1 for b in self.buffers for o in b.owners if isinstance(o, Value))
        saved = self.unshared_bytes - self.arena_bytes
        lines = [f"memory plan of @{fn.name}",
                 f"arena: {self.arena_bytes} bytes peak for {values} value(s) and "
                 f"{sum(1 for b in self.buffers if isinstance(b.owners[0], Eqn))} kernel scratch "
                 f"block(s); {self.unshared_bytes} bytes without reuse ({saved} saved)",
                 f"  {'offset':>10} {'bytes':>10}  {'live (eqns)':<12} contents"]
        for buffer in sorted(self.buffers, key=lambda b: (b.offset, b.first)):
            contents = " -> ".join(name(o) for o in buffer.owners)
            if len(buffer.owners) > 1:
                contents += "  (in place)"
            live = f"{buffer.first}..{buffer.last}"
            lines.append(f"  {buffer.offset:>10} {buffer.nbytes:>10}  {live:<12} {contents}")
        params = [f"{names.get(v, '%?')} -> argument {loc.position}"
                  for v, loc in self.locations.items() if loc.kind == "param"]
        results = [f"{names.get(v, '%?')} -> result {loc.position}"
                   for v, loc in self.locations.items() if loc.kind == "result"]
        lines.append("parameters: " + (", ".join(params) or "none"))
        lines.append("results: " + (", ".join(results) or "none"))
        if self.copies:
            lines.append("copied at the end: " + ", ".join(
                f"{names.get(v, '%?')} -> result {j}" for v, j in self.copies))
        return "\n".join(lines) + "\n"


def _align(nbytes: int) -> int:
    return -(-nbytes // ARENA_ALIGNMENT) * ARENA_ALIGNMENT


def assign_arena_offsets(sizes: Sequence[int], lifetimes: Sequence[tuple[int, int]] | None = None
                         ) -> tuple[list[int], int]:
    """Offsets for blocks of ``sizes`` bytes, each ``ARENA_ALIGNMENT``-aligned, and
    the arena size; blocks with overlapping ``lifetimes`` (inclusive ``(first,
    last)`` equation ranges; default: all overlap) never share bytes."""
    if lifetimes is None:
        lifetimes = [(0, 0)] * len(sizes)
    order = sorted(range(len(sizes)), key=lambda i: (-_align(sizes[i]), lifetimes[i][0], i))
    offsets = [0] * len(sizes)
    placed: list[int] = []
    top = 0
    for i in order:
        first, last = lifetimes[i]
        busy = sorted((offsets[j], offsets[j] + _align(sizes[j])) for j in placed
                      if lifetimes[j][0] <= last and first <= lifetimes[j][1])
        offset = 0
        for begin, end in busy:
            if offset + _align(sizes[i]) <= begin:
                break
            offset = max(offset, end)
        offsets[i] = offset
        placed.append(i)
        top = max(top, offset + _align(sizes[i]))
    return offsets, top


def plan_memory(fn: Function, scratch_bytes: Callable[[Eqn], int],
                inplace_pairs: InplacePairs | None = None) -> MemoryPlan:
    """Locate every parameter, result, intermediate and kernel scratch of ``fn``.

    ``inplace_pairs(eqn)`` lists the (result, operand) index pairs whose
    buffers the kernel of ``eqn`` allows to be one (default: none).
    """
    plan = MemoryPlan()
    for i, param in enumerate(fn.params):
        plan.locations[param] = Location("param", i)
    for j, value in enumerate(fn.outputs):
        if value in plan.locations:  # a parameter, or a value already returned
            plan.copies.append((value, j))
        else:
            plan.locations[value] = Location("result", j)

    last_read: dict[Value, int] = {}
    for t, eqn in enumerate(fn.eqns):
        for value in eqn.inputs:
            last_read[value] = t
    block_of: dict[Value, Buffer] = {}
    for t, eqn in enumerate(fn.eqns):
        taken: set[int] = set()
        pairs = list(inplace_pairs(eqn)) if inplace_pairs is not None else []
        for k, value in enumerate(eqn.outputs):
            if value in plan.locations:
                continue
            buffer = None
            for out, j in pairs:
                operand = eqn.inputs[j]
                block = block_of.get(operand)
                if (out == k and j not in taken and block is not None and block.last == t
                        and operand.type.nbytes == value.type.nbytes
                        and all(eqn.inputs[i] is not operand for i in taken)):
                    buffer = block
                    taken.add(j)
                    plan.inplace.setdefault(eqn, []).append((k, j))
                    break
            if buffer is None:
                buffer = Buffer([], value.type.nbytes, t, t)
                plan.buffers.append(buffer)
            buffer.owners.append(value)
            buffer.last = max(t, last_read.get(value, t))
            block_of[value] = buffer
        need = scratch_bytes(eqn)
        if need:
            plan.buffers.append(Buffer([eqn], need, t, t))

    offsets, plan.arena_bytes = assign_arena_offsets(
        [b.nbytes for b in plan.buffers], [(b.first, b.last) for b in plan.buffers])
    for buffer, offset in zip(plan.buffers, offsets, strict=True):
        buffer.offset = offset
        for owner in buffer.owners:
            if isinstance(owner, Value):
                plan.locations[owner] = Location("arena", offset)
            else:
                plan.scratch[owner] = offset
    return plan
