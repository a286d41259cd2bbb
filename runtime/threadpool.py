"""The thread pool that runs the chunks of large kernels on several cores.

NOTE: [Thread pool]
Generated code calls ``xlac_parallel_for(fn, ctx, chunks, team)``: the chunks
``0 .. chunks-1`` of a kernel are run as ``fn(ctx, chunk, thread)`` by the
calling thread (``thread`` 0) and by up to ``team - 1`` pooled workers
(``thread`` 1..), each chunk exactly once; the call returns when every chunk
is done. ``thread`` selects the caller's scratch slot. The pool is generated
LLVM IR (below), compiled once per process, using only pthreads and futexes.

Why not libgomp's ``GOMP_parallel`` (notes/llvmlite.md §8; ~0.6 us per
fork-join)? Its region ends in a barrier that waits for *every* team thread,
including a worker the OS has not scheduled yet. On a machine whose other
core is busy (this one is shared) that made a 2-thread 256^3 GEMM 30x slower
than one thread (measured: 1.4 vs 34 GFLOP/s). Here chunks are claimed
dynamically and the caller waits only for chunks a worker actually claimed:
a late worker finds no work and goes back to sleep, so a parallel kernel is
never much slower than the serial one, and a busy core gets fewer chunks.

Protocol. One 64-bit word ``claim`` = generation (24 bits) | chunks (14) |
next chunk (14) | team (12). The caller stores ``fn``/``ctx``, resets
``done``, then publishes a new word (seq_cst); anyone claims chunk ``next``
by a compare-and-swap of the whole word to ``next + 1``. A successful claim
proves the job is still running (its chunk is not done), so the ``fn``/
``ctx`` read after it belong to that job; the generation makes a stale word
fail the swap. The caller counts ``done`` up to ``chunks`` and returns.
Idle workers spin ~50 us (next kernels of a step come quickly), then sleep
on a futex; the caller wakes them only if some sleep (``sleepers``, seq_cst
on both sides, so no wake-up is lost). A caller waiting ~50 us for a chunk
a worker claimed yields its core (``sched_yield``): on a busy machine that
worker may be waiting for it. A second caller while the pool is
busy (another Python thread, or a nested call) runs its chunks inline.

Lifetime. Workers start on first use, up to the largest team requested;
``shutdown()`` (registered with ``atexit``) stops and joins them, so no
thread outlives the interpreter and no worker runs while LLVM's static
destructors free JIT memory. In a child after ``fork`` the workers do not
exist: ``forget`` (registered with ``os.register_at_fork``) resets the pool,
which restarts on the child's next parallel call.

Ahead of time. An object file of a parallel program (runtime/aot.py) gets
its own copy of the pool linked in, with weak public symbols
(``aot_pool_llvm_ir``): it needs only libc's pthreads, and several such
objects link together. Its workers end with the process.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import platform
import threading

import llvmlite.binding as llvm

__all__ = ["POOL_SYMBOL", "aot_pool_llvm_ir", "ensure_pool", "pool_symbols", "pool_available",
           "pool_unavailable_reason", "prefetch",
           "shutdown", "worker_count"]

POOL_SYMBOL = "xlac_parallel_for"
MAX_THREADS = 64  # pthread ids kept; teams are capped here
_SPIN = 3000      # pause instructions (~50 us on Zen 4) before a worker sleeps

# SYS_futex by machine (Linux only).
_FUTEX_SYSCALL = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}
_YIELD_SYSCALL = {"x86_64": 24, "amd64": 24, "aarch64": 124, "arm64": 124}
_FUTEX_WAIT_PRIVATE, _FUTEX_WAKE_PRIVATE = 128, 129


def _pool_llvm_ir(futex: int, sched_yield: int, pause: bool, linkage: str = "") -> str:
    pause_call = "call void @llvm.x86.sse2.pause()" if pause else ""
    pause_decl = "declare void @llvm.x86.sse2.pause()" if pause else ""
    return f"""
