"""``xlac``: compile a Python function from the command line.

    xlac compile model.py:loss --arg f32[4,3] --arg f32[3] [--grad] --emit ir|llvm|asm [-o FILE]
                 [--dump-dir DIR]
    xlac cache info|list|clear [--cache-dir DIR]

``--grad`` differentiates the function (which must return a scalar) with
respect to all its floating-point arguments; the emitted function returns the
value followed by the gradients. The IR text parses back with ``ir.parse_function``.
``--dump-dir DIR`` also compiles to native code and writes every stage into DIR
(the IR after each pass, LLVM IR, assembly, memory plan, summary: compiler/dump.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import numpy as np

from compiler.cache_cli import (add_cache_command, add_kernels_command, run_cache_command,
                                run_kernels_command)
from ir import IRError, parse_type

__all__ = ["main"]

EMIT_KINDS = {"ir": "ir", "optimized-ir": "optimized-ir", "llvm": "llvm",
              "optimized-llvm": "optimized-llvm", "asm": "asm"}


def _load_function(target: str):
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise SystemExit(f"xlac: expected FILE.py:FUNCTION, got {target!r}")
    if not os.path.isfile(path):
        raise SystemExit(f"xlac: no such file: {path}")
    directory = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, directory)
    module_name = "_xlac_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise SystemExit(f"xlac: {path} has no function {name!r}")
    return fn


def _lowered(fn, types, grad: bool):
    from compiler.autodiff import grad_function
    from compiler.jit import Lowered, jit

    examples = [np.zeros(t.shape, t.dtype.numpy) for t in types]
    lowered = jit(fn).lower(*examples)
    if not grad:
        return lowered
    wrt = [i for i, t in enumerate(types) if t.dtype.is_float]
    return Lowered(grad_function(lowered.function, wrt))


def _compile(args) -> int:
    try:
        types = [parse_type(t) for t in args.arg]
    except IRError as error:
        print(f"xlac: bad --arg: {error}", file=sys.stderr)
        return 2
    fn = _load_function(args.target)
    try:
        lowered = _lowered(fn, types, args.grad)
        if args.dump_dir:
            from compiler.pipeline import compile_function

            compile_function(lowered.function, dump_dir=args.dump_dir)
        text = lowered.as_text(EMIT_KINDS[args.emit])
    except (IRError, TypeError, ValueError) as error:
        print(f"xlac: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if args.output and args.output != "-":
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="xlac", description="the xla-py compiler")
    commands = parser.add_subparsers(dest="command", required=True)
    compile_cmd = commands.add_parser("compile", help="trace and compile FILE.py:FUNCTION")
    compile_cmd.add_argument("target", help="FILE.py:FUNCTION")
    compile_cmd.add_argument("--arg", action="append", default=[], metavar="TYPE",
                             help="type of the next positional argument, e.g. f32[4,3] (repeat)")
    compile_cmd.add_argument("--grad", action="store_true",
                             help="append the gradient w.r.t. every float argument")
    compile_cmd.add_argument("--emit", choices=sorted(EMIT_KINDS), default="ir")
    compile_cmd.add_argument("-o", "--output", help="write here instead of stdout")
    compile_cmd.add_argument("--dump-dir", metavar="DIR",
                             help="write the IR after every pass, LLVM IR, assembly, memory "
                                  "plan and a summary into DIR (like XLAC_DUMP_DIR)")
    add_cache_command(commands)
    add_kernels_command(commands)
    args = parser.parse_args(argv)
    if args.command == "cache":
        return run_cache_command(args)
    if args.command == "kernels":
        return run_kernels_command(args)
    return _compile(args)


if __name__ == "__main__":
    sys.exit(main())
