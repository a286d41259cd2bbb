"""Turn LLVM IR text of a program into a callable ``Executable``, through the
disk cache when the caller can name the program before building its LLVM IR.

``load_program`` compiles and links (LLVM's optimiser and code generation);
``load_cached`` first looks the program up in the compile cache
(runtime/cache.py) and links the stored object code on a hit, so a second
process skips LLVM entirely; ``compile_program`` and ``link_program`` are the
two halves. A large module is compiled in parts by several processes at once
(see [Splitting a module] in runtime/module_split.py and [Compiling in forked
children] in runtime/forked.py); its object files are linked together. Given
a code generator that hands over functions as it finishes them
(``build_in_parts``), ``load_cached`` compiles the first parts while the rest
is still being generated (``PartCompiler``; see [Parts of a module still
being generated] in runtime/module_stream.py).
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import llvmlite.binding as llvm

from ir.dtypes import TensorType
from runtime import libraries
from runtime.cache import CompileCache, ProgramInfo, environment as cache_environment
from runtime.errors import JitError
from runtime.executable import Executable
from runtime.forked import JobStream, max_jobs, run_jobs
from runtime.jit import jit_engine, pack_objects
from runtime.llvm_module import optimize_module, parse_module
from runtime.module_split import _NAME, function_names, merge_duplicates, split_module, \
    total_cost
from runtime.module_stream import ModuleStream, StreamError
from runtime.pyabi import numpy_data_offset, wrapper_llvm_ir, wrapper_name
from runtime.target import host_target_machine
from runtime.threadpool import POOL_SYMBOL, pool_symbols

__all__ = ["load_program", "load_cached", "compile_program", "compile_library", "link_program",
           "CompiledProgram", "PartCompiler"]


# A module is split into parts of at least this estimated compile time (ms):
# a part costs a few ms of its own (parsing the shared declarations,
# module-wide passes), a fork ~1 ms.
MIN_PART_MS = 60.0
# Parts per process: the processes take parts in turn, so a process on a
# busy core (or with parts estimated too cheap) takes fewer.
PARTS_PER_PROCESS = 3


def _check_externals(module: llvm.ModuleRef, name: str,
                     elsewhere: frozenset[str] = frozenset()) -> None:
    """Name unresolvable external functions here: the JIT would only say that
    linking failed (and print the symbol to stderr). ``elsewhere``: functions
    other parts of the same program define."""
    missing = sorted(
        fn.name for fn in module.functions
        if fn.is_declaration and not fn.name.startswith("llvm.")
        and fn.name not in elsewhere and fn.name != POOL_SYMBOL  # linked in by link_program
        and fn.name not in libraries.known_symbols()
        and llvm.address_of_symbol(fn.name) is None
    )
    if missing:
        raise JitError(
            f"'{name}' calls external function(s) {', '.join(missing)} that this process "
            "does not define; load their library first (llvmlite.binding.load_library_permanently)"
        )


@dataclass(frozen=True)
class CompiledProgram:
    """Object code for the host and what calling it needs."""

    object_code: bytes              # one object file, or several (runtime.jit.pack_objects)
    info: ProgramInfo
    optimized_llvm_ir: str | None   # None: compiled in parts (remade when asked for)
    seconds: dict[str, float]


def _overlap_checks(param_types, donated) -> list[tuple[int, int, int, int]]:
    """(i, k, bytes_i, bytes_k) for each donated parameter i and every other k."""
    checks = []
    for _, i in donated:
        for k, other in enumerate(param_types):
            if k != i and param_types[i].nbytes and other.nbytes:
                checks.append((i, k, param_types[i].nbytes, other.nbytes))
    return checks


def compile_program(llvm_ir: str, *, name: str, param_types: Sequence[TensorType],
                    result_types: Sequence[TensorType], arena_bytes: int,
                    entry: str = "entry", donated: Sequence[tuple[int, int]] = ()
                    ) -> CompiledProgram:
    """Verify, optimise (host CPU) and compile one module to object code (in
    parts, by several processes, when it is large: see [Splitting a module])."""
    times = {}
    start = time.perf_counter()
    tm = host_target_machine()
    text = llvm_ir + _wrapper(entry, param_types, result_types, donated)
    # Generated code repeats functions (the same GEMM packing for two products).
    text, _ = merge_duplicates(text)
    object_code = _compile_in_parts(text, name, tm, times, start)
    optimized = None
    if object_code is None:
        times = {}
        module = parse_module(text, tm, name=name)
        times["parse"] = time.perf_counter() - start
        optimize_module(module, tm)
        _check_externals(module, name)
        optimized = str(module)
        times["optimize"] = time.perf_counter() - start - times["parse"]
        object_code = tm.emit_object(module)
        times["codegen"] = time.perf_counter() - start - times["parse"] - times["optimize"]
    info = _program_info(name, entry, param_types, result_types, arena_bytes, donated)
    return CompiledProgram(object_code, info, optimized, times)


def compile_library(llvm_ir: str, *, name: str) -> bytes:
    """Object code of a module without an entry (a library of functions), in
    parts by several processes when it is large."""
    tm = host_target_machine()
    object_code = _compile_in_parts(llvm_ir, name, tm, {}, time.perf_counter())
    if object_code is None:
        module = parse_module(llvm_ir, tm, name=name)
        optimize_module(module, tm)
        _check_externals(module, name)
        object_code = tm.emit_object(module)
    return object_code


def _wrapper(entry: str, param_types, result_types, donated) -> str:
    """The Python-object wrapper's LLVM IR (runtime/pyabi.py), or "" without one."""
    offset = numpy_data_offset()
    if offset is None:
        return ""
    checks = _overlap_checks(tuple(param_types), donated)
    return "\n" + wrapper_llvm_ir(entry, len(param_types) + len(result_types), offset, checks)


