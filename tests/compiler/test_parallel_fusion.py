"""Large fused kernels split across threads (compiler/codegen/parallel_fusion.py):
the same results bit for bit with 1 and 2 threads, small kernels stay serial."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.codegen.fused import fusion_plan
from compiler.codegen.parallel_fusion import fusion_split
from compiler.pipeline import optimize

pytestmark = pytest.mark.llvm


def _softmax(x):
    e = compiler.exp(x - compiler.max(x, axis=1, keepdims=True))
    return e / compiler.sum(e, axis=1, keepdims=True)


def _elementwise(x, y):
    return compiler.tanh(x) * y + compiler.exp(-x * x)


def _gathered(x, y):  # a transpose: the loop nest is split along its first axis
    return compiler.transpose(x) * 2.0 + y


CASES = [(_softmax, [(1024, 600)]), (_elementwise, [(700, 600), (700, 600)]),
         (_gathered, [(520, 700), (700, 520)])]


@pytest.mark.parametrize("fn,shapes", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_one_and_two_threads_agree_bitwise(fn, shapes, monkeypatch):
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    results = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("XLAC_NUM_THREADS", threads)
        jitted = compiler.jit(fn)
        text = jitted.lower(*args).as_text("llvm")
        assert ("xlac_parallel_for" in text) == (threads == "2")
        results[threads] = np.asarray(jitted(*args))
    np.testing.assert_array_equal(results["1"], results["2"])


def test_small_kernels_stay_serial(monkeypatch):
    monkeypatch.setenv("XLAC_NUM_THREADS", "2")
    x = np.ones((64, 64), np.float32)
    traced = compiler.jit(_softmax).lower(x).function
    fused = [e for e in optimize(traced).eqns if e.body is not None]
    assert fused and all(fusion_split(e) is None for e in fused)


def _norm_backward(x, dy):
    # Row statistics, a full result, column sums (bias/gamma gradients) and a total.
    centred = x - compiler.mean(x, axis=1, keepdims=True)
    y = centred * dy
    return y, compiler.sum(y, axis=0), compiler.max(dy, axis=0), compiler.sum(y * y)


def test_sums_across_rows_split_at_block_boundaries_agree_bitwise(monkeypatch):
    # Partials per fixed block of rows, combined in block order after the join:
    # the same bits for one thread and two (and one kernel either way).
    rng = np.random.default_rng(1)
    args = [rng.standard_normal((1000, 600)).astype(np.float32) for _ in range(2)]
    results = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("XLAC_NUM_THREADS", threads)
        jitted = compiler.jit(_norm_backward)
        lowered = jitted.lower(*args)
        fused = [e for e in optimize(lowered.function).eqns if e.body is not None]
        assert len(fused) == 1
        split = fusion_split(fused[0])
        assert (split is not None) == (threads == "2")
        if split is not None:
            plan = fusion_plan(fused[0])
            assert split.per_chunk % plan.block_rows == 0 and split.chunks >= 2
        results[threads] = [np.asarray(r) for r in jitted(*args)]
    for one, two in zip(results["1"], results["2"], strict=True):
        np.testing.assert_array_equal(one, two)
    x, dy = (a.astype(np.float64) for a in args)
    y = (x - x.mean(1, keepdims=True)) * dy
    np.testing.assert_allclose(results["1"][1], y.sum(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(results["1"][2], args[1].max(0))
    np.testing.assert_allclose(results["1"][3], (y * y).sum(), rtol=1e-4)
