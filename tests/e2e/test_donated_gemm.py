"""Donated weights updated in a GEMM's epilogue, with no copy ([Epilogue in place]
in compiler/codegen/gemm_fusion.py, [Staged tiles] in gemm.py): results bitwise
equal to the same program without donation; every other case keeps its copy."""

from __future__ import annotations

import numpy as np
import pytest

from compiler import functional, jit, nn
from compiler.backend import compile_function
from compiler.codegen.donation import place_donated_results
from compiler.codegen.dot import dot_plan
from compiler.codegen.fused import epilogue_results, inplace_pairs
from compiler.codegen.gemm_fusion import _dot_of, is_gemm_fusion
from compiler.pipeline import optimize
from ir import Builder, DType, TensorType

pytestmark = pytest.mark.llvm

F32, F64 = DType.f32, DType.f64


@pytest.fixture
def threads(request, monkeypatch):
    import compiler.codegen.dot as dot_module

    monkeypatch.setenv("XLAC_NUM_THREADS", request.param)
    dot_module._plan.cache_clear()
    yield int(request.param)
    dot_module._plan.cache_clear()


def _mlp_step(params, x, labels):
    def loss_fn(params, x, labels):
        h = nn.relu(x @ params["W1"] + params["b1"])
        h = nn.relu(h @ params["W2"] + params["b2"])
        return nn.cross_entropy(h @ params["W3"] + params["b3"], labels)

    loss, grads = functional.value_and_grad(loss_fn)(params, x, labels)
    return {k: params[k] - 0.01 * grads[k] for k in params}, loss


def _problem(sizes, batch, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = {}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), 1):
        params[f"W{i}"] = (rng.standard_normal((m, n)) * np.sqrt(2.0 / m)).astype(dtype)
        params[f"b{i}"] = np.zeros(n, dtype)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], batch).astype(np.int32)
    return params, x, labels


def _weight_updates(fn):
    """The gemm fusions of ``fn`` computing a result, with their plans."""
    results = set(fn.outputs)
    return [(e, dot_plan(_dot_of(e))) for e in fn.eqns
            if is_gemm_fusion(e) and e.outputs[0] in results]


# W4's shapes (f32: k = batch = 256, one k block); f64 with a batch small enough
# for one k block (W4's own batch gives f64 two: that case refuses, see below).
@pytest.mark.parametrize("threads", ["1", "2"], indirect=True)
@pytest.mark.parametrize("sizes, batch, dtype", [((784, 512, 512, 10), 256, np.float32),
                                                 ((256, 192, 192, 16), 96, np.float64)],
                         ids=["w4-f32", "f64"])
def test_donated_mlp_step_updates_weights_in_place_bitwise(threads, sizes, batch, dtype):
    params, x, labels = _problem(sizes, batch, dtype)
    donated, plain = jit(_mlp_step, donate_argnums=0), jit(_mlp_step)

    fn = optimize(plain.lower(params, x, labels).function)
    updates = _weight_updates(fn)
    assert len(updates) == 3
    variants = {(p.threads, p.split, p.pack_a, p.pack_b, p.nr) for _, p in updates}
    if threads == 2 and dtype is np.float32:  # W4: rows shared, B packed and in place
        assert {(2, "rows", True, False, 32), (2, "rows", False, True, 16)} <= variants
    for eqn, plan in updates:
        assert plan.kc >= plan.shape.k and (0, 2) in inplace_pairs(eqn)
    # The donated weights come straight out of their GEMMs, the biases out of
    # the epilogues of the fusions summing their gradients: no copy equation.
    pairs = {j: i for j, i in enumerate(range(len(fn.params))) if j < len(fn.outputs) - 1}
    donation = {j: i for j, i in pairs.items() if fn.outputs[j].type == fn.params[i].type}
    assert len(donation) == 6
    placed, _ = place_donated_results(fn, donation)
    assert [e.op for e in placed.eqns if e not in fn.eqns] == []
    weights = [j for j, v in enumerate(fn.outputs) if len(v.type.shape) == 2]
    assert len(weights) == 3
    producer = {v: e for e in placed.eqns for v in e.outputs}
    for j in weights:
        assert is_gemm_fusion(producer[placed.outputs[j]]), placed.outputs[j]
    for j in set(donation) - set(weights):  # the biases
        eqn = producer[placed.outputs[j]]
        assert len(eqn.outputs) > 1 and eqn.outputs.index(placed.outputs[j]) in \
            epilogue_results(eqn)

    mine = {k: v.copy() for k, v in params.items()}
    theirs = {k: v.copy() for k, v in params.items()}
    for _ in range(3):
        theirs, want_loss = plain(theirs, x, labels)
        mine, loss = donated(mine, x, labels)
        np.testing.assert_array_equal(np.asarray(loss), np.asarray(want_loss))
        for k in params:
            np.testing.assert_array_equal(np.asarray(mine[k]), np.asarray(theirs[k]))
    theirs = {k: np.asarray(v, np.float64) for k, v in theirs.items()}
    assert not np.allclose(theirs["W2"], params["W2"])  # the weights did move


