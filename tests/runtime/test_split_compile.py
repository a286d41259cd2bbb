"""Compiling one program in parts: the module split, duplicate merging, forked
children and their fallback, object bundles, and results equal to a whole compile."""

from __future__ import annotations

import ctypes
import os
import sys
import time

import numpy as np
import pytest

import runtime
import runtime.loader as loader
from runtime.errors import JitError
from runtime.forked import max_jobs, run_jobs, start_job
from runtime.jit import jit_engine, pack_objects, unpack_objects
from runtime.llvm_module import optimize_module, parse_module
from runtime.module_split import function_names, merge_duplicates, split_module
from runtime.target import host_target_machine

pytestmark = pytest.mark.llvm

needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"),
                                reason="compiles in forked children on Linux only")


def _module(scales=(2.0, 3.0, 5.0, 7.0), inline_helper=False) -> str:
    """llvmlite-style text: kernels that read a constant table, call a shared
    helper, and an external entry that calls every kernel (noinline, as the
    GEMM's functions are: so they may go to any part)."""
    helper_attrs = "nounwind" if inline_helper else "nounwind noinline"
    table = ", ".join(f"float {float(s)!r}" for s in scales)
    lines = [
        '; ModuleID = "split"',
        'target triple = "unknown-unknown-unknown"',
        'target datalayout = ""',
        "",
        f'@"table" = internal unnamed_addr constant [{len(scales)} x float] [{table}]',
        '@"entry_arena_bytes" = constant i64 64',
        "",
        f'define internal float @"helper"(float %"x") {helper_attrs}',
        "{",
        "entry:",
        '  %"y" = fadd float %"x", 0x3FF0000000000000',
        '  ret float %"y"',
        "}",
        "",
    ]
    for k in range(len(scales)):
        lines += [
            f'define internal void @"k{k}"(ptr noalias %"out", ptr noalias %"in") '
            "nounwind noinline",
            "{",
            "entry:",
            f'  %"t" = getelementptr [{len(scales)} x float], ptr @"table", i64 0, i64 {k}',
            '  %"s" = load float, ptr %"t"',
            f'  %"p" = getelementptr float, ptr %"in", i64 {k}',
            '  %"x" = load float, ptr %"p"',
            '  %"m" = fmul float %"x", %"s"',
            '  %"h" = call float @"helper"(float %"m")',
            f'  %"q" = getelementptr float, ptr %"out", i64 {k}',
            '  store float %"h", ptr %"q"',
            "  ret void",
            "}",
            "",
        ]
    lines += ['define void @"entry"(ptr %"out", ptr %"in") nounwind', "{", "entry:"]
    lines += [f'  call void @"k{k}"(ptr %"out", ptr %"in")' for k in range(len(scales))]
    lines += ["  ret void", "}", ""]
    return "\n".join(lines)


def _compile(text: str) -> bytes:
    tm = host_target_machine()
    module = parse_module(text, tm)
    optimize_module(module, tm)
    return tm.emit_object(module)


def _run(object_code: bytes, n: int) -> np.ndarray:
    library = jit_engine().add_object(object_code, ["entry"], name_hint="split_test")
    entry = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(library.address("entry"))
    x = np.arange(1, n + 1, dtype=np.float32)
    out = np.zeros(n, np.float32)
    entry(out.ctypes.data, x.ctypes.data)
    return out


# -- the split ------------------------------------------------------------------------


def test_split_parts_define_every_function_once_and_link_to_the_same_results():
    text = _module()
    parts = split_module(text, 3)
    assert parts is not None and len(parts) == 3
    defined = [function_names(part) for part in parts]
    assert sorted(sum(defined, [])) == sorted(function_names(text))
    objects = [_compile(part) for part in parts]  # each part parses and verifies
    whole = _run(_compile(text), 4)
    np.testing.assert_array_equal(whole, np.arange(1, 5) * np.array([2, 3, 5, 7]) + 1)
    np.testing.assert_array_equal(_run(pack_objects(objects), 4), whole)
    many = split_module(text, 50)  # more parts than functions: no empty ones
    assert 2 <= len(many) <= len(function_names(text)) and all(map(function_names, many))
    np.testing.assert_array_equal(_run(pack_objects([_compile(p) for p in many]), 4), whole)


