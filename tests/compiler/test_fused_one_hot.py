"""One-hot masks in row fusions (NOTE: [One-hot masks] in compiler/codegen/fusion_plan.py).

An inner loop that only stores or "picks" through ``iota == label`` runs with
the mask false and computes the label's column on its own; these tests check
which loops do that, and that the results are bit for bit those of the loops
comparing at every column (the same program compiled with the analysis off).
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler import functional, jit, nn
from compiler.backend import compile_function
from compiler.codegen import fused, fusion_plan
from compiler.frontend import numpy_api as xnp
from compiler.pipeline import optimize
from ir import DType
from runtime import CompileCache

pytestmark = pytest.mark.llvm


def _ce(logits, labels):
    return nn.cross_entropy(logits, labels)


def _picked(logits, labels):
    """The label's logit (0 past the end): a row fusion whose one reduction is a pick."""
    return xnp.take_along_axis(logits, xnp.expand_dims(labels, -1), axis=-1)


def _weighted_pick(logits, labels):
    """Not a pick: a sum over select(mask, x, 1) needs the compare at every column."""
    hot = xnp.one_hot(labels, logits.shape[-1], dtype=DType.bool)
    return xnp.sum(xnp.where(hot, logits, 1.0), axis=-1)


def _row_plans(function):
    return [fused.fusion_plan(e) for e in function.eqns
            if e.body is not None and e.attrs.get("kind") == "reduce"
            and fused.fusion_plan(e).mode == "row"]


def _inputs(rows, cols, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((rows, cols)) * 3).astype(np.float32)
    # Labels in range, negative (wrapped by take_along_axis), past the end (picks 0),
    # and a -0 logit at its label (a pick must sum it like the loop: to +0).
    labels = rng.integers(-cols, cols + 3, rows).astype(np.int32)
    labels[0] = cols - 1
    logits[0, cols - 1] = -0.0
    return logits, labels


def _compiled(function, one_hot: bool, monkeypatch):
    with monkeypatch.context() as patch:
        if not one_hot:
            patch.setattr(fusion_plan, "_plan_one_hot", lambda *args: None)
        fused._PLANS.clear()
        try:
            return compile_function(optimize(function), cache=CompileCache("off"))
        finally:
            fused._PLANS.clear()


def test_cross_entropy_loops_run_without_the_mask():
    logits, labels = _inputs(64, 100, 0)
    function = optimize(jit(functional.value_and_grad(_ce)).lower(logits, labels).function)
    (plan,) = [p for p in _row_plans(function) if p.one_hot]
    masked = [loop for loop in plan.loops if loop.one_hot is not None]
    assert len(plan.one_hot) == 1
    # The picked logit (first loop) and the gradient's -1/N at the label (last loop).
    assert [len(loop.picks) for loop in masked] == [1, 0]
    assert [len(loop.fixups) for loop in masked] == [0, 1]


@pytest.mark.parametrize("rows,cols", [(64, 100), (5, 2), (3, 17), (2, 1000), (300, 1000)])
@pytest.mark.parametrize("program", [functional.value_and_grad(_ce), _picked],
                         ids=["cross_entropy", "picked"])
def test_results_are_those_of_the_compare_at_every_column(rows, cols, program, monkeypatch):
    logits, labels = _inputs(rows, cols, rows * cols)
    function = jit(program).lower(logits, labels).function
    with_mask = _compiled(function, one_hot=False, monkeypatch=monkeypatch)(logits, labels)
    without = _compiled(function, one_hot=True, monkeypatch=monkeypatch)(logits, labels)
    for got, want in zip(without, with_mask, strict=True):
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


def test_picks_and_gradients_match_numpy():
    rows, cols = 64, 100
    logits, labels = _inputs(rows, cols, 3)
    n, wrapped = np.arange(rows), np.where(labels < 0, labels + cols, labels)
    picked = np.where(wrapped < cols, logits[n, np.minimum(wrapped, cols - 1)], 0.0)
    got = np.asarray(jit(_picked)(logits, labels))[:, 0]
    assert got.tobytes() == (picked + np.float32(0)).astype(np.float32).tobytes()  # -0 -> +0
    loss, grad = jit(functional.value_and_grad(_ce))(logits, labels)
    shift = logits.max(1, keepdims=True)
    e = np.exp(logits - shift)
    np.testing.assert_allclose(float(loss), np.mean(np.log(e.sum(1)) + shift[:, 0] - picked),
                               rtol=1e-5)
    want = e / e.sum(1, keepdims=True)
    inside = wrapped < cols
    want[n[inside], wrapped[inside]] -= 1
    np.testing.assert_allclose(np.asarray(grad), want / rows, atol=1e-7)


def test_a_mask_used_otherwise_keeps_the_compare(monkeypatch):
    logits, labels = _inputs(16, 40, 1)
    function = optimize(jit(_weighted_pick).lower(logits, labels).function)
    assert all(loop.one_hot is None for plan in _row_plans(function) for loop in plan.loops)
    got = np.asarray(jit(_weighted_pick)(logits, labels))
    hot = labels[:, None] == np.arange(40)
    np.testing.assert_allclose(got, np.where(hot, logits, 1.0).sum(1), rtol=1e-5)
