"""Tests of the reverse-mode differentiation pass (compiler/autodiff).

The table-driven test differentiates every op sample of ``tests/op_samples.py``
in float64 and compares with central finite differences; the rest check second
derivatives (grad of grad), tie-breaking, the driver's bookkeeping (fan-out,
zeros, pass-through outputs, locations) and the error messages.
"""

from __future__ import annotations

import numpy as np
import pytest

from ir import Builder, DType, Eqn, Function, TensorType, Value, all_ops, interpret
from compiler.autodiff import (
    NONDIFFERENTIABLE,
    RULES,
    DifferentiationError,
    grad_function,
    jvp_function,
    vjp_function,
)
from op_samples import all_samples

F64 = DType.f64
EPS = 1e-6
RTOL, ATOL = 1e-6, 1e-8

DIFFERENTIABLE_SAMPLES = [s for s in all_samples() if s.differentiable]


# --- helpers -----------------------------------------------------------------------------


def _f64(t: TensorType) -> TensorType:
    return t.with_dtype(F64) if t.dtype.is_float else t


def _apply_f64(sample) -> tuple[Builder, Value]:
    """A builder applying the sample's op to fresh params, with float types made f64."""
    b = Builder(sample.op)
    params = [b.param(_f64(t)) for t in sample.inputs]
    attrs = {
        k: F64 if isinstance(v, DType) and v.is_float else v for k, v in sample.attrs.items()
    }
    (out,) = b.emit(sample.op, params, attrs)
    return b, out


def _weighted_loss(sample, rng) -> Function:
    """loss(operands) = sum(op(operands) * W) in float64, W a random constant."""
    b, out = _apply_f64(sample)
    weights = b.constant(rng.standard_normal(out.shape), out.dtype, out.shape)
    loss = b.reduce_sum(b.mul(out, weights), axes=list(range(out.type.rank)))
    return b.finish([loss])


def _numeric_grad(fn: Function, args: list[np.ndarray], index: int, output: int = 0):
    """Central finite differences of scalar output ``output`` w.r.t. argument ``index``."""
    x = args[index]
    grad = np.zeros_like(x)
    for j in np.ndindex(x.shape):
        values = []
        for sign in (1, -1):
            shifted = x.copy()
            shifted[j] += sign * EPS
            trial = list(args)
            trial[index] = shifted
            values.append(interpret(fn, trial)[output])
        grad[j] = (values[0] - values[1]) / (2 * EPS)
    return grad


def _scalar_from(fn: Function, make_scalar) -> Function:
    """``fn`` with a new first output ``make_scalar(b, fn.outputs)``; its outputs follow."""
    b = Builder(fn.name + "_scalar")
    b.params, b.eqns = list(fn.params), list(fn.eqns)
    return b.finish([make_scalar(b, fn.outputs), *fn.outputs])


def _total(b: Builder, x: Value) -> Value:
    return b.reduce_sum(x, axes=list(range(x.type.rank)))


def _dot_with(b: Builder, x: Value, direction: np.ndarray) -> Value:
    """The scalar sum(x * direction)."""
    return _total(b, b.mul(x, b.constant(direction, x.dtype, x.shape)))


def _f64_params(*shapes):
    b = Builder("f")
    return b, [b.param(TensorType(F64, shape)) for shape in shapes]


# --- every op against finite differences -------------------------------------------------


@pytest.mark.parametrize("sample", DIFFERENTIABLE_SAMPLES, ids=lambda s: s.id)
def test_vjp_rule_matches_finite_differences(sample):
    rng = np.random.default_rng(0)
    fn = _weighted_loss(sample, rng)
    args = sample.arrays(rng, dtype_override=F64)
    grad_fn = grad_function(fn, sample.differentiable)
    results = interpret(grad_fn, args)
    assert len(results) == 1 + len(sample.differentiable)
    for index, grad in zip(sample.differentiable, results[1:], strict=True):
        assert grad.shape == args[index].shape and grad.dtype == np.float64
        expected = _numeric_grad(fn, args, index)
        np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL, err_msg=f"operand {index}")


