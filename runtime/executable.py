"""``Executable``: a compiled program with its signature, scratch arena and entry point.

NOTE: [Calling convention]
A program's native entry point is ``void entry(void **table)``. The table holds
one data pointer per parameter, then one per result, then the scratch arena:
``table = [param_0 .. param_{P-1}, result_0 .. result_{R-1}, arena]``. Every
buffer is C-contiguous, in the IR dtype (bool is one byte, 0 or 1), aligned to
its element size; the arena is 64-byte aligned and ``arena_bytes`` long.
Results do not alias parameters, except donated ones (below). One call of the
entry runs the whole program: no Python runs between kernels.

NOTE: [Donated parameters]
A program compiled with ``donated = ((j, i), ...)`` writes result ``j`` into
the buffer of parameter ``i`` (the code generator arranged that this is safe:
compiler/codegen/donation.py). The caller's array ``i`` is then returned as
result ``j`` -- no allocation and no copy -- so a donated argument must be a
ready numpy array (exact dtype and shape, C-contiguous, aligned, writeable)
and must not share memory with any other argument; anything else is an
``ArgumentError`` that says why, never a silent copy. The overlap check runs
natively in the wrapper (runtime/pyabi.py) before the entry is called.

From Python, ``exe(*arrays)`` calls ``<entry>_py`` (see runtime/pyabi.py) with
the addresses of the array objects, so a call costs one ctypes call plus the
argument checks and result allocations.

NOTE: [Sharing the arena between threads]
The arena and the pointer table belong to the Executable, allocated once and
reused by every call. ctypes releases the GIL during the native call, so two
threads may be inside one Executable at once: each call pops a free
(table, arena) slot from ``_free_slots`` (``list.pop`` is atomic under the
GIL) and puts it back afterwards; a call that finds none makes a new slot, so
the pool grows to the number of threads that overlapped.
"""

from __future__ import annotations

import ctypes
from typing import Callable, Sequence

import llvmlite.binding as llvm
import numpy as np

from ir.dtypes import TensorType, dtype_of
from ir.errors import IRError
from runtime import aot
from runtime.errors import ArgumentError
from runtime.jit import JitLibrary
from runtime.llvm_module import optimize_module, parse_module
from runtime.pyabi import data_pointer, decode_overlap
from runtime.target import host_target_machine

__all__ = ["Executable"]

# numpy's NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED (| NPY_ARRAY_WRITEABLE for a
# donated argument) bits of ``ndarray.flags.num``.
_C_ALIGNED = 0x1 | 0x100
_C_ALIGNED_WRITEABLE = _C_ALIGNED | 0x400
_ARENA_ALIGN = 64
_CFUNC_STATUS = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)  # the wrapper: <entry>_py
_CFUNC_VOID = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # the entry itself
_ndarray, _empty = np.ndarray, np.empty  # module globals: cheaper than np.<attr> per call


