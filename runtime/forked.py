"""Run byte-producing jobs in parallel: the first here, the others in forked children.

NOTE: [Compiling in forked children]
llvmlite serialises every call behind one lock, so threads cannot compile
two modules at once; processes can (notes/llvmlite.md §9: 1.6x with a
process pool). A pool of fresh interpreters costs ~100 ms to start and must
be sent the work; ``os.fork`` costs a few ms and the child already holds
everything (the LLVM IR, an initialised LLVM). ``run_jobs`` puts one byte
per job into a pipe; this process and its children each read a byte to take
the next job (a pipe read is atomic), so a process on a busy core takes
fewer jobs instead of making the others wait. A child writes each result
(index, length, bytes) to its own pipe and, when the claims run out, leaves
with ``os._exit`` (no atexit handlers, no flushing of the parent's buffers).

Fork only copies the calling thread. A lock another thread held at that
moment stays held in the child forever; the one that matters, llvmlite's
global lock, is taken around the fork, so no thread is inside LLVM then.
Whatever else goes wrong in a child (a crash, an exception, a lock it waits
for forever, a machine too busy to run it), the parent gives up on it after
a deadline, kills it, and runs that job itself: a child can only cost time,
never hang the caller or change a result. ``JOBS_ENV`` (``XLAC_COMPILE_JOBS``)
bounds the processes; 1 (or a system other than Linux, or one usable
core) runs everything here. Forking is cheap here even for big processes
(measured: 0.4 ms, 1.4 ms with 2.5 GB of arrays: the child copies page
tables, not pages).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
import sys
import time
import warnings
from typing import Callable, Sequence

__all__ = ["JOBS_ENV", "Pending", "max_jobs", "run_jobs", "start_job"]

JOBS_ENV = "XLAC_COMPILE_JOBS"  # mirrored by compiler/flags.py ("compile_jobs")
_DEFAULT_MAX = 4
_LENGTH = struct.Struct("<Q")
_RESULT = struct.Struct("<IQ")  # job index, result length


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_jobs() -> int:
    """Processes a compile may use: ``XLAC_COMPILE_JOBS``, else the usable
    cores up to 4; always 1 off Linux (macOS forbids much after a fork in a
    process with threads; Windows has no fork)."""
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return 1
    raw = os.environ.get(JOBS_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{JOBS_ENV} must be a positive integer, got {raw!r}") from None
        if value < 1:
            raise ValueError(f"{JOBS_ENV} must be a positive integer, got {raw!r}")
        return value
    return min(_cores(), _DEFAULT_MAX)


def _llvm_lock():
    """llvmlite's global lock (private API; without it, nothing to hold)."""
    try:
        from llvmlite.binding import ffi

        return ffi.lib._lock
    except (ImportError, AttributeError):  # pragma: no cover - another llvmlite
        return contextlib.nullcontext()


class _Child:
    def __init__(self, pid: int, fd: int):
        self.pid, self.fd = pid, fd

    def collect(self, deadline: float) -> bytes | None:
        """The child's result, or None (it failed, or the deadline passed)."""
        chunks, expected, got = [], None, 0
        try:
            while expected is None or got < expected:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    return None
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    return None  # closed early: the child died
                chunks.append(chunk)
                got += len(chunk)
                if expected is None and got >= _LENGTH.size:
                    data = b"".join(chunks)
                    expected = _LENGTH.unpack_from(data)[0] + _LENGTH.size
                    chunks, got = [data], len(data)
            data = b"".join(chunks)
            return data[_LENGTH.size:expected] if got == expected else None
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pid:
            with contextlib.suppress(OSError):
                done, _ = os.waitpid(self.pid, os.WNOHANG)
                if done == 0:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
            self.pid = 0


def _fork() -> int | None:
    """``os.fork()`` with llvmlite's lock held; None if it failed."""
    try:
        with _llvm_lock(), warnings.catch_warnings():
            # Python 3.12+ (and JAX's fork hook) warn about forking a process
            # with threads; see [Compiling in forked children] for why this
            # fork is safe: the child runs nothing but LLVM and exits.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
            return os.fork()
    except OSError:
        return None


def _fork_writer(child: Callable[[int], None]) -> tuple[int, int] | None:
    """Fork a child that runs ``child(write_fd)`` and exits (status 0 if it
    returned); returns ``(pid, read_fd)`` here, or None if no child could start."""
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        return None
    pid = _fork()
    if pid is None:
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(read_fd)
            child(write_fd)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    return pid, read_fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _start(job: Callable[[], bytes]) -> _Child | None:
    def child(write_fd: int) -> None:
        data = bytes(job())
        _write_all(write_fd, _LENGTH.pack(len(data)) + data)

    started = _fork_writer(child)
    return None if started is None else _Child(*started)


