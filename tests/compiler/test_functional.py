"""``compiler.functional``: grad, value_and_grad, vjp, jvp, jacobian, hessian.

First derivatives are compared with central finite differences in float64 of the
compiled function itself (its values are checked against numpy elsewhere);
second derivatives with closed forms and with finite differences of the
compiled first derivative. JAX, when installed, is an extra oracle.
"""

from __future__ import annotations

import numpy as np
import pytest

import compiler as xp
from compiler import Tensor, Variable, functional, jit, nn
from compiler.pytree import flatten, tree_map, unflatten
from ir.errors import IRError

pytestmark = pytest.mark.llvm

EPS = 1e-6


def _np(tree):
    return tree_map(lambda t: np.asarray(t.numpy() if hasattr(t, "numpy") else t), tree)


def _numeric_grad(f, args, argnum=0, eps=EPS):
    """Central differences of scalar ``f`` (run through jit) w.r.t. ``args[argnum]``."""
    run = jit(f)
    leaves, tree = flatten(args[argnum])
    grads = []
    for k, leaf in enumerate(leaves):
        g = np.zeros_like(leaf)
        for i in np.ndindex(leaf.shape):
            values = []
            for sign in (1, -1):
                moved = [np.array(x, copy=True) for x in leaves]
                moved[k][i] += sign * eps
                call = list(args)
                call[argnum] = unflatten(tree, moved)
                values.append(float(run(*call).item()))
            g[i] = (values[0] - values[1]) / (2 * eps)
        grads.append(g)
    return unflatten(tree, grads)


def _close(got, expected, rtol=1e-6, atol=1e-8):
    got_leaves, got_tree = flatten(_np(got))
    exp_leaves, exp_tree = flatten(_np(expected))
    assert got_tree == exp_tree, f"structure {got_tree} != {exp_tree}"
    for g, e in zip(got_leaves, exp_leaves, strict=True):
        assert g.shape == np.shape(e), f"shape {g.shape} != {np.shape(e)}"
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


RNG = np.random.default_rng(0)
X = RNG.standard_normal(3)
Y = RNG.standard_normal(3)


# --- grad and value_and_grad ------------------------------------------------------------------

def test_book_example():
    def square(x):
        return x * x

    dx = functional.grad(square)(Tensor([3.0], ()))
    assert dx.data()[0] == 6.0
    val, dx = functional.value_and_grad(square)(Tensor([3.0], ()))
    assert val.data()[0] == 9.0 and dx.data()[0] == 6.0


def _composite(a, b):
    return (xp.tanh(a * b) + xp.exp(-a * a) * xp.sin(b) + xp.log1p(b * b) / (1.0 + a * a)).sum()


@pytest.mark.parametrize("argnum", [0, 1])
def test_grad_matches_finite_differences(argnum):
    got = functional.grad(_composite, argnums=argnum)(X, Y)
    _close(got, _numeric_grad(_composite, [X, Y], argnum))


def test_argnums_tuple_negative_and_value_and_grad():
    f = lambda a, b: (a * b * b).sum()  # noqa: E731
    ga, gb = functional.grad(f, argnums=(0, 1))(X, Y)
    _close((ga, gb), (Y * Y, 2 * X * Y))
    _close(functional.grad(f, argnums=-1)(X, Y), 2 * X * Y)
    _close(functional.grad(f, argnums=(1,))(X, Y), (2 * X * Y,))  # a tuple in, a tuple out
    value, (gb2, ga2) = functional.value_and_grad(f, argnums=(1, 0))(X, Y)
    _close((value, gb2, ga2), ((X * Y * Y).sum(), 2 * X * Y, Y * Y))


def test_has_aux():
    def f(a):
        return (a * a).sum(), {"mean": a.mean(), "double": [a * 2.0, None]}

    g, aux = functional.grad(f, has_aux=True)(X)
    _close(g, 2 * X)
    _close(aux, {"mean": X.mean(), "double": [2 * X, None]})
    (value, aux2), g2 = functional.value_and_grad(f, has_aux=True)(X)
    _close((value, aux2, g2), ((X * X).sum(), aux, 2 * X))


