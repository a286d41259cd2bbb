"""Donation: results written into donated parameter buffers, and jit(donate_argnums=...)."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler import DonatedBufferError, DonationError, Tensor, functional, jit, nn
from compiler.backend import compile_function
from compiler.codegen.donation import place_donated_results
from compiler.pipeline import compile_function as compile_pipeline
from ir import Builder, DType, TensorType, interpret

pytestmark = pytest.mark.llvm

F32 = DType.f32
T4 = TensorType(F32, (4,))


def _data_pointer(array) -> int:
    return np.asarray(array).__array_interface__["data"][0]


def _update(name="update", read_after=False, return_param=False):
    """new_p = p - 0.5 * g (and optionally a later read of p, or p itself returned)."""
    b = Builder(name)
    p, g = b.param(T4), b.param(T4)
    new = b.sub(p, b.mul(g, b.constant(0.5, F32, (4,))))
    outputs = [new]
    if read_after:
        outputs.append(b.reduce_sum(b.mul(p, p), axes=[0]))
    if return_param:
        outputs.append(p)
    return b.finish(outputs)


# -- the rewrite ------------------------------------------------------------------------


def test_the_last_elementwise_reader_writes_in_place():
    fn = _update()
    placed, unchanged = place_donated_results(fn, {0: 0})
    assert placed.eqns == fn.eqns and placed.outputs == fn.outputs and unchanged == set()


def test_a_later_read_forces_a_final_copy():
    fn = _update(read_after=True)
    placed, _ = place_donated_results(fn, {0: 0})
    assert [e.op for e in placed.eqns[-1:]] == ["reshape"]
    assert placed.outputs[0] is placed.eqns[-1].outputs[0]


def test_a_returned_donated_parameter_is_snapshotted_first():
    fn = _update(return_param=True)
    placed, _ = place_donated_results(fn, {0: 0})
    assert placed.eqns[0].op == "reshape" and placed.eqns[0].inputs == (fn.params[0],)
    assert placed.outputs[1] is placed.eqns[0].outputs[0]


def test_a_result_that_is_its_own_parameter_needs_nothing():
    b = Builder("same")
    p = b.param(T4)
    fn = b.finish([p, b.neg(p)])
    placed, unchanged = place_donated_results(fn, {0: 0})
    assert unchanged == {0} and placed.eqns == fn.eqns
    exe = compile_function(fn, donated={0: 0})
    x = np.arange(4, dtype=np.float32)
    same, negated = exe(x)
    assert same is x
    np.testing.assert_array_equal(same, np.arange(4))
    np.testing.assert_array_equal(negated, -np.arange(4))


def test_type_mismatch_is_refused():
    b = Builder("bad")
    p = b.param(T4)
    fn = b.finish([b.reduce_sum(p, axes=[0])])
    with pytest.raises(ValueError, match="cannot be written into parameter 0"):
        place_donated_results(fn, {0: 0})


# -- native results against the interpreter ---------------------------------------------


@pytest.mark.parametrize("read_after, return_param", [(False, False), (True, False),
                                                      (False, True), (True, True)])
def test_donated_programs_match_the_interpreter(read_after, return_param):
    fn = _update(f"u{int(read_after)}{int(return_param)}", read_after, return_param)
    exe = compile_function(fn, donated={0: 0})
    p = np.array([1, 2, 3, 4], np.float32)
    g = np.array([2, 2, -2, 0.5], np.float32)
    expected = interpret(fn, [p.copy(), g])
    given = p.copy()
    results = exe(given, g)
    assert results[0] is given
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_swapped_parameters():
    # (p, q) -> (q, p): each result must see the other's *old* value.
    b = Builder("swap")
    p, q = b.param(T4), b.param(T4)
    fn = b.finish([q, p])
    exe = compile_function(fn, donated={0: 0, 1: 1})
    x, y = np.arange(4, dtype=np.float32), np.arange(4, 8, dtype=np.float32)
    got = exe(x, y)
    assert got[0] is x and got[1] is y
    np.testing.assert_array_equal(got[0], np.arange(4, 8))
    np.testing.assert_array_equal(got[1], np.arange(4))


def _momentum_update(name):
    """buf' = 0.9 buf + g; p' = p - 0.1 buf': one fusion with two results."""
    b = Builder(name)
    g, buf, p = b.param(T4), b.param(T4), b.param(T4)
    new_buf = b.add(b.mul(b.constant(0.9, F32, (4,)), buf), g)
    new_p = b.sub(p, b.mul(b.constant(0.1, F32, (4,)), new_buf))
    return b.finish([new_p, new_buf])


