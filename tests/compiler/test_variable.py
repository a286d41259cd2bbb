"""``Variable``, the PyTorch-style front door: lazy values, ``backward()`` and ``.grad``.

Values are checked against numpy, gradients against closed forms; what PyTorch
does is the reference for accumulation, seeds, ``clone``/``detach`` and
``requires_grad``.
"""

from __future__ import annotations

import numpy as np
import pytest

import compiler as xp
import compiler.pipeline as pipeline
from compiler import Tensor, Variable, functional, jit
from ir.errors import DTypeError, IRError, ShapeError

pytestmark = pytest.mark.llvm


@pytest.fixture
def runs(monkeypatch):
    """Counts native program runs (each evaluation is one run of one compiled program)."""
    count = {"runs": 0, "compiles": 0}
    compile_cached, compile_function = pipeline.compile_cached, pipeline.compile_function

    def counting_cached(fn):
        exe = compile_cached(fn)

        def run(*arrays):
            count["runs"] += 1
            return exe(*arrays)

        return run

    def counting_compile(fn, *args, **kwargs):
        count["compiles"] += 1
        return compile_function(fn, *args, **kwargs)

    monkeypatch.setattr(pipeline, "compile_cached", counting_cached)
    monkeypatch.setattr(pipeline, "compile_function", counting_compile)
    return count


def _f32(*values):
    return np.array(values, np.float32)


# --- construction and values ------------------------------------------------------------------

def test_construction_from_tensor_array_and_list():
    assert Variable(Tensor([1.0, 2.0, 3.0, 4.0], (2, 2))).shape == (2, 2)
    assert Variable(np.zeros((3,), np.float64)).dtype == xp.f64
    assert Variable(np.zeros((3,), np.int64)).dtype == xp.i64
    assert Variable(np.array([True])).dtype == xp.bool_
    assert Variable([1.0, 2.0]).dtype == xp.f32   # Python floats: f32, as in PyTorch and JAX
    assert Variable([[1, 2]]).dtype == xp.i32     # Python ints: i32 (JAX's default; PyTorch: i64)
    v = Variable(np.zeros((2, 3), np.float32))
    assert (v.shape, v.ndim, v.size, v.is_leaf, v.requires_grad) == ((2, 3), 2, 6, True, True)
    assert Variable(np.float32(1.0), requires_grad=False).requires_grad is False
    with pytest.raises(DTypeError, match="float16"):
        Variable(np.zeros(2, np.float16))


def test_values_in_every_form():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = Variable(x) * 2.0
    assert isinstance(v.data, Tensor)
    np.testing.assert_array_equal(v.data.numpy(), x * 2)
    np.testing.assert_array_equal(v.data.data(), (x * 2).ravel())  # Tensor.data(): flat values
    np.testing.assert_array_equal(v.numpy(), x * 2)
    np.testing.assert_array_equal(np.asarray(v), x * 2)
    assert v.tolist() == (x * 2).tolist()
    s = v.sum()
    assert s.item() == 30.0 and isinstance(s.item(), float)
    assert float(s) == 30.0 and int(s) == 30
    assert bool(s > 29) is True
    assert isinstance(v.sum().astype(xp.i32).item(), int)
    with pytest.raises(ShapeError):
        v.item()


def test_numpy_returns_a_copy_and_data_is_read_only():
    v = Variable(_f32(1.0, 2.0))
    copy = v.numpy()
    copy[0] = 99.0
    np.testing.assert_array_equal(v.numpy(), _f32(1.0, 2.0))
    with pytest.raises(ValueError):
        v.data.data()[0] = 5.0


