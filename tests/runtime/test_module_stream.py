"""Parts cut from a module while it is generated (runtime/module_stream.py) and
compiled while the rest is lowered (runtime/loader.py PartCompiler, runtime/forked.py
JobStream)."""

from __future__ import annotations

import os
import re
import sys
import time

import numpy as np
import pytest

from runtime.forked import JobStream
from runtime.jit import pack_objects
from runtime.module_split import function_names
from runtime.module_stream import ModuleStream, StreamError
from tests.runtime.test_split_compile import _compile, _run

pytestmark = pytest.mark.llvm

needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"),
                                reason="compiles in forked children on Linux only")

_HEADER = ['; ModuleID = "stream"', 'target triple = "unknown-unknown-unknown"',
           'target datalayout = ""', ""]


def _helper(name: str, inline: bool, add: str = "0x3FF0000000000000") -> str:
    attrs = "nounwind" if inline else "nounwind noinline"
    return "\n".join([f'define internal float @"{name}"(float %"x") {attrs}', "{", "entry:",
                      f'  %"y" = fadd float %"x", {add}', '  ret float %"y"', "}"])


def _kernel(k: int, helper: str) -> str:
    return "\n".join([
        f'define internal void @"k{k}"(ptr noalias %"out", ptr noalias %"in") nounwind noinline',
        "{", "entry:",
        f'  %"t" = getelementptr [4 x float], ptr @"table", i64 0, i64 {k}',
        '  %"s" = load float, ptr %"t"',
        f'  %"p" = getelementptr float, ptr %"in", i64 {k}',
        '  %"x" = load float, ptr %"p"',
        '  %"m" = fmul float %"x", %"s"',
        f'  %"h" = call float @"{helper}"(float %"m")',
        f'  %"q" = getelementptr float, ptr %"out", i64 {k}',
        '  store float %"h", ptr %"q"', "  ret void", "}"])


_ENTRY = "\n".join(['define void @"entry"(ptr %"out", ptr %"in") nounwind', "{", "entry:"]
                   + [f'  call void @"k{k}"(ptr %"out", ptr %"in")' for k in range(4)]
                   + ["  ret void", "}"])
_TABLE = '@"table" = internal unnamed_addr constant [4 x float] [float 2.0, float 3.0, ' \
         'float 5.0, float 7.0]'


def _context(*more: str) -> str:
    return "\n".join(_HEADER + [_TABLE, *more])


def test_a_module_in_batches_links_to_the_same_results_as_the_whole():
    # Batch 1: an inlinable helper and a noinline one, each with a kernel.
    # Batch 2: k2 uses both (the inlinable one is copied, the other declared);
    # k3 is k1 under another name (merged: the entry calls k1 twice).
    stream = ModuleStream()
    batches = [
        [_kernel(0, "inl"), _helper("inl", True), _kernel(1, "far"), _helper("far", False)],
        [_kernel(2, "inl"), _kernel(1, "far").replace('@"k1"', '@"k3"')],
    ]
    parts = [stream.part(_context(), batches[0]), stream.part(_context(), batches[1])]
    last = stream.part(_context('@"entry_arena_bytes" = constant i64 64'), [_ENTRY])
    assert re.search(r'^define internal float @"inl"', parts[1], re.MULTILINE)  # a copy
    assert 'declare void @"k0"(ptr noalias %"out", ptr noalias %"in")' in last
    assert re.search(r'^define void @"k0"', parts[0], re.MULTILINE)  # made external
    assert "k3" not in parts[1] + last and last.count('call void @"k1"') == 2
    assert sorted(stream.names) == ["entry", "far", "inl", "k0", "k1", "k2"]
    whole = "\n".join([_context('@"entry_arena_bytes" = constant i64 64')]
                      + batches[0] + batches[1] + [_ENTRY]) + "\n"
    expected = np.array([2 * 1 + 1, 3 * 2 + 1, 5 * 3 + 1, 0], np.float32)
    np.testing.assert_array_equal(_run(_compile(whole), 4), expected)
    np.testing.assert_array_equal(_run(pack_objects([_compile(p) for p in parts + [last]]), 4),
                                  expected)