def test_has_aux_with_a_non_pair_result_raises():
    with pytest.raises(IRError, match="pair"):
        functional.grad(lambda a: a.sum(), has_aux=True)(X)
    with pytest.raises(IRError, match="pair"):  # a 2-vector must not be unpacked as (value, aux)
        functional.grad(lambda a: a[:2], has_aux=True)(X)


def test_parameter_structures():
    params = {"w": RNG.standard_normal((3, 2)), "b": (RNG.standard_normal(2), [np.float64(0.5)])}

    def loss(p, x):
        h = xp.tanh(x @ p["w"] + p["b"][0]) * p["b"][1][0]
        return (h * h).sum()

    got = functional.grad(loss)(params, X)
    assert isinstance(got, dict) and isinstance(got["b"], tuple) and isinstance(got["b"][1], list)
    _close(got, _numeric_grad(loss, [params, X]))
    value, got2 = functional.value_and_grad(loss)(params, X)
    _close(got2, got)
    _close(value, float(jit(loss)(params, X).item()))
    lst = functional.grad(lambda ws: (ws[0] * ws[1]).sum())([X, Y])
    assert isinstance(lst, list)
    _close(lst, [Y, X])


def test_keyword_arguments_closures_and_constants():
    w = Variable(Y)
    g = functional.grad(lambda a, scale=1.0: (a * w).sum() * scale)(X, scale=np.float64(3.0))
    _close(g, 3 * Y)
    assert w.grad is None             # a closed-over Variable is a constant to grad


def test_float32_python_scalars_and_variables():
    g = functional.grad(lambda a: (a ** 3).sum())(X.astype(np.float32))
    assert g.dtype == xp.f32
    _close(g, 3 * X.astype(np.float32) ** 2, rtol=1e-5)
    s = functional.grad(lambda a: a ** 3)(2.0)
    assert s.dtype == xp.f32 and s.item() == 12.0
    v = functional.grad(lambda a: (a ** 3).sum())(Variable(X))
    assert isinstance(v, Variable)    # a Variable argument joins its lazy graph
    _close(v, 3 * X ** 2)


def test_grad_is_cached_per_signature():
    calls = []

    def f(a):
        calls.append(a.shape)
        return (a * a).sum()

    df = functional.grad(f)
    for _ in range(3):
        df(X)
    df(X.astype(np.float32))
    df(np.ones((2, 2)))
    assert calls == [(3,), (3,), (2, 2)]


def test_gradient_conventions_at_kinks():
    z = np.array([-1.0, 0.0, 1.0])
    _close(functional.grad(lambda a: nn.relu(a).sum())(z), np.array([0.0, 0.0, 1.0]))
    _close(functional.grad(lambda a: a.max())(np.array([1.0, 3.0, 3.0])), np.array([0.0, 0.5, 0.5]))
    _close(functional.grad(lambda a: a.min())(np.array([2.0, 2.0, 3.0])), np.array([0.5, 0.5, 0.0]))
    _close(functional.grad(lambda a: xp.maximum(a, 0.0).sum())(z).numpy()[2], 1.0)


# --- higher order -----------------------------------------------------------------------------

def test_grad_of_grad_of_cube():
    f = lambda a: a * a * a  # noqa: E731
    x = np.float64(2.0)
    assert functional.grad(f)(x).item() == 12.0
    assert functional.grad(functional.grad(f))(x).item() == 12.0
    assert functional.grad(functional.grad(functional.grad(f)))(x).item() == 6.0
    assert functional.grad(functional.grad(lambda a: a ** 3))(x).item() == 12.0


def test_grad_of_grad_of_tanh():
    x = np.float64(0.7)
    t = np.tanh(x)
    d2 = functional.grad(functional.grad(xp.tanh))(x)
    np.testing.assert_allclose(d2.item(), -2 * t * (1 - t * t), rtol=1e-12)
    d3 = functional.grad(functional.grad(functional.grad(xp.tanh)))(x)
    np.testing.assert_allclose(d3.item(), -2 * (1 - t * t) * (1 - 3 * t * t), rtol=1e-12)


def test_hessian_of_logsumexp_is_diag_p_minus_ppT():
    x = RNG.standard_normal(4)
    p = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    _close(functional.hessian(nn.logsumexp)(x), np.diag(p) - np.outer(p, p), rtol=1e-10, atol=1e-12)
    # grad of (a scalar function of) grad, the other way to second order
    w = RNG.standard_normal(4)
    g = functional.grad(lambda a: (functional.grad(nn.logsumexp)(a) * w).sum())(x)
    _close(g, (np.diag(p) - np.outer(p, p)) @ w, rtol=1e-10, atol=1e-12)


