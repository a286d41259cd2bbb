"""Memory planning: arena reuse by liveness, in-place results, no overlap between
buffers live at the same time, the printed plan, and no allocation per call."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from compiler.codegen.fused import inplace_pairs
from compiler.codegen.kernels import scratch_bytes
from compiler.codegen.lower import plan_program
from compiler.codegen.memory import ARENA_ALIGNMENT, assign_arena_offsets, plan_memory
from compiler.pipeline import compile_function, optimize
from ir import Builder, DType, TensorType, interpret

F32 = DType.f32


def chain(layers: int = 4, n: int = 32):
    """tanh(h + x) @ w, repeated: fusions between dots, each intermediate dies soon."""
    b = Builder("chain")
    t = TensorType(F32, (n, n))
    x, w = b.param(t), b.param(t)
    h = x
    for _ in range(layers):
        h = b.dot(b.tanh(b.add(h, x)), w)
    return b.finish([h])


def check_no_overlap(plan):
    """Buffers live during a common equation never share a byte; offsets are aligned."""
    for buffer in plan.buffers:
        assert buffer.offset % ARENA_ALIGNMENT == 0
        assert buffer.offset + buffer.nbytes <= plan.arena_bytes
    for i, a in enumerate(plan.buffers):
        for b in plan.buffers[i + 1:]:
            live_together = a.first <= b.last and b.first <= a.last
            disjoint = a.offset + a.padded <= b.offset or b.offset + b.padded <= a.offset
            assert disjoint or not live_together, (a, b)


def test_arena_is_reused_and_results_take_over_dying_operands():
    fn = optimize(chain())
    prepared, _, plan = plan_program(fn)
    check_no_overlap(plan)
    values = [o for b in plan.buffers for o in b.owners if not hasattr(o, "op")]
    assert plan.arena_bytes < plan.unshared_bytes
    assert plan.arena_bytes < sum(v.type.nbytes for v in values)
    assert plan.inplace, "a fusion after a dot writes over the dot's dying result"
    for eqn, pairs in plan.inplace.items():
        for k, j in pairs:
            assert plan.locations[eqn.outputs[k]] == plan.locations[eqn.inputs[j]]
    exe = compile_function(chain())
    rng = np.random.default_rng(0)
    x, w = (rng.standard_normal((32, 32)).astype(np.float32) * 0.2 for _ in range(2))
    np.testing.assert_allclose(exe(x, w)[0], interpret(chain(), [x, w])[0], rtol=1e-4, atol=1e-5)


def test_printed_plan_names_buffers_offsets_and_peak():
    exe = compile_function(chain())
    text = exe.memory_plan
    assert text.startswith("memory plan of @chain")
    assert f"arena: {exe.arena_bytes} bytes peak" in text
    assert "(in place)" in text and "without reuse" in text
    assert "parameters: %0 -> argument 0, %1 -> argument 1" in text
    assert "scratch of eqn" in text or "dot" not in text


def test_an_operand_read_later_or_through_an_index_map_is_not_overwritten():
    b = Builder("f")
    t = TensorType(F32, (8, 8))
    x, w = b.param(t), b.param(t)
    h = b.dot(x, w)                                      # arena value
    y = b.exp(b.add(h, b.transpose(h, perm=[1, 0])))     # reads h transposed: not in place
    z = b.dot(y, w)
    u = b.tanh(z)                                        # z dies here: in place is fine
    fn = b.finish([b.dot(u, w)])
    fused = optimize(fn)
    _, _, plan = plan_program(fused)
    check_no_overlap(plan)
    for eqn, pairs in plan.inplace.items():
        for k, j in pairs:
            assert (k, j) in inplace_pairs(eqn)
    transposing = next(e for e in fused.eqns if e.body is not None
                       and any(i.op == "transpose" for i in e.body.eqns))
    assert inplace_pairs(transposing) == []
    xs = np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32) * 0.3
    ws = np.eye(8, dtype=np.float32)
    np.testing.assert_allclose(compile_function(fn)(xs, ws)[0], interpret(fn, [xs, ws])[0],
                               rtol=1e-4, atol=1e-5)


def test_row_fusion_in_place_only_when_the_operand_is_not_read_after_the_store():
    b = Builder("f")
    t = TensorType(F32, (4, 16))
    x, w = b.param(t), b.param(TensorType(F32, (16, 16)))
    h = b.dot(x, w)
    m = b.broadcast(b.reduce_max(h, axes=[1]), shape=[4, 16], dims=[0])
    e = b.exp(b.sub(h, m))                                # h read in loops 1 and 2
    s = b.broadcast(b.reduce_sum(e, axes=[1]), shape=[4, 16], dims=[0])
    fn = b.finish([b.dot(b.div(e, s), w)])                # softmax(h) stored in loop 3
    fused = optimize(fn)
    softmax = next(e for e in fused.eqns if e.body is not None)
    assert softmax.attrs["kind"] == "reduce"
    assert inplace_pairs(softmax) == [(0, 0)]             # h's last read is in the store loop
    xs = np.random.default_rng(2).standard_normal((4, 16)).astype(np.float32)
    ws = np.random.default_rng(3).standard_normal((16, 16)).astype(np.float32) * 0.3
    np.testing.assert_allclose(compile_function(fn)(xs, ws)[0], interpret(fn, [xs, ws])[0],
                               rtol=1e-4, atol=1e-5)


def test_no_allocation_per_call_beyond_the_results():
    exe = compile_function(chain(layers=3, n=64))
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2)]
    exe(*args)
    tracemalloc.start()
    try:
        for _ in range(5):
            before = tracemalloc.get_traced_memory()[0]
            results = exe(*args)
            grown = tracemalloc.get_traced_memory()[0] - before
            assert grown <= sum(r.nbytes for r in results) + 1024  # the results, a list
            del results
    finally:
        tracemalloc.stop()
    assert exe.arena_bytes > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 20), st.integers(0, 6)),
                min_size=1, max_size=30))
def test_assign_arena_offsets_never_overlaps_live_blocks(blocks):
    sizes = [size for size, _, _ in blocks]
    lifetimes = [(start, start + length) for _, start, length in blocks]
    offsets, total = assign_arena_offsets(sizes, lifetimes)
    padded = [-(-s // ARENA_ALIGNMENT) * ARENA_ALIGNMENT for s in sizes]
    assert total == max(o + p for o, p in zip(offsets, padded, strict=True))
    assert total <= sum(padded)
    for i in range(len(sizes)):
        assert offsets[i] % ARENA_ALIGNMENT == 0
        for j in range(i + 1, len(sizes)):
            overlap_time = lifetimes[i][0] <= lifetimes[j][1] and lifetimes[j][0] <= lifetimes[i][1]
            overlap_space = (offsets[i] < offsets[j] + padded[j]
                             and offsets[j] < offsets[i] + padded[i])
            assert not (overlap_time and overlap_space and padded[i] and padded[j])


def test_without_lifetimes_blocks_are_disjoint():
    offsets, total = assign_arena_offsets([10, 100, 64])
    assert total == 64 + 128 + 64 and len(set(offsets)) == 3


@pytest.mark.parametrize("inplace", [None, inplace_pairs])
def test_plan_memory_locates_every_value(inplace):
    fn = optimize(chain(layers=2))
    plan = plan_memory(fn, scratch_bytes, inplace)
    for eqn in fn.eqns:
        for v in (*eqn.inputs, *eqn.outputs):
            assert v in plan.locations
    if inplace is None:
        assert not plan.inplace
    check_no_overlap(plan)
