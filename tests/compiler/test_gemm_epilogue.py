"""The gemm_epilogue pass and its kernels: structure, and results bitwise equal
to the unfused program (the same product, then the same scalar operations)."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.backend import compile_function
from compiler.passes.gemm_epilogue import fuse_gemm_epilogues
from compiler.pipeline import PASSES, optimize
from ir import Builder, DType, TensorType, interpret, print_function
from ir.verify import verify

pytestmark = pytest.mark.llvm

F32, F64 = DType.f32, DType.f64


def _dense(m, k, n, dtype=F32, *, activation=True, also_product=False, batch=()):
    b = Builder("dense")
    x = b.param(TensorType(dtype, (*batch, m, k)))
    w = b.param(TensorType(dtype, (*batch, k, n)))
    bias = b.param(TensorType(dtype, (n,)))
    shape = [*batch, m, n]
    z = b.dot(x, w)
    y = b.add(z, b.broadcast(bias, shape=shape, dims=[len(shape) - 1]))
    if activation:
        y = b.maximum(y, b.constant(value=0.0, dtype=dtype, shape=shape))
    outs = [y, z] if also_product else [y]
    return b.finish(outs)


def _gemm_fusions(fn):
    return [e for e in fn.eqns if e.op == "fusion" and e.attrs.get("kind") == "gemm"]


def _args(fn, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape).astype(p.dtype.numpy) for p in fn.params]


def _unfused(fn):
    """``fn`` through every pass of the pipeline but gemm_epilogue."""
    for name, run in PASSES:
        if name != "gemm_epilogue":
            fn = run(fn)
            verify(fn, pass_name=name)
    return fn


@pytest.mark.parametrize("case", [
    dict(m=64, k=96, n=80), dict(m=37, k=300, n=61), dict(m=100, k=50, n=30, dtype=F64),
    dict(m=60, k=50, n=70, batch=(3,)), dict(m=50, k=70, n=90, also_product=True),
    dict(m=300, k=200, n=150), dict(m=500, k=100, n=4),
])
def test_fused_equals_unfused_bitwise(case):
    fn = _dense(**case)
    unfused = _unfused(fn)
    fused = fuse_gemm_epilogues(unfused)
    verify(fused, pass_name="gemm_epilogue")
    assert len(_gemm_fusions(fused)) == 1 and not any(e.op == "dot" for e in fused.eqns)
    args = _args(fn)
    for want, got in zip(compile_function(unfused)(*args), compile_function(fused)(*args),
                         strict=True):
        np.testing.assert_array_equal(got, want)
    for want, got in zip(interpret(unfused, args), interpret(fused, args), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_pipeline_fuses_and_the_dump_shows_it():
    fn = optimize(_dense(64, 96, 80), verify_each=True)
    text = print_function(fn)
    assert 'kind="gemm"' in text and "dot" in text


def test_a_transposed_operand_and_two_threads(monkeypatch):
    monkeypatch.setenv("XLAC_NUM_THREADS", "2")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 300)).astype(np.float32)
    w = rng.standard_normal((150, 200)).astype(np.float32)
    bias = rng.standard_normal(150).astype(np.float32)

    def layer(x, w, bias):
        return compiler.maximum(x.T @ w.T + bias, 0.0) * 0.5

    f = compiler.jit(layer)
    assert 'kind="gemm"' in f.lower(x, w, bias).as_text("optimized-ir")
    want = np.maximum(x.T.astype(np.float64) @ w.T + bias, 0) * 0.5
    bound = 2 * 200 * np.finfo(np.float32).eps * (np.abs(x.T) @ np.abs(w.T) + np.abs(bias))
    assert np.all(np.abs(np.asarray(f(x, w, bias)) - want) <= bound + 1e-30)


def test_small_products_and_non_elementwise_readers_are_left_alone():
    small = _unfused(_dense(8, 8, 8))
    assert fuse_gemm_epilogues(small) is small
    b = Builder("t")
    x = b.param(TensorType(F32, (64, 96)))
    w = b.param(TensorType(F32, (96, 64)))
    z = b.dot(x, w)
    y = b.add(b.transpose(z, perm=[1, 0]), z)  # reads the product transposed
    fn = _unfused(b.finish([y]))
    assert not _gemm_fusions(fuse_gemm_epilogues(fn))
    b = Builder("r")
    x = b.param(TensorType(F32, (64, 96)))
    w = b.param(TensorType(F32, (96, 64)))
    z = b.dot(x, w)
    fn = _unfused(b.finish([b.reduce_sum(b.exp(z), axes=[1])]))  # a reduction reads it
    assert not _gemm_fusions(fuse_gemm_epilogues(fn))


def test_a_product_read_by_two_kernels_is_not_fused():
    b = Builder("two")
    x = b.param(TensorType(F32, (64, 96)))
    w = b.param(TensorType(F32, (96, 64)))
    z = b.dot(x, w)
    fn = _unfused(b.finish([b.exp(z), b.reduce_sum(z, axes=[0])]))
    assert not _gemm_fusions(fuse_gemm_epilogues(fn))