; claim = gen << 40 | chunks << 26 | next << 12 | team   (see runtime/threadpool.py)
@claim = internal global i64 0, align 64
@done = internal global i64 0, align 64
@job_fn = internal global ptr null, align 64
@job_ctx = internal global ptr null, align 8
@busy = internal global i32 0, align 64
@seq = internal global i32 0, align 64
@sleepers = internal global i32 0, align 64
@stop = internal global i32 0, align 64
@workers = internal global i64 0, align 64
@tids = internal global [{MAX_THREADS} x i64] zeroinitializer, align 64

declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_join(i64, ptr)
declare i64 @syscall(i64, ...)
{pause_decl}

define internal void @relax() {{
  {pause_call}
  ret void
}}

define internal void @wake_all() {{
  %s = atomicrmw add ptr @seq, i32 1 seq_cst
  %n = load atomic i32, ptr @sleepers seq_cst, align 4
  %any = icmp ne i32 %n, 0
  br i1 %any, label %wake, label %out
wake:
  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr @seq, i64 {_FUTEX_WAKE_PRIVATE},
                                    i64 2147483647)
  br label %out
out:
  ret void
}}

; Claim word: team size (12 bits) | next chunk (14 bits) | chunk count (14 bits).
; True if a chunk is left and thread %idx belongs to the current team.
define internal i1 @claimable(i64 %w, i64 %idx) alwaysinline {{
  %team = and i64 %w, 4095
  %next = lshr i64 %w, 12
  %next.m = and i64 %next, 16383
  %chunks = lshr i64 %w, 26
  %chunks.m = and i64 %chunks, 16383
  %has = icmp ult i64 %next.m, %chunks.m
  %member = icmp ult i64 %idx, %team
  %ok = and i1 %has, %member
  ret i1 %ok
}}

; Claim and run chunks of the current job as thread %idx until none is left.
define internal void @run_chunks(i64 %idx) {{
entry:
  br label %look
look:
  %w = load atomic i64, ptr @claim acquire, align 8
  %ok = call i1 @claimable(i64 %w, i64 %idx)
  br i1 %ok, label %try, label %out
try:
  %w1 = add i64 %w, 4096
  %pair = cmpxchg ptr @claim, i64 %w, i64 %w1 acq_rel acquire
  %won = extractvalue {{ i64, i1 }} %pair, 1
  br i1 %won, label %run, label %look
run:
  %next = lshr i64 %w, 12
  %next.m = and i64 %next, 16383
  %fn = load ptr, ptr @job_fn, align 8
  %ctx = load ptr, ptr @job_ctx, align 8
  call void %fn(ptr %ctx, i64 %next.m, i64 %idx)
  %d = atomicrmw add ptr @done, i64 1 release
  br label %look
out:
  ret void
}}

define internal i1 @has_work(i64 %idx) {{
  %w = load atomic i64, ptr @claim seq_cst, align 8
  %ok = call i1 @claimable(i64 %w, i64 %idx)
  %st = load atomic i32, ptr @stop seq_cst, align 4
  %stopping = icmp ne i32 %st, 0
  %r = or i1 %ok, %stopping
  ret i1 %r
}}

define internal ptr @worker(ptr %arg) {{
entry:
  %idx = ptrtoint ptr %arg to i64
  br label %spin
spin:
  %i = phi i64 [ 0, %entry ], [ %i.next, %idle ], [ 0, %worked ], [ 0, %woke ]
  %st = load atomic i32, ptr @stop acquire, align 4
  %stopping = icmp ne i32 %st, 0
  br i1 %stopping, label %exit, label %check
check:
  %work = call i1 @has_work(i64 %idx)
  br i1 %work, label %worked, label %idle
worked:
  call void @run_chunks(i64 %idx)
  br label %spin
idle:
  call void @relax()
  %i.next = add i64 %i, 1
  %tired = icmp ugt i64 %i.next, {_SPIN}
  br i1 %tired, label %sleep, label %spin
sleep:
  %s = load atomic i32, ptr @seq seq_cst, align 4
  %z = atomicrmw add ptr @sleepers, i32 1 seq_cst
  %again = call i1 @has_work(i64 %idx)
  br i1 %again, label %awake, label %wait
wait:
  %s64 = zext i32 %s to i64
  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr @seq, i64 {_FUTEX_WAIT_PRIVATE},
                                    i64 %s64, ptr null)
  br label %awake
awake:
  %z2 = atomicrmw sub ptr @sleepers, i32 1 seq_cst
  br label %woke
woke:
  br label %spin
exit:
  ret ptr null
}}