@pytest.mark.parametrize("sample", DIFFERENTIABLE_SAMPLES, ids=lambda s: s.id)
def test_jvp_matches_finite_differences(sample):
    rng = np.random.default_rng(2)
    b, out = _apply_f64(sample)
    fn = b.finish([out])
    args = sample.arrays(rng, dtype_override=F64)
    tangents = [rng.standard_normal(args[i].shape) for i in sample.differentiable]
    value, tangent_out = interpret(jvp_function(fn, sample.differentiable), args + tangents)

    def shifted(sign):
        trial = list(args)
        for i, t in zip(sample.differentiable, tangents, strict=True):
            trial[i] = args[i] + sign * EPS * t
        return interpret(fn, trial)[0]

    np.testing.assert_array_equal(value, interpret(fn, args)[0])
    expected = (shifted(1) - shifted(-1)) / (2 * EPS)
    np.testing.assert_allclose(tangent_out, expected, rtol=RTOL, atol=ATOL)


def test_every_op_has_a_rule_or_is_nondifferentiable():
    ops = set(all_ops())
    assert not set(RULES) & NONDIFFERENTIABLE
    assert ops - set(RULES) - NONDIFFERENTIABLE == set(), "ops with no VJP rule"
    assert (set(RULES) | NONDIFFERENTIABLE) - ops == set(), "rules for unknown ops"


def test_every_differentiable_op_has_a_sample():
    sampled = {s.op for s in DIFFERENTIABLE_SAMPLES}
    assert set(RULES) - sampled == set()


# --- second derivatives ------------------------------------------------------------------


def _second_grad(fn: Function, direction: np.ndarray) -> Function:
    """grad of x -> sum(grad f(x) * direction): the Hessian-vector product H @ direction.

    Outputs: sum(grad * direction), f(x), grad f(x), H @ direction.
    """
    first = grad_function(fn, [0])
    return grad_function(_scalar_from(first, lambda b, outs: _dot_with(b, outs[1], direction)), [0])


