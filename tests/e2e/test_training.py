"""Training end to end: compiled steps against numpy and the interpreter, optimiser
updates against hand-computed values, and the digits example."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

from compiler import Tensor, Variable, functional, jit, nn, optim
from compiler.pytree import flatten, unflatten
from ir import interpret

pytestmark = pytest.mark.llvm

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


# -- a small MLP, compiled and by hand ---------------------------------------------------


def _loss(params, x, labels):
    hidden = nn.relu(x @ params["w1"] + params["b1"])
    return nn.cross_entropy(hidden @ params["w2"] + params["b2"], labels)


def _sgd_step(params, x, labels, lr=0.1):
    loss, grads = functional.value_and_grad(_loss)(params, x, labels)
    return {k: params[k] - lr * grads[k] for k in params}, loss


def _numpy_step(params, x, labels, lr=0.1):
    """The same step written out: forward, softmax cross-entropy, backward, SGD."""
    w1, b1, w2, b2 = (params[k].astype(np.float64) for k in ("w1", "b1", "w2", "b2"))
    pre = x @ w1 + b1
    hidden = np.maximum(pre, 0)
    logits = hidden @ w2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(probs[np.arange(n), labels]).mean()
    dlogits = probs.copy()
    dlogits[np.arange(n), labels] -= 1
    dlogits /= n
    dpre = (dlogits @ w2.T) * (pre > 0)
    grads = {"w1": x.T @ dpre, "b1": dpre.sum(0), "w2": hidden.T @ dlogits, "b2": dlogits.sum(0)}
    new = {k: (params[k] - lr * grads[k]).astype(np.float32) for k in params}
    return new, loss


def _problem(seed=0, n=16, d=10, h=12, classes=4):
    rng = np.random.default_rng(seed)
    params = {"w1": (rng.standard_normal((d, h)) * 0.5).astype(np.float32),
              "b1": (rng.standard_normal(h) * 0.1).astype(np.float32),
              "w2": (rng.standard_normal((h, classes)) * 0.5).astype(np.float32),
              "b2": np.zeros(classes, np.float32)}
    x = rng.standard_normal((n, d)).astype(np.float32)
    labels = rng.integers(0, classes, n).astype(np.int32)
    return params, x, labels


@pytest.mark.parametrize("donate", [False, True])
def test_a_few_sgd_steps_match_numpy(donate):
    params, x, labels = _problem()
    step = jit(_sgd_step, donate_argnums=0 if donate else ())
    compiled = {k: v.copy() for k, v in params.items()}
    by_hand = {k: v.copy() for k, v in params.items()}
    for _ in range(5):
        compiled, loss = step(compiled, x, labels)
        by_hand, hand_loss = _numpy_step(by_hand, x, labels)
        assert float(loss) == pytest.approx(hand_loss, rel=1e-4)
        for k in params:
            np.testing.assert_allclose(np.asarray(compiled[k]), by_hand[k], rtol=2e-4, atol=2e-5)


def test_a_few_steps_match_the_interpreter():
    params, x, labels = _problem(seed=1)
    step = jit(_sgd_step, donate_argnums=0)
    traced = step.lower(params, x, labels).function
    native = {k: Tensor(v) for k, v in params.items()}
    interpreted = params
    for _ in range(3):
        native, loss = step(native, x, labels)
        leaves, _ = flatten((interpreted, x, labels))
        outputs = interpret(traced, leaves)
        _, out_tree = flatten(({k: 0 for k in params}, 0))  # (new params, loss)
        interpreted, interpreted_loss = unflatten(out_tree, outputs)
        assert float(loss) == pytest.approx(float(interpreted_loss), rel=1e-5)
        for k in params:
            np.testing.assert_allclose(np.asarray(native[k]), interpreted[k], rtol=1e-5,
                                       atol=1e-6)


# -- optimisers against hand-computed updates ---------------------------------------------


def _grads(step, shapes, seed=7):
    rng = np.random.default_rng(seed + step)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


_SHAPES = {"w": (3, 2), "b": (2,)}


def _initial():
    rng = np.random.default_rng(3)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in _SHAPES.items()}


def _sgd_by_hand(lr, momentum, weight_decay, nesterov, steps=3):
    params = {k: v.astype(np.float64) for k, v in _initial().items()}
    buffers = {k: np.zeros_like(v) for k, v in params.items()}
    for t in range(steps):
        for k, g in _grads(t, _SHAPES).items():
            g = g + weight_decay * params[k]
            if momentum:
                buffers[k] = momentum * buffers[k] + g
                g = g + momentum * buffers[k] if nesterov else buffers[k]
            params[k] = params[k] - lr * g
    return params


def _adam_by_hand(lr, b1, b2, eps, weight_decay, decoupled, steps=3):
    params = {k: v.astype(np.float64) for k, v in _initial().items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t in range(1, steps + 1):
        for k, g in _grads(t - 1, _SHAPES).items():
            if weight_decay and not decoupled:
                g = g + weight_decay * params[k]
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            delta = (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
            if weight_decay and decoupled:
                delta = delta + weight_decay * params[k]
            params[k] = params[k] - lr * delta
    return params


def _run_functional(optimizer, steps=3):
    update = jit(optimizer.update, donate_argnums=(1, 2))
    params = _initial()
    state = optimizer.init(params)
    for t in range(steps):
        params, state = update(_grads(t, _SHAPES), state, params)
    return {k: np.asarray(v) for k, v in params.items()}


@pytest.mark.parametrize("momentum, weight_decay, nesterov", [
    (0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.0, True), (0.0, 0.1, False), (0.8, 0.05, True),
])
def test_sgd_matches_hand_computed_updates(momentum, weight_decay, nesterov):
    got = _run_functional(optim.sgd(0.1, momentum, weight_decay, nesterov))
    want = _sgd_by_hand(0.1, momentum, weight_decay, nesterov)
    for k in _SHAPES:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, weight_decay, decoupled", [
    (lambda: optim.adam(0.01), 0.0, False),
    (lambda: optim.adam(0.01, weight_decay=0.1), 0.1, False),
    (lambda: optim.adamw(0.01, weight_decay=0.1), 0.1, True),
])
def test_adam_and_adamw_match_hand_computed_updates(make, weight_decay, decoupled):
    got = _run_functional(make())
    want = _adam_by_hand(0.01, 0.9, 0.999, 1e-8, weight_decay, decoupled)
    for k in _SHAPES:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_torch_style_optimisers_take_the_same_steps():
    initial = _initial()
    for make, by_hand in [
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=True),
         _sgd_by_hand(0.1, 0.9, 0.05, True)),
        (lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1),
         _adam_by_hand(0.01, 0.9, 0.999, 1e-8, 0.1, True)),
    ]:
        variables = {k: Variable(v.copy()) for k, v in initial.items()}
        opt = make([variables["w"], variables["b"]])
        for t in range(3):
            grads = _grads(t, _SHAPES)
            opt.zero_grad()
            # A loss whose gradient is exactly ``grads``: sum(p * g).
            loss = (variables["w"] * grads["w"]).sum() + (variables["b"] * grads["b"]).sum()
            loss.backward()
            opt.step()
        for k in _SHAPES:
            np.testing.assert_allclose(np.asarray(variables[k].data), by_hand[k], rtol=1e-5,
                                       atol=1e-6)


def test_a_whole_step_with_adam_and_donated_state_trains():
    params, x, labels = _problem(seed=2, n=32)
    optimizer = optim.adam(0.05)

    def step(params, state, x, labels):
        loss, grads = functional.value_and_grad(_loss)(params, x, labels)
        params, state = optimizer.update(grads, state, params)
        return params, state, loss

    compiled = jit(step, donate_argnums=(0, 1))
    state = optimizer.init(params)
    losses = []
    for _ in range(30):
        params, state, loss = compiled(params, state, x, labels)
        losses.append(float(loss))
    assert losses[-1] < 0.25 * losses[0]
    assert int(np.asarray(state["count"])) == 30


# -- the example ------------------------------------------------------------------------


def test_train_mlp_example_learns_the_digits(capsys):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_mlp
    finally:
        sys.path.remove(str(EXAMPLES))
    accuracy = train_mlp.main(epochs=3, hidden=64)
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "steps/s" in printed
    assert accuracy > 0.85


def test_breast_cancer_example_learns_pytorch_style(capsys):
    """The second example: Variables, backward(), optim.Adam, no_grad, on another dataset."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import breast_cancer
    finally:
        sys.path.remove(str(EXAMPLES))
    accuracy = breast_cancer.main(epochs=8)
    assert "test accuracy" in capsys.readouterr().out
    assert accuracy > 0.93