def test_split_keeps_callees_with_their_only_caller():
    parts = split_module(_module(), 2)
    for part in parts:
        names = function_names(part)
        # helper is shared by every kernel: in one part, declared in the other.
        if "helper" not in names:
            assert 'declare float @"helper"(float %"x")' in part
    # The external constant is defined once; other parts get internal copies.
    assert sum('@"entry_arena_bytes" = constant' in part for part in parts) == 1


def test_functions_llvm_may_inline_stay_with_their_callers():
    # The helper may be inlined into every kernel: what is inlined where must
    # not depend on the split, so they all stay in one part.
    parts = split_module(_module(inline_helper=True), 2)
    assert parts is None or any(
        {"helper", "k0", "k1", "k2", "k3"} <= set(function_names(part)) for part in parts)
    text = _module(inline_helper=True).replace(
        'call float @"helper"(float %"m")', "fadd float %\"m\", 0x3FF0000000000000")
    parts = split_module(text, 2)  # nobody calls it now: free to go anywhere
    assert parts is not None and len(parts) == 2


def test_what_is_not_split():
    text = _module()
    assert split_module(text, 1) is None
    assert split_module(text, 2, min_part_cost=1e9) is None  # not worth a second process
    mutable = text.replace('@"table" = internal unnamed_addr constant',
                           '@"table" = internal global')
    assert split_module(mutable, 2) is None  # each part would own a copy of the state
    assert split_module("define void @f() {\n  ret void\n", 2) is None  # unterminated


# -- merging duplicates ------------------------------------------------------------------


def test_merge_duplicates_keeps_one_copy_and_renames_uses():
    text = _module()
    copy = text.replace('@"helper"', '@"helper2"')
    helper2 = copy[copy.index('define internal float @"helper2"'):]
    helper2 = helper2[:helper2.index("\n}\n") + 3]
    # k3 calls the second, identical helper: merged back into one.
    doubled = text.replace('define void @"entry"', helper2 + "\ndefine void @\"entry\"")
    k3 = doubled.index('define internal void @"k3"')
    doubled = doubled[:k3] + doubled[k3:].replace('call float @"helper"',
                                                  'call float @"helper2"', 1)
    merged, removed = merge_duplicates(doubled)
    assert removed == 1 and '@"helper2"' not in merged
    np.testing.assert_array_equal(_run(_compile(merged), 4), _run(_compile(text), 4))


def test_merge_duplicates_repeats_until_callers_are_equal_too():
    def fn(name, body, linkage="internal "):
        return (f'define {linkage}float @"{name}"(float %"x") nounwind\n{{\nentry:\n'
                f'{body}\n}}\n')

    # c1 and c2 differ only in the (identical) helper they call.
    text = "\n".join([
        fn("h1", '  %"y" = fadd float %"x", 0x3FF0000000000000\n  ret float %"y"'),
        fn("h2", '  %"y" = fadd float %"x", 0x3FF0000000000000\n  ret float %"y"'),
        fn("c1", '  %"y" = call float @"h1"(float %"x")\n  ret float %"y"'),
        fn("c2", '  %"y" = call float @"h2"(float %"x")\n  ret float %"y"'),
        fn("entry", '  %"a" = call float @"c1"(float %"x")\n'
                    '  %"b" = call float @"c2"(float %"x")\n'
                    '  %"y" = fadd float %"a", %"b"\n  ret float %"y"', linkage=""),
    ])
    merged, removed = merge_duplicates(text)
    assert removed == 2 and function_names(merged) == ["h1", "c1", "entry"]
    assert merged.count('call float @"c1"') == 2
    _compile(merged)


