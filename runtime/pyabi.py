"""The bridge between Python objects and a program's pointer table.

NOTE: [Reading data pointers natively]
The entry point of a program takes a table of data pointers (params, results,
arena; see compiler/codegen/lower.py). Getting a data pointer in Python costs
~1 µs per array (``arr.ctypes.data`` and ``arr.__array_interface__`` alike),
more than everything else a call does. So the runtime adds a small wrapper
function to each module, ``<entry>_py(objs)``: ``objs`` holds the *addresses of
the numpy array objects* (CPython's ``id``) and the wrapper reads each data
pointer at a fixed offset inside the array object (numpy's ``PyArrayObject``
stores ``char *data`` right after the object header), then calls the entry
point and returns a status (nonzero: donated buffers overlap, see
``wrapper_llvm_ir``). ``numpy_data_offset`` finds that offset by probing live
arrays and returns None when the probe fails (another Python implementation,
an unusual build); the runtime then fills the pointer table in Python
instead, slower but equally correct. The caller must keep every array referenced during the call.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Sequence

import numpy as np

__all__ = ["numpy_data_offset", "data_pointer", "wrapper_llvm_ir", "wrapper_name",
           "overlap_code", "decode_overlap"]


def data_pointer(array: np.ndarray) -> int:
    """The address of the first element of ``array`` (the slow, portable way)."""
    return array.__array_interface__["data"][0]


@functools.cache
def numpy_data_offset() -> int | None:
    """Byte offset of the data pointer inside a numpy array object, or None."""
    if sys.implementation.name != "cpython":  # id() is an address only in CPython
        return None
    offset = object.__basicsize__  # the object header: refcount and type
    base = np.arange(64, dtype=np.float64)
    probes = [base, base[3:], base[::2], base.reshape(8, 8).T, np.empty(0, np.int32),
              np.zeros((), np.bool_), np.ones((5, 7), np.float32)]
    for array in probes:
        found = ctypes.c_void_p.from_address(id(array) + offset).value or 0
        if found != data_pointer(array):
            return None
    return offset


def wrapper_name(entry: str) -> str:
    return f"{entry}_py"


def wrapper_llvm_ir(entry: str, num_arrays: int, data_offset: int,
                    overlap_checks: Sequence[tuple[int, int, int, int]] = ()) -> str:
    """LLVM IR of ``i32 <entry>_py(ptr objs)``.

    ``objs[0:num_arrays]`` are addresses of numpy array objects and
    ``objs[num_arrays]`` is the raw arena pointer; the wrapper builds the data
    pointer table on its stack and calls ``entry(table)``, returning 0.

    ``overlap_checks`` holds ``(i, k, bytes_i, bytes_k)``: before calling the
    entry, the wrapper returns ``overlap_code(i, k, num_arrays)`` (nonzero) if
    the buffers of arrays ``i`` and ``k`` overlap. Donation uses it: a donated
    parameter's buffer receives a result, so no other argument may share it.
    """
    slots = num_arrays + 1
    lines = [
        f'define i32 @"{wrapper_name(entry)}"(ptr noalias %objs) nounwind {{',
        f"  %table = alloca [{slots} x ptr], align 8",
    ]
    for i in range(num_arrays):
        lines += [
            f"  %op{i} = getelementptr inbounds ptr, ptr %objs, i64 {i}",
            f"  %obj{i} = load ptr, ptr %op{i}, align 8",
            f"  %dp{i} = getelementptr inbounds i8, ptr %obj{i}, i64 {data_offset}",
            f"  %d{i} = load ptr, ptr %dp{i}, align 8",
            f"  %t{i} = getelementptr inbounds ptr, ptr %table, i64 {i}",
            f"  store ptr %d{i}, ptr %t{i}, align 8",
        ]
    n = num_arrays
    lines += [
        f"  %op{n} = getelementptr inbounds ptr, ptr %objs, i64 {n}",
        f"  %arena = load ptr, ptr %op{n}, align 8",
        f"  %t{n} = getelementptr inbounds ptr, ptr %table, i64 {n}",
        f"  store ptr %arena, ptr %t{n}, align 8",
    ]
    for c, (i, k, bytes_i, bytes_k) in enumerate(overlap_checks):
        # [a_i, a_i + bytes_i) and [a_k, a_k + bytes_k) overlap iff each starts
        # before the other ends.
        lines += [
            f"  %a{c}.i = ptrtoint ptr %d{i} to i64",
            f"  %a{c}.k = ptrtoint ptr %d{k} to i64",
            f"  %e{c}.i = add i64 %a{c}.i, {bytes_i}",
            f"  %e{c}.k = add i64 %a{c}.k, {bytes_k}",
            f"  %b{c}.i = icmp ult i64 %a{c}.i, %e{c}.k",
            f"  %b{c}.k = icmp ult i64 %a{c}.k, %e{c}.i",
            f"  %overlap{c} = and i1 %b{c}.i, %b{c}.k",
            f"  br i1 %overlap{c}, label %fail{c}, label %ok{c}",
            f"fail{c}:",
            f"  ret i32 {overlap_code(i, k, num_arrays)}",
            f"ok{c}:",
        ]
    lines += [
        f'  call void @"{entry}"(ptr %table)',
        "  ret i32 0",
        "}",
    ]
    return "\n".join(lines) + "\n"


def overlap_code(i: int, k: int, num_arrays: int) -> int:
    """The wrapper's status when arrays ``i`` and ``k`` overlap (never 0)."""
    return 1 + i * num_arrays + k


def decode_overlap(code: int, num_arrays: int) -> tuple[int, int]:
    """``(i, k)`` from a nonzero status of the wrapper."""
    return divmod(code - 1, num_arrays)
