"""The fusion pass and fused kernels: structure (what fuses, no cycles, no duplicated
expensive work, bodies verify and round-trip), the interpreter before and after, and
fused vs unfused native code on random graphs within the documented tolerance."""

from __future__ import annotations

import re

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from compiler import functional, jit, nn
from compiler.backend import compile_function as backend_compile
from compiler.codegen import LoweringError
from compiler.codegen.fusion_plan import EXPENSIVE, NotFusible, plan_fusion
from compiler.frontend import numpy_api as fnp
from compiler.passes import explain_fusion, fuse
from compiler.passes.fuse import kernel_count
from compiler.pipeline import PASSES, optimize
from ir import (Builder, DType, TensorType, interpret, parse_function, print_function, verify)
from ir.graph import dependency_graph, topological_order

F32 = DType.f32


def unfused(fn):
    """``fn`` through the passes before fusion."""
    for name, run in PASSES:
        if name == "fuse":
            return fn
        fn = run(fn)
    raise AssertionError("the pipeline has no fuse pass")


def all_eqns(fn):
    for e in fn.eqns:
        yield e
        if e.body is not None:
            yield from all_eqns(e.body)


def elementwise(op):
    from ir import get_op
    return get_op(op).kind == "elementwise"


def check_structure(before, after):
    """The pass's postconditions (see compiler/passes/fuse.py)."""
    verify(after)
    text = print_function(after)
    assert print_function(parse_function(text)) == text
    assert nx.is_directed_acyclic_graph(dependency_graph(after))
    assert topological_order(after) == after.eqns
    for e in after.eqns:
        if e.body is not None:
            assert e.op == "fusion" and e.attrs["kind"] in ("loop", "reduce")
            assert len(e.body.eqns) >= 2
            assert all(inner.body is None for inner in e.body.eqns)
            plan_fusion(e.body.eqns, e.body.params, e.body.outputs)
    # Expensive work is never duplicated: each expensive op appears as often as before.
    for op in EXPENSIVE:
        assert sum(e.op == op for e in all_eqns(after)) <= sum(e.op == op for e in before.eqns), op
    # No fusible producer-consumer pair of primitives is left apart without a reason.
    reasons = {(d.producer.outputs, d.consumer.outputs): d.reason for d in explain_fusion(before)}
    producer = {v: e for e in after.eqns for v in e.outputs}
    for e in after.eqns:
        if e.body is None and elementwise(e.op):
            for v in e.inputs:
                p = producer.get(v)
                if p is not None and p.body is None and elementwise(p.op):
                    assert (p.outputs, e.outputs) in reasons, (p.op, e.op)


def same_interpretation(before, after, args):
    for x, y in zip(interpret(before, args), interpret(after, args), strict=True):
        np.testing.assert_array_equal(x, y)


def gelu(x):
    return 0.5 * x * (1 + fnp.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def ce_loss(logits, labels):
    return nn.cross_entropy(logits, labels)


# -- kernel counts of the benchmark workloads ----------------------------------------------

def test_gelu_is_one_vectorised_kernel():
    lowered = jit(gelu).lower(np.zeros(4096, np.float32))
    fn = unfused(lowered.function)
    fused = fuse(fn)
    check_structure(fn, fused)
    assert kernel_count(fused) == 1
    assert fused.eqns[0].op == "fusion" and fused.eqns[0].attrs["kind"] == "loop"
    x = np.linspace(-5, 5, 4096, dtype=np.float32)
    same_interpretation(fn, fused, [x])
    exe = lowered.compile()
    assert kernel_count(optimize(lowered.function)) == 1
    np.testing.assert_allclose(exe(x)[0], interpret(fn, [x])[0], rtol=1e-6, atol=1e-6)
    asm = exe.asm
    assert "%zmm" in asm or "%ymm" in asm  # the fused loop is vectorised
    kernel = asm.split("\nk0_fusion:")[1].split(".size\tk0_fusion")[0]
    assert "call" not in kernel  # no scalar libm calls left in the loop


def test_softmax_cross_entropy_forward_and_backward_is_at_most_four_kernels():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((64, 100)).astype(np.float32) * 3
    labels = rng.integers(0, 100, 64).astype(np.int32)
    step = jit(functional.value_and_grad(ce_loss))
    fn = unfused(step.lower(logits, labels).function)
    fused = fuse(fn)
    check_structure(fn, fused)
    assert kernel_count(fused) <= 4
    # The benchmark's shape (tracing and fusion only; no native code).
    big = (np.zeros((4096, 1000), np.float32), np.zeros(4096, np.int32))
    assert kernel_count(optimize(step.lower(*big).function)) <= 4
    same_interpretation(fn, fused, [logits, labels])
    loss, grad = step(logits, labels)
    shifted = logits - logits.max(1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    want_loss = np.mean(-np.log(p[np.arange(64), labels]))
    want_grad = p.copy()
    want_grad[np.arange(64), labels] -= 1
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), want_grad / 64, atol=1e-6)