@pytest.mark.parametrize("use_pow", [False, True])
def test_grad_of_grad_of_cube_is_6x(use_pow):
    b, (x,) = _f64_params((5,))
    cube = b.pow(x, b.constant(3.0, F64, (5,))) if use_pow else b.mul(b.mul(x, x), x)
    fn = b.finish([_total(b, cube)])
    xs = np.array([-2.0, -0.5, 0.0, 0.7, 3.0])
    if use_pow:  # pow(x, 3) for x <= 0 is outside pow's real domain for general y; use x > 0
        xs = np.abs(xs) + 0.1
    value, _, grad, hess_diag = interpret(_second_grad(fn, np.ones(5)), [xs])
    np.testing.assert_allclose(grad, 3 * xs**2, rtol=1e-12)
    np.testing.assert_allclose(hess_diag, 6 * xs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(value, np.sum(3 * xs**2), rtol=1e-12)


def test_grad_of_grad_of_tanh():
    b, (x,) = _f64_params((6,))
    fn = b.finish([_total(b, b.tanh(x))])
    xs = np.linspace(-2, 2, 6)
    outputs = interpret(_second_grad(fn, np.ones(6)), [xs])
    t = np.tanh(xs)
    np.testing.assert_allclose(outputs[1], np.sum(t), rtol=1e-12)
    np.testing.assert_allclose(outputs[2], 1 - t**2, rtol=1e-12)
    np.testing.assert_allclose(outputs[3], -2 * t * (1 - t**2), rtol=1e-12)


def _logsumexp(b: Builder, x: Value) -> Value:
    """log(sum(exp(x - max x))) + max x, from primitives, as the front end builds it."""
    n = x.shape[0]
    m = b.reduce_max(x, axes=[0])
    shifted = b.sub(x, b.broadcast(m, shape=[n], dims=[]))
    return b.add(b.log(b.reduce_sum(b.exp(shifted), axes=[0])), m)


def test_logsumexp_hessian_is_diag_p_minus_outer_p():
    n = 5
    b, (x,) = _f64_params((n,))
    fn = b.finish([_logsumexp(b, x)])
    xs = np.array([0.3, -1.2, 2.0, 0.5, -0.1])
    p = np.exp(xs - xs.max()) / np.exp(xs - xs.max()).sum()
    hessian = np.stack([interpret(_second_grad(fn, row), [xs])[-1] for row in np.eye(n)])
    np.testing.assert_allclose(hessian, np.diag(p) - np.outer(p, p), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(interpret(grad_function(fn, [0]), [xs])[1], p, rtol=1e-12)


def _mlp_loss() -> Function:
    """mean((tanh(x W1 + b1) W2 + b2 - y)^2) over a batch of 4: params W1, b1, W2, b2, x, y."""
    batch, n_in, hidden, n_out = 4, 3, 5, 2
    b = Builder("mlp")
    w1, b1 = b.param(TensorType(F64, (n_in, hidden))), b.param(TensorType(F64, (hidden,)))
    w2, b2 = b.param(TensorType(F64, (hidden, n_out))), b.param(TensorType(F64, (n_out,)))
    x, y = b.param(TensorType(F64, (batch, n_in))), b.param(TensorType(F64, (batch, n_out)))
    h = b.tanh(b.add(b.dot(x, w1), b.broadcast(b1, shape=[batch, hidden], dims=[1])))
    out = b.add(b.dot(h, w2), b.broadcast(b2, shape=[batch, n_out], dims=[1]))
    err = b.sub(out, y)
    mean = b.div(_total(b, b.mul(err, err)), b.constant(float(batch * n_out), F64))
    return b.finish([mean])


def test_mlp_hessian_vector_product_matches_finite_differences_of_the_gradient():
    rng = np.random.default_rng(1)
    fn = _mlp_loss()
    args = [rng.standard_normal(p.shape) for p in fn.params]
    wrt = [0, 1, 2, 3]
    vs = [rng.standard_normal(fn.params[i].shape) for i in wrt]
    grad = grad_function(fn, wrt)

    def hvp_scalar(b, outs):
        terms = [_dot_with(b, g, v) for g, v in zip(outs[1:], vs, strict=True)]
        total = terms[0]
        for term in terms[1:]:
            total = b.add(total, term)
        return total

    hvp = interpret(grad_function(_scalar_from(grad, hvp_scalar), wrt), args)[-len(wrt):]
    h = 1e-5
    plus = interpret(grad, [a + h * v for a, v in zip(args, vs + [0, 0], strict=True)])[1:]
    minus = interpret(grad, [a - h * v for a, v in zip(args, vs + [0, 0], strict=True)])[1:]
    for got, p, m in zip(hvp, plus, minus, strict=True):
        np.testing.assert_allclose(got, (p - m) / (2 * h), rtol=1e-6, atol=1e-8)


def test_forward_over_reverse_hvp_matches_reverse_over_reverse():
    rng = np.random.default_rng(3)
    fn = _mlp_loss()
    args = [rng.standard_normal(p.shape) for p in fn.params]
    vs = [rng.standard_normal(fn.params[i].shape) for i in (0, 2)]
    grad = grad_function(fn, [0, 2])
    hvp_forward = interpret(jvp_function(grad, [0, 2]), args + vs)[-2:]

    def hvp_scalar(b, outs):
        return b.add(_dot_with(b, outs[1], vs[0]), _dot_with(b, outs[2], vs[1]))

    hvp_reverse = interpret(grad_function(_scalar_from(grad, hvp_scalar), [0, 2]), args)[-2:]
    for forward, reverse in zip(hvp_forward, hvp_reverse, strict=True):
        np.testing.assert_allclose(forward, reverse, rtol=1e-12, atol=1e-14)


def test_jvp_structure_zero_tangents_and_locations():
    b, (x, w, unused) = _f64_params((3,), (3,), (2,))
    with b.at("model.py:1"):
        y = b.sin(b.mul(x, w))
    with b.at("model.py:2"):
        total = _total(b, y)
    fn = b.finish([total, b.argmax(x, axis=0), b.exp(w)])
    jvp = jvp_function(fn, [0, 2])
    assert jvp.params[:3] == fn.params and jvp.param_types[3:] == [x.type, unused.type]
    assert jvp.outputs[:3] == fn.outputs and jvp.output_types[3:] == fn.output_types
    forward_values = {v for e in fn.eqns for v in e.outputs}
    derived = [e for e in jvp.eqns if e.op != "constant" and e.output not in forward_values]
    assert {e.loc for e in derived} == {"model.py:1 (jvp)", "model.py:2 (jvp)"}
    assert {e.op for e in derived} == {"cos", "mul", "reduce_sum"}, "backward pass swept"
    xs, ws, tx, tu = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0]), np.ones(3), np.ones(2)
    _, _, _, t_total, t_index, t_exp = interpret(jvp, [xs, ws, np.zeros(2), tx, tu])
    np.testing.assert_allclose(t_total, np.sum(np.cos(xs * ws) * ws), rtol=1e-14)
    assert t_index == 0 and t_index.dtype == np.int64
    np.testing.assert_array_equal(t_exp, np.zeros(3))
    b = Builder("f")
    n = b.param(TensorType(DType.i32, (3,)))
    with pytest.raises(DifferentiationError, match="gradients only flow through floating"):
        jvp_function(b.finish([b.cast(n, F64)]), [0])


