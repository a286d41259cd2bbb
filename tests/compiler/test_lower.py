"""Lowering to one module: kernels out of line, in-place results through one pointer."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from compiler import functional, jit, nn
from compiler.codegen.lower import lower, plan_program
from compiler.pipeline import optimize

lowering = sys.modules["compiler.codegen.lower"]  # the package exports a function of its name

pytestmark = pytest.mark.llvm


def _loss(w, b, x, labels):
    return nn.cross_entropy(x @ w + b, labels)


def test_a_result_written_over_an_operand_shares_its_pointer(monkeypatch):
    """The fused softmax cross-entropy writes the logits' gradient over the
    logits (the memory plan's in-place result). With two ``noalias``
    pointers to that buffer, LLVM compiled the kernel out of line so that
    the loss came out 0.19 off; through one pointer it is right."""
    monkeypatch.setenv("XLAC_CACHE_DIR", "off")
    rng = np.random.default_rng(0)
    n, k, c = 32, 16, 100
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = (rng.standard_normal((k, c)) * 0.3).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    labels = rng.integers(0, c, n).astype(np.int32)
    step = jit(functional.value_and_grad(_loss, argnums=(0, 1)))
    value, (grad_w, grad_b) = step(w, b, x, labels)

    z = x.astype(np.float64) @ w + b
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    rows = np.arange(n)
    d = p.copy()
    d[rows, labels] -= 1
    d /= n
    assert abs(float(value) - np.mean(-np.log(p[rows, labels]))) < 1e-5
    np.testing.assert_allclose(grad_w, x.T @ d, atol=1e-6)
    np.testing.assert_allclose(grad_b, d.sum(axis=0), atol=1e-6)

    # Which results the plan puts over an operand, and their kernels' parameters.
    fn, _, plan = plan_program(optimize(step.lower(w, b, x, labels).function))
    text = lower(fn).llvm_ir
    kernels = dict(re.findall(r'^define internal void @"(k\d+_\w+)"\((.*)$', text, re.MULTILINE))
    assert kernels and all("noinline" in line.rsplit(")", 1)[1] for line in kernels.values())
    shared = 0
    for n, eqn in enumerate(fn.eqns):
        for k, j in lowering._in_place(plan, eqn).items():
            assert plan.locations[eqn.outputs[k]] == plan.locations[eqn.inputs[j]]
            params = kernels[f"k{n}_{eqn.op}"]
            assert f'%"out{k}"' not in params and f'%"in{j}"' in params
            shared += 1
    assert shared  # the cross-entropy's gradient, at least