@pytest.mark.parametrize("donated", [{0: 2}, {1: 1}, {0: 1}, {1: 2}, {0: 2, 1: 1}, {0: 1, 1: 2}])
def test_results_of_one_multi_result_kernel_match_the_interpreter(donated):
    # Crossed pairs ({1: 2}: the new state into the parameter's buffer) once
    # read the overwritten parameter for the other result.
    fn = _momentum_update("momentum" + "".join(f"{j}{i}" for j, i in donated.items()))
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(4).astype(np.float32) for _ in range(3)]
    expected = interpret(fn, [x.copy() for x in inputs])
    given = [x.copy() for x in inputs]
    results = compile_pipeline(fn, donated=donated)(*given)
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    for j, i in donated.items():
        assert results[j] is given[i]


def _bias_update(name):
    """h = g + b; b' = b - 0.01 * sum(h, 0); c = 2 b + sum(h, 0): one row
    fusion whose epilogue stores b' and c."""
    b = Builder(name)
    g = b.param(TensorType(F32, (64, 48)))
    bias = b.param(TensorType(F32, (48,)))
    h = b.add(g, b.broadcast(bias, shape=[64, 48], dims=[1]))
    column = b.reduce_sum(h, axes=[0])
    new_bias = b.sub(bias, b.mul(b.constant(0.01, F32, (48,)), column))
    other = b.add(b.mul(b.constant(2.0, F32, (48,)), bias), column)
    return b.finish([h, new_bias, other])


def _copies_and_epilogue(fused, donated):
    from compiler.codegen.fused import epilogue_results

    placed, _ = place_donated_results(fused, donated)
    rows = [e for e in fused.eqns if e.op == "fusion" and epilogue_results(e)]
    return [e.op for e in placed.eqns if e not in fused.eqns], rows


@pytest.mark.parametrize("donated", [{1: 1}, {2: 1}])
def test_a_column_result_of_a_row_fusion_is_written_over_its_parameter(donated):
    from compiler.pipeline import optimize

    fn = _bias_update(f"bias{list(donated)[0]}")
    copies, (row,) = _copies_and_epilogue(optimize(fn), donated)
    assert copies == [] and len(row.outputs) == 3
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((64, 48)).astype(np.float32),
              rng.standard_normal(48).astype(np.float32)]
    expected = interpret(fn, [x.copy() for x in inputs])
    given = [x.copy() for x in inputs]
    results = compile_pipeline(fn, donated=donated)(*given)
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    (j, i), = donated.items()
    assert results[j] is given[i]


def _output_bias_step(z, bias, labels):
    """The bias of a softmax cross-entropy layer, read in the rows (at the
    label's column too) and updated by the fusion's epilogue."""
    loss, grad = functional.value_and_grad(lambda b: nn.cross_entropy(z + b, labels))(bias)
    return loss, bias - 0.01 * grad