def _layernorm(x):
    centred = x - fnp.mean(x, axis=-1, keepdims=True)
    variance = fnp.mean(centred * centred, axis=-1, keepdims=True)
    return centred / fnp.sqrt(variance + 1e-5)


@pytest.mark.parametrize("name, fn, kernels", [
    ("softmax", lambda x: nn.softmax(x), 1),
    ("log_softmax", lambda x: nn.log_softmax(x), 1),
    ("layernorm", lambda x: _layernorm(x), 1),
])
def test_row_reductions_and_their_consumers_fuse_into_one_kernel(name, fn, kernels):
    x = np.random.default_rng(1).standard_normal((32, 50)).astype(np.float32)
    lowered = jit(fn).lower(x)
    before = unfused(lowered.function)
    fused = fuse(before)
    check_structure(before, fused)
    assert kernel_count(fused) == kernels
    got = lowered.compile()(x)[0]
    np.testing.assert_allclose(got, interpret(before, [x])[0], rtol=2e-5, atol=1e-6)


# -- what must not fuse, or must fuse without duplication ----------------------------------

def test_an_expensive_producer_is_not_repeated_by_a_broadcast():
    b = Builder("f")
    x = b.param(TensorType(F32, (8,)))
    z = b.param(TensorType(F32, (8, 16)))
    e = b.exp(x)
    y = b.mul(b.broadcast(e, shape=[8, 16], dims=[0]), z)
    fn = b.finish([y, b.add(e, e)])
    fused = fuse(fn)
    check_structure(fn, fused)
    assert sum(eqn.op == "exp" for eqn in all_eqns(fused)) == 1
    for eqn in fused.eqns:
        if eqn.body is not None and any(i.op == "broadcast" for i in eqn.body.eqns):
            assert not any(i.op == "exp" for i in eqn.body.eqns)
    args = [np.linspace(-1, 1, 8, dtype=np.float32), np.ones((8, 16), np.float32)]
    same_interpretation(fn, fused, args)


def test_a_shared_expensive_value_becomes_a_fusion_result_not_a_copy():
    b = Builder("f")
    x = b.param(TensorType(F32, (16, 32)))
    e = b.exp(x)
    rows = b.reduce_sum(e, axes=[1])       # rows of 32
    cols = b.reduce_sum(e, axes=[0])       # columns: another loop structure
    fn = b.finish([rows, cols])
    fused = fuse(fn)
    check_structure(fn, fused)
    assert sum(eqn.op == "exp" for eqn in all_eqns(fused)) == 1


def test_cheap_producers_are_cloned_into_each_reader():
    b = Builder("f")
    x = b.param(TensorType(F32, (4, 8)))
    w = b.param(TensorType(F32, (8, 8)))
    c = b.broadcast(b.constant(2.0, "f32"), shape=[4, 8], dims=[])
    h = b.dot(b.mul(x, c), w)            # the constant feeds a fusion before the dot...
    fn = b.finish([b.add(h, c)])          # ...and one after it
    fused = fuse(fn)
    check_structure(fn, fused)
    assert [e.op for e in fused.eqns] == ["fusion", "dot", "fusion"]
    args = [np.ones((4, 8), np.float32), np.eye(8, dtype=np.float32)]
    same_interpretation(fn, fused, args)