def test_values_do_not_alias_the_callers_arrays():
    src = _f32(1.0, 2.0)
    v = Variable(src)
    y = v * 2.0                       # recorded, not computed yet
    operand = _f32(1.0, 1.0)
    z = v * operand
    src[0] = operand[0] = 42.0        # the caller reuses its buffers
    np.testing.assert_array_equal(y.numpy(), _f32(2.0, 4.0))
    np.testing.assert_array_equal(z.numpy(), _f32(1.0, 2.0))
    np.testing.assert_array_equal(Tensor(src).numpy(), src)
    new = _f32(5.0, 6.0)
    v.data = new
    new[0] = 0.0
    np.testing.assert_array_equal(v.numpy(), _f32(5.0, 6.0))


def test_numpy_conversion_never_exposes_the_value_for_writing():
    v = Variable(_f32(1.0, 2.0))
    copy = np.array(v)                # np.array copies
    copy[0] = 99.0
    view = np.asarray(v)              # np.asarray may share, read-only
    with pytest.raises(ValueError):
        view[0] = 99.0
    np.testing.assert_array_equal(v.numpy(), _f32(1.0, 2.0))
    assert np.asarray(v, np.float64).dtype == np.float64


def test_operations_are_lazy_and_values_are_computed_once(runs):
    w = Variable(np.full((5, 7), 3.0, np.float32))
    y = (w * 2.0 + 1.0).exp().sum(axis=0)
    assert runs["runs"] == 0          # recording only
    first = y.numpy()
    assert runs["runs"] == 1
    second = y.numpy()
    assert isinstance(y.data, Tensor)  # nor does reading .data again
    assert runs["runs"] == 1          # the value is kept
    np.testing.assert_array_equal(first, second)
    z = y * 2.0                       # a node over a computed value reuses it
    np.testing.assert_allclose(z.numpy(), first * 2, rtol=1e-6)
    assert runs["runs"] == 2


def test_a_training_loop_compiles_once(runs):
    rng = np.random.default_rng(0)
    x = Variable(rng.standard_normal((11, 3)).astype(np.float32), requires_grad=False)
    target = Variable(rng.standard_normal(11).astype(np.float32), requires_grad=False)
    w = Variable(np.zeros(3, np.float32))
    losses = []
    for _ in range(6):
        w.zero_grad()
        loss = ((x @ w - target) ** 2).mean()
        loss.backward()
        losses.append(loss.item())
        w.data = w.data.numpy() - 0.1 * w.grad.numpy()
    assert runs["compiles"] <= 1      # one structure (0 if an earlier test compiled it)
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]


def test_repr_shows_values_and_dtype():
    assert repr(Variable(_f32(1.0, 2.5))) == "Variable([1. , 2.5], dtype=f32)"
    assert repr(Variable(np.array([1, 2], np.int64)) * 3) == "Variable([3, 6], dtype=i64)"
    assert repr(Variable(np.float64(2.0))) == "Variable(2., dtype=f64)"
    assert repr(Tensor([1.0, 2.0], (2,))) == "Tensor([1., 2.], dtype=f32)"
    seen = []
    jit(lambda x: seen.append(repr(x)) or x)(np.zeros((2, 3), np.float32))
    assert seen == ["Variable(traced f32[2,3])"]


def test_variables_hash_by_identity_and_compare_elementwise():
    a, b = Variable(_f32(1.0, 2.0)), Variable(_f32(1.0, 3.0))
    table = {a: "a", b: "b"}
    assert table[a] == "a" and len(table) == 2
    np.testing.assert_array_equal((a == b).numpy(), [True, False])
    np.testing.assert_array_equal((a != b).numpy(), [False, True])


def _chain(x, length, step=lambda x: x + 1.0):
    for _ in range(length):
        x = step(x)
    return x


def test_a_deep_chain_of_operations():
    # Deeper than Python's recursion limit: recording, building, differentiating and
    # printing never recurse per operation (lower() stops before LLVM, which is slow here).
    depth = 1500
    text = jit(lambda x: _chain(x, depth)).lower(np.float64(0.0)).as_text()
    assert text.count(" = add ") == depth
    grad = jit(functional.grad(lambda x: _chain(x, depth, lambda x: xp.sin(x) * x)))
    assert grad.lower(np.float64(0.5)).as_text().count(" = cos ") == depth
    v = Variable(np.float64(0.0))
    x = _chain(v, 200)
    assert x.item() == 200.0
    x.backward()
    assert v.grad.item() == 1.0