# --- ties ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_elementwise_extremum_ties_give_each_operand_half(op):
    b, (x, y) = _f64_params((4,), (4,))
    fn = b.finish([_total(b, b.emit(op, [x, y])[0])])
    xs, ys = np.array([1.0, 2.0, 3.0, -1.0]), np.array([1.0, 5.0, 0.0, -1.0])
    _, gx, gy = interpret(grad_function(fn, [0, 1]), [xs, ys])
    x_wins = (xs > ys) if op == "maximum" else (xs < ys)
    tie = xs == ys
    np.testing.assert_array_equal(gx, np.where(tie, 0.5, x_wins.astype(float)))
    np.testing.assert_array_equal(gx + gy, np.ones(4))


@pytest.mark.parametrize("op", ["reduce_max", "reduce_min"])
def test_reduction_ties_split_evenly(op):
    b, (x,) = _f64_params((2, 4))
    weights = np.array([2.0, 3.0])
    fn = b.finish([_dot_with(b, b.emit(op, [x], {"axes": [1]})[0], weights)])
    xs = np.array([[1.0, 4.0, 4.0, 4.0], [-3.0, 0.0, -3.0, 2.0]])
    (grad,) = interpret(grad_function(fn, [0]), [xs])[1:]
    if op == "reduce_max":
        expected = [[0, 2 / 3, 2 / 3, 2 / 3], [0, 0, 0, 3]]
    else:
        expected = [[2, 0, 0, 0], [1.5, 0, 1.5, 0]]
    np.testing.assert_allclose(grad, expected, rtol=1e-15)


# --- the driver's bookkeeping --------------------------------------------------------------


def test_fan_out_is_accumulated():
    # f(x) = sum(x*x + sin(x)*x + x): x is used five times.
    b, (x,) = _f64_params((3,))
    terms = b.add(b.add(b.mul(x, x), b.mul(b.sin(x), x)), x)
    fn = b.finish([_total(b, terms)])
    xs = np.array([0.1, -1.3, 2.2])
    (grad,) = interpret(grad_function(fn, [0]), [xs])[1:]
    np.testing.assert_allclose(grad, 2 * xs + np.cos(xs) * xs + np.sin(xs) + 1, rtol=1e-14)


def test_unused_and_cut_off_params_get_zero_gradients():
    b, (x, unused, through_floor, through_int) = _f64_params((2,), (3,), (2,), (2,))
    int_path = b.cast(b.cast(through_int, DType.i32), F64)
    total = b.add(b.add(b.mul(x, x), b.floor(through_floor)), int_path)
    fn = b.finish([_total(b, total)])
    args = [np.array([1.0, 2.0]), np.ones(3), np.array([0.5, 1.5]), np.array([2.5, -1.5])]
    grad_fn = grad_function(fn, [0, 1, 2, 3])
    _, gx, g_unused, g_floor, g_int = interpret(grad_fn, args)
    np.testing.assert_array_equal(gx, [2.0, 4.0])
    for g, arg in [(g_unused, args[1]), (g_floor, args[2]), (g_int, args[3])]:
        np.testing.assert_array_equal(g, np.zeros_like(arg))
    # Zeros are pruned: no gradient equation touches the cut-off parameters.
    backward = grad_fn.eqns[len(fn.eqns):]
    assert {e.op for e in backward} <= {"constant", "broadcast", "mul", "add"}