def test_no_cycle_through_a_dot_and_the_reason_is_explained():
    b = Builder("f")
    x = b.param(TensorType(F32, (8, 8)))
    t = b.tanh(x)
    y = b.add(t, b.dot(t, x))             # tanh -> dot -> add and tanh -> add
    fn = b.finish([b.exp(y)])
    fused = fuse(fn)
    check_structure(fn, fused)
    assert [e.op for e in fused.eqns] == ["tanh", "dot", "fusion"]
    reasons = [d.reason for d in explain_fusion(fn)]
    assert any("cycle" in r for r in reasons)
    assert any("'dot' is not fusible" in r for r in reasons)
    assert "%1 = tanh" in str(explain_fusion(fn)[0])


def test_column_reduction_and_argmax_take_their_producers():
    b = Builder("f")
    x = b.param(TensorType(F32, (16, 24)))
    col = b.reduce_sum(b.mul(b.abs(x), x), axes=[0])
    arg = b.argmax(b.neg(x), axis=0)
    fn = b.finish([col, arg])
    fused = fuse(fn)
    check_structure(fn, fused)
    assert kernel_count(fused) == 2
    xs = np.random.default_rng(2).standard_normal((16, 24)).astype(np.float32)
    got = backend_compile(fused)(xs)
    np.testing.assert_allclose(got[0], (np.abs(xs) * xs).sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[1], np.argmax(-xs, axis=0))


def test_an_expensive_producer_does_not_fuse_into_an_argmax_reading_it_twice():
    b = Builder("f")
    x = b.param(TensorType(F32, (4, 32)))
    fn = b.finish([b.argmax(b.exp(x), axis=1)])
    with pytest.raises(NotFusible, match="2 times per element"):
        plan_fusion(fn.eqns, fn.params, fn.outputs)
    assert kernel_count(fuse(fn)) == 2


def test_fusion_is_idempotent_and_leaves_unfusible_programs_alone():
    b = Builder("f")
    x = b.param(TensorType(F32, (4, 4)))
    fn = b.finish([b.dot(x, x)])
    assert print_function(fuse(fn)) == print_function(fn)
    once = fuse(unfused(jit(gelu).lower(np.zeros(16, np.float32)).function))
    assert print_function(fuse(once)) == print_function(once)


def test_locations_travel_into_bodies():
    fused = optimize(jit(gelu).lower(np.zeros(16, np.float32)).function)
    body = fused.eqns[0].body
    assert all(e.loc and "test_fuse.py" in e.loc for e in body.eqns)


# -- lowering of fusions from text --------------------------------------------------------

def test_parsed_fusion_lowers_and_an_illegal_one_is_refused():
    text = """
func @f(%0: f32[4,8]) -> (f32[4,8]) {
  %1 = fusion %0 {kind="reduce"} : f32[4,8] body(%2: f32[4,8]) {
    %3 = reduce_max %2 {axes=[1]} : f32[4]
    %4 = broadcast %3 {dims=[0], shape=[4,8]} : f32[4,8]
    %5 = sub %2, %4 : f32[4,8]
    %6 = exp %5 : f32[4,8]
    return %6
  }
  return %1
}
"""
    fn = parse_function(text)
    x = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_allclose(backend_compile(fn)(x)[0], interpret(fn, [x])[0], rtol=1e-6)
    bad = text.replace("%4 = broadcast %3 {dims=[0], shape=[4,8]} : f32[4,8]",
                       "%7 = broadcast %3 {dims=[1], shape=[8,4]} : f32[8,4]\n"
                       "    %4 = transpose %7 {perm=[1,0]} : f32[4,8]")
    with pytest.raises(LoweringError, match="cannot be one kernel"):
        backend_compile(parse_function(bad))