def test_external_functions_are_never_merged():
    text = 'define void @"a"() nounwind\n{\nentry:\n  ret void\n}\n' \
           'define void @"b"() nounwind\n{\nentry:\n  ret void\n}\n'
    assert merge_duplicates(text) == (text, 0)


# -- object bundles -------------------------------------------------------------------


def test_object_bundles_round_trip_and_bad_ones_are_refused():
    objects = [b"\x7fELF one", b"\x7fELF two", b""]
    assert unpack_objects(pack_objects(objects)) == objects
    assert pack_objects([b"\x7fELF only"]) == b"\x7fELF only"
    with pytest.raises(ValueError):
        unpack_objects(pack_objects(objects)[:-3])
    with pytest.raises(JitError, match="unusable"):
        jit_engine().add_object(pack_objects(objects)[:20], ["entry"])


# -- forked children ------------------------------------------------------------------


@needs_fork
def test_run_jobs_shares_the_jobs_between_processes_and_keeps_their_order():
    me = os.getpid()

    def job(k):
        time.sleep(0.05)
        return f"{k}:{os.getpid()}".encode()

    results = run_jobs([lambda k=k: job(k) for k in range(8)], processes=3)
    jobs = [r.decode().split(":") for r in results]
    assert [j[0] for j in jobs] == [str(k) for k in range(8)]
    pids = {int(j[1]) for j in jobs}
    assert me in pids and len(pids) >= 2


@needs_fork
def test_a_process_on_a_slow_core_takes_fewer_jobs():
    me = os.getpid()

    def job(k):
        time.sleep(0.3 if os.getpid() == me else 0.02)  # this process is the slow one
        return str(os.getpid() == me).encode()

    here = run_jobs([lambda k=k: job(k) for k in range(10)], processes=2).count(b"True")
    assert 1 <= here <= 3


@needs_fork
def test_a_failing_child_job_runs_here_instead():
    me = os.getpid()

    def slow_here():  # keeps this process busy: the child takes the others
        time.sleep(0.3 if os.getpid() == me else 0)
        return b"first"

    def crash_in_child():
        if os.getpid() != me:
            os._exit(3)
        return b"here"

    def raise_in_child():
        if os.getpid() != me:
            raise RuntimeError("child only")
        return b"here too"

    assert run_jobs([slow_here, crash_in_child, raise_in_child], processes=2) == \
        [b"first", b"here", b"here too"]


@needs_fork
def test_a_hanging_child_is_killed_after_the_deadline():
    me = os.getpid()

    def slow_here():
        time.sleep(0.3 if os.getpid() == me else 0)
        return b"x"

    def hang_in_child():
        while os.getpid() != me:
            time.sleep(1)
        return b"done here"

    start = time.monotonic()
    assert run_jobs([slow_here, hang_in_child], patience=1.0, grace=0.5) == [b"x", b"done here"]
    assert time.monotonic() - start < 10


@needs_fork
def test_children_are_reaped_when_a_job_here_fails():
    def boom():
        raise ValueError("first job")

    with pytest.raises(ValueError, match="first job"):
        run_jobs([boom, lambda: b"child"])
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left behind


def test_compile_jobs_knob(monkeypatch):
    monkeypatch.setenv("XLAC_COMPILE_JOBS", "1")
    assert max_jobs() == 1
    linux = hasattr(os, "fork") and sys.platform.startswith("linux")
    monkeypatch.setenv("XLAC_COMPILE_JOBS", "3")
    assert max_jobs() == (3 if linux else 1)
    monkeypatch.setenv("XLAC_COMPILE_JOBS", "many")
    if linux:
        with pytest.raises(ValueError, match="XLAC_COMPILE_JOBS"):
            max_jobs()


# -- whole programs -------------------------------------------------------------------


