"""jit's call path: the fast path for positional arrays gives the same results and
the same errors as the general path, and costs a few microseconds."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

import runtime
import compiler as xp
from compiler import Tensor, Variable, jit

pytestmark = pytest.mark.llvm


def _affine(x, w, b):
    return x @ w + b, (x * x).sum()


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3, 4)).astype(np.float32),
            rng.standard_normal((4, 2)).astype(np.float32),
            rng.standard_normal(2).astype(np.float32))


def _refuse_general_path(monkeypatch, jitted):
    def fail(args, kwargs):
        raise AssertionError("the general path ran for a call the fast path knows")

    monkeypatch.setattr(jitted, "_call", fail)


def test_second_call_takes_the_fast_path_with_identical_results(monkeypatch):
    f = jit(_affine)
    x, w, b = _inputs()
    first = f(x, w, b)
    assert len(f._fast) == 1
    _refuse_general_path(monkeypatch, f)
    second = f(x, w, b)
    for a, c in zip(first, second, strict=True):
        assert type(c) is Tensor
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
        assert not np.shares_memory(a._array, c._array)  # fresh results every call
    np.testing.assert_allclose(np.asarray(second[0]), x @ w + b, rtol=1e-5)


def test_tensors_and_arrays_mix_on_the_fast_path(monkeypatch):
    f = jit(_affine)
    x, w, b = _inputs()
    expected = f(x, w, b)
    _refuse_general_path(monkeypatch, f)
    for args in [(Tensor(x), w, b), (x, Tensor(w), Tensor(b)), tuple(map(Tensor, (x, w, b)))]:
        got = f(*args)
        np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(expected[0]))


def test_awkward_arrays_on_the_fast_path_are_converted_like_the_general_path(monkeypatch):
    f = jit(lambda x: x * 2.0)
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    f(base)
    _refuse_general_path(monkeypatch, f)
    transposed = np.arange(12, dtype=np.float32).reshape(4, 3).T  # same key, not contiguous
    np.testing.assert_array_equal(np.asarray(f(transposed)), transposed * 2)
    unaligned = np.zeros(13, np.float32).view(np.uint8)[1:49].view(np.float32).reshape(3, 4)
    unaligned[...] = base
    np.testing.assert_array_equal(np.asarray(f(unaligned)), base * 2)


def _error(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 - comparing whatever is raised
        return type(error), str(error)
    return None


@pytest.mark.parametrize("bad", [
    lambda x, w, b: (x.astype(np.float64), w, b),  # another dtype: another program...
    lambda x, w, b: (x[:, :3], w, b),  # ...or a shape error while tracing
    lambda x, w, b: (x, w),  # too few arguments
    lambda x, w, b: (x, w, b.astype(np.float16)),  # unsupported dtype
    lambda x, w, b: (x, w, "b"),
    lambda x, w, b: (x, w, b, b),
])
def test_errors_are_the_same_with_and_without_a_warm_fast_path(bad):
    x, w, b = _inputs()
    fresh, warm = jit(_affine), jit(_affine)
    warm(x, w, b)
    assert warm._fast
    args = bad(x, w, b)
    assert _error(lambda: fresh(*args)) == _error(lambda: warm(*args))


def test_donation_errors_are_the_same_on_both_paths():
    def step(w, g):
        return w - g

    x = np.ones((3, 2), np.float32)
    fresh, warm = jit(step, donate_argnums=0), jit(step, donate_argnums=0)
    warm(x.copy(), x)
    assert warm._fast
    for bad in (np.ones((2, 3), np.float32).T, np.ones((3, 2), np.float32)):
        if bad.flags.c_contiguous:
            bad.flags.writeable = False
        fresh_error, warm_error = _error(lambda: fresh(bad, x)), _error(lambda: warm(bad, x))
        assert fresh_error == warm_error and fresh_error[0] is runtime.ArgumentError


def test_non_array_arguments_take_the_general_path():
    f = jit(lambda x, y: x * y)
    x = np.ones(3, np.float32)
    np.testing.assert_array_equal(np.asarray(f(x, 2.0)), [2, 2, 2])  # a Python scalar
    np.testing.assert_array_equal(np.asarray(f(x, np.float32(3))), [3, 3, 3])  # numpy scalar
    np.testing.assert_array_equal(np.asarray(f(x, Variable(np.full(3, 2, np.float32)))), [2, 2, 2])
    assert not f._fast  # none of these calls was all arrays
    f(x, x)
    assert len(f._fast) == 1


def test_keyword_arguments_and_static_names_take_the_general_path():
    f = jit(lambda x, scale: x * scale, static_argnames="scale")
    x = np.ones(2, np.float32)
    assert np.asarray(f(x, scale=3.0)).tolist() == [3, 3]
    assert not f._fast
    g = jit(lambda x, y: x - y)
    assert np.asarray(g(x, y=x)).tolist() == [0, 0] and not g._fast


def test_positional_static_arguments_are_part_of_the_fast_key(monkeypatch):
    f = jit(lambda x, scale, params: x * scale + params["b"], static_argnums=1)
    x, params = np.ones(2, np.float32), {"b": np.zeros(2, np.float32)}
    assert np.asarray(f(x, 3.0, params)).tolist() == [3, 3]
    assert np.asarray(f(x, 4.0, params)).tolist() == [4, 4]
    assert len(f._fast) == 2 and f.cache_size == 2
    _refuse_general_path(monkeypatch, f)
    assert np.asarray(f(x, 3.0, params)).tolist() == [3, 3]
    assert np.asarray(f(x, 4.0, params)).tolist() == [4, 4]
    with pytest.raises(AssertionError, match="general path"):
        f(x, 5.0, params)  # a new static value is a new program
    monkeypatch.undo()
    with pytest.raises(TypeError, match="static arguments must be hashable"):
        f(x, [1.0], params)


def test_variables_join_the_graph_even_with_a_warm_fast_path():
    f = jit(lambda x: x * 2.0)
    f(np.ones(2, np.float32))
    v = Variable(np.ones(2, np.float32))
    out = f(v)
    assert isinstance(out, Variable)
    out.sum().backward()
    np.testing.assert_array_equal(np.asarray(v.grad), [2, 2])


def test_closed_over_values_are_read_at_each_fast_call():
    w = Variable(np.ones(2, np.float32))
    f = jit(lambda x: x * w)
    x = np.full(2, 3, np.float32)
    assert np.asarray(f(x)).tolist() == [3, 3]
    w.data = Tensor(np.full(2, 5, np.float32))
    assert np.asarray(f(x)).tolist() == [15, 15]


def test_result_structures():
    x = np.ones(2, np.float32)
    assert isinstance(jit(lambda x: x)(x), Tensor)
    assert isinstance(jit(lambda x: (x, x))(x), tuple)
    got = jit(lambda x: {"a": [x, (x + 1,)], "b": None})(x)
    assert set(got) == {"a", "b"} and got["b"] is None and isinstance(got["a"][1], tuple)
    for _ in range(2):  # the fast path rebuilds the same structure
        again = jit(lambda x: [x, {"k": x * 2}])
        assert isinstance(again(x), list) and isinstance(again(x)[1]["k"], Tensor)


def test_per_call_overhead_of_a_tiny_function():
    f = jit(lambda x: x + 1)
    x = np.zeros(1, np.float32)
    f(x)
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        for _ in range(200):
            f(x)
        samples.append((time.perf_counter() - start) / 200)
    # ~2 us on the development machine (benchmarks/training.py measures it, W6);
    # this bound only catches regressions such as re-hashing the IR per call.
    assert statistics.median(samples) < 15e-6
    assert np.asarray(f(x)).tolist() == [1.0]


def test_functional_transforms_reuse_their_executable():
    calls = []
    grad = xp.functional.grad(lambda w: (w * w).sum())
    w = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(grad(w)), 2 * w)
    from compiler import pipeline

    original = pipeline.structural_key

    def counting(fn):
        calls.append(fn)
        return original(fn)

    pipeline.structural_key = counting
    try:
        np.testing.assert_array_equal(np.asarray(grad(w + 1)), 2 * (w + 1))
    finally:
        pipeline.structural_key = original
    assert not calls  # the executable was found on the trace, not by printing the IR


def test_containers_of_arrays_take_the_fast_path_too(monkeypatch):
    def step(params, x):
        return {"w": params["w"] - x.sum(), "b": [params["b"][0] * 2, None]}, params["w"].sum()

    f = jit(step)
    params = {"w": np.ones((2, 2), np.float32), "b": [np.ones(3, np.float32), None]}
    x = np.ones(2, np.float32)
    first = f(params, x)
    _refuse_general_path(monkeypatch, f)
    second = f({"b": [Tensor(params["b"][0]), None], "w": params["w"]}, x)  # key order is free
    np.testing.assert_array_equal(np.asarray(second[0]["w"]), np.asarray(first[0]["w"]))
    assert second[0]["b"][1] is None and float(second[1]) == 4.0
    # Another structure or type is another key (and here, the general path).
    for other in ({"w": params["w"], "b": (params["b"][0], None)},
                  {"w": params["w"], "b": [params["b"][0].astype(np.float64), None]},
                  {"w": params["w"], "b": [params["b"][0]], "c": None}):
        with pytest.raises(AssertionError, match="general path"):
            f(other, x)


def test_tree_keys_are_unambiguous():
    from compiler.jit import _tree_key

    a, b = np.ones(2, np.float32), np.ones((), np.float32)
    calls = [(a, b), ((a, b),), ([a, b],), ({"x": a, "y": b},), ((a,), b), (a, (b,)),
             ({"x": (a, b)},), (None, a, b), ({"x": a}, {"y": b}), ([a], [b]), ([[a, b]],)]
    keys = [_tree_key(c)[0] for c in calls]
    assert len(set(keys)) == len(keys)
    assert _tree_key((a, 1.0)) is None and _tree_key(({1: a, "x": b},)) is None