def test_loops_with_transcendentals_are_interleaved_four_times_each_with_its_own_loop_id():
    # NOTE: [Interleaving long loop bodies] in fused.py.
    def two(x, y, z):
        return fnp.tanh(x) * 2.0, fnp.exp(y) + 1.0, z * 3.0

    arrays = [np.zeros(n, np.float32) for n in (1000, 500, 300)]
    text = jit(two).lower(*arrays).as_text("llvm")
    ids = re.findall(r"!llvm.loop (![0-9]+)", text)
    assert len(ids) == 2 and len(set(ids)) == 2  # not the cheap z * 3 loop
    option = re.search(r'(![0-9]+) = !{ !"llvm.loop.interleave.count", i32 4 }', text).group(1)
    for loop_id in ids:
        assert f"{loop_id} = !{{ {loop_id}, {option} }}" in text
    got = jit(two)(np.full(1000, 0.5, np.float32), *arrays[1:])
    np.testing.assert_allclose(np.asarray(got[0]), 2 * np.tanh(0.5), rtol=1e-6)


# -- numerics ------------------------------------------------------------------------------

def test_fused_float_sums_are_within_the_documented_reassociation_bound():
    # NOTE: [Fused reduction tolerance]: |sum - exact| <= 2 n eps sum|x|.
    rng = np.random.default_rng(4)
    x = rng.uniform(-3, 3, (3, 40000)).astype(np.float32)
    row_sums = jit(lambda v: fnp.sum(fnp.exp(v), axis=1))(x)
    total = jit(lambda v: fnp.sum(v * v))(x)
    e = np.exp(x.astype(np.float64))
    eps = np.finfo(np.float32).eps
    n = x.shape[1]
    bound = 2 * n * eps * e.sum(1) + 2 * n * eps * e.sum(1)  # sum error + each exp's 1 ulp
    assert np.all(np.abs(np.asarray(row_sums) - e.sum(1)) <= bound)
    exact = (x.astype(np.float64) ** 2).sum()
    assert abs(float(total) - exact) <= 2 * x.size * eps * exact


def test_fused_and_plain_max_min_propagate_nan_and_zeros_keep_their_value():
    # NOTE: [Reduction tolerance]: nan propagates; a zero result may carry either sign.
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 1000)).astype(np.float32)
    x[1, 999] = x[2, 0] = x[3, 517] = np.nan
    x[4] = 0.0
    x[4, ::3] = -0.0
    x[5] = -x[4]
    for ours, ref in ((fnp.max, np.max), (fnp.min, np.min)):
        plain = np.asarray(jit(lambda v: ours(v, axis=1))(x))  # a reduction kernel
        np.testing.assert_array_equal(plain, ref(x, axis=1))  # nan where numpy's; -0 == +0
        fused = np.asarray(jit(lambda v: ours(fnp.exp(v), axis=1))(x))  # in a row fusion
        np.testing.assert_allclose(fused, ref(np.exp(x), axis=1), rtol=2e-7)


UNARY = ["neg", "exp", "tanh", "abs", "logistic", "sin"]
BINARY = ["add", "sub", "mul", "maximum"]
R, C = 6, 20


