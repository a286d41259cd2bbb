"""Exhaustive accuracy of the f32 vector transcendentals: all 2^32 inputs.

    python benchmarks/vmath/check_exhaustive.py [op ...]   # default: every unary f32 op

Compiles each op over chunks of 2^22 floats (through backend.compile_function,
the code the pipeline runs) and compares every result with float64 numpy
rounded to float32. Prints, per op: the max distance in ulps from that
correctly rounded value, how many results are 1 or more ulp away, the max
error against the float64 value itself (in ulps of the result), and any
nan/inf/zero-sign mismatch. A run takes minutes per op (sin/cos longer: numpy's
float64 sin of huge arguments is slow). Not part of the test suite;
tests/compiler/test_vmath.py quotes its results.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from compiler.backend import compile_function
from ir import Builder, TensorType

CHUNK = 1 << 22


def _logistic(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


REFERENCE = {"exp": np.exp, "log": np.log, "expm1": np.expm1, "log1p": np.log1p,
             "tanh": np.tanh, "logistic": _logistic, "sin": np.sin, "cos": np.cos}


def _ordered(a: np.ndarray) -> np.ndarray:
    bits = a.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _check(op: str) -> str:
    b = Builder(op)
    x_param = b.param(TensorType("f32", (CHUNK,)))
    exe = compile_function(b.finish([getattr(b, op)(x_param)]))
    worst, worst_x, off, mismatches, worst_exact = 0, None, 0, 0, 0.0
    start = time.perf_counter()
    for first in range(0, 1 << 32, CHUNK):
        x = np.arange(first, first + CHUNK, dtype=np.uint64).astype(np.uint32).view(np.float32)
        got = exe(x)[0]
        with np.errstate(all="ignore"):
            exact = REFERENCE[op](x.astype(np.float64))
            want = exact.astype(np.float32)
        nan_got, nan_want = np.isnan(got), np.isnan(want)
        zero = want == 0
        mismatches += int(np.count_nonzero(nan_got != nan_want))
        mismatches += int(np.count_nonzero(zero & (np.signbit(got) != np.signbit(want))))
        ok = ~nan_got & ~nan_want
        distance = np.abs(_ordered(got[ok]) - _ordered(want[ok]))
        off += int(np.count_nonzero(distance >= 1))
        if distance.size == 0:  # a chunk of nan bit patterns
            continue
        i = int(np.argmax(distance))
        if distance[i] > worst:
            worst, worst_x = int(distance[i]), x[ok][i]
        finite = ok & np.isfinite(want) & np.isfinite(got)
        w = want[finite]
        ulp = np.spacing(np.maximum(np.abs(w), np.finfo(np.float32).tiny)).astype(np.float64)
        error = np.abs(got[finite].astype(np.float64) - exact[finite]) / ulp
        worst_exact = max(worst_exact, float(error.max(initial=0.0)))
    seconds = time.perf_counter() - start
    return (f"{op:9s} max {worst} ulp (at x={worst_x!r}); {off} results >= 1 ulp off "
            f"({off / 2**32:.2e}); max error vs exact {worst_exact:.3f} ulp; "
            f"{mismatches} nan/zero-sign mismatches; {seconds:.0f} s")


def main(ops):
    for op in ops or list(REFERENCE):
        print(_check(op), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