def _mlp_step():
    """A training step with GEMMs (epilogues, threads) and fused kernels."""
    from compiler import functional, nn

    def loss(params, x, labels):
        h = nn.relu(x @ params["w1"] + params["b1"])
        return nn.cross_entropy(h @ params["w2"] + params["b2"], labels)

    def step(params, x, labels):
        value, grads = functional.value_and_grad(loss)(params, x, labels)
        return {k: params[k] - 0.1 * grads[k] for k in params}, value

    rng = np.random.default_rng(0)
    params = {"w1": rng.standard_normal((96, 128)).astype(np.float32) * 0.1,
              "b1": np.zeros(128, np.float32),
              "w2": rng.standard_normal((128, 10)).astype(np.float32) * 0.1,
              "b2": np.zeros(10, np.float32)}
    x = rng.standard_normal((128, 96)).astype(np.float32)
    labels = rng.integers(0, 10, 128).astype(np.int32)
    return step, (params, x, labels)


@needs_fork
@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("mode", ["split", "streamed"])
def test_a_program_compiled_in_parts_gives_the_same_results(monkeypatch, threads, mode):
    from compiler import jit
    from compiler.pipeline import clear_cache

    monkeypatch.setenv("XLAC_NUM_THREADS", threads)
    monkeypatch.setenv("XLAC_CACHE_DIR", "off")
    step, args = _mlp_step()
    splits = []
    if mode == "split":  # the whole module, cut after lowering
        def counted(jobs, **kwargs):
            splits.append((len(jobs), kwargs.get("processes")))
            return run_jobs(jobs, **kwargs)

        monkeypatch.setattr(loader, "run_jobs", counted)
        monkeypatch.setattr(loader, "MIN_PART_MS", 0.0)  # split even this small program
        monkeypatch.setattr(loader, "STREAM_PART_MS", 1e9)  # never cut while lowering
    else:  # parts compiled while the rest is lowered
        original = loader.JobStream

        class Counted(original):
            def __init__(self, run, processes):
                super().__init__(run, processes)
                splits.append([0, processes])

            def submit(self, payload):
                splits[-1][0] += 1
                super().submit(payload)

        monkeypatch.setattr(loader, "JobStream", Counted)
        monkeypatch.setattr(loader, "STREAM_PART_MS", 0.0)  # a part per kernel
    results = {}
    for jobs in ("1", "2", "4"):
        monkeypatch.setenv("XLAC_COMPILE_JOBS", jobs)
        clear_cache()
        results[jobs] = jit(step)(*args)
    assert [processes for _, processes in splits] == [2, 4]
    assert all(parts >= 2 for parts, _ in splits)
    # Bitwise: what LLVM inlines (and so how it vectorises a sum) must not
    # depend on how the module was split.
    for jobs in ("2", "4"):
        for key in args[0]:
            np.testing.assert_array_equal(results["1"][0][key], results[jobs][0][key])
        np.testing.assert_array_equal(results["1"][1], results[jobs][1])


@needs_fork
@pytest.mark.parametrize("mode", ["split", "streamed"])
def test_a_split_program_goes_through_the_disk_cache(monkeypatch, tmp_path, mode):
    from compiler.backend import compile_function
    from ir import Builder, DType, TensorType

    monkeypatch.setenv("XLAC_COMPILE_JOBS", "2")
    monkeypatch.setattr(loader, "MIN_PART_MS", 0.0)
    monkeypatch.setattr(loader, "STREAM_PART_MS", 1e9 if mode == "split" else 0.0)
    b = Builder("split_cached")
    x = b.param(TensorType(DType.f32, (64, 96)))
    w = b.param(TensorType(DType.f32, (96, 80)))
    y = b.dot(x, w)
    fn = b.finish([b.exp(y), b.reduce_sum(y, axes=[1])])
    cache = runtime.CompileCache(tmp_path)
    first = compile_function(fn, cache=cache)
    assert ("compile_parts" if mode == "split" else "compile_rest") in first.compile_seconds
    second = compile_function(fn, cache=cache)
    assert "cache_load" in second.compile_seconds
    rng = np.random.default_rng(1)
    args = [rng.standard_normal((64, 96)).astype(np.float32),
            rng.standard_normal((96, 80)).astype(np.float32) * 0.1]
    for got, want in zip(second(*args), first(*args), strict=True):
        np.testing.assert_array_equal(got, want)
    assert "define" in first.optimized_llvm_ir  # remade on demand for a split program


