"""Side-by-side timing for the benchmarks: medians of repeated runs, in one process.

Every contender of a workload runs interleaved round by round (so a noisy
neighbour slows all of them alike), and results print as medians with ratios to
a baseline. JAX and PyTorch are optional: ``optional_jax()`` / ``optional_torch()``
return the module or None.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Contender", "measure", "measure_isolated", "serve", "report", "optional_jax",
           "optional_torch", "set_threads"]


@dataclass
class Contender:
    name: str
    run: Callable[[], object]          # one call of the workload; must block until done
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def measure(contenders: list[Contender], *, rounds: int = 15, warmup: int = 3,
            min_seconds: float = 0.02, settle: float = 0.0) -> list[Contender]:
    """Median seconds per call of each contender, rounds interleaved.

    Each sample averages enough back-to-back calls to last ``min_seconds``.
    ``settle`` seconds of sleep before each sample let the previous
    contender's idle worker threads stop spinning (OpenBLAS, OpenMP and XLA
    pools spin for milliseconds after a call and would slow the next one).
    """
    for c in contenders:
        for _ in range(warmup):
            c.run()
    inner = {}
    for c in contenders:
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < min_seconds or n == 0:
            c.run()
            n += 1
        inner[c.name] = n
    for _ in range(rounds):
        for c in contenders:
            n = inner[c.name]
            if settle:
                time.sleep(settle)
            start = time.perf_counter()
            for _ in range(n):
                c.run()
            c.samples.append((time.perf_counter() - start) / n)
    return contenders


def measure_isolated(commands: dict[str, list[str]], *, rounds: int = 15, warmup: int = 3,
                     min_seconds: float = 0.02, settle: float = 0.1) -> list[Contender]:
    """Like ``measure``, but each contender runs in a process of its own.

    ``commands`` maps a contender's name to the argv of a child that calls
    ``serve``. Rounds stay interleaved (the parent asks each child in turn for
    one sample), but no library shares a process with another: in one process,
    OpenBLAS, OpenMP and XLA each keep a pool of worker threads, and with more
    pool threads than cores they preempt one another, which made every
    contender slower than it is alone.
    """
    children = {name: subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, bufsize=1)
                for name, argv in commands.items()}
    contenders = [Contender(name, run=None) for name in commands]

    def ask(name: str, request: str) -> float:
        child = children[name]
        child.stdin.write(request + "\n")
        child.stdin.flush()
        answer = child.stdout.readline()
        if not answer:
            raise SystemExit(f"benchmark child {name!r} died (its stderr is above)")
        return float(answer)

    try:
        inner = {}
        for c in contenders:
            ask(c.name, f"run {warmup}")
            n, seconds = 1, ask(c.name, "run 1")
            while seconds < min_seconds:
                n *= 2
                seconds = ask(c.name, f"run {n}")
            inner[c.name] = n
        for _ in range(rounds):
            for c in contenders:
                time.sleep(settle)
                c.samples.append(ask(c.name, f"run {inner[c.name]}") / inner[c.name])
    finally:
        for child in children.values():
            child.stdin.close()
            child.wait(timeout=60)
    return contenders


def serve(run: Callable[[], object], untimed: int = 2) -> None:
    """The child's side of ``measure_isolated``: answer ``run N`` with the seconds
    N back-to-back calls of ``run`` took, until stdin closes. ``untimed`` calls
    go first: after the settle sleep, worker pools have gone to sleep, and a
    training loop calls its step back to back, not after a pause."""
    for line in sys.stdin:
        n = int(line.split()[1])
        for _ in range(untimed):
            run()
        start = time.perf_counter()
        for _ in range(n):
            run()
        print(time.perf_counter() - start, flush=True)


def report(title: str, contenders: list[Contender], baseline: str, extra: Callable[[Contender], str] | None = None) -> str:
    """A table of medians and ratios to ``baseline`` (time / baseline time)."""
    base = next(c for c in contenders if c.name == baseline).median
    lines = [title, f"  {'contender':<28} {'median':>12} {'vs ' + baseline:>14}"]
    for c in contenders:
        note = f"  {extra(c)}" if extra else ""
        lines.append(f"  {c.name:<28} {_fmt(c.median):>12} {c.median / base:13.2f}x{note}")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds:.3f} s"


def optional_jax():
    try:
        import jax

        jax.config.update("jax_platforms", "cpu")
        return jax
    except Exception:
        return None


def optional_torch():
    try:
        import torch

        return torch
    except Exception:
        return None


def set_threads(n: int) -> None:
    """Ask every library in this process for ``n`` threads (where it can still change)."""
    os.environ["XLAC_NUM_THREADS"] = str(n)
    torch = optional_torch()
    if torch is not None:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except Exception:
        pass
