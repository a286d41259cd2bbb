"""Lower an IR Function to one LLVM module: a kernel per equation and an entry.

The entry point follows the runtime's calling convention (runtime/executable.py):

    void entry(void **table)
    table = [param_0 .. param_{P-1}, result_0 .. result_{R-1}, arena]

It calls the kernels in program order with pointers into the table and the
arena, then copies repeated results. The module also defines
``i64 <entry>_arena_bytes``, the arena size an AOT caller must provide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import llvmlite.ir as ll

from ir.core import Function
from ir.dtypes import TensorType
from compiler.codegen.check import checked_equations
from compiler.codegen.donation import place_donated_results
from compiler.codegen.fused import inplace_pairs
from compiler.codegen.kernels import emit_kernel, scratch_bytes
from compiler.codegen.llvm_types import I1, I64, PTR, VOID, index_constant
from compiler.codegen.memory import MemoryPlan, plan_memory

__all__ = ["LoweredProgram", "lower", "lower_function", "plan_program", "memory_plan_text"]


@dataclass(frozen=True)
class LoweredProgram:
    """The LLVM IR of a function and what the runtime needs to call it."""

    name: str
    entry: str
    llvm_ir: str
    param_types: tuple[TensorType, ...]
    result_types: tuple[TensorType, ...]
    arena_bytes: int


def lower_function(fn: Function, *, entry: str = "entry") -> str:
    """LLVM IR text of ``fn``: one module with ``void @<entry>(ptr table)``."""
    return lower(fn, entry=entry).llvm_ir


def lower(fn: Function, *, entry: str = "entry",
          donated: Mapping[int, int] | None = None) -> LoweredProgram:
    """Lower ``fn`` (checked first: see check.py) to a ``LoweredProgram``.

    ``donated`` maps result indices to parameter indices whose buffers the
    runtime passes as those results' buffers (see codegen/donation.py).
    """
    fn, unchanged, plan = plan_program(fn, donated)
    module = ll.Module(name=fn.name)

    entry_fn = ll.Function(module, ll.FunctionType(VOID, [PTR]), entry)
    entry_fn.attributes.add("nounwind")
    table = entry_fn.args[0]
    table.name = "table"
    table.add_attribute("noalias")
    b = ll.IRBuilder(entry_fn.append_basic_block("entry"))
    pointers = _Pointers(b, table, fn, plan)

    for n, eqn in enumerate(fn.eqns):
        if all(v.type.size == 0 for v in eqn.outputs):
            continue  # nothing to compute
        kernel = emit_kernel(module, f"k{n}_{eqn.op}", eqn)
        args = [pointers.of(v) for v in eqn.outputs] + [pointers.of(v) for v in eqn.inputs]
        if eqn in plan.scratch:
            args.append(pointers.arena_at(plan.scratch[eqn]))
        b.call(kernel, args)

    for value, j in plan.copies:
        if value.type.nbytes and j not in unchanged:  # a donated parameter returned as is
            _memcpy(b, pointers.result(j), pointers.of(value), value.type.nbytes)
    b.ret_void()

    arena_size = ll.GlobalVariable(module, I64, f"{entry}_arena_bytes")
    arena_size.global_constant = True
    arena_size.initializer = index_constant(plan.arena_bytes)

    return LoweredProgram(
        name=fn.name, entry=entry, llvm_ir=str(module),
        param_types=tuple(fn.param_types), result_types=tuple(fn.output_types),
        arena_bytes=plan.arena_bytes,
    )


def plan_program(fn: Function, donated: Mapping[int, int] | None = None
                 ) -> tuple[Function, set[int], MemoryPlan]:
    """``fn`` as lowered (checked, donated results placed), the donated results
    needing no work, and its memory plan (codegen/memory.py)."""
    eqns = checked_equations(fn)
    fn = Function(fn.name, list(fn.params), eqns, list(fn.outputs))
    fn, unchanged = place_donated_results(fn, dict(donated or {}))
    return fn, unchanged, plan_memory(fn, scratch_bytes, inplace_pairs)


def memory_plan_text(fn: Function, donated: Mapping[int, int] | None = None) -> str:
    """The printed memory plan ``lower`` uses for ``fn`` (no LLVM IR is built)."""
    prepared, _, plan = plan_program(fn, donated)
    return plan.describe(prepared)


class _Pointers:
    """Loads table slots once, at the top of the entry block, on first use."""

    def __init__(self, b: ll.IRBuilder, table, fn: Function, plan: MemoryPlan):
        self.b, self.table, self.plan = b, table, plan
        self.num_params, self.num_results = len(fn.params), len(fn.outputs)
        self._slots: dict[int, ll.Value] = {}

    def _slot(self, slot: int) -> ll.Value:
        if slot not in self._slots:
            address = self.b.gep(self.table, [index_constant(slot)], inbounds=True, source_etype=PTR)
            self._slots[slot] = self.b.load(address, typ=PTR, align=8, name=f"slot{slot}")
        return self._slots[slot]

    def result(self, j: int) -> ll.Value:
        return self._slot(self.num_params + j)

    def arena_at(self, offset: int) -> ll.Value:
        arena = self._slot(self.num_params + self.num_results)
        if offset == 0:
            return arena
        return self.b.gep(arena, [index_constant(offset)], inbounds=True, source_etype=ll.IntType(8))

    def of(self, value) -> ll.Value:
        location = self.plan.locations[value]
        if location.kind == "param":
            return self._slot(location.position)
        if location.kind == "result":
            return self.result(location.position)
        return self.arena_at(location.position)


def _memcpy(b: ll.IRBuilder, dst, src, nbytes: int) -> None:
    name = "llvm.memcpy.p0.p0.i64"
    fn = b.module.globals.get(name) or ll.Function(
        b.module, ll.FunctionType(VOID, [PTR, PTR, I64, I1]), name)
    b.call(fn, [dst, src, index_constant(nbytes), ll.Constant(I1, 0)])
