"""Every debugging and tuning knob, defined once.

Each flag has an environment variable that mirrors its command-line option or
keyword argument; the explicit argument always wins. Reading happens when the
knob is needed, never at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from runtime.cache import CACHE_DIR_ENV, CACHE_MAX_ENV, DEFAULT_MAX_MB, INSTALLED_ENV
from runtime.forked import JOBS_ENV

__all__ = ["Flag", "FLAGS", "get"]


@dataclass(frozen=True)
class Flag:
    name: str
    env: str
    default: str | None
    help: str


_DEFINED: dict[str, Flag] = {}


def _define(name: str, env: str, default: str | None, help: str) -> Flag:
    if name in _DEFINED or any(f.env == env for f in _DEFINED.values()):
        raise ValueError(f"flag {name!r} ({env}) is defined twice")
    flag = Flag(name, env, default, help)
    _DEFINED[name] = flag
    return flag


_define("dump_dir", "XLAC_DUMP_DIR", None,
        "write the IR after every pass, LLVM IR, assembly and a summary into this folder")
_define("verify_passes", "XLAC_VERIFY", None,
        "run the IR verifier after every pass (1/0); on by default in the test suite")
_define("num_threads", "XLAC_NUM_THREADS", None,
        "threads for large kernels (GEMM); default: the cores this process may use; "
        "read when a program is compiled")
_define("scalar_libm", "XLAC_SCALAR_LIBM", None,
        "1: transcendentals call scalar libm per element instead of the vector code of "
        "codegen/vmath.py (the baseline of benchmarks/transcendentals.py); read when lowering")
_define("cache_dir", CACHE_DIR_ENV, None,
        "folder of the persistent compile cache (default $XDG_CACHE_HOME/xla-py or "
        "~/.cache/xla-py); 'off' disables it")
_define("cache_max_mb", CACHE_MAX_ENV, str(DEFAULT_MAX_MB),
        "size limit of the compile cache folder in MiB; least recently used entries go "
        "first (0: no limit)")
_define("compile_jobs", JOBS_ENV, None,
        "processes that compile one large program in parts (default: the usable cores, "
        "up to 4; 1: all in this process); read when a program is compiled")
_define("installed_objects", INSTALLED_ENV, None,
        "folder of the objects built at install time (kernel library, thread pool; "
        "default runtime/_installed); 'off': none, as if the install-time build had failed")
_define("kernel_library", "XLAC_KERNEL_LIBRARY", None,
        "'off': programs define the GEMM kernels they call instead of linking the "
        "machine's kernel library (compiler/kernel_library.py); read when compiling")

# Knobs that never change the generated code, so they stay out of compile-cache keys.
# (Which kernel library a program links is in its key: backend.codegen_salt.)
NOT_IN_CACHE_KEY = frozenset({"dump_dir", "verify_passes", "cache_dir", "cache_max_mb",
                              "compile_jobs", "installed_objects", "kernel_library"})

FLAGS = dict(_DEFINED)


def get(name: str, explicit=None):
    """The flag's value: ``explicit`` if given, else its environment variable, else its default."""
    if explicit is not None:
        return explicit
    flag = FLAGS[name]
    return os.environ.get(flag.env, flag.default)
