"""Lower an IR Function to one LLVM module: a kernel per equation and an entry.

The entry point follows the runtime's calling convention (runtime/executable.py):

    void entry(void **table)
    table = [param_0 .. param_{P-1}, result_0 .. result_{R-1}, arena]

It calls the kernels in program order with pointers into the table and the
arena, then copies repeated results. The module also defines
``i64 <entry>_arena_bytes``, the arena size an AOT caller must provide.

Given a ``parts`` sink (runtime/loader.py ``PartCompiler``), ``lower`` hands
over the functions of each kernel as soon as they are finished, so that they
compile in other processes while the rest is lowered (see [Parts of a module
still being generated] in runtime/module_stream.py). Kernels are
``noinline``: the entry calls each once, and whether it was inlined there
must not depend on which part it went to.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

import llvmlite.ir as ll

from ir.core import Function
from ir.dtypes import TensorType
from compiler.codegen.check import checked_equations
from compiler.codegen.donation import place_donated_results
from compiler.codegen.fused import inplace_pairs
from compiler.codegen.kernels import emit_kernel, scratch_bytes
from compiler.codegen.library import links_library, use_library
from compiler.codegen.llvm_types import I1, I64, PTR, VOID, index_constant
from compiler.codegen.memory import Location, MemoryPlan, plan_memory

__all__ = ["LoweredProgram", "lower", "lower_function", "plan_program", "memory_plan_text"]


class PartSink(Protocol):
    """Takes the definitions of finished functions (runtime.loader.PartCompiler)."""

    def add(self, definitions: list[str], context: Callable[[], str]) -> None:
        """``definitions``: LLVM IR texts of functions just finished; ``context()``:
        the module's other top-level text (globals, declarations, metadata) so far."""


@dataclass(frozen=True)
class LoweredProgram:
    """The LLVM IR of a function and what the runtime needs to call it."""

    name: str
    entry: str
    text: Callable[[], str] = field(repr=False, compare=False)
    param_types: tuple[TensorType, ...]
    result_types: tuple[TensorType, ...]
    arena_bytes: int
    links: tuple[str, ...] = ()  # the shared libraries it calls (runtime/libraries.py)

    @functools.cached_property
    def llvm_ir(self) -> str:
        """The module's text (printed on first use: after a compile in parts,
        only dumps and AOT compiles need it whole)."""
        return self.text()


def lower_function(fn: Function, *, entry: str = "entry") -> str:
    """LLVM IR text of ``fn``: one module with ``void @<entry>(ptr table)``."""
    return lower(fn, entry=entry).llvm_ir


def lower(fn: Function, *, entry: str = "entry", donated: Mapping[int, int] | None = None,
          parts: PartSink | None = None, library=None) -> LoweredProgram:
    """Lower ``fn`` (checked first: see check.py) to a ``LoweredProgram``.

    ``donated`` maps result indices to parameter indices whose buffers the
    runtime passes as those results' buffers (see codegen/donation.py).
    ``parts`` receives the functions as they are finished (entry last).
    ``library`` (a container of names, with the library's ``ident``) holds
    the kernels the module declares instead of defining them: those of the
    kernel library it will be linked with ([Shape-generic kernels] in
    library.py); the program's ``links`` then names that library.
    """
    fn, unchanged, plan = plan_program(fn, donated)
    module = ll.Module(name=fn.name)
    if library is not None:
        use_library(module, library)

    entry_fn = ll.Function(module, ll.FunctionType(VOID, [PTR]), entry)
    entry_fn.attributes.add("nounwind")
    table = entry_fn.args[0]
    table.name = "table"
    table.add_attribute("noalias")
    b = ll.IRBuilder(entry_fn.append_basic_block("entry"))
    pointers = _Pointers(b, table, fn, plan)
    finished = _Finished(module, entry_fn)

    for n, eqn in enumerate(fn.eqns):
        if all(v.type.size == 0 for v in eqn.outputs):
            continue  # nothing to compute
        in_place = _in_place(plan, eqn, donated)
        kernel = emit_kernel(module, f"k{n}_{eqn.op}", eqn, in_place)
        args = [pointers.of(v) for k, v in enumerate(eqn.outputs) if k not in in_place]
        args += [pointers.of(v) for v in eqn.inputs]
        if eqn in plan.scratch:
            args.append(pointers.arena_at(plan.scratch[eqn]))
        b.call(kernel, args)
        if parts is not None:
            parts.add(finished.texts(), finished.context)

    for value, j in plan.copies:
        if value.type.nbytes and j not in unchanged:  # a donated parameter returned as is
            _memcpy(b, pointers.result(j), pointers.of(value), value.type.nbytes)
    b.ret_void()

    arena_size = ll.GlobalVariable(module, I64, f"{entry}_arena_bytes")
    arena_size.global_constant = True
    arena_size.initializer = index_constant(plan.arena_bytes)
    if parts is not None:
        parts.add(finished.texts(last=True), finished.context)

    return LoweredProgram(
        name=fn.name, entry=entry, text=module.__str__,
        param_types=tuple(fn.param_types), result_types=tuple(fn.output_types),
        arena_bytes=plan.arena_bytes,
        links=(library.ident,) if links_library(module) else (),
    )


def _in_place(plan: MemoryPlan, eqn, donated: Mapping[int, int] | None = None
              ) -> dict[int, int]:
    """Outputs of ``eqn`` that the plan puts in the buffer of one of its inputs
    (in-place results, donated parameters): output index -> input index.

    A donated result's slot is its parameter's buffer (runtime/executable.py),
    so its location counts as that parameter's."""
    donated = donated or {}

    def buffer(v) -> Location:
        location = plan.locations[v]
        if location.kind == "result" and location.position in donated:
            return Location("param", donated[location.position])
        return location

    inputs = {buffer(v): j for j, v in enumerate(eqn.inputs)}
    found = {}
    for k, v in enumerate(eqn.outputs):
        j = inputs.get(buffer(v))
        if j is not None and v.type.nbytes:
            found[k] = j
    return found


class _Finished:
    """The functions of a module being lowered that are finished and not yet
    handed over, and the module's other text."""

    def __init__(self, module: ll.Module, entry_fn: ll.Function):
        self.module, self.entry_fn = module, entry_fn
        self._seen = 0  # globals looked at so far (the dict keeps creation order)

    def texts(self, *, last: bool = False) -> list[str]:
        """Texts of the functions defined since the last call (with the entry if ``last``)."""
        values = list(self.module.globals.values())
        new = [str(g) for g in values[self._seen:]
               if isinstance(g, ll.Function) and g.blocks and g is not self.entry_fn]
        self._seen = len(values)
        return new + [str(self.entry_fn)] if last else new

    def context(self) -> str:
        """The module's text without function definitions."""
        m = self.module
        lines = [f'; ModuleID = "{m.name}"', f'target triple = "{m.triple}"',
                 f'target datalayout = "{m.data_layout}"', ""]
        lines += [str(g) for g in m.globals.values()
                  if not (isinstance(g, ll.Function) and g.blocks)]
        return "\n".join(lines + m._get_metadata_lines())  # llvmlite's own metadata printer


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
