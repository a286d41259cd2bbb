"""The thread pool (runtime/threadpool.py) and parallel kernels.

Every chunk runs exactly once whatever the team; concurrent callers and a
forked child get correct results; a process that ran parallel kernels exits
cleanly with no thread left (each in a subprocess, checked by exit status and
``/proc/self/task``); without the pool, programs run on one thread and say so
once.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from runtime import threadpool

pytestmark = pytest.mark.llvm

_CHUNK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


def _parallel_for():
    threadpool.ensure_pool()
    address = threadpool._get_pool().symbols[threadpool.POOL_SYMBOL]
    return ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                            ctypes.c_int64)(address)


@pytest.mark.parametrize("chunks,team", [(1, 2), (2, 2), (97, 2), (1000, 3), (5, 1), (0, 2)])
def test_every_chunk_runs_exactly_once(chunks, team):
    seen = []

    @_CHUNK
    def chunk(ctx, index, thread):  # ctypes takes the GIL: appends are safe
        seen.append((index, thread))

    _parallel_for()(ctypes.cast(chunk, ctypes.c_void_p), None, chunks, team)
    assert sorted(i for i, _ in seen) == list(range(chunks))
    assert all(0 <= t < max(team, 1) for _, t in seen)


def _gemm_program(threads: str, monkeypatch):
    from compiler.backend import compile_function
    from ir import Builder, TensorType

    monkeypatch.setenv("XLAC_NUM_THREADS", threads)
    b = Builder("mm")
    x = b.param(TensorType("f32", (256, 192)))
    w = b.param(TensorType("f32", (192, 160)))
    return compile_function(b.finish([b.dot(x, w)]))


def test_concurrent_callers_get_correct_results(monkeypatch):
    exe = _gemm_program("2", monkeypatch)
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((256, 192)).astype(np.float32),
              rng.standard_normal((192, 160)).astype(np.float32)) for _ in range(4)]
    want = [exe(x, w)[0] for x, w in pairs]
    errors = []

    def run(i):
        for _ in range(20):
            x, w = pairs[i]
            if not np.array_equal(exe(x, w)[0], want[i]):
                errors.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert threadpool.worker_count() >= 1


def _run_script(body: str, **env) -> subprocess.CompletedProcess:
    script = textwrap.dedent(body)
    import os

    environment = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=environment, timeout=120)


_PROGRAM = """
    import os, numpy as np
    from compiler.backend import compile_function
    from ir import Builder, TensorType
    from runtime import threadpool

    def program():
        b = Builder("mm")
        x = b.param(TensorType("f32", (300, 200)))
        w = b.param(TensorType("f32", (200, 150)))
        return compile_function(b.finish([b.dot(x, w)]))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 200)).astype(np.float32)
    w = rng.standard_normal((200, 150)).astype(np.float32)
    want = x.astype(np.float64) @ w
"""


def test_the_process_exits_cleanly_with_no_thread_left():
    result = _run_script(_PROGRAM + """
    exe = program()
    for _ in range(50):
        got = exe(x, w)[0]
    assert np.allclose(got, want, rtol=1e-4, atol=1e-3)
    assert threadpool.worker_count() == 1
    threadpool.shutdown()
    assert threadpool.worker_count() == 0
    assert len(os.listdir("/proc/self/task")) == 1, os.listdir("/proc/self/task")
    got = exe(x, w)[0]  # the pool restarts on demand
    assert np.allclose(got, want, rtol=1e-4, atol=1e-3) and threadpool.worker_count() == 1
    print("ok")
    """, XLAC_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok" and result.stderr == ""


def test_exit_while_workers_spin_is_clean():
    # Exits right after a kernel, while the worker still spins: atexit joins it.
    for _ in range(3):
        result = _run_script(_PROGRAM + """
    exe = program()
    exe(x, w)
    """, XLAC_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")
        assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_forked_child_computes_correctly():
    result = _run_script(_PROGRAM + """
    exe = program()
    exe(x, w)
    pid = os.fork()
    if pid == 0:
        ok = np.allclose(exe(x, w)[0], want, rtol=1e-4, atol=1e-3)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    print("ok")
    """, XLAC_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_without_the_pool_programs_run_on_one_thread_and_say_so_once():
    result = _run_script("""
    import warnings
    from runtime import threadpool
    threadpool.pool_unavailable_reason = lambda: "no futexes here (simulated)"
    """ + _PROGRAM + """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exe, again = program(), program()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "one thread" in messages[0], messages
    assert "simulated" in messages[0]
    assert "xlac_parallel_for" not in exe.llvm_ir
    assert np.allclose(exe(x, w)[0], want, rtol=1e-4, atol=1e-3)
    assert threadpool.worker_count() == 0
    print("ok")
    """, XLAC_NUM_THREADS="2", XLAC_CACHE_DIR="off")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_a_bad_thread_count_is_an_error(monkeypatch):
    from compiler.codegen import LoweringError

    with pytest.raises(LoweringError, match="XLAC_NUM_THREADS"):
        _gemm_program("zero", monkeypatch)
    with pytest.raises(LoweringError, match="XLAC_NUM_THREADS"):
        _gemm_program("0", monkeypatch)


def test_an_ahead_of_time_library_carries_its_own_pool(tmp_path):
    import shutil

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    result = _run_script(_PROGRAM + f"""
    import ctypes, subprocess
    exe = program()
    assert "xlac_parallel_for" in exe.llvm_ir
    obj = {str(tmp_path / "k.o")!r}
    lib_path = {str(tmp_path / "libk.so")!r}
    open(obj, "wb").write(exe.emit_object())
    subprocess.run(["gcc", "-shared", "-o", lib_path, obj, "-lm", "-lpthread"], check=True)
    lib = ctypes.CDLL(lib_path)
    arena = np.empty(ctypes.c_int64.in_dll(lib, "entry_arena_bytes").value + 64, np.uint8)
    out = np.empty((300, 150), np.float32)
    table = (ctypes.c_void_p * 4)(x.ctypes.data, w.ctypes.data, out.ctypes.data,
                                  arena.ctypes.data)
    lib.entry.argtypes = [ctypes.c_void_p]
    before = len(os.listdir("/proc/self/task"))
    lib.entry(table)
    assert np.allclose(out, want, rtol=1e-4, atol=1e-3)
    assert len(os.listdir("/proc/self/task")) == before + 1  # the library's own worker
    print("ok")
    """, XLAC_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