def _mlp(params, x, y):
    h = xp.tanh(x @ params["w1"] + params["b1"])
    out = h @ params["w2"] + params["b2"]
    return ((out - y) ** 2).mean()


def _mlp_params():
    rng = np.random.default_rng(3)
    return {"w1": rng.standard_normal((3, 4)) * 0.5, "b1": rng.standard_normal(4) * 0.1,
            "w2": rng.standard_normal((4, 2)) * 0.5, "b2": rng.standard_normal(2) * 0.1}


def test_tiny_mlp_first_and_second_order():
    rng = np.random.default_rng(4)
    params, x, y = _mlp_params(), rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    grads = functional.grad(_mlp)(params, x, y)
    _close(grads, _numeric_grad(_mlp, [params, x, y]), rtol=1e-6, atol=1e-9)
    # Hessian-vector product by grad of grad, against differences of the compiled gradient.
    v = tree_map(lambda p: rng.standard_normal(p.shape), params)

    def directional(p, x, y):
        g = functional.grad(_mlp)(p, x, y)
        return sum((g[k] * v[k]).sum() for k in sorted(g))

    hvp = functional.grad(directional)(params, x, y)
    _close(hvp, _numeric_grad(directional, [params, x, y]), rtol=1e-5, atol=1e-8)
    # the input gradient too (argnums=1)
    _close(functional.grad(_mlp, argnums=1)(params, x, y), _numeric_grad(_mlp, [params, x, y], 1))


def test_optional_oracle_jax_mlp():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    rng = np.random.default_rng(5)
    params, x, y = _mlp_params(), rng.standard_normal((5, 3)), rng.standard_normal((5, 2))

    def jax_mlp(p, x, y):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

    _close(functional.grad(_mlp)(params, x, y), jax.grad(jax_mlp)(params, x, y), rtol=1e-10)
    hessian = functional.hessian(lambda b: _mlp({**params, "b1": b}, x, y))(params["b1"])
    expected = jax.hessian(lambda b: jax_mlp({**params, "b1": b}, x, y))(params["b1"])
    _close(hessian, expected, rtol=1e-9, atol=1e-12)


# --- vjp, jvp, jacobian, hessian --------------------------------------------------------------

def _vector_fn(a, b):
    return xp.sin(a) * b + a * a


def _jacobians(a, b):
    return np.diag(np.cos(a) * b + 2 * a), np.diag(np.sin(a))


def test_vjp():
    value, pullback = functional.vjp(_vector_fn, X, Y)
    _close(value, np.sin(X) * Y + X * X)
    u = RNG.standard_normal(3)
    ja, jb = _jacobians(X, Y)
    _close(pullback(u), (u @ ja, u @ jb))
    _close(pullback(np.ones(3)), (np.ones(3) @ ja, np.ones(3) @ jb))  # reusable


def test_vjp_with_structured_outputs_and_inputs():
    def f(p):
        return {"y": p["a"] * 2.0, "s": (p["a"] * p["b"]).sum()}

    value, pullback = functional.vjp(f, {"a": X, "b": Y})
    _close(value, {"s": (X * Y).sum(), "y": 2 * X})
    (ct,) = pullback({"y": np.ones(3), "s": np.float64(2.0)})
    _close(ct, {"a": 2.0 + 2 * Y, "b": 2 * X})
    with pytest.raises(IRError):
        pullback(np.ones(3))          # the cotangent must have the output's structure


def test_jvp():
    ta, tb = RNG.standard_normal(3), RNG.standard_normal(3)
    value, tangent = functional.jvp(_vector_fn, (X, Y), (ta, tb))
    ja, jb = _jacobians(X, Y)
    _close(value, np.sin(X) * Y + X * X)
    _close(tangent, ja @ ta + jb @ tb)
    _, t2 = functional.jvp(lambda a: (a ** 3).sum(), (X,), (np.ones(3),))
    _close(t2, (3 * X ** 2).sum())


