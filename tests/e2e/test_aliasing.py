"""Adversarial aliasing: results written over dying operands (memory plan), over
donated parameters (donation), by multi-result fusions, on one and two threads.

Kernels take every pointer ``noalias``; a result may share an operand's buffer
only when the store depends on the load of that operand at the same position
(NOTE: [In-place results] in compiler/codegen/memory.py). These tests build
programs where a wrong choice would read overwritten data, and compare the
native results with the reference interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from compiler import jit
from compiler.backend import compile_function as backend_compile
from compiler.codegen.fused import inplace_pairs
from compiler.codegen.lower import plan_program
from compiler.codegen.memory import ARENA_ALIGNMENT
from compiler.pipeline import compile_function, optimize
from ir import Builder, DType, TensorType, interpret, parse_function
from runtime.errors import ArgumentError

pytestmark = pytest.mark.llvm

F32 = DType.f32


def _check_plan(fn):
    """The memory plan of optimised ``fn``: in-place pairs are ones the kernel
    allows, and buffers live at the same time never overlap. Returns the
    function as lowered and its plan."""
    prepared, _, plan = plan_program(fn)
    for eqn, pairs in plan.inplace.items():
        allowed = inplace_pairs(eqn)
        for k, j in pairs:
            assert (k, j) in allowed
            assert plan.locations[eqn.outputs[k]] == plan.locations[eqn.inputs[j]]
    for i, a in enumerate(plan.buffers):
        assert a.offset % ARENA_ALIGNMENT == 0
        for b in plan.buffers[i + 1:]:
            live_together = a.first <= b.last and b.first <= a.last
            disjoint = a.offset + a.padded <= b.offset or b.offset + b.padded <= a.offset
            assert disjoint or not live_together, (a, b)
    return prepared, plan


def _assert_matches(got, want, rtol=2e-4, atol=1e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = 1 + (np.nanmax(np.abs(np.where(np.isfinite(w), w, 0))) if w.size else 0)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale, equal_nan=True)


# -- hand-written fusions: what may (not) be overwritten ----------------------------------

_MOMENTUM = """
func @f(%0: f32[N], %1: f32[N], %2: f32[N]) -> (f32[N], f32[N]) {
  %3 = neg %0 : f32[N]
  %4 = neg %1 : f32[N]
  %5, %6 = fusion %3, %4, %2 {kind="loop"} : f32[N], f32[N] body(%7: f32[N], %8: f32[N], %9: f32[N]) {
    %10 = constant {value=0.9, dtype=f32, shape=[N]} : f32[N]
    %11 = mul %10, %8 : f32[N]
    %12 = add %11, %9 : f32[N]
    %13 = constant {value=0.1, dtype=f32, shape=[N]} : f32[N]
    %14 = mul %13, %12 : f32[N]
    %15 = sub %7, %14 : f32[N]
    return %12, %15
  }
  %16 = neg %5 : f32[N]
  %17 = neg %6 : f32[N]
  return %16, %17
}
"""


@pytest.mark.parametrize("n", [7, 4096, 1 << 18])
def test_a_result_overwrites_only_an_operand_its_store_depends_on(n):
    # Results (v', p') of one kernel; p (operand 0) feeds only p'. Writing v' over p
    # would let LLVM (noalias) load p after v' was stored there.
    fn = parse_function(_MOMENTUM.replace("N", str(n)))
    fusion = fn.eqns[2]
    assert (0, 0) not in inplace_pairs(fusion)
    assert {(0, 1), (1, 0)} <= set(inplace_pairs(fusion))
    prepared, plan = _check_plan(fn)
    assert plan.inplace[prepared.eqns[2]] == [(0, 1), (1, 0)]
    rng = np.random.default_rng(n)
    args = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    _assert_matches(backend_compile(fn)(*args), interpret(fn, args), rtol=1e-6)


def test_an_operand_read_only_by_a_reduction_in_the_store_loop_is_not_overwritten():
    fn = parse_function("""