@pytest.mark.parametrize("threads", ["1", "2"])
def test_an_output_layer_bias_is_updated_in_place(threads, monkeypatch):
    monkeypatch.setenv("XLAC_NUM_THREADS", threads)
    rng = np.random.default_rng(3)
    z = rng.standard_normal((300, 10)).astype(np.float32)
    bias = rng.standard_normal(10).astype(np.float32)
    labels = rng.integers(0, 10, 300).astype(np.int32)
    plain, donated = jit(_output_bias_step), jit(_output_bias_step, donate_argnums=1)
    from compiler.pipeline import optimize

    copies, rows = _copies_and_epilogue(optimize(plain.lower(z, bias, labels).function), {1: 1})
    assert copies == [] and rows
    mine, theirs = bias.copy(), bias.copy()
    for _ in range(2):
        want_loss, theirs = plain(z, theirs, labels)
        loss, mine = donated(z, mine, labels)
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
        np.testing.assert_array_equal(np.asarray(loss), np.asarray(want_loss))


def _random_program(rng, name):
    """Four f32[4,4] parameters, a few random ops (elementwise, transposes, row
    sums broadcast back), random results including parameters."""
    t = TensorType(F32, (4, 4))
    b = Builder(name)
    values = [b.param(t) for _ in range(4)]
    for _ in range(rng.integers(2, 7)):
        kind = rng.integers(0, 5)
        x, y = (values[k] for k in rng.integers(0, len(values), 2))
        if kind == 0:
            values.append(b.add(x, y))
        elif kind == 1:
            values.append(b.sub(x, b.mul(y, b.constant(0.25, F32, (4, 4)))))
        elif kind == 2:
            values.append(b.transpose(x, perm=[1, 0]))
        elif kind == 3:
            values.append(b.broadcast(b.reduce_sum(x, axes=[0]), shape=[4, 4], dims=[1]))
        else:
            values.append(b.neg(x))
    count = int(rng.integers(1, 5))
    outputs = [values[k] for k in rng.integers(0, len(values), count)]
    return b.finish(outputs)


@pytest.mark.parametrize("seed", range(24))
def test_random_donations_match_the_interpreter(seed):
    rng = np.random.default_rng(seed)
    fn = _random_program(rng, f"random{seed}")
    params = rng.permutation(4)[: rng.integers(1, len(fn.outputs) + 1)]
    donated = {j: int(i) for j, i in enumerate(params[: len(fn.outputs)])}
    inputs = [rng.uniform(-1, 1, (4, 4)).astype(np.float32) for _ in range(4)]
    expected = interpret(fn, [x.copy() for x in inputs])
    exe = compile_pipeline(fn, donated=donated)  # through the passes (and fusion)
    given = [x.copy() for x in inputs]
    results = exe(*given)
    for j, (got, want) in enumerate(zip(results, expected, strict=True)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"result {j}")
        if j in donated:
            assert got is given[donated[j]]


# -- the runtime's checks ---------------------------------------------------------------


@pytest.fixture(scope="module")
def update():
    return compile_function(_update("checked"), donated={0: 0})


@pytest.mark.parametrize("make, message", [
    (lambda: np.zeros(8, np.float32)[::2], "not C-contiguous and aligned"),
    (lambda: np.zeros(4, np.float64), r"expected f32\[4\], got f64\[4\]; a conversion"),
    (lambda: np.zeros(5, np.float32), r"expected f32\[4\], got f32\[5\]"),
    (lambda: [0.0, 1.0, 2.0, 3.0], "must be a numpy array of f32\\[4\\], got list"),
    (lambda: np.ma.zeros(4, np.float32), "numpy array subclass"),
])
def test_a_donated_argument_that_cannot_take_a_result_is_refused(update, make, message):
    with pytest.raises(runtime.ArgumentError, match=message):
        update(make(), np.ones(4, np.float32))