def test_jacobian_shapes_and_values():
    ja, _ = _jacobians(X, Y)
    _close(functional.jacobian(lambda a: _vector_fn(a, Y))(X), ja)
    m = RNG.standard_normal((2, 3))
    jac = functional.jacobian(lambda a: xp.tanh(a) @ np.ones(3))(m)  # [2] w.r.t. [2, 3]
    expected = np.zeros((2, 2, 3))
    for i in range(2):
        expected[i, i] = 1 - np.tanh(m[i]) ** 2
    _close(jac, expected)
    _close(functional.jacobian(lambda a: (a * a).sum())(X), 2 * X)  # scalar output: a gradient


def test_hessian_of_a_cubic():
    def f(a):
        return (a ** 3).sum() * a[0]

    h = _np(functional.hessian(f)(X))
    expected = np.diag(6 * X * X[0])
    expected[0, :] += 3 * X ** 2
    expected[:, 0] += 3 * X ** 2
    np.testing.assert_allclose(h, expected, rtol=1e-10)
    np.testing.assert_allclose(h, h.T, rtol=1e-12)


# --- composition with jit ---------------------------------------------------------------------

def test_jit_of_grad_and_grad_of_jit():
    f = lambda a: (xp.exp(a) * a).sum()  # noqa: E731
    expected = np.exp(X) * (1 + X)
    _close(jit(functional.grad(f))(X), expected)
    _close(functional.grad(jit(f))(X), expected)
    inner = jit(functional.grad(f))
    _close(functional.grad(lambda a: inner(a).sum())(X), np.exp(X) * (2 + X))
    value, g = jit(functional.value_and_grad(f))(X)
    _close((value, g), ((np.exp(X) * X).sum(), expected))


def test_backward_through_a_functional_gradient():
    x = Variable(X)
    g = functional.grad(lambda a: (a ** 3).sum())(x)   # joins x's graph lazily
    (g * Y).sum().backward()
    _close(x.grad, 6 * X * Y)


def test_inner_transforms_may_close_over_outer_traced_values():
    x = np.float64(3.0)
    one, two = np.float64(1.0), np.float64(2.0)
    # d/dx [x * d/dy (x y)] = d/dx x^2 (no perturbation confusion between the two levels)
    assert functional.grad(lambda a: a * functional.grad(lambda y: a * y)(one))(x).item() == 6.0
    assert functional.grad(lambda a: jit(lambda y: a * y)(two))(x).item() == 2.0
    pullback = lambda a: functional.vjp(lambda y: a * y, two)[1](one)[0]  # noqa: E731
    assert functional.grad(pullback)(x).item() == 1.0
    tangent = lambda a: functional.jvp(lambda y: a * y * y, (two,), (one,))[1]  # noqa: E731
    assert functional.grad(tangent)(x).item() == 4.0
    inner = jit(lambda a: functional.grad(lambda y: (a * y).sum())(np.ones(3)))
    _close(inner(X), X)


def _every_composite(a):
    """Exercises how the front end composes primitives: indexing, matmul's reshapes and batch
    broadcasting, gathers, padding, concatenation, reductions with axes and keepdims."""
    m = xp.reshape(a, (2, 3, 2))
    b = xp.matmul(m, xp.transpose(m[0]))                       # [2,3,3] @ [2,3] -> [2,3,3]
    c = xp.concatenate([b[:, 1:, ::2], xp.expand_dims(b[..., -1], -1)[:, :2]], axis=-1)
    d = xp.take_along_axis(c, np.array([[[1, 0, 2], [2, 2, 0]]] * 2), axis=-1)
    e = xp.pad(xp.squeeze(d[:, None, 0], 1), ((0, 0), (1, 0))) * np.arange(8.0).reshape(2, 4)
    f = xp.where(e > 0.1, e, -0.5 * e) + xp.clip(a[:8].reshape(2, 4), -0.3, 0.4)
    g = xp.stack([f.max(axis=1), f.mean(axis=-1), xp.min(f, axis=1)], axis=1)
    return (g * np.array([1.0, -2.0, 0.5])).sum() + xp.dot(a, a * a) * 0.1


def test_front_end_compositions_match_finite_differences():
    a = np.random.default_rng(6).standard_normal(12)
    _close(functional.grad(_every_composite)(a), _numeric_grad(_every_composite, [a]), rtol=1e-6,
           atol=1e-8)