def _program_info(name, entry, param_types, result_types, arena_bytes, donated) -> ProgramInfo:
    takes_objects = numpy_data_offset() is not None
    return ProgramInfo(
        name=name, entry=entry, call_symbol=wrapper_name(entry) if takes_objects else entry,
        param_types=tuple(param_types), result_types=tuple(result_types),
        arena_bytes=int(arena_bytes), takes_objects=takes_objects,
        donated=tuple((int(j), int(i)) for j, i in donated),
    )


def _compile_in_parts(text: str, name: str, tm: llvm.TargetMachine,
                      times: dict[str, float], start: float) -> bytes | None:
    """Object code of a large module compiled in parts by several processes,
    or None: not worth it, not possible, or a part failed (the caller then
    compiles the whole module, which also reports any error in it properly)."""
    jobs = max_jobs()
    if jobs < 2:
        return None
    parts = split_module(text, PARTS_PER_PROCESS * jobs, min_part_cost=MIN_PART_MS)
    if parts is None:
        return None
    defined = frozenset(function_names(text))
    times["split"] = time.perf_counter() - start

    def job(part: str):
        return lambda: _compile_part(part, name, tm, defined)

    try:
        objects = run_jobs([job(part) for part in parts], processes=jobs)
    except JitError:
        return None
    times["compile_parts"] = time.perf_counter() - start - times["split"]
    return pack_objects(objects)


def _compile_part(text: str, name: str, tm: llvm.TargetMachine, defined: frozenset[str]
                  ) -> bytes:
    module = parse_module(text, tm, name=name)
    optimize_module(module, tm)
    _check_externals(module, name, defined)
    return tm.emit_object(module)


# The stream cuts a part once its functions are estimated to cost this much
# (CPU ms): a part costs a few ms of its own (parsing the context, pass
# setup), and the last part compiled sets how long the others wait.
STREAM_PART_MS = 40.0
_DECLARED = re.compile(r"^declare\s+[^@]*?" + _NAME, re.MULTILINE)