class Executable:
    """A native program: call it with numpy arrays, get a list of new numpy arrays.

    Built by ``runtime.load_program`` (or ``compiler.backend.compile_function``).
    ``exe(*args)`` checks the count, dtype and shape of every argument (raising
    ``ArgumentError``), copies non-contiguous ones, allocates the results and
    calls the native entry point once. ``donated`` pairs ``(j, i)`` make result
    ``j`` reuse argument ``i``'s buffer (see [Donated parameters]).
    ``llvm_ir`` is the LLVM IR as generated, ``optimized_llvm_ir`` after LLVM's
    optimiser, ``asm`` the host assembly; each is made on first access when
    the program came from the disk cache. ``emit_object()`` compiles an object
    file for AOT use. ``compile_seconds`` breaks the compile time down by stage
    (``{"cache_load": ...}`` for a program loaded from the disk cache).
    """

    def __init__(self, *, name: str, param_types: Sequence[TensorType],
                 result_types: Sequence[TensorType], arena_bytes: int, entry: str,
                 llvm_ir: str | Callable[[], str], optimized_llvm_ir: str | None,
                 library: JitLibrary, call_symbol: str, takes_objects: bool,
                 compile_seconds: dict[str, float], donated: Sequence[tuple[int, int]] = ()):
        self.name = name
        self.param_types: tuple[TensorType, ...] = tuple(param_types)
        self.result_types: tuple[TensorType, ...] = tuple(result_types)
        self.arena_bytes = int(arena_bytes)
        self.entry = entry
        self._llvm_ir = llvm_ir  # text, or a function that regenerates it
        self._optimized_llvm_ir = optimized_llvm_ir
        self._memory_plan: str | Callable[[], str] | None = None
        self.compile_seconds = dict(compile_seconds)
        self.donated: tuple[tuple[int, int], ...] = _check_donated(donated, self.param_types,
                                                                   self.result_types)
        self._asm: str | None = None
        # The library owns the machine code: keep it as long as _fn may be called.
        self._library = library
        cfunc = _CFUNC_STATUS if takes_objects else _CFUNC_VOID
        self._fn = cfunc(library.address(call_symbol))
        # With the object wrapper the table gets id(array); without, data pointers.
        self._pointer_of = id if takes_objects else data_pointer
        self._nparams = len(self.param_types)
        donated_params = {i: j for j, i in self.donated}
        self._param_specs = tuple(
            (t.dtype.numpy, t.shape, _C_ALIGNED_WRITEABLE if k in donated_params else _C_ALIGNED)
            for k, t in enumerate(self.param_types))
        source = {j: i for j, i in self.donated}
        # (shape, dtype, index of the argument whose buffer it reuses or None)
        self._result_specs = tuple((t.shape, t.dtype.numpy, source.get(j))
                                   for j, t in enumerate(self.result_types))
        self._takes_objects = takes_objects
        # Free (table, address, arena) slots; one is enough unless threads overlap.
        self._free_slots = [self._new_slot()]

    # -- calling -----------------------------------------------------------

    def __call__(self, *args) -> list[np.ndarray]:
        """Run the program on ``args`` (numpy arrays); returns the result arrays
        (new ones, or the donated arguments' own arrays for donated results)."""
        # The hot path: every line here costs per call (~1 µs in all for a tiny
        # program; tests/runtime/test_executable.py measures it).
        specs = self._param_specs
        if len(args) != len(specs):
            raise ArgumentError(
                f"'{self.name}' takes {len(specs)} argument(s) {self.signature_params}, "
                f"got {len(args)}"
            )
        slots = self._free_slots
        try:
            slot = slots.pop()  # atomic under the GIL
        except IndexError:  # another thread is inside this executable
            slot = self._new_slot()
        try:
            table = slot[0]
            pointer_of = self._pointer_of
            arrays = []  # what the table points at; keeps converted copies alive
            i = 0
            for arg in args:
                dtype, shape, flags = specs[i]
                if (type(arg) is not _ndarray or arg.dtype is not dtype or arg.shape != shape
                        or arg.flags.num & flags != flags):
                    arg = self._convert(i, arg)
                table[i] = pointer_of(arg)
                arrays.append(arg)
                i += 1
            results = []
            for shape, dtype, source in self._result_specs:
                result = _empty(shape, dtype) if source is None else arrays[source]
                table[i] = pointer_of(result)
                results.append(result)
                i += 1
            if self.donated and not self._takes_objects:
                self._check_overlaps(arrays)
            status = self._fn(slot[1])
        finally:
            slots.append(slot)
        if status:
            raise ArgumentError(self._overlap_message(*decode_overlap(status, len(table) - 1)))
        return results

    def _new_slot(self):
        """(pointer table, its address, arena owner): the per-call state of one thread."""
        arena, arena_address = _allocate_arena(self.arena_bytes)
        slots = self._nparams + len(self.result_types)
        table = (ctypes.c_void_p * (slots + 1))()
        table[slots] = arena_address
        return table, ctypes.addressof(table), arena

    def _convert(self, i: int, arg) -> np.ndarray:
        """The slow path: an argument that is not a ready C-contiguous array of the type."""
        expected = self.param_types[i]
        dtype = expected.dtype.numpy
        if self._param_specs[i][2] == _C_ALIGNED_WRITEABLE:
            raise ArgumentError(self._donation_problem(i, arg))
        try:
            array = np.asarray(arg)
        except Exception as error:
            raise ArgumentError(
                f"argument {i} of '{self.name}': expected {expected}, got "
                f"{type(arg).__name__} ({error})"
            ) from None
        same_kind = array.dtype == dtype or (  # a byte-swapped copy of the right type
            array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize
            and array.dtype.kind in "fiub")
        if not same_kind or array.shape != expected.shape:
            raise ArgumentError(
                f"argument {i} of '{self.name}': expected {expected}, got {_describe(array)}"
            )
        # Copies unless already C-contiguous, aligned, native-order and of the exact dtype.
        return np.require(array.astype(dtype, copy=False), requirements=("C", "A"))

    def _donation_problem(self, i: int, arg) -> str:
        """Why argument ``i`` cannot be donated (it is not a ready array to write into)."""
        expected = self.param_types[i]
        what = f"argument {i} of '{self.name}' is donated (its buffer receives a result)"
        if type(arg) is not _ndarray:
            kind = "a numpy array subclass" if isinstance(arg, _ndarray) else type(arg).__name__
            return (f"{what}, so it must be a numpy array of {expected}, got {kind}; "
                    "pass numpy.asarray(...) of the right dtype, or do not donate it")
        if arg.dtype != expected.dtype.numpy or arg.shape != expected.shape:
            return (f"{what}: expected {expected}, got {_describe(arg)}; a conversion would "
                    "be a copy, which donation exists to avoid")
        if not arg.flags.writeable:
            return f"{what}, but the array is read-only (was it donated before?)"
        return (f"{what}, but the array is not C-contiguous and aligned, so the result "
                "cannot be written into it; pass numpy.ascontiguousarray(...)")

    def _check_overlaps(self, arrays) -> None:
        """The portable path's version of the wrapper's overlap check."""
        for _, i in self.donated:
            for k, other in enumerate(arrays):
                if k != i and np.may_share_memory(arrays[i], other):
                    raise ArgumentError(self._overlap_message(i, k))

    def _overlap_message(self, i: int, k: int) -> str:
        return (f"argument {k} of '{self.name}' shares memory with donated argument {i}; a "
                "donated buffer is overwritten by a result, so pass it only once (or a copy)")

    # -- introspection -----------------------------------------------------

    @property
    def memory_plan(self) -> str | None:
        """Where each value lives (set by the compiler; may be made on first access)."""
        if callable(self._memory_plan):
            self._memory_plan = self._memory_plan()
        return self._memory_plan

    @memory_plan.setter
    def memory_plan(self, text: str | Callable[[], str] | None) -> None:
        self._memory_plan = text

    @property
    def llvm_ir(self) -> str:
        """The LLVM IR as generated (regenerated on first access after a cache hit)."""
        if callable(self._llvm_ir):
            self._llvm_ir = self._llvm_ir()
        return self._llvm_ir

    @property
    def optimized_llvm_ir(self) -> str:
        """The LLVM IR after LLVM's optimiser, without the Python wrapper."""
        if self._optimized_llvm_ir is None:
            tm = host_target_machine()
            module = parse_module(self.llvm_ir, tm, name=self.name)
            optimize_module(module, tm)
            self._optimized_llvm_ir = str(module)
        return self._optimized_llvm_ir

    @property
    def signature_params(self) -> str:
        return "(" + ", ".join(str(t) for t in self.param_types) + ")"

    @property
    def signature(self) -> str:
        """``(f32[4,3], f32[3]) -> (f32[4,3])``."""
        results = ", ".join(str(t) for t in self.result_types)
        return f"{self.signature_params} -> ({results})"

    @property
    def asm(self) -> str:
        """Host assembly of the optimised module (generated on first access)."""
        if self._asm is None:
            module = llvm.parse_assembly(self.optimized_llvm_ir)
            self._asm = host_target_machine().emit_assembly(module)
        return self._asm

    def emit_object(self, *, cpu: str | None = None, features: str | None = None) -> bytes:
        """An ELF object file (PIC) defining ``entry``, without the Python wrapper.

        It also defines ``<entry>_arena_bytes`` (an i64 constant): a C caller
        allocates that many 64-byte aligned bytes for the last table slot.
        """
        return aot.emit_object(self.llvm_ir, name=self.name, cpu=cpu, features=features)

    def __repr__(self) -> str:
        donated = f", donated {list(self.donated)}" if self.donated else ""
        return f"<Executable '{self.name}' {self.signature}, arena {self.arena_bytes} B{donated}>"


