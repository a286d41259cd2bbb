"""Run byte-producing jobs in parallel: the first here, the others in forked children.

NOTE: [Compiling in forked children]
llvmlite serialises every call behind one lock, so threads cannot compile
two modules at once; processes can (notes/llvmlite.md §9: 1.6x with a
process pool). A pool of fresh interpreters costs ~100 ms to start and must
be sent the work; ``os.fork`` costs a few ms and the child already holds
everything (an initialised LLVM, the jobs known so far). A ``JobStream``
forks its children first and is given jobs afterwards (the parts of a module
still being lowered): each job's bytes go to a file the children share, and
a token (index, offset, length) into a claim pipe; this process and its
children each read a token to take the next job (20 bytes, written and read
whole), so a process on a busy core takes fewer jobs instead of making the
others wait. A child writes each result to a file of its own and its token
to its own pipe (neither ever fills and blocks it), and when the claim pipe
ends leaves with ``os._exit`` (no atexit handlers, no flushing of the
parent's buffers). ``run_jobs`` is a stream whose jobs are all known at once.

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

__all__ = ["JOBS_ENV", "JobStream", "Pending", "max_jobs", "run_jobs", "start_job"]

JOBS_ENV = "XLAC_COMPILE_JOBS"  # mirrored by compiler/flags.py ("compile_jobs")
_DEFAULT_MAX = 4
_LENGTH = struct.Struct("<Q")


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

    # The os functions are bound here: ``Pending.__del__`` may run at
    # interpreter exit, after this module's globals were cleared.
    def close(self, _close=os.close, _waitpid=os.waitpid, _kill=os.kill,
              _no_hang=os.WNOHANG, _sigkill=signal.SIGKILL) -> None:
        if self.fd >= 0:
            _close(self.fd)
            self.fd = -1
        if self.pid:
            try:
                done, _ = _waitpid(self.pid, _no_hang)
                if done == 0:
                    _kill(self.pid, _sigkill)
                    _waitpid(self.pid, 0)
            except OSError:
                pass
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
            for fd in _PARENT_ONLY:
                os.close(fd)
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


_TOKEN = struct.Struct("<IQQ")  # job index, offset and length of its bytes in a file
# Write ends of claim pipes only the process that made them may hold: a child
# forked later closes them (else a claim pipe would never reach its end).
_PARENT_ONLY: set[int] = set()


def _scratch_file() -> int:
    """A file descriptor for bytes shared with children (in memory where possible)."""
    if hasattr(os, "memfd_create"):
        try:
            return os.memfd_create("xlac-jobs", os.MFD_CLOEXEC)
        except OSError:
            pass
    import tempfile

    handle = tempfile.TemporaryFile()
    fd = os.dup(handle.fileno())
    handle.close()
    return fd


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    chunks = []
    while length:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            raise OSError("job file ended early")
        chunks.append(chunk)
        length -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class _Worker:
    """A forked child taking jobs from a ``JobStream``'s claim pipe; it writes
    each result to its own file and a token for it to its pipe."""

    def __init__(self, pid: int, fd: int, results: int):
        self.pid, self.fd, self.results = pid, fd, results
        self.tokens = b""

    def read(self) -> list[tuple[int, int, int]]:
        """Tokens (index, offset, length) of the results the child reported since
        the last read (call when its pipe is readable); at its end (the child
        exited or died) the pipe is closed and ``fd`` becomes -1."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.close()
            return []
        self.tokens += chunk
        whole = len(self.tokens) - len(self.tokens) % _TOKEN.size
        ready = [_TOKEN.unpack_from(self.tokens, at) for at in range(0, whole, _TOKEN.size)]
        self.tokens = self.tokens[whole:]
        return ready

    def close(self) -> None:
        _Child.close(self)

    def release(self) -> None:
        self.close()
        if self.results >= 0:
            os.close(self.results)
            self.results = -1