def _update(k, *, read=lambda b, w: w, m=96, n=80, dtype=F32):
    """W - 0.01 * x^T dz: the weight-gradient GEMM with the SGD update, W read
    through ``read`` (aligned by default)."""
    b = Builder("update")
    x = b.param(TensorType(dtype, (k, m)))
    dz = b.param(TensorType(dtype, (k, n)))
    w = b.param(TensorType(dtype, (m, n)))
    product = b.dot(x, dz, transpose_lhs=True)
    step = b.mul(product, b.constant(value=0.01, dtype=dtype, shape=[m, n]))
    return b.finish([b.sub(read(b, w), step)])


def _aligned(b, w):
    return w


def _run_donated_and_plain(fn, seed=0):
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(p.shape).astype(p.dtype.numpy) for p in fn.params]
    want = compile_function(fn)(*args)[0]
    w = args[2].copy()
    got = compile_function(fn, donated={0: 2})(args[0], args[1], w)[0]
    np.testing.assert_array_equal(got, want)
    x, dz, w0 = (a.astype(np.float64) for a in args)
    return got, x, dz, w0


def _copies(fn) -> list[str]:
    fused = optimize(fn)
    placed, _ = place_donated_results(fused, {0: 2})
    return [e.op for e in placed.eqns if e not in fused.eqns]


@pytest.mark.parametrize("threads", ["1", "2"], indirect=True)
@pytest.mark.parametrize("k, dtype, in_place", [(256, F32, True), (1200, F32, False),
                                                (128, F64, True), (400, F64, False)])
def test_one_k_block_is_in_place_and_several_copy(threads, k, dtype, in_place):
    fn = _update(k, read=_aligned, m=300, n=150, dtype=dtype)
    fused = optimize(fn)
    (eqn,) = [e for e in fused.eqns if is_gemm_fusion(e)]
    plan = dot_plan(_dot_of(eqn))
    assert (plan.kc >= k) == in_place
    assert (inplace_pairs(eqn) == [(0, 2)]) == in_place
    assert _copies(fn) == ([] if in_place else ["reshape"])
    got, x, dz, w = _run_donated_and_plain(fn)
    want = w - 0.01 * (x.T @ dz)
    eps = np.finfo(dtype.numpy).eps
    bound = 2 * k * eps * (np.abs(x.T) @ np.abs(dz)) * 0.01 + 2 * eps * np.abs(want)
    assert np.all(np.abs(got - want) <= bound + 1e-30)


@pytest.mark.parametrize("read, read_numpy", [
    (lambda b, w: b.transpose(w, perm=[1, 0]), lambda w: w.T),
    (lambda b, w: b.broadcast(b.reduce_sum(w, axes=[0]), shape=[96, 96], dims=[1]),
     lambda w: np.broadcast_to(w.sum(axis=0), w.shape)),
], ids=["transposed", "broadcast"])
def test_an_epilogue_reading_the_weight_through_an_index_map_refuses(read, read_numpy):
    fn = _update(256, read=read, m=96, n=96)
    fused = optimize(fn)
    assert any(is_gemm_fusion(e) for e in fused.eqns)
    for eqn in fused.eqns:
        if is_gemm_fusion(eqn):
            assert inplace_pairs(eqn) == []
    assert _copies(fn) == ["reshape"]
    got, x, dz, w = _run_donated_and_plain(fn)
    np.testing.assert_allclose(got, read_numpy(w) - 0.01 * (x.T @ dz), rtol=1e-4, atol=1e-4)