# -- the optimisation pipeline --------------------------------------------------------


def test_o1_and_o3_compute_the_same_results(monkeypatch):
    """The default pipeline (O1 with the vectorisers, see [O1 with the
    vectorisers]) and O3 give bitwise equal results on GEMMs with epilogues,
    fused transcendentals and reductions."""
    import functools

    from compiler import jit, nn
    from compiler.frontend import numpy_api as xnp
    from compiler.pipeline import clear_cache
    from runtime.llvm_module import optimize_module as default_pipeline

    def program(x, w):
        h = nn.relu(x @ w + 0.5)
        y = xnp.exp(h * 0.01) + xnp.tanh(h) + xnp.log(xnp.abs(h) + 1.0)
        return y, xnp.sum(y, axis=1), xnp.max(xnp.transpose(x) @ h, axis=0)

    rng = np.random.default_rng(3)
    x = rng.standard_normal((130, 96)).astype(np.float32)
    w = rng.standard_normal((96, 100)).astype(np.float32) * 0.1
    monkeypatch.setenv("XLAC_CACHE_DIR", "off")
    results = {}
    for level in (1, 3):
        monkeypatch.setattr(loader, "optimize_module",
                            functools.partial(default_pipeline, speed_level=level))
        clear_cache()
        results[level] = jit(program)(x, w)
    for o1, o3 in zip(results[1], results[3], strict=True):
        np.testing.assert_array_equal(o1, o3)


# -- the thread pool, compiled by a child meanwhile -------------------------------------


@needs_fork
def test_start_job_returns_the_child_result_or_nothing():
    pending = start_job(lambda: b"from a child")
    assert pending is not None and pending.result(timeout=30) == b"from a child"
    assert pending.result(timeout=1) is None  # once only
    slow = start_job(lambda: time.sleep(60) or b"late")
    start = time.monotonic()
    assert slow.result(timeout=0.2) is None and time.monotonic() - start < 5  # killed


@needs_fork
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_pool_is_compiled_by_a_child_while_lowering(jobs):
    import subprocess
    import textwrap

    script = textwrap.dedent("""
        from runtime import parallel, threadpool
        assert parallel.threads_available()
        pending = threadpool._prefetched
        print("prefetched" if pending is not None else "here")
        threadpool.ensure_pool()
        assert threadpool._prefetched is None
        print(threadpool.worker_count())
    """)
    # Neither installed nor cached: compiled on first use, by a child if it may fork.
    env = {**os.environ, "XLAC_COMPILE_JOBS": jobs, "XLAC_CACHE_DIR": "off",
           "XLAC_INSTALLED_OBJECTS": "off"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["prefetched" if jobs == "2" else "here", "0"]


@needs_fork
def test_an_installed_pool_is_loaded_not_compiled(tmp_path):
    import subprocess
    import textwrap

    from runtime.cache import CompileCache
    from runtime.threadpool import build_pool_object

    assert build_pool_object(CompileCache(tmp_path, max_bytes=None)) is not None
    script = textwrap.dedent("""
        from runtime import parallel, threadpool
        assert parallel.threads_available()
        print("prefetched" if threadpool._prefetched is not None else "installed")
        threadpool.ensure_pool()
        print(threadpool.worker_count())
    """)
    env = {**os.environ, "XLAC_COMPILE_JOBS": "2", "XLAC_CACHE_DIR": "off",
           "XLAC_INSTALLED_OBJECTS": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["installed", "0"]