; Start workers 1 .. team-1 that do not exist yet (the caller holds @busy).
define internal void @grow(i64 %team) {{
entry:
  %have = load i64, ptr @workers, align 8
  %want = sub i64 %team, 1
  br label %loop
loop:
  %n = phi i64 [ %have, %entry ], [ %n.next, %made ]
  %more = icmp ult i64 %n, %want
  br i1 %more, label %make, label %out
make:
  %slot = getelementptr inbounds [{MAX_THREADS} x i64], ptr @tids, i64 0, i64 %n
  %idx = add i64 %n, 1
  %arg = inttoptr i64 %idx to ptr
  %rc = call i32 @pthread_create(ptr %slot, ptr null, ptr @worker, ptr %arg)
  %failed = icmp ne i32 %rc, 0
  br i1 %failed, label %out, label %made
made:
  %n.next = add i64 %n, 1
  store i64 %n.next, ptr @workers, align 8
  br label %loop
out:
  ret void
}}

define internal void @run_inline(ptr %fn, ptr %ctx, i64 %chunks) {{
entry:
  %none = icmp eq i64 %chunks, 0
  br i1 %none, label %out, label %loop
loop:
  %c = phi i64 [ 0, %entry ], [ %c.next, %loop ]
  call void %fn(ptr %ctx, i64 %c, i64 0)
  %c.next = add i64 %c, 1
  %more = icmp ult i64 %c.next, %chunks
  br i1 %more, label %loop, label %out
out:
  ret void
}}

define {linkage} void @{POOL_SYMBOL}(ptr %fn, ptr %ctx, i64 %chunks, i64 %team) {{
entry:
  %small = icmp ult i64 %chunks, 2
  %alone = icmp ult i64 %team, 2
  %big = icmp ugt i64 %chunks, 16383
  %a = or i1 %small, %alone
  %serial = or i1 %a, %big
  br i1 %serial, label %inline, label %lock
lock:
  %pair = cmpxchg ptr @busy, i32 0, i32 1 acquire monotonic
  %got = extractvalue {{ i32, i1 }} %pair, 1
  br i1 %got, label %publish, label %inline
inline:
  call void @run_inline(ptr %fn, ptr %ctx, i64 %chunks)
  ret void
publish:
  %capped = call i64 @llvm.umin.i64(i64 %team, i64 {MAX_THREADS})
  call void @grow(i64 %capped)
  store ptr %fn, ptr @job_fn, align 8
  store ptr %ctx, ptr @job_ctx, align 8
  store atomic i64 0, ptr @done monotonic, align 8
  %old = load atomic i64, ptr @claim monotonic, align 8
  %gen = lshr i64 %old, 40
  %gen1 = add i64 %gen, 1
  %gen.w = shl i64 %gen1, 40
  %ch.w = shl i64 %chunks, 26
  %w0 = or i64 %gen.w, %ch.w
  %w = or i64 %w0, %capped
  store atomic i64 %w, ptr @claim seq_cst, align 8
  call void @wake_all()
  call void @run_chunks(i64 0)
  br label %wait
wait:
  %spins = phi i64 [ 0, %publish ], [ %spins.next, %relax ], [ 0, %yield ]
  %d = load atomic i64, ptr @done acquire, align 8
  %all = icmp eq i64 %d, %chunks
  br i1 %all, label %finish, label %relax
relax:
  call void @relax()
  %spins.next = add i64 %spins, 1
  %long = icmp ugt i64 %spins.next, {_SPIN}
  br i1 %long, label %yield, label %wait
yield:
  ; A worker holding a chunk is not running (a busy machine): give it the core.
  %y = call i64 (i64, ...) @syscall(i64 {sched_yield})
  br label %wait
finish:
  store atomic i32 0, ptr @busy release, align 4
  ret void
}}

