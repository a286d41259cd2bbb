"""The process-wide JIT engine (ORC LLJIT) that every compiled program joins.

NOTE: [One engine, one library per program]
Programs are added as separate JIT libraries of one LLJIT (notes §5: a
separate engine per program costs ~780 KiB, a library ~47 KiB). Each library
is owned by a ``JitLibrary`` holding its ResourceTracker: the machine code is
freed when the last reference goes away, so whoever keeps a function address
must keep the ``JitLibrary`` too. LLJIT resolves external symbols (libm) from
the process at link time and reports unresolved ones as an error, where MCJIT
would crash when the function is called.
"""

from __future__ import annotations

import functools
import itertools
import struct
import threading
from typing import Mapping, Sequence

import llvmlite.binding as llvm

from runtime.errors import JitError
from runtime.target import host_target_machine, initialize_llvm

__all__ = ["JitLibrary", "JitEngine", "jit_engine", "pack_objects", "unpack_objects"]

# Several object files of one program (a module compiled in parts, see
# runtime/module_split.py) travel as one blob: magic, count, lengths, images.
_OBJECTS_MAGIC = b"XLACOBJS"
_COUNT = struct.Struct("<I")
_SIZE = struct.Struct("<Q")


def pack_objects(objects: Sequence[bytes]) -> bytes:
    """One blob for the object files of a program (a single one stays as is)."""
    if len(objects) == 1:
        return bytes(objects[0])
    header = _OBJECTS_MAGIC + _COUNT.pack(len(objects)) + b"".join(
        _SIZE.pack(len(o)) for o in objects)
    return header + b"".join(objects)


def unpack_objects(blob: bytes) -> list[bytes]:
    """The object files ``pack_objects`` put in ``blob`` (ValueError if malformed)."""
    if not blob.startswith(_OBJECTS_MAGIC):
        return [blob]
    at = len(_OBJECTS_MAGIC)
    if len(blob) < at + _COUNT.size:
        raise ValueError("truncated object bundle")
    (count,) = _COUNT.unpack_from(blob, at)
    at += _COUNT.size
    if len(blob) < at + count * _SIZE.size:
        raise ValueError("truncated object bundle")
    sizes = [_SIZE.unpack_from(blob, at + k * _SIZE.size)[0] for k in range(count)]
    at += count * _SIZE.size
    if at + sum(sizes) != len(blob):
        raise ValueError("object bundle sizes do not match its length")
    objects = []
    for size in sizes:
        objects.append(blob[at:at + size])
        at += size
    return objects


class JitLibrary:
    """Machine code of one program, alive as long as this object is referenced."""

    def __init__(self, name: str, tracker, engine: "JitEngine"):
        self.name = name
        self._tracker = tracker  # frees the code when collected
        # Disposing a tracker needs its LLJIT: keep the engine alive until then,
        # whatever order interpreter shutdown collects objects in.
        self._engine = engine
        self.uses: tuple[object, ...] = ()  # owners of code this library calls

    def address(self, symbol: str) -> int:
        """The address of an exported symbol (requested when the library was added)."""
        try:
            address = self._tracker[symbol]
        except KeyError:
            raise JitError(f"symbol {symbol!r} was not exported from JIT library {self.name!r}") from None
        if not address:
            raise JitError(f"symbol {symbol!r} is not defined in JIT library {self.name!r}")
        return address


class JitEngine:
    """One LLJIT for the whole process; ``add_object`` links a program into it."""

    def __init__(self):
        initialize_llvm()
        self._lljit = llvm.create_lljit_compiler(host_target_machine())
        self._names = itertools.count()
        self._lock = threading.Lock()

    def add_object(self, object_code: bytes, exports: Sequence[str], *, name_hint: str = "prog",
                   imports: Mapping[str, int] | None = None,
                   keep_alive: Sequence[object] = ()) -> JitLibrary:
        """Link an object file image (or several, ``pack_objects``) into a new
        library and look up ``exports``; ``imports`` resolves symbols defined in
        other JIT libraries (name -> address), whose owners ``keep_alive``
        holds for as long as the new library lives."""
        with self._lock:
            # Library names can never be reused, even after their code is freed.
            name = f"{_sanitize(name_hint)}.{next(self._names)}"
        try:
            objects = unpack_objects(object_code)
        except ValueError as error:
            raise JitError(f"object code of {name_hint!r} is unusable: {error}") from None
        builder = llvm.JITLibraryBuilder()
        for image in objects:
            builder.add_object_img(image)
        builder.add_current_process()
        for symbol in exports:
            builder.export_symbol(symbol)
        for symbol, address in (imports or {}).items():
            builder.import_symbol(symbol, address)
        try:
            tracker = builder.link(self._lljit, name)
        except RuntimeError as error:
            raise JitError(f"linking {name_hint!r} into the JIT failed: {error}") from None
        library = JitLibrary(name, tracker, self)
        library.uses = tuple(keep_alive)
        return library


def _sanitize(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:40] or "prog"


@functools.cache
def jit_engine() -> JitEngine:
    """The process-wide engine, created on first use."""
    return JitEngine()