def test_read_only_donations_are_refused(update):
    frozen = np.zeros(4, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(runtime.ArgumentError, match="read-only"):
        update(frozen, np.ones(4, np.float32))


@pytest.mark.parametrize("portable", [False, True])
def test_overlapping_arguments_are_refused(update, monkeypatch, portable):
    exe = update
    if portable:  # the Python check of the path without the native wrapper
        from runtime import loader

        monkeypatch.setattr(loader, "numpy_data_offset", lambda: None)
        exe = compile_function(_update("portable_donation"), donated={0: 0})
    p = np.ones(4, np.float32)
    with pytest.raises(runtime.ArgumentError, match="argument 1 .* shares memory with donated "
                                                    "argument 0"):
        exe(p, p)
    base = np.ones(6, np.float32)
    with pytest.raises(runtime.ArgumentError, match="shares memory"):
        exe(base[:4], base[2:])
    np.testing.assert_array_equal(p, 1)  # nothing ran
    np.testing.assert_array_equal(exe(p, np.full(4, 2, np.float32))[0], np.zeros(4))
    separate = np.ones(8, np.float32)
    np.testing.assert_array_equal(exe(separate[:4], separate[4:])[0], np.full(4, 0.5))


def test_the_runtime_rejects_impossible_pairs():
    text = "define void @entry(ptr %table) {\n  ret void\n}\n"
    for donated, message in [([(0, 0)], "types differ"), ([(1, 0)], "out of range"),
                             ([(0, 0), (0, 0)], "each result and parameter once")]:
        with pytest.raises(ValueError, match=message):
            runtime.load_program(text, name="pairs", param_types=[T4],
                                 result_types=[TensorType(F32, ())], arena_bytes=0,
                                 donated=donated)


# -- jit(donate_argnums=...) ------------------------------------------------------------


def _loss(params, x, labels):
    hidden = nn.relu(x @ params["w1"] + params["b1"])
    return nn.cross_entropy(hidden @ params["w2"] + params["b2"], labels)


def _step(params, x, labels):
    loss, grads = functional.value_and_grad(_loss)(params, x, labels)
    return {k: params[k] - 0.1 * grads[k] for k in params}, loss


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w1": rng.standard_normal((6, 8)).astype(np.float32),
              "b1": np.zeros(8, np.float32),
              "w2": rng.standard_normal((8, 3)).astype(np.float32),
              "b2": np.zeros(3, np.float32)}
    x = rng.standard_normal((5, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 5).astype(np.int32)
    return params, x, labels


def test_donated_steps_match_and_reuse_the_buffers():
    params, x, labels = _problem()
    plain, donating = jit(_step), jit(_step, donate_argnums=0)
    reference = {k: v.copy() for k, v in params.items()}
    current = {k: Tensor(v) for k, v in params.items()}
    pointers = {k: _data_pointer(current[k]._array) for k in current}
    for _ in range(4):
        reference, ref_loss = plain(reference, x, labels)
        previous = current
        current, loss = donating(current, x, labels)
        assert float(loss) == pytest.approx(float(ref_loss), rel=1e-6)
        for k in params:
            np.testing.assert_allclose(np.asarray(current[k]), np.asarray(reference[k]),
                                       rtol=1e-6, atol=1e-7)
            assert _data_pointer(current[k]._array) == pointers[k]  # the same buffer
            assert previous[k].is_deleted()


def test_a_donated_tensor_is_deleted():
    params, x, labels = _problem()
    step = jit(_step, donate_argnums=0)
    given = {k: Tensor(v) for k, v in params.items()}
    new, _ = step(given, x, labels)
    assert not new["w1"].is_deleted()
    assert "deleted" in repr(given["w1"])
    for use in (lambda t: t + 1, lambda t: np.asarray(t), lambda t: t.shape, lambda t: t.numpy(),
                lambda t: t.item()):
        with pytest.raises(DonatedBufferError, match=r"donated to a jitted function \(argument "
                                                     r"0\['w1'\]\)"):
            use(given["w1"])
    with pytest.raises(DonatedBufferError):  # passing it again, on any path
        step(given, x, labels)
    with pytest.raises(DonatedBufferError):
        jit(lambda t: t * 2)(given["b2"])


def test_a_donated_numpy_array_holds_the_result_and_becomes_read_only():
    params, x, labels = _problem()
    step = jit(_step, donate_argnums=0)
    expected, _ = jit(_step)({k: v.copy() for k, v in params.items()}, x, labels)
    given = {k: v.copy() for k, v in params.items()}
    new, _ = step(given, x, labels)
    for k in params:
        np.testing.assert_array_equal(given[k], np.asarray(expected[k]))
        assert not given[k].flags.writeable
        assert np.shares_memory(given[k], new[k]._array)
    with pytest.raises(ValueError, match="read-only"):
        given["w1"][0, 0] = 1.0
    with pytest.raises(runtime.ArgumentError, match="read-only"):  # donating it again
        step(given, x, labels)
    newer, _ = step(new, x, labels)  # the result Tensors can be donated in turn
    assert new["w1"].is_deleted() and not newer["w1"].is_deleted()


def test_donation_needs_a_result_of_the_same_type():
    with pytest.raises(DonationError, match=r"cannot donate argument 0 \(f32\[3\]\): no result "
                                            r"of type f32\[3\].*results: f32\[\]"):
        jit(lambda a: a.sum(), donate_argnums=0)(np.ones(3, np.float32))
    # Two donated arrays of one type need two such results.
    twice = jit(lambda a, b: a + b, donate_argnums=(0, 1))
    with pytest.raises(DonationError, match="argument 1"):
        twice(np.ones(3, np.float32), np.ones(3, np.float32))


def test_donated_arguments_must_be_arrays():
    step = jit(lambda a, s: a * s, donate_argnums=1)
    with pytest.raises(DonationError, match="argument 1 is donated, so it must be a numpy array "
                                            "or Tensor.*got float"):
        step(np.ones((), np.float32), 2.0)


def test_static_and_donated_and_out_of_range():
    with pytest.raises(DonationError, match="both static and donated"):
        jit(lambda a: a, static_argnums=0, donate_argnums=0)
    with pytest.raises(DonationError, match=r"names positional argument\(s\) \[2\]"):
        jit(lambda a: a + 1, donate_argnums=2)(np.ones(2, np.float32))


def test_failed_calls_consume_nothing():
    step = jit(lambda a, b: (a + b, b), donate_argnums=0)
    a = Tensor(np.ones(3, np.float32))
    with pytest.raises(runtime.ArgumentError, match="shares memory"):
        step(a, a)
    assert not a.is_deleted()
    result, _ = step(a, np.ones(3, np.float32))
    np.testing.assert_array_equal(np.asarray(result), [2, 2, 2])


def test_inside_another_trace_donation_does_not_apply():
    inner = jit(lambda a: a * 2, donate_argnums=0)
    outer = jit(lambda a: inner(a) + 1)
    x = np.ones(3, np.float32)
    np.testing.assert_array_equal(np.asarray(outer(x)), [3, 3, 3])
    assert x.flags.writeable


def _logit_step(z, labels):
    return z - 0.5 * functional.grad(nn.cross_entropy)(z, labels)


def test_a_donated_row_fusion_reads_the_label_column_before_overwriting_it():
    """Review regression: the donated logits are updated by one row fusion
    whose label column (NOTE: [One-hot masks]) is read before its loops run.
    Through two ``noalias`` pointers to the one buffer LLVM moved that read
    after the loop's stores, so every row's label column came out 7e-4 off
    (32 x 100); the result slot of a donated result now counts as its
    parameter's buffer (lower.py ``_in_place``)."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((32, 100)).astype(np.float32)
    labels = rng.integers(0, 100, 32).astype(np.int32)
    want = jit(_logit_step)(z, labels)
    given = z.copy()
    got = jit(_logit_step, donate_argnums=0)(given, labels)
    assert np.shares_memory(np.asarray(got), given)  # computed in place
    np.testing.assert_array_equal(np.asarray(got), want)