class PartCompiler:
    """Compiles a module in parts, by this process and forked children, while
    its code generator is still producing it (see [Parts of a module still
    being generated] in runtime/module_stream.py).

    The generator calls ``add(definitions, context)`` as functions are
    finished; ``finish(...)`` compiles what is left, here and in the
    children, and returns the program's object code, or None if the module
    could not be streamed (the caller then compiles its whole text).
    """

    def __init__(self, name: str, processes: int):
        self.name = name
        self._tm = host_target_machine()
        self._module = ModuleStream()
        self._processes = processes
        # Forked at the first cut: a program that fits in one part never forks.
        self._jobs: JobStream | None = None
        self._pending: list = []       # parsed functions not yet in a part
        self._extra: list[str] = []     # other lines that came with them
        self._pending_cost = 0.0
        self._context: Callable[[], str] | None = None
        self._failed = False
        self._held: list[tuple[float, str]] = []  # (estimated cost, text) not yet handed over

    def _compile(self, text: bytes) -> bytes:
        module = parse_module(text.decode(), self._tm, name=self.name)
        optimize_module(module, self._tm)
        return self._tm.emit_object(module)

    def add(self, definitions: list[str], context: Callable[[], str]) -> None:
        """Take the texts of functions just finished; ``context()`` gives the
        module's other top-level text so far."""
        if self._failed or not definitions:
            return
        self._context = context
        try:
            extra, functions = ModuleStream.parse(definitions)
        except StreamError:
            self.close()
            return
        self._extra += extra
        self._pending += functions
        # Without the loop metadata (in the context): GEMM loops count as
        # vectorisable, so a part is cut a little early.
        self._pending_cost += total_cost(functions)
        if self._pending_cost >= STREAM_PART_MS:
            self._cut(context())
        else:
            self._feed()  # a child may have run out of work since the last cut

    def _cut(self, context: str, extra: Sequence[str] = ()) -> None:
        functions, self._pending = self._pending, []
        lines, self._extra = self._extra, []
        self._pending_cost = 0.0
        try:
            if extra:
                more_lines, more = ModuleStream.parse(extra)
                lines, functions = lines + more_lines, functions + more
            text = self._module.part(context, (lines, functions))
        except StreamError:
            self.close()
            return
        cost = total_cost(functions, context)
        if text is not None:
            if self._jobs is None:
                self._jobs = JobStream(self._compile, self._processes)
            self._held.append((cost, text))
        self._feed()

    def _feed(self, *, everything: bool = False) -> None:
        """Hand held parts to the children while they have little queued (a
        part or so per child), so that at the end the rest can go out
        costliest first (``everything``): a long part taken last would keep
        everybody else waiting."""
        if self._jobs is None:
            return
        if everything:
            self._held.sort(key=lambda held: -held[0])
        while self._held and (everything or self._jobs.unfinished() < 2 * (self._processes - 1)):
            self._jobs.submit(self._held.pop(0)[1].encode())

    def finish(self, *, entry: str, param_types: Sequence[TensorType],
               result_types: Sequence[TensorType], arena_bytes: int,
               donated: Sequence[tuple[int, int]] = ()) -> CompiledProgram | None:
        """The compiled program (its last part holds the Python wrapper), or None."""
        start = time.perf_counter()
        if self._jobs is None:  # one part at most: compiled whole, as usual
            self._failed = True
        wrapper = _wrapper(entry, param_types, result_types, donated)
        if not self._failed:
            context = self._context()
            self._cut(context, [wrapper] if wrapper else [])
        if self._failed:
            self.close()
            return None
        self._feed(everything=True)
        try:
            objects = self._jobs.results()
        except JitError:
            return None  # the whole module, compiled again, reports it properly
        missing = sorted(
            name for name in {m.group("quoted") or m.group("plain")
                              for m in _DECLARED.finditer(context)}
            if not name.startswith("llvm.") and name != POOL_SYMBOL
            and name not in self._module.names and name not in libraries.known_symbols()
            and llvm.address_of_symbol(name) is None)
        if missing:
            raise JitError(
                f"'{self.name}' calls external function(s) {', '.join(missing)} that this "
                "process does not define; load their library first "
                "(llvmlite.binding.load_library_permanently)")
        info = _program_info(self.name, entry, param_types, result_types, arena_bytes, donated)
        return CompiledProgram(pack_objects(objects), info, None,
                               {"compile_rest": time.perf_counter() - start})

    def close(self) -> None:
        """Stop the children (after an error in the generator)."""
        self._failed = True
        if self._jobs is not None:
            self._jobs.close()


def link_program(object_code: bytes, info: ProgramInfo, *, llvm_ir: str | Callable[[], str],
                 optimized_llvm_ir: str | None = None,
                 compile_seconds: dict[str, float] | None = None) -> Executable:
    """Link object code into the process's JIT and wrap it in an Executable.

    ``llvm_ir`` may be a function that regenerates the text on first access
    (for programs loaded from the cache, whose LLVM IR was never built).
    """
    start = time.perf_counter()
    shared_symbols, shared = libraries.imports(info.links)
    library = jit_engine().add_object(
        object_code, [info.entry, info.call_symbol], name_hint=info.name,
        imports={**pool_symbols(object_code), **shared_symbols}, keep_alive=shared)
    seconds = dict(compile_seconds or {})
    seconds["link"] = time.perf_counter() - start
    return Executable(
        name=info.name, param_types=info.param_types, result_types=info.result_types,
        arena_bytes=info.arena_bytes, entry=info.entry, llvm_ir=llvm_ir,
        optimized_llvm_ir=optimized_llvm_ir, library=library, call_symbol=info.call_symbol,
        takes_objects=info.takes_objects, compile_seconds=seconds, donated=info.donated,
    )