def test_nondifferentiable_ops_on_the_path_contribute_zero():
    # relu(x) = x * (x > 0), argmax is on the path too; d/dx = (x > 0) + 0.
    b, (x,) = _f64_params((4,))
    mask = b.cast(b.compare(x, b.constant(0.0, F64, (4,)), "gt"), F64)
    index = b.cast(b.argmax(x, axis=0), F64)
    fn = b.finish([b.add(_total(b, b.mul(x, mask)), index)])
    xs = np.array([-1.0, 2.0, 0.5, -3.0])
    (grad,) = interpret(grad_function(fn, [0]), [xs])[1:]
    np.testing.assert_array_equal(grad, [0.0, 1.0, 1.0, 0.0])


def test_value_and_aux_outputs_pass_through_unchanged():
    b, (x, y) = _f64_params((3,), (3,))
    prod = b.mul(x, y)
    aux_int = b.argmax(prod, axis=0)
    fn = b.finish([prod, _total(b, prod), aux_int])
    args = [np.array([1.0, 2.0, 3.0]), np.array([4.0, -5.0, 6.0])]
    grad_fn = grad_function(fn, [1, 0], output_index=1)
    assert grad_fn.params == fn.params
    assert grad_fn.outputs[:3] == fn.outputs
    assert [v.type for v in grad_fn.outputs[3:]] == [y.type, x.type]
    results = interpret(grad_fn, args)
    for got, expected in zip(results[:3], interpret(fn, args), strict=True):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(results[3], args[0])
    np.testing.assert_array_equal(results[4], args[1])


def test_param_that_is_the_output_and_duplicate_outputs():
    b, (x,) = _f64_params(())
    fn = b.finish([x, x])
    grad_fn = vjp_function(fn, [0])
    out = interpret(grad_fn, [np.array(2.0), np.array(3.0), np.array(4.0)])
    assert out[2] == 7.0


def test_vjp_function_with_vector_seed_and_integer_output():
    b, (x,) = _f64_params((3,))
    y = b.exp(x)
    fn = b.finish([y, b.argmax(x, axis=0), b.sin(x)])
    vjp = vjp_function(fn, [0])
    assert vjp.param_types == fn.param_types + fn.output_types
    assert vjp.output_types == fn.output_types + [x.type]
    xs, ct1, ct3 = np.array([0.1, 0.2, -0.4]), np.array([1.0, -2.0, 3.0]), np.array([0.5, 0, 1])
    results = interpret(vjp, [xs, ct1, np.array(99, dtype=np.int64), ct3])
    np.testing.assert_allclose(results[-1], ct1 * np.exp(xs) + ct3 * np.cos(xs), rtol=1e-14)


def test_gradient_equations_carry_the_forward_location():
    b, (x,) = _f64_params((3,))
    with b.at("model.py:12"):
        y = b.tanh(x)
    with b.at("model.py:13"):
        loss = _total(b, y)
    fn = b.finish([loss])
    grad_fn = grad_function(fn, [0])
    backward = grad_fn.eqns[len(fn.eqns):]
    locs = {e.loc for e in backward if e.op != "constant" or e.loc}
    assert locs == {"model.py:12 (grad)", "model.py:13 (grad)"}
    assert {e.loc for e in backward if e.op == "broadcast"} == {"model.py:13 (grad)"}
    assert "# model.py:12 (grad)" in str(grad_fn)
    twice = grad_function(_scalar_from(grad_fn, lambda b, outs: _total(b, outs[1])), [0])
    assert any(e.loc == "model.py:12 (grad) (grad)" for e in twice.eqns)


def test_input_function_is_not_mutated():
    fn = _mlp_loss()
    before_text, before_eqns = str(fn), list(fn.eqns)
    before_attrs = [dict(e.attrs) for e in fn.eqns]
    grad_fn = grad_function(fn, [0, 1])
    vjp_function(fn, [2])
    assert str(fn) == before_text
    assert fn.eqns == before_eqns and [e.attrs for e in fn.eqns] == before_attrs
    assert not set(map(id, grad_fn.eqns)) & set(map(id, fn.eqns)), "eqns are copied"


