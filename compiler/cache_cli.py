"""``xlac cache info|list|clear``: look at or empty the persistent compile cache.

    xlac cache info  [--cache-dir DIR]   folder, entry count, size (and its limit,
                                         $XLAC_CACHE_MAX_MB, default 1024 MiB)
    xlac cache list  [--cache-dir DIR]   one line per entry: program, size, age, CPU
    xlac cache clear [--cache-dir DIR]   delete every entry

Hits and misses of a running process (with the reason of each miss) come from
``runtime.cache_stats()``.

    xlac kernels info                    where this machine's GEMM kernel library is
                                         (compiler/kernel_library.py), if anywhere
    xlac kernels build [--cache-dir DIR] compile it into the compile cache (it is
                                         normally built when the package is installed)
"""

from __future__ import annotations

import argparse
import time

import runtime
from compiler import flags

__all__ = ["add_cache_command", "run_cache_command", "add_kernels_command",
           "run_kernels_command"]


def add_cache_command(commands) -> None:
    """Register ``cache`` on the CLI's subcommands."""
    cmd = commands.add_parser("cache", help="show or clear the persistent compile cache")
    cmd.add_argument("action", choices=["info", "list", "clear"])
    cmd.add_argument("--cache-dir", metavar="DIR",
                     help=f"the cache folder (default: ${flags.FLAGS['cache_dir'].env} or "
                          "~/.cache/xla-py)")


def run_cache_command(args: argparse.Namespace) -> int:
    cache = runtime.CompileCache(flags.get("cache_dir", args.cache_dir))
    if not cache.enabled:
        print("compile cache: disabled")
        return 0
    if args.action == "clear":
        print(f"removed {cache.clear()} entr(ies) from {cache.directory}")
        return 0
    info = cache.info()
    limit = f" of at most {_size(info['max_bytes'])}" if info["max_bytes"] else " (no size limit)"
    print(f"compile cache: {info['directory']}\n"
          f"  {info['entries']} entr(ies), {_size(info['bytes'])}{limit}")
    if args.action == "list":
        now = time.time()
        for path in cache.entries():
            try:
                header = cache.describe(path)
            except (OSError, ValueError) as error:
                print(f"  {path.name}: unreadable ({error})")
                continue
            program = header.get("program", {})
            environment = header.get("environment", {})
            age = now - float(header.get("created", now))
            print(f"  {path.stem[:12]}  {program.get('name', '?'):<20} "
                  f"{_size(header['object_bytes']):>9}  {_age(age):>8} old  "
                  f"{environment.get('cpu', '?')}")
    return 0


def add_kernels_command(commands) -> None:
    """Register ``kernels`` on the CLI's subcommands."""
    cmd = commands.add_parser("kernels", help="show or build the machine's GEMM kernel library")
    cmd.add_argument("action", choices=["info", "build"])
    cmd.add_argument("--cache-dir", metavar="DIR",
                     help="the compile cache folder to build into (default: "
                          f"${flags.FLAGS['cache_dir'].env} or ~/.cache/xla-py)")


def run_kernels_command(args: argparse.Namespace) -> int:
    from compiler import kernel_library

    if args.action == "build":
        cache = runtime.CompileCache(flags.get("cache_dir", args.cache_dir))
        if not cache.enabled:
            print("the compile cache is disabled: nowhere to store the kernel library")
            return 1
        path, figures = kernel_library.build_kernel_library(cache)
        if path is None:
            print(f"could not write the kernel library into {cache.directory}")
            return 1
        print(f"built {figures['kernels']} kernels ({_size(figures['object_bytes'])}) in "
              f"{figures['generate_s'] + figures['compile_s']:.1f} s: {path}")
        return 0
    info = kernel_library.describe()
    print(f"GEMM kernel library {info['key']}")
    if not info["enabled"]:
        print(f"  switched off (${flags.FLAGS['kernel_library'].env})")
    for place, path in info["found"].items():
        print(f"  {place}: {path}")
    if info["found"] and info["enabled"]:
        print(f"  {'in use' if info['usable'] else 'unusable (corrupt or does not link): programs define the kernels they call'}")
    if not info["found"]:
        print("  not built for this machine and compiler: programs define the kernels they "
              "call (run `xlac kernels build`)")
    print(f"  installed objects: {info['installed_dir'] or 'off'}")
    return 0


def _size(nbytes: float) -> str:
    if nbytes < 1024:
        return f"{nbytes:.0f} B"
    if nbytes < 1024 ** 2:
        return f"{nbytes / 1024:.1f} KiB"
    return f"{nbytes / 1024 ** 2:.1f} MiB"


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
