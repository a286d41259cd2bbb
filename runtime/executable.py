"""``Executable``: a compiled program with its signature, scratch arena and entry point.

NOTE: [Calling convention]
A program's native entry point is ``void entry(void **table)``. The table holds
one data pointer per parameter, then one per result, then the scratch arena:
``table = [param_0 .. param_{P-1}, result_0 .. result_{R-1}, arena]``. Every
buffer is C-contiguous, in the IR dtype (bool is one byte, 0 or 1), aligned to
its element size; the arena is 64-byte aligned and ``arena_bytes`` long.
Results must not alias parameters. One call of the entry runs the whole
program: no Python runs between kernels.

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
from typing import Sequence

import llvmlite.binding as llvm
import numpy as np

from ir.dtypes import TensorType, dtype_of
from ir.errors import IRError
from runtime import aot
from runtime.errors import ArgumentError
from runtime.jit import JitLibrary
from runtime.pyabi import data_pointer
from runtime.target import host_target_machine

__all__ = ["Executable"]

# numpy's NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED bits of ``ndarray.flags.num``.
_C_ALIGNED = 0x1 | 0x100
_ARENA_ALIGN = 64
_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_ndarray, _empty = np.ndarray, np.empty  # module globals: cheaper than np.<attr> per call


class Executable:
    """A native program: call it with numpy arrays, get a list of new numpy arrays.

    Built by ``runtime.load_program`` (or ``compiler.backend.compile_function``).
    ``exe(*args)`` checks the count, dtype and shape of every argument (raising
    ``ArgumentError``), copies non-contiguous ones, allocates the results and
    calls the native entry point once. ``llvm_ir`` is the LLVM IR as generated,
    ``optimized_llvm_ir`` after LLVM's O3 pipeline, ``asm`` the host assembly
    (generated on first access); ``emit_object()`` compiles an object file for
    AOT use. ``compile_seconds`` breaks the compile time down by stage.
    """

    def __init__(self, *, name: str, param_types: Sequence[TensorType],
                 result_types: Sequence[TensorType], arena_bytes: int, entry: str,
                 llvm_ir: str, optimized_llvm_ir: str, library: JitLibrary,
                 call_symbol: str, takes_objects: bool, compile_seconds: dict[str, float]):
        self.name = name
        self.param_types: tuple[TensorType, ...] = tuple(param_types)
        self.result_types: tuple[TensorType, ...] = tuple(result_types)
        self.arena_bytes = int(arena_bytes)
        self.entry = entry
        self.llvm_ir = llvm_ir
        self.optimized_llvm_ir = optimized_llvm_ir
        self.compile_seconds = dict(compile_seconds)
        self._asm: str | None = None
        # The library owns the machine code: keep it as long as _fn may be called.
        self._library = library
        self._fn = _CFUNC(library.address(call_symbol))
        # With the object wrapper the table gets id(array); without, data pointers.
        self._pointer_of = id if takes_objects else data_pointer
        self._nparams = len(self.param_types)
        self._param_specs = tuple((t.dtype.numpy, t.shape) for t in self.param_types)
        self._result_specs = tuple((t.shape, t.dtype.numpy) for t in self.result_types)
        # Free (table, address, arena) slots; one is enough unless threads overlap.
        self._free_slots = [self._new_slot()]

    # -- calling -----------------------------------------------------------

    def __call__(self, *args) -> list[np.ndarray]:
        """Run the program on ``args`` (numpy arrays); returns new result arrays."""
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
            converted = []  # keeps converted copies alive until the call returns
            i = 0
            for arg in args:
                dtype, shape = specs[i]
                if (type(arg) is not _ndarray or arg.dtype is not dtype or arg.shape != shape
                        or arg.flags.num & _C_ALIGNED != _C_ALIGNED):
                    arg = self._convert(i, arg)
                    converted.append(arg)
                table[i] = pointer_of(arg)
                i += 1
            results = []
            for shape, dtype in self._result_specs:
                result = _empty(shape, dtype)
                table[i] = pointer_of(result)
                results.append(result)
                i += 1
            self._fn(slot[1])
        finally:
            slots.append(slot)
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

    # -- introspection -----------------------------------------------------

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
        return f"<Executable '{self.name}' {self.signature}, arena {self.arena_bytes} B>"


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