def load_program(llvm_ir: str, *, name: str, param_types: Sequence[TensorType],
                 result_types: Sequence[TensorType], arena_bytes: int,
                 entry: str = "entry", donated: Sequence[tuple[int, int]] = ()) -> Executable:
    """Verify, optimise (host CPU) and JIT-link one module; returns its Executable.

    ``llvm_ir`` must define ``void @<entry>(ptr table)`` following the calling
    convention of runtime/executable.py for the given parameter and result
    types and arena size (and write result ``j`` into parameter ``i``'s buffer
    for each donated pair ``(j, i)``). Raises ``JitError`` if LLVM rejects the
    module.
    """
    compiled = compile_program(llvm_ir, name=name, param_types=param_types,
                               result_types=result_types, arena_bytes=arena_bytes,
                               entry=entry, donated=donated)
    return link_program(compiled.object_code, compiled.info, llvm_ir=llvm_ir,
                        optimized_llvm_ir=compiled.optimized_llvm_ir,
                        compile_seconds=compiled.seconds)


def load_cached(program_text: str, build: Callable[[], object], *, name: str,
                salt: str = "", cache: CompileCache | None = None,
                donated: Sequence[tuple[int, int]] = (),
                build_in_parts: Callable[[PartCompiler], object] | None = None,
                standalone: Callable[[], str] | None = None) -> Executable:
    """The program named by ``program_text``, from the disk cache or compiled.

    ``program_text`` must determine the generated code together with ``salt``
    (see [What a cache key covers] in runtime/cache.py). ``build()`` is called
    only on a miss (or when the LLVM IR is asked for later) and returns an
    object with ``llvm_ir``, ``entry``, ``param_types``, ``result_types`` and
    ``arena_bytes`` (e.g. ``compiler.codegen.LoweredProgram``).
    ``build_in_parts(compiler)``, if given, does the same while handing its
    functions to ``compiler.add`` as they are finished; on a miss it is used
    instead of ``build`` when compiles may use several processes.
    The built program's ``links`` attribute (if any) names the shared
    libraries (runtime/libraries.py) whose functions it declares;
    ``standalone()``, if given, is the program's LLVM IR with nothing left to
    a shared library (what ``Executable.llvm_ir`` shows and ahead-of-time
    objects are made from); by default, ``build()``'s.
    """
    cache = CompileCache() if cache is None else cache
    offset = numpy_data_offset()
    start = time.perf_counter()
    key = environment = None
    if not cache.enabled:
        cache.load("", program=name)  # recorded as a miss, reason "disabled"
    else:
        environment = cache_environment(salt, offset)
        key = cache.key(program_text, environment)
        found = cache.load(key, program=name, environment=environment)
        if found is not None:
            object_code, info = found
            lookup = time.perf_counter() - start
            try:
                source = standalone if standalone is not None and info.links else \
                    (lambda: build().llvm_ir)
                return link_program(object_code, info, llvm_ir=source,
                                    compile_seconds={"cache_load": lookup})
            except JitError as error:
                cache.note_unusable(key, name, str(error))
    program, compiled = _build_and_compile(name, build, build_in_parts, donated)
    links = tuple(getattr(program, "links", ()))
    if links:
        compiled = dataclasses.replace(
            compiled, info=dataclasses.replace(compiled.info, links=links))
    if key is not None:
        cache.store(key, compiled.object_code, compiled.info, environment=environment)
    if standalone is not None and links:
        return link_program(compiled.object_code, compiled.info, llvm_ir=standalone,
                            compile_seconds=compiled.seconds)
    return link_program(compiled.object_code, compiled.info,
                        llvm_ir=lambda: program.llvm_ir,
                        optimized_llvm_ir=compiled.optimized_llvm_ir,
                        compile_seconds=compiled.seconds)


def _build_and_compile(name: str, build, build_in_parts, donated):
    """(the built program, its CompiledProgram): compiled in parts while it is
    built where possible, else built and then compiled."""
    compiled = None
    jobs = max_jobs() if build_in_parts is not None else 1
    if jobs >= 2:
        start = time.perf_counter()
        parts = PartCompiler(name, jobs)
        try:
            program = build_in_parts(parts)
        except BaseException:
            parts.close()
            raise
        built = time.perf_counter() - start
        compiled = parts.finish(entry=program.entry, param_types=program.param_types,
                                result_types=program.result_types,
                                arena_bytes=program.arena_bytes, donated=donated)
        if compiled is not None:
            compiled.seconds["build_in_parts"] = built
    else:
        program = build()
    if compiled is None:
        compiled = compile_program(program.llvm_ir, name=name, param_types=program.param_types,
                                   result_types=program.result_types,
                                   arena_bytes=program.arena_bytes, entry=program.entry,
                                   donated=donated)
    return program, compiled