def test_a_non_internal_constant_is_defined_once():
    stream = ModuleStream()
    shared = '@"limits" = constant [1 x i64] [i64 7]'
    first = stream.part(_context(shared), [_kernel(0, "h0"), _helper("h0", False)])
    second = stream.part(_context(shared), [_kernel(1, "h1"), _helper("h1", False, "2.0")])
    assert '@"limits" = constant' in first
    assert '@"limits" = internal constant' in second


def test_what_cannot_be_streamed():
    with pytest.raises(StreamError, match="mutable"):
        ModuleStream().part(_context('@"state" = global i64 0'), [_helper("h", False)])
    stream = ModuleStream()  # used (declared) before it was defined, and internal
    stream.part(_context('declare float @"late"(float)'), [_kernel(0, "late")])
    with pytest.raises(StreamError, match="before its definition"):
        stream.part(_context(), [_helper("late", False)])
    with pytest.raises(StreamError, match="unrecognised"):
        ModuleStream().part(_context(), ['define void @"open"() {', "entry:"])


def test_a_batch_of_duplicates_only_gives_no_part():
    stream = ModuleStream()
    stream.part(_context(), [_helper("a", False)])
    assert stream.part(_context(), [_helper("b", False)]) is None
    assert function_names(stream.part(_context(), [_kernel(0, "b")])) == ["k0"]


# -- jobs handed over one at a time ----------------------------------------------------


@needs_fork
def test_a_job_stream_runs_jobs_submitted_while_its_children_work():
    me = os.getpid()

    def run(payload: bytes) -> bytes:
        time.sleep(0.02)
        return payload + f":{os.getpid() == me}".encode()

    stream = JobStream(run, 2)
    assert stream.parallel
    for k in range(6):
        stream.submit(str(k).encode())
        time.sleep(0.03)  # "lowering" the next part: the child takes this one
    assert stream.unfinished() <= 6
    results = stream.results()
    assert [r.split(b":")[0] for r in results] == [str(k).encode() for k in range(6)]
    assert b"False" in b"".join(results)  # a child did some
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # and is gone


def test_a_job_stream_without_children_runs_everything_here():
    stream = JobStream(lambda payload: payload[::-1], 1)
    assert not stream.parallel
    stream.submit(b"ab")
    stream.submit(b"cd")
    assert stream.results() == [b"ba", b"dc"]


@needs_fork
def test_a_failing_child_job_of_a_stream_runs_here():
    me = os.getpid()

    def run(payload: bytes) -> bytes:
        if os.getpid() != me:
            os._exit(5)
        return payload * 2

    stream = JobStream(run, 2)
    for k in range(3):
        stream.submit(bytes([65 + k]))
    assert stream.results() == [b"AA", b"BB", b"CC"]


@needs_fork
def test_an_error_while_lowering_stops_the_children(monkeypatch):
    """A kernel that fails to lower after parts went to a child: the error
    reaches the caller and no child is left behind."""
    from compiler import jit
    from compiler.codegen.errors import LoweringError
    from compiler.pipeline import clear_cache
    import runtime.loader as loader
    from tests.runtime.test_split_compile import _mlp_step

    lowering = sys.modules["compiler.codegen.lower"]  # the package exports a function of its name
    emit = lowering.emit_kernel
    calls = []

    def failing(module, name, eqn, in_place=None):
        calls.append(name)
        if len(calls) == 4:
            raise LoweringError("no lowering today")
        return emit(module, name, eqn, in_place)

    monkeypatch.setattr(lowering, "emit_kernel", failing)
    monkeypatch.setattr(loader, "STREAM_PART_MS", 0.0)  # a part per kernel
    monkeypatch.setenv("XLAC_COMPILE_JOBS", "2")
    monkeypatch.setenv("XLAC_CACHE_DIR", "off")
    # One thread: no thread-pool compile is prefetched by a child of its own
    # (it would outlive this test, and tests count the children left behind).
    monkeypatch.setenv("XLAC_NUM_THREADS", "1")
    started = []
    original = loader.JobStream

    class Counted(original):
        def __init__(self, run, processes):
            super().__init__(run, processes)
            started.extend(worker.pid for worker in self._workers)

    monkeypatch.setattr(loader, "JobStream", Counted)
    clear_cache()
    step, args = _mlp_step()
    with pytest.raises(LoweringError, match="no lowering today"):
        jit(step)(*args)
    assert len(started) == 1  # a child was at work when the error came
    with pytest.raises(ChildProcessError):
        os.waitpid(started[0], os.WNOHANG)  # stopped and reaped
