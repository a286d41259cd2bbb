"""Object code that programs share: linked into the JIT once per process, its
symbols resolved for every program that calls them.

A ``SharedLibrary`` holds the object code of a library (the GEMM kernel
library of compiler/kernel_library.py) and the names it exports. Once
registered, ``link_program`` (runtime/loader.py) imports its symbols into
each program compiled against it (the program's ``ProgramInfo.links``),
linking the library on first need. The
thread pool (runtime/threadpool.py) is the other library programs import.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

from runtime.errors import JitError
from runtime.jit import JitLibrary, jit_engine

__all__ = ["SharedLibrary", "register", "add_resolver", "imports", "known_symbols"]


class SharedLibrary:
    """Object code exporting ``exports``; ``key`` names its version (a
    compile-cache key). ``ident`` (name and key) is what programs record."""

    def __init__(self, name: str, object_code: bytes, exports: Sequence[str], *, key: str = ""):
        if not exports:
            raise ValueError(f"library {name!r} exports nothing")
        self.name = name
        self.key = key
        self.ident = f"{name}:{key}"
        self.object_code = object_code
        self.exports = tuple(exports)
        self.export_set = frozenset(exports)
        self._library: JitLibrary | None = None
        self._addresses: dict[str, int] = {}
        self._lock = threading.Lock()

    def addresses(self) -> dict[str, int]:
        """Symbol -> address, linking the library into the JIT on first call
        (JitError if it cannot be linked)."""
        with self._lock:
            if self._library is None:
                library = jit_engine().add_object(self.object_code, self.exports,
                                                  name_hint=self.name)
                self._addresses = {symbol: library.address(symbol) for symbol in self.exports}
                self._library = library  # its code lives as long as this object
            return self._addresses


# Registered libraries are never dropped: programs linked against one hold it
# (link_program), and its code must outlive every one of them.
_registered: dict[str, SharedLibrary] = {}
_lock = threading.Lock()


def register(library: SharedLibrary) -> SharedLibrary:
    """Make ``library``'s symbols available to programs linked from now on;
    returns the registered library of that ``ident`` (the first one given:
    two threads finding the same library share one)."""
    with _lock:
        return _registered.setdefault(library.ident, library)


_resolvers: list[Callable[[str], "SharedLibrary | None"]] = []


def add_resolver(resolve: Callable[[str], "SharedLibrary | None"]) -> None:
    """``resolve(ident)`` finds (and registers) a library this process has not
    loaded yet, e.g. for a program loaded from the compile cache, which was
    never lowered here (compiler/kernel_library.py adds its own)."""
    with _lock:
        if resolve not in _resolvers:
            _resolvers.append(resolve)


def _registered_or_resolved(ident: str) -> "SharedLibrary | None":
    with _lock:
        library, resolvers = _registered.get(ident), list(_resolvers)
    for resolve in resolvers:
        if library is not None:
            break
        found = resolve(ident)
        library = found if found is not None and found.ident == ident else None
    return library


def imports(idents: Sequence[str]) -> tuple[dict[str, int], list[SharedLibrary]]:
    """Addresses of the symbols of the registered libraries ``idents`` (those
    a program was compiled against: its ``ProgramInfo.links``), and the
    libraries, which the program must keep alive."""
    found: dict[str, int] = {}
    used = []
    for ident in idents:
        library = _registered_or_resolved(ident)
        if library is None:
            raise JitError(f"the program calls the shared library {ident!r}, which this "
                           "process has not loaded")
        try:
            found.update(library.addresses())
        except JitError as error:
            raise JitError(f"the shared library {ident!r} cannot be linked: {error}") from None
        used.append(library)
    return found, used


def known_symbols() -> frozenset[str]:
    """Every symbol the registered libraries export (defined for programs that
    declare them, though not in their own object code)."""
    with _lock:
        return frozenset(s for library in _registered.values() for s in library.exports)