@st.composite
def random_graphs(draw):
    """Random programs over f32[R,C] and its rows f32[R], columns f32[C] and scalars."""
    b = Builder("random")
    pools = {(R, C): [b.param(TensorType(F32, (R, C))), b.param(TensorType(F32, (R, C)))],
             (R,): [b.param(TensorType(F32, (R,)))], (C,): [], (): []}
    pools[(C,)].append(b.constant(np.linspace(-1, 1, C, dtype=np.float32), "f32"))
    for _ in range(draw(st.integers(2, 14))):
        kind = draw(st.sampled_from(["unary", "binary", "binary", "row", "col", "bcast", "select",
                                     "iota", "transpose", "argmax", "scalar", "diamond",
                                     "diamond", "pad", "concat"]))
        full = pools[(R, C)]
        pick = lambda pool: draw(st.sampled_from(pool))  # noqa: E731
        if kind == "unary":
            shape = draw(st.sampled_from([s for s, p in pools.items() if p]))
            pools[shape].append(b.emit(draw(st.sampled_from(UNARY)), [pick(pools[shape])])[0])
        elif kind == "binary":
            shape = draw(st.sampled_from([s for s, p in pools.items() if p]))
            op = draw(st.sampled_from(BINARY))
            pools[shape].append(b.emit(op, [pick(pools[shape]), pick(pools[shape])])[0])
        elif kind == "row":
            op = draw(st.sampled_from(["reduce_sum", "reduce_max", "reduce_min"]))
            pools[(R,)].append(b.emit(op, [pick(full)], {"axes": [1]})[0])
        elif kind == "col":
            pools[(C,)].append(b.reduce_sum(pick(full), axes=[0]))
        elif kind == "bcast":
            source = draw(st.sampled_from([s for s in [(R,), (C,), ()] if pools[s]]))
            dims = {(R,): [0], (C,): [1], (): []}[source]
            full.append(b.broadcast(pick(pools[source]), shape=[R, C], dims=dims))
        elif kind == "select":
            x, y = pick(full), pick(full)
            full.append(b.select(b.compare(x, y, "gt"), x, b.neg(y)))
        elif kind == "iota":
            full.append(b.cast(b.iota([R, C], 1, DType.i32), "f32"))
        elif kind == "transpose":
            t = b.transpose(b.reshape(pick(full), shape=[C, R]), perm=[1, 0])
            full.append(b.reshape(t, shape=[R, C]))
        elif kind == "diamond":  # x op broadcast(reduce(x)): what softmax & co. are made of
            x = pick(full)
            op = draw(st.sampled_from(["reduce_sum", "reduce_max"]))
            r = b.broadcast(b.emit(op, [x], {"axes": [1]})[0], shape=[R, C], dims=[0])
            full.append(b.emit(draw(st.sampled_from(BINARY)), [x, r])[0])
        elif kind == "pad":  # a shifted copy with zeros at the border
            cut = b.slice(pick(full), start=[1, 0], stop=[R, C - 2], step=[1, 1])
            full.append(b.pad(cut, low=[0, 1], high=[1, 1], interior=[0, 0]))
        elif kind == "concat":
            half = C // 2
            left = b.slice(pick(full), start=[0, 0], stop=[R, half], step=[1, 1])
            right = b.slice(pick(full), start=[0, half], stop=[R, C], step=[1, 1])
            full.append(b.concat(right, left, axis=1))
        elif kind == "argmax":
            pools[(R,)].append(b.cast(b.argmax(pick(full), axis=1), "f32"))
        else:
            pools[()].append(b.reduce_sum(pick(full), axes=[0, 1]))
    candidates = [v for pool in pools.values() for v in pool[1:]] + pools[(R, C)][2:]
    outputs = draw(st.lists(st.sampled_from(candidates or pools[(R, C)]), min_size=1, max_size=3))
    return b.finish(outputs)


@pytest.mark.llvm
@settings(max_examples=25, deadline=None)
@given(random_graphs(), st.integers(0, 2**31 - 1))
def test_fused_and_unfused_programs_agree_on_random_graphs(fn, seed):
    before = unfused(fn)
    after = fuse(before)
    check_structure(before, after)
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-1, 1, p.shape).astype(np.float32) for p in fn.params]
    same_interpretation(before, after, args)
    want = backend_compile(before)(*args)
    got = backend_compile(after)(*args)
    for w, g in zip(want, got, strict=True):
        scale = 1 + np.nanmax(np.abs(np.where(np.isfinite(w), w, 0)))
        # Fused and unfused float sums may add in different orders ([Fused reduction tolerance]).
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * R * C * scale)


# -- reductions across rows (column sums and totals in a row fusion) ---------------------

def _layernorm_step(x, gamma, beta, dy):
    """Layernorm forward and backward as a training step has it: y, the loss
    sum(y * dy), and the gradients of x, gamma and beta (column sums)."""
    def loss(x, gamma, beta):
        y = _layernorm(x) * gamma + beta
        return fnp.sum(y * dy), y
    (total, y), grads = functional.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        x, gamma, beta)
    return (y, total, *grads)


def _bias_relu_step(x, bias, dy):
    def loss(x, bias):
        y = nn.relu(x + bias)
        return fnp.sum(y * dy), y
    (total, y), grads = functional.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, bias)
    return (y, total, *grads)


def _sum_bound(terms):
    """NOTE: [Fused reduction tolerance]: 2 n eps sum|x| over the summed axis."""
    eps = np.finfo(np.float32).eps
    return 2 * terms.shape[0] * eps * np.abs(terms).sum(0) + 1e-30