declare i64 @llvm.umin.i64(i64, i64)

; Stop and join every worker (at exit).
define {linkage} void @xlac_pool_shutdown() {{
entry:
  br label %lock
lock:
  %pair = cmpxchg ptr @busy, i32 0, i32 1 acquire monotonic
  %got = extractvalue {{ i32, i1 }} %pair, 1
  br i1 %got, label %stop, label %spin
spin:
  call void @relax()
  br label %lock
stop:
  store atomic i32 1, ptr @stop seq_cst, align 4
  call void @wake_all()
  %n = load i64, ptr @workers, align 8
  %none = icmp eq i64 %n, 0
  br i1 %none, label %done, label %join
join:
  %i = phi i64 [ 0, %stop ], [ %i.next, %join ]
  %slot = getelementptr inbounds [{MAX_THREADS} x i64], ptr @tids, i64 0, i64 %i
  %tid = load i64, ptr %slot, align 8
  %rc = call i32 @pthread_join(i64 %tid, ptr null)
  %i.next = add i64 %i, 1
  %more = icmp ult i64 %i.next, %n
  br i1 %more, label %join, label %done
done:
  store i64 0, ptr @workers, align 8
  store atomic i32 0, ptr @stop seq_cst, align 4
  store atomic i32 0, ptr @busy release, align 4
  ret void
}}

; In a child after fork: the workers are gone; start afresh on the next call.
define {linkage} void @xlac_pool_forget() {{
  store i64 0, ptr @workers, align 8
  store atomic i32 0, ptr @sleepers seq_cst, align 4
  store atomic i32 0, ptr @busy seq_cst, align 4
  ret void
}}