class _Worker:
    """A forked child taking jobs from the shared claim pipe (see ``run_jobs``)."""

    def __init__(self, pid: int, fd: int):
        self.pid, self.fd = pid, fd

    def collect(self, deadline: float) -> dict[int, bytes]:
        """Results of the jobs the child finished, by index, until it exits
        (or the deadline passes: it is then killed; its last job is lost)."""
        results: dict[int, bytes] = {}
        buffer = b""
        try:
            while True:
                while len(buffer) >= _RESULT.size:
                    index, size = _RESULT.unpack_from(buffer)
                    if len(buffer) < _RESULT.size + size:
                        break
                    results[index] = buffer[_RESULT.size:_RESULT.size + size]
                    buffer = buffer[_RESULT.size + size:]
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    return results
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    return results  # the child is done (or died)
                buffer += chunk
        finally:
            self.close()

    close = _Child.close


def _start_worker(jobs: Sequence[Callable[[], bytes]], claims: int) -> _Worker | None:
    def child(write_fd: int) -> None:
        while True:
            token = os.read(claims, 1)
            if not token:
                break
            data = bytes(jobs[token[0]]())
            _write_all(write_fd, _RESULT.pack(token[0], len(data)) + data)

    started = _fork_writer(child)
    return None if started is None else _Worker(*started)


def run_jobs(jobs: Sequence[Callable[[], bytes]], *, processes: int | None = None,
             patience: float = 3.0, grace: float = 2.0) -> list[bytes]:
    """``[job() for job in jobs]``, computed by up to ``processes`` processes at
    once (default: one per job): this one and forked children (see
    [Compiling in forked children]).

    Every process takes the next job nobody has taken, in list order (put
    the longest first), until none is left: a process on a busy core, or
    given jobs that were estimated too short, simply takes fewer. Children
    are awaited until ``patience`` times as long as this process worked,
    plus ``grace`` seconds; the jobs of a child that failed or was late (it
    is killed) are run here. Exceptions come only from jobs run here.
    """
    count = len(jobs)
    processes = min(count if processes is None else processes, count)
    if processes < 2 or count > 255:  # one byte per claim token
        return [job() for job in jobs]
    try:
        claim_read, claim_write = os.pipe()
    except OSError:
        return [job() for job in jobs]
    try:
        os.write(claim_write, bytes(range(count)))  # count <= 255 fits any pipe buffer
    finally:
        os.close(claim_write)  # children must not hold it: EOF ends their loop
    workers = []
    try:
        for _ in range(processes - 1):
            worker = _start_worker(jobs, claim_read)
            if worker is not None:
                workers.append(worker)
        results: list[bytes | None] = [None] * count
        start = time.monotonic()
        while True:
            token = os.read(claim_read, 1)
            if not token:
                break
            results[token[0]] = jobs[token[0]]()
        deadline = time.monotonic() + patience * (time.monotonic() - start) + grace
        for worker in workers:
            for index, data in worker.collect(deadline).items():
                results[index] = data
        return [data if data is not None else job() for data, job in zip(results, jobs,
                                                                         strict=True)]
    finally:
        os.close(claim_read)
        for worker in workers:
            worker.close()


class Pending:
    """A job running in a forked child (``start_job``)."""

    def __init__(self, child: _Child):
        self._child: _Child | None = child

    def result(self, timeout: float) -> bytes | None:
        """The job's bytes, or None if the child failed or took longer than
        ``timeout`` seconds from now (it is then killed). Once only."""
        child, self._child = self._child, None
        return None if child is None else child.collect(time.monotonic() + timeout)

    def cancel(self) -> None:
        """Kill the child if it still runs (its result is not wanted)."""
        child, self._child = self._child, None
        if child is not None:
            child.close()

    def __del__(self):
        self.cancel()


def start_job(job: Callable[[], bytes]) -> Pending | None:
    """Start ``job`` in a forked child and return at once; None when compiles
    may not fork (``max_jobs() < 2``, see [Compiling in forked children]) or
    the fork failed: the caller then does the work itself when it needs it."""
    try:
        if max_jobs() < 2:
            return None
    except ValueError:  # a bad XLAC_COMPILE_JOBS: reported where it decides more
        return None
    child = _start(job)
    return None if child is None else Pending(child)