class JobStream:
    """Jobs handed over one at a time to forked children that start on them
    while this process goes on making the next ones (see [Compiling in
    forked children]).

    ``run(payload) -> bytes`` is the job, fixed when the children are forked
    (at construction); ``submit(payload)`` adds one, ``results()`` takes the
    jobs nobody has started, runs them here and returns every job's result in
    submission order. Children read payloads from a shared file and claim
    jobs through a pipe (a token per job, read atomically), so a busy child
    simply takes fewer; whatever a child fails to deliver is run here.
    """

    def __init__(self, run: Callable[[bytes], bytes], processes: int):
        self._run = run
        self._payloads: list[bytes] = []
        self._offset = 0
        self._started = time.monotonic()
        self._workers: list[_Worker] = []
        self._local: set[int] = set()  # jobs that could not be handed over
        self._done: dict[int, bytes] = {}  # results by job index
        self._file = self._claims = self._claim_write = -1
        if processes < 2:
            return
        try:
            self._file = _scratch_file()
            self._claims, self._claim_write = os.pipe()
        except OSError:
            self._close_pipes()
            return
        _PARENT_ONLY.add(self._claim_write)
        # Non-blocking for this process: once the claim pipe is empty, every
        # job has been taken (children wait for tokens with select).
        os.set_blocking(self._claims, False)
        for _ in range(processes - 1):
            worker = self._start_worker()
            if worker is not None:
                self._workers.append(worker)
        if not self._workers:
            self._close_pipes()

    def _start_worker(self) -> _Worker | None:
        try:
            results = _scratch_file()
        except OSError:
            return None
        claims, payloads, run = self._claims, self._file, self._run

        def child(write_fd: int) -> None:
            offset = 0
            while True:
                select.select([claims], [], [])
                try:
                    token = os.read(claims, _TOKEN.size)
                except BlockingIOError:  # another process took it
                    continue
                if not token:
                    return
                index, at, length = _TOKEN.unpack(token)
                data = bytes(run(_pread_all(payloads, length, at)))
                _pwrite_all(results, data, offset)
                _write_all(write_fd, _TOKEN.pack(index, offset, len(data)))
                offset += len(data)

        started = _fork_writer(child)
        if started is None:
            os.close(results)
            return None
        return _Worker(*started, results)

    @property
    def parallel(self) -> bool:
        """Whether children take part (else ``results()`` runs every job here)."""
        return bool(self._workers)

    def submit(self, payload: bytes) -> None:
        """Add a job; a child may start on it at once."""
        index = len(self._payloads)
        self._payloads.append(bytes(payload))
        if not self._workers:
            return
        try:
            _pwrite_all(self._file, payload, self._offset)
            # One token is far below PIPE_BUF: written and read whole.
            os.write(self._claim_write, _TOKEN.pack(index, self._offset, len(payload)))
        except OSError:  # the job is run here (its token never went out)
            self._local.add(index)
        self._offset += len(payload)

    def unfinished(self) -> int:
        """Jobs submitted whose results have not come back yet (queued or
        running), after taking in, without waiting, what the children sent."""
        self._collect(0.0)
        return len(self._payloads) - len(self._done)

    def _collect(self, timeout: float) -> bool:
        """Take in the results the children report within ``timeout`` seconds;
        False when no child can report any more (all have exited)."""
        waiting = {worker.fd: worker for worker in self._workers if worker.fd >= 0}
        if not waiting:
            return False
        for fd in select.select(list(waiting), [], [], max(timeout, 0.0))[0]:
            worker = waiting[fd]
            for index, at, length in worker.read():
                self._done[index] = _pread_all(worker.results, length, at)
        return True

    def results(self, *, patience: float = 3.0, grace: float = 2.0) -> list[bytes]:
        """Every job's result, in submission order. Children are awaited until
        ``patience`` times as long as this process has been busy since the
        stream began, plus ``grace`` seconds; a job a child failed (or was
        late) to deliver is run here. Exceptions come only from jobs run here."""
        done = self._done
        try:
            self._close_claim_write()
            for index in sorted(self._local):
                done[index] = self._run(self._payloads[index])
            while self._workers:
                try:
                    token = os.read(self._claims, _TOKEN.size)
                except BlockingIOError:
                    break  # every job has been taken
                if not token:
                    break
                index = _TOKEN.unpack(token)[0]
                done[index] = self._run(self._payloads[index])
            now = time.monotonic()
            deadline = now + patience * (now - self._started) + grace
            while len(done) < len(self._payloads) and time.monotonic() < deadline:
                if not self._collect(deadline - time.monotonic()):
                    break
            return [done[k] if k in done else self._run(payload)
                    for k, payload in enumerate(self._payloads)]
        finally:
            self.close()

    def _close_claim_write(self) -> None:
        if self._claim_write >= 0:
            _PARENT_ONLY.discard(self._claim_write)
            os.close(self._claim_write)
            self._claim_write = -1

    def _close_pipes(self) -> None:
        self._close_claim_write()
        for fd in (self._claims, self._file):
            if fd >= 0:
                os.close(fd)
        self._claims = self._file = -1

    def close(self) -> None:
        """Stop the children (killing any still at work) and free the pipes."""
        self._close_pipes()
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.release()

    def __del__(self):
        self.close()


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
    stream = JobStream(lambda payload: jobs[int.from_bytes(payload, "little")](), processes)
    for index in range(count):
        stream.submit(index.to_bytes(4, "little"))
    return stream.results(patience=patience, grace=grace)


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