define {linkage} i64 @xlac_pool_workers() {{
  %n = load i64, ptr @workers, align 8
  ret i64 %n
}}
"""


def aot_pool_llvm_ir() -> str:
    """The pool for ahead-of-time objects (runtime/aot.py links it into a
    program that calls it): the same code with weak public symbols, so several
    such objects link together. No ``atexit`` there: the workers end with the
    process."""
    machine = platform.machine().lower()
    if machine not in _FUTEX_SYSCALL:
        raise RuntimeError(f"the thread pool does not know this machine ({machine})")
    return _pool_llvm_ir(_FUTEX_SYSCALL[machine], _YIELD_SYSCALL[machine],
                         pause=machine in ("x86_64", "amd64"), linkage="weak")


def pool_unavailable_reason() -> str | None:
    """Why this platform cannot run the pool (None: it can)."""
    from runtime.target import initialize_llvm

    initialize_llvm()  # makes the process's symbols (libc's pthread_create) visible
    if not platform.system() == "Linux":
        return f"the thread pool needs Linux futexes (this is {platform.system()})"
    if platform.machine().lower() not in _FUTEX_SYSCALL:
        return f"the thread pool does not know this machine ({platform.machine()})"
    if llvm.address_of_symbol("pthread_create") is None:
        return "pthread_create is not available in this process"
    return None


def pool_available() -> bool:
    return pool_unavailable_reason() is None


class _Pool:
    """The compiled pool: its JIT library and the addresses generated code needs."""

    def __init__(self):
        from runtime.cache import cached_object
        from runtime.jit import jit_engine

        text = _host_pool_llvm_ir()

        def compile_pool() -> bytes:
            global _prefetched
            pending, _prefetched = _prefetched, None
            if pending is not None:  # compiled by a child meanwhile (see ``prefetch``)
                object_code = pending.result(timeout=5.0)
                if object_code:
                    return object_code
            return _compile_pool(text)

        # From the disk cache when an earlier process compiled it (~70 ms of a warm start).
        object_code = cached_object(text, compile_pool, name="xlac_pool")
        _cancel_prefetch()
        exports = [POOL_SYMBOL, "xlac_pool_shutdown", "xlac_pool_forget", "xlac_pool_workers"]
        self.library = jit_engine().add_object(object_code, exports, name_hint="xlac_pool")
        self.symbols = {POOL_SYMBOL: self.library.address(POOL_SYMBOL)}
        void = ctypes.CFUNCTYPE(None)
        self.shutdown = void(self.library.address("xlac_pool_shutdown"))
        self.forget = void(self.library.address("xlac_pool_forget"))
        self.workers = ctypes.CFUNCTYPE(ctypes.c_int64)(self.library.address("xlac_pool_workers"))


def _host_pool_llvm_ir() -> str:
    machine = platform.machine().lower()
    return _pool_llvm_ir(_FUTEX_SYSCALL[machine], _YIELD_SYSCALL[machine],
                         pause=machine in ("x86_64", "amd64"))


def build_pool_object(cache) -> "pathlib.Path | None":
    """Compile the pool for this machine into ``cache`` (a runtime.cache
    CompileCache) where ``cached_object`` finds it: the installed store of
    [Installed objects] (runtime/cache.py)."""
    from runtime.cache import ProgramInfo, store_object

    text = _host_pool_llvm_ir()
    return store_object(text, _compile_pool(text), ProgramInfo("xlac_pool", "", "", (), (), 0, False),
                        cache=cache)


def _compile_pool(text: str) -> bytes:
    from runtime.llvm_module import optimize_module, parse_module
    from runtime.target import host_target_machine

    tm = host_target_machine()
    module = parse_module(text, tm, name="xlac_pool")
    optimize_module(module, tm)
    return tm.emit_object(module)


_lock = threading.RLock()
_pool: _Pool | None = None
_prefetched = None  # runtime.forked.Pending: the pool's object code, compiling in a child


def prefetch() -> None:
    """Start compiling the pool in a forked child (runtime/forked.py), so that
    it overlaps the lowering of the first parallel program (~30 ms of a cold
    start); the pool is still made on first use, from the child's object code
    (or compiled then, if the child failed). No-op once the pool exists or is
    on its way, or where compiles do not fork."""
    global _prefetched
    from runtime.cache import has_object
    from runtime.forked import start_job

    with _lock:
        if _pool is None and _prefetched is None:
            text = _host_pool_llvm_ir()
            if not has_object(text):  # installed or cached: loaded in a few ms
                _prefetched = start_job(lambda: _compile_pool(text))


def _cancel_prefetch() -> None:
    global _prefetched
    pending, _prefetched = _prefetched, None
    if pending is not None:
        pending.cancel()


def _get_pool() -> _Pool:
    global _pool
    with _lock:
        if _pool is None:
            reason = pool_unavailable_reason()
            if reason is not None:
                raise RuntimeError(reason)
            _pool = _Pool()
            # Lets the loader's check for unresolved externals find it.
            llvm.add_symbol(POOL_SYMBOL, _pool.symbols[POOL_SYMBOL])
            atexit.register(shutdown)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_forget_in_child)
        return _pool


def ensure_pool() -> None:
    """Compile the pool now (idempotent); RuntimeError if this platform cannot run it."""
    _get_pool()


def pool_symbols(object_code: bytes) -> dict[str, int]:
    """Addresses of the pool functions ``object_code`` calls (compiling the pool
    on first need), for the JIT to resolve them; {} if it calls none."""
    if POOL_SYMBOL.encode() not in object_code:
        return {}
    return dict(_get_pool().symbols)


def worker_count() -> int:
    """Workers currently alive (0 before the first parallel kernel and after shutdown)."""
    with _lock:
        return 0 if _pool is None else int(_pool.workers())


def shutdown() -> None:
    """Stop and join every worker (safe to call twice; a later kernel restarts them)."""
    with _lock:
        if _pool is not None:
            _pool.shutdown()


def _forget_in_child() -> None:
    if _pool is not None:
        _pool.forget()
