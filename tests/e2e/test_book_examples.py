"""The xla-rs autograd chapter's examples, run through the real compiler."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.llvm


def test_backward_example():
    loss, w, b = load("book_autograd").backward_example()
    assert w.grad.data()[0] == -12.0
    assert b.grad.data()[0] == -6.0
    assert loss.data.data()[0] == 9.0


def test_functional_example():
    val, dx = load("book_autograd").functional_example()
    assert val.data()[0] == 9.0 and dx.data()[0] == 6.0


def test_linear_regression_learns(capsys):
    final = load("linear_regression").main(steps=150)
    assert final < 0.01
    out = capsys.readouterr().out
    losses = [float(line.split("loss")[1].split()[0]) for line in out.splitlines() if "loss" in line]
    assert losses[0] > 10 * losses[-1]


def test_compiles_once_per_structure():
    from compiler.pipeline import _CACHE

    module = load("linear_regression")
    module.main(steps=2)
    before = len(_CACHE)
    module.main(steps=5)
    assert len(_CACHE) == before  # same graph structure every step: no recompilation