# --- backward ---------------------------------------------------------------------------------

def test_book_example():
    x = Variable(Tensor([2.0], ()))
    target = Variable(Tensor([10.0], ()))
    w = Variable(Tensor([3.0], ()))
    b = Variable(Tensor([1.0], ()))
    y = w * x + b
    diff = y + Variable(Tensor([-1.0], ())) * target
    loss = diff * diff
    loss.backward()
    assert w.grad.data()[0] == -12.0
    assert b.grad.data()[0] == -6.0
    assert x.grad.data()[0] == -18.0
    assert target.grad.data()[0] == 6.0
    assert loss.data.data()[0] == 9.0


def test_backward_gradients_against_closed_forms():
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((4, 3))
    ws = rng.standard_normal(3)
    x, w, b = Variable(xs, requires_grad=False), Variable(ws), Variable(np.float64(0.5))
    y = xp.tanh(x @ w + b)
    loss = (y * y).sum()
    loss.backward()
    t = np.tanh(xs @ ws + 0.5)
    dz = 2 * t * (1 - t * t)
    np.testing.assert_allclose(loss.item(), (t * t).sum(), rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), xs.T @ dz, rtol=1e-10)
    np.testing.assert_allclose(b.grad.numpy(), dz.sum(), rtol=1e-10)
    assert x.grad is None             # requires_grad=False
    assert w.grad.dtype == xp.f64 and w.grad.shape == (3,)


def test_backward_accumulates_like_pytorch():
    w = Variable(_f32(1.0, 2.0))
    loss = (w * w).sum()
    loss.backward()
    loss.backward()                   # the graph is kept (no retain_graph needed)
    np.testing.assert_array_equal(w.grad.numpy(), _f32(4.0, 8.0))
    (w * 3.0).sum().backward()        # another loss adds to the same .grad
    np.testing.assert_array_equal(w.grad.numpy(), _f32(7.0, 11.0))
    w.zero_grad()
    assert w.grad is None
    (w * 3.0).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), _f32(3.0, 3.0))


def test_fan_out_and_unreached_leaves():
    a, b, unused = Variable(np.float64(3.0)), Variable(np.float64(2.0)), Variable(np.float64(1.0))
    c = a * b
    loss = c * a + c + a              # a reaches the loss three ways
    loss.backward()
    assert a.grad.item() == 2 * 3.0 * 2.0 + 2.0 + 1.0
    assert b.grad.item() == 9.0 + 3.0
    assert unused.grad is None
    assert c.grad is None             # non-leaf: .grad is not kept (as in PyTorch)


def test_gradients_reach_only_float_leaves():
    a = Variable(np.float32(2.0))
    k = Variable(np.int32(3))
    mask = Variable(np.array(True))
    (xp.where(mask, a * k, 0.0)).backward()
    assert a.grad.item() == 3.0
    assert k.grad is None and mask.grad is None


def test_backward_through_broadcasting_and_a_mixed_dtype_graph():
    w = Variable(np.ones(3, np.float32))
    b = Variable(np.float32(0.0))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    loss = ((w * x + b) * 2.0).sum()  # w and b are broadcast: their gradients are reduced back
    loss.backward()
    np.testing.assert_array_equal(w.grad.numpy(), 2 * x.sum(0))
    assert b.grad.item() == 12.0
    assert w.grad.dtype == xp.f32