def _check_donated(donated, param_types, result_types) -> tuple[tuple[int, int], ...]:
    pairs = tuple((int(j), int(i)) for j, i in donated)
    results = [j for j, _ in pairs]
    params = [i for _, i in pairs]
    if len(set(results)) != len(results) or len(set(params)) != len(params):
        raise ValueError(f"donated pairs must use each result and parameter once: {list(pairs)}")
    for j, i in pairs:
        if not (0 <= j < len(result_types) and 0 <= i < len(param_types)):
            raise ValueError(f"donated pair (result {j}, parameter {i}) is out of range")
        if result_types[j] != param_types[i]:
            raise ValueError(f"result {j} ({result_types[j]}) cannot reuse parameter {i}'s "
                             f"buffer ({param_types[i]}): the types differ")
    return pairs


def _allocate_arena(nbytes: int):
    """A 64-byte aligned scratch block: (owner array, address); address 0 when empty."""
    if nbytes == 0:
        return None, 0
    block = np.empty(nbytes + _ARENA_ALIGN, np.uint8)
    start = data_pointer(block)
    skip = -start % _ARENA_ALIGN
    return block, start + skip


def _describe(array: np.ndarray) -> str:
    shape = ",".join(str(d) for d in array.shape)
    try:
        name = dtype_of(array.dtype).value
    except IRError:
        name = str(array.dtype)
    return f"{name}[{shape}]"
