"""The GEMM kernel library: built once per machine, linked by every program.

See [Shape-generic kernels] in codegen/library.py for what it holds and why,
and [Installed objects] in runtime/cache.py for where it lives. It is built
when the package is installed (``install_objects``, run by the build hook in
compiler/_install_hook.py) or by ``xlac kernels build`` (into the user's
compile cache); ``kernel_library()`` finds it. A machine without it (a wheel
built on another CPU, a failed install-time build, ``XLAC_KERNEL_LIBRARY=off``)
compiles the kernels each program calls into that program, as fast, but with
more to compile on a cold start.

The library is named by the sources of the code that generates it and the
host vector width (its text) and, like any cache entry, by the CPU, its
features and the LLVM version (its environment): a library is only ever
found by the compiler that made it, on the machine it was made for.
"""

from __future__ import annotations

import functools
import pathlib
import threading
import time

from runtime import libraries
from runtime.cache import (CompileCache, ProgramInfo, environment, find_object, has_object,
                           installed_cache, source_fingerprint, store_object)
from runtime.errors import JitError
from runtime.loader import compile_library
from runtime.target import host_target

from compiler import flags

__all__ = ["kernel_library", "library_id", "KernelSymbols", "build_kernel_library",
           "install_objects", "describe",
           "LIBRARY_NAME", "LIBRARY_PREFIX"]

LIBRARY_NAME = "xlac_kernels"
LIBRARY_PREFIX = "xlac.gemm."  # every library symbol's, and no other function's
_ROOT = pathlib.Path(__file__).resolve().parent.parent
# The generator of the library's code (kernel_set.py and what it imports of
# this project): a change to any of these is a new library.
_GENERATOR = [f"compiler/codegen/{name}.py" for name in (
    "gemm_kernel", "gemm_pack", "gemm_plan", "intrinsics", "library", "kernel_set", "llvm_types")
] + ["ir/dtypes.py", "ir/errors.py"]


def _vector_bits() -> int:
    from compiler.codegen.gemm_plan import vector_bits

    return vector_bits(host_target().features)


@functools.cache
def _library_text() -> str:
    sources = source_fingerprint([_ROOT / name for name in _GENERATOR])
    return f"xla-py GEMM kernel library\nsources {sources}\nvector bits {_vector_bits()}\n"


def _enabled() -> bool:
    value = flags.get("kernel_library")
    return value is None or value.strip().lower() not in ("off", "0", "no", "false")


def _key() -> str:
    return CompileCache.key(_library_text(), environment())


def kernel_library() -> libraries.SharedLibrary | None:
    """The machine's kernel library, registered with the runtime and linked
    into the JIT, or None (not built for this compiler and machine, unusable,
    or switched off)."""
    if not _enabled():
        return None
    with _lock:
        return _find(str(flags.get("cache_dir")), str(flags.get("installed_objects")))


def library_id() -> str:
    """What a program's code may assume of the kernels, cheaply (no file is
    read): ``library <key>`` when this machine's library is stored where
    ``kernel_library`` looks, else ``inline``. Part of every program's cache
    key (backend.codegen_salt). A program compiled while the stored library
    turned out unusable defines its kernels: its cached object stays right,
    as it records the libraries it links (``ProgramInfo.links``)."""
    if not _enabled():
        return "inline"
    return f"library {_key()}" if has_object(_library_text()) else "inline"


class KernelSymbols:
    """The library's symbols, for ``lower(..., library=...)``: the library is
    looked up when lowering first asks for a kernel, so a program without a
    GEMM never reads or links it."""

    def __contains__(self, name: object) -> bool:
        library = kernel_library()
        return library is not None and name in library.export_set

    @property
    def ident(self) -> str | None:
        library = kernel_library()
        return None if library is None else library.ident


_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _find(cache_dir: str, installed: str) -> libraries.SharedLibrary | None:
    del cache_dir, installed  # the memo key only: find_object reads the same flags
    found = find_object(_library_text(), name=LIBRARY_NAME)
    if found is None:
        return None
    object_code, info = found
    if not info.exports or not all(s.startswith(LIBRARY_PREFIX) for s in info.exports):
        return None
    library = libraries.register(libraries.SharedLibrary(LIBRARY_NAME, object_code,
                                                         info.exports, key=_key()))
    try:
        library.addresses()  # linked now: a library that does not link is not used
    except JitError:
        return None
    return library


def _resolve(ident: str) -> libraries.SharedLibrary | None:
    """The library a cached program was compiled against, if it is this one."""
    if not ident.startswith(LIBRARY_NAME + ":"):
        return None
    library = kernel_library()
    return library if library is not None and library.ident == ident else None


libraries.add_resolver(_resolve)


def describe() -> dict:
    """Where this machine's library is (what ``xlac kernels info`` prints)."""
    key = CompileCache.key(_library_text(), environment())
    places = {"installed": installed_cache(), "cache": CompileCache(flags.get("cache_dir"))}
    found = {place: str(cache.path(key)) for place, cache in places.items()
             if cache.enabled and cache.path(key).is_file()}
    library = kernel_library()
    return {"enabled": _enabled(), "key": key, "found": found, "usable": library is not None,
            "kernels": len(library.exports) if library is not None else 0,
            "installed_dir": str(places["installed"].directory)
            if places["installed"].enabled else None}


def build_kernel_library(cache: CompileCache | None = None) -> tuple[pathlib.Path | None, dict]:
    """Compile the library for this machine and store it in ``cache`` (default:
    the user's compile cache); returns the entry's path and timings."""
    from compiler.codegen.kernel_set import library_module

    start = time.perf_counter()
    module, names = library_module(_vector_bits(), LIBRARY_NAME)
    text = str(module)
    generated = time.perf_counter() - start
    object_code = compile_library(text, name=LIBRARY_NAME)
    compiled = time.perf_counter() - start - generated
    info = ProgramInfo(LIBRARY_NAME, "", "", (), (), 0, False, exports=tuple(names))
    path = store_object(_library_text(), object_code, info, cache=cache)
    _find.cache_clear()
    return path, {"kernels": len(names), "generate_s": generated, "compile_s": compiled,
                  "object_bytes": len(object_code)}


def install_objects(directory: pathlib.Path) -> list[pathlib.Path]:
    """Build what the runtime shares between programs (the kernel library and
    the thread pool) into ``directory``: the installed store of
    [Installed objects] (runtime/cache.py), written by the build hook."""
    from runtime.threadpool import build_pool_object

    cache = CompileCache(directory, max_bytes=None)
    library, _ = build_kernel_library(cache)
    pool = build_pool_object(cache)
    built = [path for path in (library, pool) if path is not None]
    for path in built:  # written private (mkstemp); the installation is everybody's
        path.chmod(0o644)
    return built