func @f(%0: f32[4,16], %1: f32[4,16]) -> (f32[4], f32[4,16]) {
  %2 = neg %0 : f32[4,16]
  %3 = neg %1 : f32[4,16]
  %4, %5 = fusion %2, %3 {kind="reduce"} : f32[4], f32[4,16] body(%6: f32[4,16], %7: f32[4,16]) {
    %8 = reduce_sum %6 {axes=[1]} : f32[4]
    %9 = exp %7 : f32[4,16]
    return %8, %9
  }
  %10 = neg %5 : f32[4,16]
  return %4, %10
}
""")
    assert inplace_pairs(fn.eqns[2]) == [(1, 1)]  # exp(z) over z, never over the summed x
    _check_plan(fn)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((4, 16)).astype(np.float32) for _ in range(2)]
    _assert_matches(backend_compile(fn)(*args), interpret(fn, args), rtol=1e-6)


def test_an_operand_passed_twice_and_gathered_once_is_not_overwritten():
    # Bug: the aligned parameter's buffer was taken over although the same buffer
    # is also read transposed (the other parameter): wrong results.
    fn = parse_function("""
func @f(%0: f32[8,8]) -> (f32[8,8]) {
  %1 = neg %0 : f32[8,8]
  %2 = fusion %1, %1 {kind="loop"} : f32[8,8] body(%3: f32[8,8], %4: f32[8,8]) {
    %5 = transpose %4 {perm=[1,0]} : f32[8,8]
    %6 = add %3, %5 : f32[8,8]
    return %6
  }
  %7 = neg %2 : f32[8,8]
  return %7
}
""")
    assert inplace_pairs(fn.eqns[1]) == []
    assert not _check_plan(fn)[1].inplace
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    _assert_matches(backend_compile(fn)(x), interpret(fn, [x]), rtol=0, atol=0)


# -- random programs: arena intermediates dying at multi-result fusions ------------------

UNARY = ["neg", "exp", "tanh", "abs", "logistic", "sin"]
BINARY = ["add", "sub", "mul", "maximum"]
R, C = 6, 8


@st.composite
def aliasing_graphs(draw):
    """Random graphs over f32[R,C] whose fusions read dot products (arena values
    that die there), with rows, columns and scalars, index maps and several results."""
    b = Builder("alias")
    x, w, r = (b.param(TensorType(F32, s)) for s in ((R, C), (C, C), (R,)))
    full = [b.dot(x, w), b.dot(b.neg(x), w)]
    rows, cols, scalars = [r, b.reduce_sum(b.dot(x, w), axes=[1])], [], []

    def take(pool):
        # Usually consume the value, so it dies at its reader (a candidate for in place).
        i = draw(st.integers(0, len(pool) - 1))
        if pool is full and len(pool) > 1 and draw(st.booleans()):
            return pool.pop(i)
        return pool[i]

    for _ in range(draw(st.integers(2, 14))):
        kind = draw(st.sampled_from(["unary", "binary", "binary", "row", "diamond", "bcast",
                                     "dot", "dot", "transpose", "reverse", "slicepad", "concat",
                                     "select", "col", "scalar", "reshape", "argmax"]))
        if kind == "unary":
            full.append(b.emit(draw(st.sampled_from(UNARY)), [take(full)])[0])
        elif kind == "binary":
            full.append(b.emit(draw(st.sampled_from(BINARY)), [take(full), take(full)])[0])
        elif kind == "row":
            op = draw(st.sampled_from(["reduce_sum", "reduce_max", "reduce_min"]))
            rows.append(b.emit(op, [take(full)], {"axes": [1]})[0])
        elif kind == "diamond":  # v op broadcast(reduce(v)): softmax & co.
            v = take(full)
            op = draw(st.sampled_from(["reduce_sum", "reduce_max"]))
            m = b.broadcast(b.emit(op, [v], {"axes": [1]})[0], shape=[R, C], dims=[0])
            full.append(b.emit(draw(st.sampled_from(BINARY)), [v, m])[0])
        elif kind == "bcast":
            sources = [("row", [0])] + [("col", [1])] * bool(cols)
            sources += [("scalar", [])] * bool(scalars)
            source, dims = draw(st.sampled_from(sources))
            pool = {"row": rows, "col": cols, "scalar": scalars}[source]
            full.append(b.broadcast(take(pool), shape=[R, C], dims=dims))
        elif kind == "dot":
            full.append(b.dot(take(full), w))
        elif kind == "transpose":
            t = b.transpose(b.reshape(take(full), shape=[C, R]), perm=[1, 0])
            full.append(b.reshape(t, shape=[R, C]))
        elif kind == "reverse":
            full.append(b.reverse(take(full), axes=draw(st.sampled_from([[0], [1], [0, 1]]))))
        elif kind == "slicepad":
            cut = b.slice(take(full), start=[1, 0], stop=[R, C - 2], step=[1, 1])
            full.append(b.pad(cut, low=[0, 1], high=[1, 1], interior=[0, 0]))
        elif kind == "concat":
            left = b.slice(take(full), start=[0, 0], stop=[R, C // 2], step=[1, 1])
            right = b.slice(take(full), start=[0, C // 2], stop=[R, C], step=[1, 1])
            full.append(b.concat(right, left, axis=1))
        elif kind == "select":
            # Against v + 1/4: u and v may be equal but for rounding (x and
            # (x + y) - y), and fused sums round differently from numpy's
            # ([Reduction tolerance]): a tie would flip the choice.
            u, v = take(full), take(full)
            shifted = b.add(v, b.constant(0.25, F32, (R, C)))
            full.append(b.select(b.compare(u, shifted, "gt"), u, b.neg(v)))
        elif kind == "col":
            cols.append(b.reduce_sum(take(full), axes=[0]))
        elif kind == "scalar":
            scalars.append(b.reduce_max(take(full), axes=[0, 1]))
        elif kind == "reshape":
            flat = b.exp(b.reshape(take(full), shape=[R * C]))
            full.append(b.reshape(flat, shape=[R, C]))
        else:
            rows.append(b.cast(b.argmax(take(full), axis=1), "f32"))
    # Results read through a dot stay arena values: their producers may write in place.
    results = [b.dot(v, w) if draw(st.booleans()) else v for v in full[-3:]]
    results += rows[2:][-2:] + cols[-1:] + scalars[-1:]
    return b.finish(results)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(aliasing_graphs(), st.integers(0, 2**31 - 1))
def test_random_in_place_programs_match_the_interpreter(fn, seed):
    _check_plan(optimize(fn))
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-1, 1, p.shape).astype(np.float32) for p in fn.params]
    # Fused float sums may add in another order ([Fused reduction tolerance]).
    _assert_matches(compile_function(fn)(*args), interpret(fn, args), atol=1e-4 * R * C)


# -- large kernels on the thread pool -----------------------------------------------------

def _softmax_chain(n: int):
    """dot -> softmax (a row fusion over the dying product) -> dot -> two results."""
    b = Builder("chain")
    t = TensorType(F32, (n, n))
    x, w = b.param(t), b.param(t)
    h = b.dot(x, w)
    m = b.broadcast(b.reduce_max(h, axes=[1]), shape=[n, n], dims=[0])
    e = b.exp(b.sub(h, m))
    s = b.broadcast(b.reduce_sum(e, axes=[1]), shape=[n, n], dims=[0])
    soft = b.div(e, s)
    h2 = b.dot(soft, w)
    return b.finish([b.dot(b.tanh(h2), w), b.dot(b.neg(h2), w), b.reduce_sum(soft, axes=[1])])


def test_parallel_in_place_kernels_are_bitwise_equal_for_one_and_two_threads(monkeypatch):
    n = 512  # 2**18 elements: fusions run in chunks on the pool
    fn = _softmax_chain(n)
    rng = np.random.default_rng(5)
    args = [rng.standard_normal((n, n)).astype(np.float32) * 0.1 for _ in range(2)]
    results = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("XLAC_NUM_THREADS", threads)
        exe = compile_function(fn)
        assert "(in place)" in exe.memory_plan
        results[threads] = exe(*args)
    for one, two in zip(results["1"], results["2"], strict=True):
        np.testing.assert_array_equal(one, two)
    _assert_matches(results["2"], interpret(fn, args), rtol=1e-4, atol=1e-6)


# -- donation ------------------------------------------------------------------------------

def _momentum(p, v, g):
    v2 = 0.9 * v + g
    return p - 0.1 * v2, v2


def _adam(p, m, v, g):
    m2 = 0.9 * m + 0.1 * g
    v2 = 0.999 * v + 0.001 * (g * g)
    return p - 0.01 * m2 / (v2 ** 0.5 + 1e-8), m2, v2


@pytest.mark.parametrize("threads", ["1", "2"])
def test_donated_multi_result_steps_match_numpy(threads, monkeypatch):
    monkeypatch.setenv("XLAC_NUM_THREADS", threads)
    rng = np.random.default_rng(int(threads))
    shape = (512, 512)  # large enough for parallel fused loops
    p, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    v = np.abs(rng.standard_normal(shape)).astype(np.float32)
    want_v = np.float32(0.9) * v + g
    want_p = p - np.float32(0.1) * want_v
    step = jit(_momentum, donate_argnums=(0, 1))
    new_p, new_v = step(p.copy(), v.copy(), g)
    np.testing.assert_allclose(np.asarray(new_p), want_p, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new_v), want_v, rtol=1e-6, atol=1e-6)
    # Chained: the results are donated back, as a training loop does.
    again_p, again_v = step(new_p, new_v, g)
    want_v2 = np.float32(0.9) * want_v + g
    np.testing.assert_allclose(np.asarray(again_v), want_v2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(again_p), want_p - np.float32(0.1) * want_v2,
                               rtol=1e-5, atol=1e-5)

    m = np.zeros(shape, np.float32)
    adam = jit(_adam, donate_argnums=(0, 1, 2))
    out = adam(p.copy(), m, v.copy(), g)
    m2 = np.float32(0.1) * g
    v2 = np.float32(0.999) * v + np.float32(0.001) * (g * g)
    for got, want in zip(out, (p - np.float32(0.01) * m2 / (np.sqrt(v2) + np.float32(1e-8)),
                               m2, v2), strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn, expected", [
    (lambda p, q: (p, p * 2, p), lambda p, q: (p, p * 2, p)),
    (lambda p, q: (p * 2, p * 2), lambda p, q: (p * 2, p * 2)),
    (lambda p, q: (q, p), lambda p, q: (q, p)),
    (lambda p, q: (q * 2 + p, p - q, p.sum()), lambda p, q: (q * 2 + p, p - q, p.sum())),
    (lambda p, q: (p[::-1] + q, q), lambda p, q: (p[::-1] + q, q)),
], ids=["returned-as-is", "returned-twice", "swapped", "read-after", "reversed"])
def test_donated_values_returned_unchanged_twice_swapped_or_read_later(fn, expected):
    step = jit(fn, donate_argnums=(0, 1))
    p = np.arange(6, dtype=np.float32)
    q = np.arange(6, 12, dtype=np.float32)
    want = expected(p.copy(), q.copy())
    got = step(p, q)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-6)
    assert not p.flags.writeable and not q.flags.writeable  # donated: now read-only


def test_donation_errors_name_the_leaf_as_the_call_has_it():
    # The executable counts flat leaves ("argument 1"); a jitted call names them.
    step = jit(lambda params, g: {k: v - 0.1 * g for k, v in params.items()},
               donate_argnums=0)
    w, g = np.ones(4, np.float32), np.ones(4, np.float32)
    frozen = np.ones(4, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ArgumentError, match=r"argument 0\['b'\] of .* is donated .* read-only"):
        step({"w": w, "b": frozen}, g)
    with pytest.raises(ArgumentError, match=r"argument 0\['w'\] .* shares memory with donated "
                                            r"argument 0\['b'\]"):
        step({"w": w, "b": w}, g)
    with pytest.raises(ArgumentError, match=r"argument 1 .* shares memory with donated "
                                            r"argument 0\['w'\]"):
        step({"w": w, "b": np.ones(4, np.float32)}, w[:])
