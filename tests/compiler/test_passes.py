"""Each optimisation pass: a structural postcondition, and the interpreter
giving the same results before and after."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from compiler.passes import (eliminate_common_subexpressions, eliminate_dead_code,
                             fold_constants, simplify)
from compiler.pipeline import PASSES, optimize
from ir import Builder, DType, TensorType, interpret, print_function, verify
from op_samples import all_samples

F32 = TensorType(DType.f32, (3, 4))
ALL_PASSES = [simplify, fold_constants, eliminate_common_subexpressions, eliminate_dead_code]


def same_results(before, after, rng=None):
    rng = rng or np.random.default_rng(0)
    args = [rng.standard_normal(p.shape).astype(p.dtype.numpy) if p.dtype.is_float
            else (rng.integers(-3, 4, p.shape).astype(p.dtype.numpy) if p.dtype.is_int
                  else rng.random(p.shape) < 0.5) for p in before.params]
    for x, y in zip(interpret(before, args), interpret(after, args), strict=True):
        np.testing.assert_array_equal(x, y)


def ops(fn):
    return [e.op for e in fn.eqns]


def test_dce_removes_unused_and_keeps_used():
    b = Builder("f")
    x = b.param(F32)
    b.exp(x)                       # dead
    y = b.tanh(b.neg(x))
    fn = b.finish([y])
    out = eliminate_dead_code(fn)
    verify(out)
    assert ops(out) == ["neg", "tanh"]
    same_results(fn, out)
    assert ops(fn) == ["exp", "neg", "tanh"]  # input not mutated


def test_cse_merges_equal_equations_but_not_signed_zeros():
    b = Builder("f")
    x = b.param(F32)
    a1, a2 = b.exp(x), b.exp(x)
    z1 = b.constant(0.0, "f32", (3, 4))
    z2 = b.constant(-0.0, "f32", (3, 4))
    fn = b.finish([b.add(a1, a2), b.add(z1, z2)])
    out = eliminate_common_subexpressions(fn)
    verify(out)
    assert ops(out).count("exp") == 1 and ops(out).count("constant") == 2
    same_results(fn, out)


def test_cse_matches_add_and_mul_in_either_operand_order_but_not_sub():
    b = Builder("f")
    x, y = b.param(F32), b.param(F32)
    products = [b.mul(x, y), b.mul(y, x)]          # how the MSE gradient came out: c*d + d*c
    sums = [b.add(x, y), b.add(y, x)]
    differences = [b.sub(x, y), b.sub(y, x)]
    fn = b.finish([*products, *sums, *differences])
    out = eliminate_common_subexpressions(fn)
    verify(out)
    assert ops(out).count("mul") == 1 and ops(out).count("add") == 1
    assert ops(out).count("sub") == 2
    same_results(fn, out)


def test_simplify_identities():
    b = Builder("f")
    x = b.param(F32)
    one = b.broadcast(b.constant(1.0, "f32"), shape=[3, 4], dims=[])
    zero = b.constant(0.0, "f32", (3, 4))
    y = b.add(b.mul(x, one), zero)
    y = b.neg(b.neg(y))
    y = b.reshape(b.reshape(y, shape=[12]), shape=[2, 6])
    y = b.transpose(b.transpose(y, perm=[1, 0]), perm=[1, 0])
    fn = b.finish([y])
    out = eliminate_dead_code(simplify(fn))
    verify(out)
    assert ops(out) == ["reshape"]
    same_results(fn, out)


def test_simplify_composes_broadcasts():
    b = Builder("f")
    x = b.param(TensorType(DType.f32, (3,)))
    y = b.broadcast(b.broadcast(x, shape=[4, 3], dims=[1]), shape=[2, 4, 3], dims=[1, 2])
    fn = b.finish([y])
    out = eliminate_dead_code(simplify(fn))
    assert ops(out) == ["broadcast"] and out.eqns[0].attrs["dims"] == (2,)
    same_results(fn, out)


def test_fold_constants_splats_and_small_literals():
    b = Builder("f")
    x = b.param(F32)
    c = b.exp(b.add(b.constant(1.0, "f32", (3, 4)), b.constant(2.0, "f32", (3, 4))))
    lit = b.reduce_sum(b.constant(np.arange(6.0).reshape(2, 3), "f64"), axes=[1])
    fn = b.finish([b.mul(x, c), lit])
    out = eliminate_dead_code(fold_constants(fn))
    verify(out)
    assert sorted(ops(out)) == ["constant", "constant", "mul"]
    same_results(fn, out)


def test_fold_keeps_big_literals_unfolded():
    b = Builder("f")
    big = b.constant(np.arange(1000.0), "f64")
    fn = b.finish([b.exp(big)])
    assert ops(eliminate_dead_code(fold_constants(fn))) == ["constant", "exp"]


@pytest.mark.parametrize("sample", all_samples(), ids=lambda s: s.id)
def test_every_pass_preserves_every_op(sample):
    fn = sample.function()
    out = optimize(fn, verify_each=True)
    rng = np.random.default_rng(1)
    args = sample.arrays(rng)
    for x, y in zip(interpret(fn, args), interpret(out, args), strict=True):
        np.testing.assert_array_equal(x, y)


UNARY = ["neg", "exp", "tanh", "abs", "logistic"]
BINARY = ["add", "sub", "mul", "maximum"]


@st.composite
def random_graphs(draw):
    b = Builder("random")
    values = [b.param(F32), b.param(F32)]
    values.append(b.constant(draw(st.sampled_from([0.0, 1.0, 2.0, -1.0])), "f32", (3, 4)))
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            op = draw(st.sampled_from(UNARY))
            values.append(b.emit(op, [draw(st.sampled_from(values))])[0])
        else:
            op = draw(st.sampled_from(BINARY))
            values.append(b.emit(op, [draw(st.sampled_from(values)), draw(st.sampled_from(values))])[0])
    outputs = draw(st.lists(st.sampled_from(values[2:]), min_size=1, max_size=3))
    return b.finish(outputs)


@settings(max_examples=60, deadline=None)
@given(random_graphs())
def test_pipeline_on_random_graphs(fn):
    out = optimize(fn, verify_each=True)
    same_results(fn, out)
    assert len(out.eqns) <= len(fn.eqns)
    # Postconditions: no dead equation, no duplicate equation.
    again = eliminate_dead_code(eliminate_common_subexpressions(out))
    assert print_function(again) == print_function(out)


def test_pipeline_names_are_unique_and_readable():
    names = [name for name, _ in PASSES]
    assert len(names) == len(set(names))