def test_non_scalar_backward_with_a_seed():
    w = Variable(_f32(1.0, 2.0, 3.0))
    y = w * w
    y.backward(_f32(1.0, 10.0, 100.0))
    np.testing.assert_array_equal(w.grad.numpy(), _f32(2.0, 40.0, 600.0))
    w.zero_grad()
    y.backward(Tensor([1.0, 1.0, 1.0], (3,)))
    np.testing.assert_array_equal(w.grad.numpy(), _f32(2.0, 4.0, 6.0))
    w.zero_grad()
    y.backward(xp.ones_like(y))       # the seed may be a Variable too
    np.testing.assert_array_equal(w.grad.numpy(), _f32(2.0, 4.0, 6.0))
    w.zero_grad()
    y.backward([0.0, 1.0, 0.0])       # any array-like of the right shape
    np.testing.assert_array_equal(w.grad.numpy(), _f32(0.0, 4.0, 0.0))


def test_non_scalar_backward_without_a_seed_raises():
    y = Variable(_f32(1.0, 2.0)) * 2.0
    with pytest.raises(ShapeError, match=r"seed gradient") as info:
        y.backward()
    assert isinstance(info.value, (TypeError, ValueError)) and "f32[2]" in str(info.value)
    with pytest.raises(ShapeError, match=r"\[3\]"):
        y.backward(np.ones(3, np.float32))
    with pytest.raises(DTypeError, match="i32"):
        Variable(np.int32(3)).backward()


def test_backward_of_a_leaf_and_of_an_already_computed_loss():
    w = Variable(np.float64(4.0))
    w.backward()
    assert w.grad.item() == 1.0
    v = Variable(np.float64(2.0))
    loss = v * v * v
    assert loss.item() == 8.0         # computed first, differentiated afterwards
    loss.backward()
    assert v.grad.item() == 12.0


def test_backward_in_f64_matches_finite_differences():
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((2, 3))

    def f(x):
        return (xp.log1p(xp.exp(x)) * xp.sin(x)).mean() + nn_like_softmax(x)

    def nn_like_softmax(x):
        e = xp.exp(x - x.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True))[:, 0].sum()

    x = Variable(x0)
    f(x).backward()
    numeric = np.zeros_like(x0)
    for i in np.ndindex(x0.shape):
        step = np.zeros_like(x0)
        step[i] = 1e-6
        numeric[i] = (f(Variable(x0 + step)).item() - f(Variable(x0 - step)).item()) / 2e-6
    np.testing.assert_allclose(x.grad.numpy(), numeric, rtol=1e-6, atol=1e-8)


# --- clone, detach, .data ---------------------------------------------------------------------

def test_clone_keeps_history_and_gradients_flow_through_it():
    a = Variable(np.float32(2.0))
    b = a.clone() * a                 # a leaf's clone is a node reading it
    b.backward()
    assert a.grad.item() == 4.0
    c = a * a
    d = c.clone()
    assert not d.is_leaf and d is not c
    a.zero_grad()
    (d * 3.0).backward()
    assert a.grad.item() == 12.0
    np.testing.assert_array_equal(d.numpy(), c.numpy())


def test_detach_stops_gradients():
    a = Variable(np.float32(2.0))
    d = (a * a).detach()
    assert d.is_leaf and not d.requires_grad and d.item() == 4.0
    (d * a).backward()
    assert a.grad.item() == 4.0       # only through the second factor
    assert d.grad is None


def test_assigning_data_replaces_a_leaf_value():
    w = Variable(np.float32(2.0))
    y = w * w
    assert y.item() == 4.0
    w.data = np.float32(5.0)
    assert w.item() == 5.0
    assert (w * w).item() == 25.0     # new computations see the new value
    assert y.item() == 4.0            # computed values stay
    w.data = Tensor([3.0], ())
    assert w.item() == 3.0
    w.data = 1.5                      # cast to the Variable's dtype
    assert w.dtype == xp.f32 and w.item() == 1.5
    w.data = np.float64(0.25)
    assert w.data.dtype == xp.f32


def test_assigning_data_checks_shape_and_node_kind():
    w = Variable(np.zeros(3, np.float32))
    with pytest.raises(IRError, match=r"\[2\]"):
        w.data = np.zeros(2, np.float32)
    with pytest.raises(IRError, match="leaf"):
        (w * 2.0).data = np.zeros(3, np.float32)


