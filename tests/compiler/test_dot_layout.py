"""The dot_layout pass: transposes of the last two axes fold into dot attributes.

Structure (no dot reads a last-two-axes transpose; others are kept) and
numerics (the interpreter gives the same results before and after)."""

from __future__ import annotations

import numpy as np

from compiler.passes.dot_layout import fold_dot_transposes
from ir import Builder, DType, TensorType, interpret, print_function
from ir.verify import verify

F32 = DType.f32


def _same_results(before, after, seed=0):
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(p.shape).astype(np.float32) for p in before.params]
    for want, got in zip(interpret(before, args), interpret(after, args), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _ops(fn):
    return [e.op for e in fn.eqns]


def test_gradient_products_read_their_operands_through_attributes():
    b = Builder("grads")
    x = b.param(TensorType(F32, (4, 3)))
    g = b.param(TensorType(F32, (4, 5)))
    w = b.param(TensorType(F32, (6, 5)))
    x_t_g = b.dot(b.transpose(x, perm=[1, 0]), g)
    g_w_t = b.dot(g, b.transpose(w, perm=[1, 0]))
    both = b.dot(b.transpose(x_t_g, perm=[1, 0]), b.transpose(x, perm=[1, 0]))
    fn = b.finish([x_t_g, g_w_t, both])
    out = fold_dot_transposes(fn)
    verify(out, pass_name="dot_layout")
    assert _ops(out) == ["dot", "dot", "dot"]
    text = print_function(out)
    assert "transpose_lhs=true" in text and "transpose_rhs=true" in text
    _same_results(fn, out)


def test_a_transposed_product_swaps_its_operands():
    b = Builder("t")
    x = b.param(TensorType(F32, (2, 4, 3)))
    y = b.param(TensorType(F32, (2, 3, 5)))
    fn = b.finish([b.transpose(b.dot(x, y), perm=[0, 2, 1])])
    out = fold_dot_transposes(fn)
    assert _ops(out) == ["dot"]
    eqn = out.eqns[0]
    assert eqn.inputs == (y, x) and eqn.attrs == {"transpose_lhs": True, "transpose_rhs": True}
    _same_results(fn, out)


def test_other_transposes_and_shared_products_stay():
    b = Builder("keep")
    x = b.param(TensorType(F32, (3, 4, 5)))
    y = b.param(TensorType(F32, (5, 4, 6)))
    moved = b.transpose(x, perm=[1, 0, 2])           # not the last two axes
    z = b.dot(moved, b.transpose(y, perm=[1, 0, 2]))
    t = b.transpose(z, perm=[0, 2, 1])               # z is also a result: not folded
    fn = b.finish([z, t])
    out = fold_dot_transposes(fn)
    assert _ops(out) == _ops(fn)
    assert fold_dot_transposes(out) is out


def test_a_transpose_read_elsewhere_is_kept_for_its_other_reader():
    b = Builder("shared")
    x = b.param(TensorType(F32, (4, 3)))
    xt = b.transpose(x, perm=[1, 0])
    fn = b.finish([b.dot(xt, x), b.exp(xt)])
    out = fold_dot_transposes(fn)
    assert sorted(_ops(out)) == ["dot", "exp", "transpose"]
    dot = next(e for e in out.eqns if e.op == "dot")
    assert dot.inputs == (x, x) and dot.attrs == {"transpose_lhs": True}
    _same_results(fn, out)
