"""The generated GEMM (compiler/codegen/gemm*.py) against numpy.

Tolerance (NOTE: [Dot tolerance] in compiler/codegen/dot.py): every element
within ``2 * k * eps * sum_k |a_ik * b_kj|`` of the float64 product, inf and
nan where numpy has them. Shapes cover 1, primes, sizes that are not
multiples of the micro-tile, k blocks, batches, empty dims, k = 0 and all
four operand layouts; many products are compiled as one program per dtype to
keep the suite fast. Results with 1 and 2 threads are compared bitwise.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import compiler
from compiler.backend import compile_function
from compiler.codegen import lower
from compiler.codegen.dot import dot_plan, dot_shape
from compiler.codegen.gemm_plan import GemmShape, plan_gemm, use_blocked
from compiler.pipeline import optimize
from ir import Builder, DType, TensorType, print_function

pytestmark = pytest.mark.llvm

F32, F64 = DType.f32, DType.f64

# (batch dims, m, k, n): awkward sizes around the tile (12 x 32 f32, 12 x 16 f64),
# k blocks, products that read an operand in place (n or m within one tile).
SHAPES = [
    ((), 1, 1, 1), ((), 1, 37, 1), ((), 1, 64, 300), ((), 300, 64, 1), ((), 13, 17, 19),
    ((), 2, 700, 3), ((), 64, 48, 64), ((), 31, 257, 47), ((), 97, 61, 101),
    ((), 200, 513, 97), ((), 64, 1000, 40), ((), 173, 29, 211), ((), 4, 100, 500),
    ((), 500, 100, 4), ((), 12, 64, 256), ((3,), 20, 30, 40), ((2, 3), 13, 7, 33),
    ((3,), 40, 50, 60), ((), 37, 1100, 10), ((), 13, 1030, 1), ((), 50, 1500, 24),
    ((), 29, 1024, 16),
]
# Every operand layout for these; the others are checked as stored.
ALL_LAYOUTS = {((), 13, 17, 19), ((), 97, 61, 101), ((), 64, 1000, 40), ((), 4, 100, 500),
               ((), 500, 100, 4), ((3,), 40, 50, 60), ((), 37, 1100, 10)}
LAYOUTS = list(itertools.product([False, True], repeat=2))  # (transpose_lhs, transpose_rhs)
EMPTY = [((), 0, 5, 7), ((), 5, 0, 7), ((), 5, 7, 0), ((0,), 4, 5, 6), ((2,), 4, 0, 3)]


def _stored(shape, transpose):
    *batch, rows, cols = shape
    return (*batch, cols, rows) if transpose else tuple(shape)


def _case_types(dtype, case, layout):
    batch, m, k, n = case
    t_a, t_b = layout
    return (TensorType(dtype, _stored((*batch, m, k), t_a)),
            TensorType(dtype, _stored((*batch, k, n), t_b)))


def _attrs(layout):
    return {name: True for name, flag in zip(("transpose_lhs", "transpose_rhs"), layout,
                                             strict=True) if flag}


def _program(dtype, cases):
    """One function computing every (case, layout) product."""
    b = Builder(f"gemm_{dtype}")
    outs = []
    for case, layout in cases:
        lhs_t, rhs_t = _case_types(dtype, case, layout)
        outs.append(b.dot(b.param(lhs_t), b.param(rhs_t), **_attrs(layout)))
    return b.finish(outs)


def _reference(a, b, layout):
    t_a, t_b = layout
    a = np.swapaxes(a, -1, -2) if t_a else a
    b = np.swapaxes(b, -1, -2) if t_b else b
    return a, b


def _check(got, a, b, layout, dtype):
    a, b = _reference(a, b, layout)
    with np.errstate(all="ignore"):
        want = np.matmul(a.astype(np.float64), b.astype(np.float64))
        bound = np.matmul(np.abs(np.nan_to_num(a.astype(np.float64))),
                          np.abs(np.nan_to_num(b.astype(np.float64))))
    k = a.shape[-1]
    bound = 2 * max(k, 1) * np.finfo(dtype.numpy).eps * bound + np.finfo(dtype.numpy).tiny
    assert got.shape == want.shape and got.dtype == dtype.numpy
    special = ~np.isfinite(want.astype(dtype.numpy))
    np.testing.assert_array_equal(got[special], want.astype(dtype.numpy)[special])
    error = np.abs(got[~special].astype(np.float64) - want[~special])
    assert np.all(error <= bound[~special]), f"max error {error.max()} over bound"


@pytest.fixture(scope="module", params=[F32, F64], ids=str)
def compiled(request):
    dtype = request.param
    cases = [(case, layout) for case in SHAPES
             for layout in (LAYOUTS if case in ALL_LAYOUTS else [(False, False)])]
    cases += [(case, (False, False)) for case in EMPTY]
    return dtype, cases, compile_function(_program(dtype, cases))


def test_every_shape_and_layout_matches_numpy(compiled):
    dtype, cases, exe = compiled
    rng = np.random.default_rng(1)
    args = []
    for case, layout in cases:
        for t in _case_types(dtype, case, layout):
            args.append(rng.standard_normal(t.shape).astype(dtype.numpy))
    results = exe(*args)
    for i, ((case, layout), got) in enumerate(zip(cases, results, strict=True)):
        _check(got, args[2 * i], args[2 * i + 1], layout, dtype)


def test_inf_and_nan_propagate(compiled):
    dtype, cases, exe = compiled
    rng = np.random.default_rng(2)
    args = []
    for case, layout in cases:
        for t in _case_types(dtype, case, layout):
            x = rng.standard_normal(t.shape).astype(dtype.numpy)
            if x.size > 4:
                x.flat[rng.integers(0, x.size, 2)] = [np.inf, np.nan]
            args.append(x)
    for i, ((case, layout), got) in enumerate(zip(cases, exe(*args), strict=True)):
        _check(got, args[2 * i], args[2 * i + 1], layout, dtype)


def test_the_suite_exercises_blocked_gemm_and_plain_loops():
    blocked = [use_blocked(GemmShape(F32, 1, m, n, k)) for _, m, k, n in ALL_LAYOUTS]
    assert any(blocked) and not all(blocked)
    assert not use_blocked(GemmShape(F32, 1, 8, 8, 8))          # tiny: plain loops
    assert not use_blocked(GemmShape(DType.i32, 1, 64, 64, 64))  # integers: plain loops
    assert not use_blocked(GemmShape(F32, 1, 64, 64, 0))         # k = 0: zeros


@pytest.mark.parametrize("m,k,n", [(1000, 1000, 1000), (4096, 512, 10), (12, 512, 512),
                                   (2048, 2048, 2048)])
def test_plans_fit_the_caches_and_pack_only_reused_operands(m, k, n):
    plan = plan_gemm(GemmShape(F32, 1, m, n, k), vector_bits=512, max_threads=2)
    assert plan.nr % plan.lanes == 0 and plan.mc % plan.mr == 0 and plan.nc % plan.nr == 0
    if plan.pack_a:
        assert plan.mr * plan.kc * 4 <= 32 * 1024        # A micro-panel within L1
    else:
        assert plan.kc == k                              # A read in place: whole rows
    assert plan.kc * plan.nc * 4 <= 1024 * 1024          # packed B block within L2
    # A is read in place when used by one column tile, or when its rows fit L1
    # without crowding one set ([A in place]): 4000- and 2048-byte rows yes,
    # 8 KiB rows (2048^3: every row in one set) no.
    in_place = {(1000, 1000, 1000), (12, 512, 512)}
    assert plan.pack_a == (n > plan.nr and (m, k, n) not in in_place)
    # Threads sharing rows read B in place unless its rows are 4 KiB multiples
    # ([B in place]): 1000^3 in place, 2048^3 packed.
    assert plan.pack_b == (m > plan.mr and (m, k, n) != (1000, 1000, 1000))
    assert plan.threads == 2 and plan.chunks >= 2
    if plan.shared:  # rows split: one packed copy of A's rows and of a B block, shared
        # (two B blocks when the next step's is packed while this one's is in use)
        buffers = 2 if plan.shared_steps > 1 else 1
        assert plan.scratch_bytes >= plan.shared_a_bytes
        assert plan.scratch_bytes < plan.shared_a_bytes + buffers * (plan.kc * (n + plan.nr) * 4
                                                                     + 64)
    else:
        assert plan.scratch_bytes == plan.slot_bytes * plan.threads


def test_few_columns_and_long_rows_take_the_skinny_kernel(monkeypatch):
    from compiler.codegen.gemm_skinny import SkinnyPlan

    monkeypatch.setenv("XLAC_NUM_THREADS", "2")
    b = Builder("skinny")
    x = b.param(TensorType(F32, (300, 2000)))
    w = b.param(TensorType(F32, (2000, 10)))
    fn = b.finish([b.dot(x, w)])
    plan = dot_plan(fn.eqns[0])
    assert isinstance(plan, SkinnyPlan) and plan.threads == 2
    assert all(rows * cols <= 24 for _, cols, rows in plan.column_groups())
    rng = np.random.default_rng(6)
    args = [rng.standard_normal(p.shape).astype(np.float32) for p in fn.params]
    _check(compile_function(fn)(*args)[0], args[0], args[1], (False, False), F32)


def test_small_products_stay_single_threaded():
    plan = plan_gemm(GemmShape(F32, 1, 48, 48, 48), vector_bits=512, max_threads=2)
    assert plan.threads == 1 and plan.chunks == 1


def _big_program():
    b = Builder("big")
    x = b.param(TensorType(F32, (300, 200)))
    w = b.param(TensorType(F32, (150, 200)))
    y = b.param(TensorType(F64, (4, 100, 130)))
    z = b.param(TensorType(F64, (4, 130, 90)))
    return b.finish([b.dot(x, w, transpose_rhs=True), b.dot(y, z), b.dot(w, x, transpose_rhs=True)])


def test_one_and_two_threads_give_bitwise_equal_results(monkeypatch):
    rng = np.random.default_rng(3)
    fn = _big_program()
    args = [rng.standard_normal(p.shape).astype(p.dtype.numpy) for p in fn.params]
    results = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("XLAC_NUM_THREADS", threads)
        plans = [dot_plan(e) for e in fn.eqns]
        assert all(p is not None and p.threads == int(threads) for p in plans)
        results[threads] = compile_function(fn)(*args)
    for one, two in zip(results["1"], results["2"], strict=True):
        np.testing.assert_array_equal(one, two)
    for (i, j, layout), got in zip([(0, 1, (False, True)), (2, 3, (False, False)),
                                    (1, 0, (False, True))], results["2"], strict=True):
        _check(got, args[i], args[j], layout, fn.params[i].dtype)


def test_parallel_gemm_calls_the_thread_pool_and_small_ones_do_not(monkeypatch):
    monkeypatch.setenv("XLAC_NUM_THREADS", "2")
    text = lower(_big_program()).llvm_ir
    assert "xlac_parallel_for" in text
    b = Builder("small")
    x = b.param(TensorType(F32, (40, 40)))
    assert "xlac_parallel_for" not in lower(b.finish([b.dot(x, x)])).llvm_ir


def test_dot_shape_reads_the_layout_attributes():
    b = Builder("f")
    x = b.param(TensorType(F32, (2, 7, 5)))
    w = b.param(TensorType(F32, (2, 9, 7)))
    b.dot(x, w, transpose_lhs=True, transpose_rhs=True)
    eqn = b.eqns[-1]
    assert dot_shape(eqn) == GemmShape(F32, 2, 5, 9, 7, True, True)


def test_jit_consumes_transposes_without_materialising_them():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 48)).astype(np.float32)
    g = rng.standard_normal((64, 40)).astype(np.float32)
    w = rng.standard_normal((30, 40)).astype(np.float32)

    def grads(x, g, w):
        return x.T @ g, g @ w.T

    f = compiler.jit(grads)
    optimized = f.lower(x, g, w).as_text("optimized-ir")
    assert " transpose " not in optimized and "transpose_lhs=true" in optimized
    got_a, got_b = f(x, g, w)
    _check(np.asarray(got_a), x, g, (True, False), F32)
    _check(np.asarray(got_b), g, w, (False, True), F32)


def test_gradient_of_a_matmul_uses_transposed_dots():
    b = Builder("loss")
    x = b.param(TensorType(F32, (8, 5)))
    w = b.param(TensorType(F32, (5, 3)))
    fn = b.finish([b.reduce_sum(b.dot(x, w), axes=[0, 1])])
    from compiler.autodiff import grad_function

    text = print_function(grad_function(fn, [0, 1]))
    assert " transpose " not in text
    assert "transpose_rhs=true" in text and "transpose_lhs=true" in text


@pytest.mark.parametrize("bits", [256, 128])
def test_narrower_hosts_get_their_own_tiles(bits, monkeypatch):
    """AVX2 (ymm, 16 registers) and SSE tiles, compiled here, still exact."""
    import compiler.codegen.dot as dot_module

    monkeypatch.setattr(dot_module, "vector_bits", lambda features: bits)
    dot_module._plan.cache_clear()
    try:
        b = Builder(f"narrow{bits}")
        cases = [((), 61, 70, 45), ((), 100, 70, 24)]
        pairs = [(b.param(TensorType(dtype, (m, k))), b.param(TensorType(dtype, (k, n))))
                 for dtype in (F32, F64) for _, m, k, n in cases]
        fn = b.finish([b.dot(x, w) for x, w in pairs])
        plans = [dot_plan(e) for e in fn.eqns]
        assert all(p is not None and p.lanes * p.itemsize * 8 == bits for p in plans)
        rng = np.random.default_rng(5)
        args = [rng.standard_normal(p.shape).astype(p.dtype.numpy) for p in fn.params]
        for i, got in enumerate(compile_function(fn)(*args)):
            _check(got, args[2 * i], args[2 * i + 1], (False, False), fn.params[2 * i].dtype)
    finally:
        dot_module._plan.cache_clear()


@pytest.mark.parametrize("k,trans_b,steps,pack_a,pack_b", [
    (1024, True, 12, True, True), (700, True, 3, False, True), (1024, False, 12, True, False)])
def test_shared_steps_over_k_and_column_blocks_with_an_epilogue(k, trans_b, steps, pack_a,
                                                                  pack_b, monkeypatch):
    """Rows split over 2 threads, packed blocks shared, the next step's B block
    packed while this one's is in use ([Shared packing]): k blocks (4 with A
    packed; 1 with A in place) x 3 column blocks (narrowed to 64 columns
    here), B packed (stored transposed) or read in place ([B in place]),
    bias + ReLU applied on the last k block; bitwise equal to one thread,
    within the tolerance of numpy."""
    import compiler.codegen.dot as dot_module
    import compiler.codegen.gemm_plan as plan_module

    monkeypatch.setattr(plan_module, "_SHARED_B_COLUMNS", 64)
    rng = np.random.default_rng(7)
    m, n = 101, 150
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    w_kn = w.T if trans_b else w
    bias = rng.standard_normal(n).astype(np.float32)
    results = {}
    try:
        for threads in ("1", "2"):
            monkeypatch.setenv("XLAC_NUM_THREADS", threads)
            dot_module._plan.cache_clear()
            b = Builder(f"steps{threads}")
            xp, wp, bp = (b.param(TensorType(F32, a.shape)) for a in (x, w, bias))
            product = b.dot(xp, wp, transpose_rhs=True) if trans_b else b.dot(xp, wp)
            y = b.add(product, b.broadcast(bp, shape=[m, n], dims=[1]))
            fn = b.finish([b.maximum(y, b.constant(value=0.0, dtype=F32, shape=[m, n]))])
            plan = dot_plan(fn.eqns[0])
            if threads == "2":
                assert plan.shared and plan.shared_steps == steps
                assert (plan.pack_a, plan.pack_b) == (pack_a, pack_b)
                assert len(plan.row_shares) >= 4
            fused = optimize(fn)
            assert any(e.op == "fusion" and e.attrs.get("kind") == "gemm" for e in fused.eqns)
            results[threads] = compile_function(fused)(x, w, bias)[0]
    finally:
        dot_module._plan.cache_clear()
    np.testing.assert_array_equal(results["1"], results["2"])
    want = np.maximum(x.astype(np.float64) @ w_kn + bias, 0)
    bound = 2 * k * np.finfo(np.float32).eps * (np.abs(x) @ np.abs(w_kn) + np.abs(bias))
    assert np.all(np.abs(results["2"] - want) <= bound + 1e-30)