def test_assigning_data_does_not_change_a_recorded_but_unevaluated_result():
    w = Variable(np.float32(2.0))
    y = w * w
    w.data = np.float32(5.0)
    assert y.item() == 4.0


def test_numpy_ufuncs_on_a_variable_stay_in_the_graph():
    w = Variable(np.float64(1.0))
    y = np.exp(w)
    assert isinstance(y, Variable)


# --- no_grad and in-place updates ---------------------------------------------------------

def test_no_grad_blocks_the_gradient_through_what_it_computes():
    w = Variable(np.array([1.0, 2.0]))
    with xp.no_grad():
        assert not xp.is_grad_enabled()
        scale = w * 3 + 1               # a constant to backward: [4, 7]
        with xp.enable_grad():
            square = w * w              # recorded with its gradient path
    assert xp.is_grad_enabled()
    (scale * w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [4.0, 7.0])
    w.grad = None
    square.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 4.0])


def test_no_grad_as_a_decorator_and_inside_traced_functions():
    @xp.no_grad()
    def doubled(a):
        return a * 2

    x = np.array([1.0, 2.0])
    grad = functional.grad(lambda a: (doubled(a) * a).sum())(x)  # d/da (c * a) = c = 2a
    np.testing.assert_array_equal(grad.numpy(), 2 * x)
    assert "stop_gradient" in jit(doubled).lower(x).as_text("ir")


def test_in_place_updates_of_a_leaf_under_no_grad_keep_the_leaf():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 3.0], np.float32) + 0.5
    w = Variable(np.zeros(3, np.float32))
    b = Variable(np.zeros((), np.float32))
    w_ref, b_ref = np.zeros(3, np.float32), np.float32(0)
    for _ in range(5):
        loss = ((X @ w + b - y) ** 2).mean()
        loss.backward()
        with xp.no_grad():
            w -= 0.1 * w.grad
            b -= 0.1 * b.grad
        w.grad = b.grad = None
        residual = X @ w_ref + b_ref - y
        w_ref = w_ref - np.float32(0.1) * (2 / 50 * X.T @ residual).astype(np.float32)
        b_ref = b_ref - np.float32(0.1) * np.float32(2 * residual.mean())
    assert w.is_leaf and w.requires_grad and w.dtype == xp.f32
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-5)
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-5)


def test_in_place_update_rules():
    w = Variable(np.array([1.0, 2.0], np.float32))
    with pytest.raises(IRError, match=r"requires grad \(at .*test_variable.py:\d+\).*no_grad"):
        w -= 1.0
    counts = Variable(np.zeros(2, np.float32), requires_grad=False)
    counts += np.ones(2)            # float64 operand: the Variable keeps float32, like numpy
    counts *= 3
    counts /= 2
    assert counts.dtype == xp.f32
    np.testing.assert_array_equal(counts.numpy(), [1.5, 1.5])
    with pytest.raises(IRError, match="does not fit"):
        counts += np.ones((2, 2))
    node = w * 1.0
    rebound = node
    rebound -= 1.0                  # not a leaf: a new Variable, the old one untouched
    assert rebound is not node
    np.testing.assert_array_equal(node.numpy(), [1.0, 2.0])


def test_only_floating_point_leaves_require_grad():
    assert Variable(np.zeros(2, np.float32)).requires_grad
    assert not Variable(np.zeros(2, np.float32), requires_grad=False).requires_grad
    counts = Variable(np.array([4, 6], np.int32))
    assert not counts.requires_grad
    counts += 1                     # so an integer leaf updates in place without no_grad
    np.testing.assert_array_equal(counts.numpy(), [5, 7])
    with pytest.raises(IRError, match=r"requires_grad=True needs a floating-point Variable, got i32"):
        Variable(np.array([1], np.int32), requires_grad=True)