@pytest.mark.parametrize("step, shapes", [
    (_layernorm_step, [(64, 48), (48,), (48,), (64, 48)]),
    (_bias_relu_step, [(64, 48), (48,), (64, 48)]),
], ids=["layernorm", "bias_relu"])
def test_forward_backward_with_column_sums_is_one_kernel(step, shapes):
    # The bias/gamma gradients (sums over axis 0) and the loss (a total) accumulate
    # across the rows of the row fusion: x and dy are read once.
    rng = np.random.default_rng(7)
    args = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    lowered = jit(step).lower(*args)
    before = unfused(lowered.function)
    fused = fuse(before)
    check_structure(before, fused)
    assert kernel_count(fused) == 1
    same_interpretation(before, fused, args)
    # The benchmark's shapes (tracing and fusion only).
    big = [np.zeros((4096, 1024) if len(s) == 2 else (1024,), np.float32) for s in shapes]
    assert kernel_count(optimize(jit(step).lower(*big).function)) == 1
    got = lowered.compile()(*args)
    want = interpret(before, args)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4)


def test_column_sums_and_totals_are_within_the_reassociation_bound():
    rng = np.random.default_rng(8)
    x = rng.uniform(-3, 3, (3000, 40)).astype(np.float32)
    fn = jit(lambda v: (fnp.sum(fnp.exp(v), axis=0), fnp.sum(v * v), fnp.max(v, axis=1)))
    assert kernel_count(optimize(fn.lower(x).function)) == 1
    cols, total, rows = fn(x)
    e = np.exp(x.astype(np.float64))
    np.testing.assert_array_equal(np.asarray(rows), x.max(1))
    assert np.all(np.abs(np.asarray(cols) - e.sum(0)) <= 2 * _sum_bound(e))
    squares = (x.astype(np.float64) ** 2).ravel()
    assert abs(float(total) - squares.sum()) <= _sum_bound(squares[:, None])[0]


def test_results_computed_from_column_sums_run_after_the_last_row():
    # mean over axis 0 (a division after the column sum), a mean of all elements
    # and a max of row values, beside row sums: one kernel, the epilogue per column.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((300, 70)).astype(np.float32)

    def f(v):
        return (fnp.mean(v * v, axis=0) + 1.0, fnp.mean(fnp.exp(v)),
                fnp.max(fnp.sum(v, axis=1)), fnp.sum(v, axis=1))

    lowered = jit(f).lower(x)
    before = unfused(lowered.function)
    fused = fuse(before)
    check_structure(before, fused)
    assert kernel_count(fused) == 1
    for g, w in zip(lowered.compile()(x), interpret(before, [x]), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_a_column_sum_read_inside_its_fusion_is_refused():
    # Known only after the last row: nothing per row or per element may read it.
    b = Builder("f")
    x = b.param(TensorType(F32, (16, 24)))
    col = b.reduce_sum(x, axes=[0])
    spread = b.broadcast(col, shape=[16, 24], dims=[1])
    fn = b.finish([b.reduce_sum(b.mul(x, spread), axes=[1])])
    with pytest.raises(NotFusible, match="across rows"):
        plan_fusion(fn.eqns, fn.params, fn.outputs)
    fused = fuse(fn)
    check_structure(fn, fused)
    assert kernel_count(fused) == 2
    xs = np.random.default_rng(3).standard_normal((16, 24)).astype(np.float32)
    np.testing.assert_allclose(backend_compile(fused)(xs)[0], (xs * xs.sum(0)).sum(1),
                               rtol=1e-4, atol=1e-4)


def test_column_accumulation_is_vectorised(monkeypatch):
    monkeypatch.setenv("XLAC_NUM_THREADS", "1")
    rng = np.random.default_rng(10)
    args = [rng.standard_normal(s).astype(np.float32) for s in [(64, 256), (256,), (64, 256)]]
    text = jit(_bias_relu_step).lower(*args).as_text("optimized-llvm")
    kernel = re.split(r"define[^\n]*@k0_fusion\(", text)[1].split("\n}\n")[0]
    # The partial column sums: vector loads, a reassociable vector add and a vector store.
    assert re.search(r"fadd reassoc <(8|16) x float>", kernel)
    assert re.search(r"store <(8|16) x float>", kernel)