def test_pow_gradients_are_safe_where_x_is_not_positive():
    b, (x, y) = _f64_params((5,), (5,))
    fn = b.finish([_total(b, b.pow(x, y))])
    xs = np.array([0.0, 0.0, -2.0, 2.0, 0.0])
    ys = np.array([2.0, 0.0, 2.0, 0.0, 0.5])
    _, gx, gy = interpret(grad_function(fn, [0, 1]), [xs, ys])
    np.testing.assert_array_equal(gx, [0.0, 0.0, -4.0, 0.0, np.inf])
    np.testing.assert_array_equal(gy, [0.0, 0.0, 0.0, 1.0 * np.log(2.0), 0.0])
    # Second derivatives: no nan leaks out of the guarded branches, and where x > 0 the
    # mixed partials agree both ways (also at y == 0) with the closed form.
    xs, ys = np.array([0.0, 0.0, -2.0, 2.0, 1.5]), np.array([2.0, 0.0, 2.0, 0.0, -1.3])
    first = grad_function(fn, [0, 1])

    def grad_of_total(output):
        total = _scalar_from(first, lambda b, outs: _total(b, outs[output]))
        return interpret(grad_function(total, [0, 1]), [xs, ys])

    d_gx, d_gy = grad_of_total(1), grad_of_total(2)
    for second in (*d_gx[-2:], *d_gy[-2:]):
        assert not np.isnan(second).any()
    positive = xs > 0
    x, y = xs[positive], ys[positive]
    mixed = x ** (y - 1) * (1 + y * np.log(x))
    np.testing.assert_allclose(d_gx[-1][positive], mixed, rtol=1e-12)
    np.testing.assert_allclose(d_gy[-2][positive], mixed, rtol=1e-12)
    np.testing.assert_allclose(d_gx[-2][positive], y * (y - 1) * x ** (y - 2), rtol=1e-12)
    np.testing.assert_allclose(d_gy[-1][positive], x**y * np.log(x) ** 2, rtol=1e-12)


def test_abs_and_sign_at_zero():
    b, (x,) = _f64_params((3,))
    fn = b.finish([_total(b, b.add(b.abs(x), b.sign(x)))])
    (grad,) = interpret(grad_function(fn, [0]), [np.array([-2.0, 0.0, 3.0])])[1:]
    np.testing.assert_array_equal(grad, [-1.0, 0.0, 1.0])


# --- errors --------------------------------------------------------------------------------


def test_missing_rule_names_the_op_and_location():
    b, (x,) = _f64_params((3,))
    y = Value(x.type)
    b.eqns.append(Eqn("mystery", (x,), (y,), {}, "model.py:12"))
    fn = b.finish([_total(b, y)])
    message = r"no VJP rule for 'mystery' \(used at model\.py:12"
    with pytest.raises(DifferentiationError, match=message):
        grad_function(fn, [0])


def test_missing_rule_off_the_path_is_fine():
    b, (x, z) = _f64_params((3,), (3,))
    y = Value(x.type)
    b.eqns.append(Eqn("mystery", (z,), (y,), {}, "model.py:12"))
    fn = b.finish([_total(b, x), y])
    grad_fn = grad_function(fn, [0])
    assert [e.op for e in grad_fn.eqns[len(fn.eqns):]] == ["constant", "broadcast"]
    assert grad_fn.outputs[:2] == fn.outputs


def test_integer_parameter_cannot_be_differentiated():
    b = Builder("f")
    x = b.param(TensorType(DType.i32, (3,)))
    fn = b.finish([b.reduce_sum(b.cast(x, F64), axes=[0])])
    with pytest.raises(DifferentiationError, match="gradients only flow through floating values"):
        grad_function(fn, [0])
    with pytest.raises(TypeError, match="parameter 0 of type i32\\[3\\]"):
        vjp_function(fn, [0])


def test_non_scalar_output_needs_vjp():
    b, (x,) = _f64_params((3,))
    fn = b.finish([b.exp(x)])
    with pytest.raises(DifferentiationError, match="float scalar output.*f64\\[3\\].*vjp_function"):
        grad_function(fn, [0])


def test_bad_indices():
    b, (x,) = _f64_params(())
    fn = b.finish([b.exp(x)])
    with pytest.raises(DifferentiationError, match="output_index 1 is out of range"):
        grad_function(fn, [0], output_index=1)
    with pytest.raises(DifferentiationError, match="wrt index 3 is not a parameter index"):
        grad_function(fn, [3])
