"""``xlac compile`` through a subprocess, as a user runs it."""

import subprocess
import sys
import textwrap

import pytest

from ir import parse_function, print_function


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent("""
        import compiler as xp

        def loss(w, x):
            return xp.sum(xp.tanh(x @ w) ** 2)
    """))
    return path


def xlac(*args):
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_emit_ir_parses_back(model_file):
    result = xlac("compile", f"{model_file}:loss", "--arg", "f32[3,2]", "--arg", "f32[4,3]", "--emit", "ir")
    assert result.returncode == 0, result.stderr
    fn = parse_function(result.stdout)
    assert print_function(fn) == result.stdout
    assert [str(t) for t in fn.output_types] == ["f32[]"]
    assert "model.py:5" in result.stdout  # the user's line travels with each op


def test_grad_appends_gradients(model_file, tmp_path):
    out = tmp_path / "loss.ir"
    result = xlac("compile", f"{model_file}:loss", "--arg", "f32[3,2]", "--arg", "f32[4,3]",
                  "--grad", "--emit", "ir", "-o", str(out))
    assert result.returncode == 0, result.stderr
    fn = parse_function(out.read_text())
    assert [str(t) for t in fn.output_types] == ["f32[]", "f32[3,2]", "f32[4,3]"]
    assert "(grad)" in out.read_text()


@pytest.mark.llvm
@pytest.mark.parametrize("kind, marker", [("llvm", "define"), ("asm", "ret")])
def test_emit_native(model_file, kind, marker):
    result = xlac("compile", f"{model_file}:loss", "--arg", "f32[3,2]", "--arg", "f32[4,3]", "--emit", kind)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout


def test_errors_are_reported_not_raised(model_file):
    result = xlac("compile", f"{model_file}:loss", "--arg", "f32[3,2]", "--arg", "f32[4,4]")
    assert result.returncode == 1
    assert "ShapeError" in result.stderr and "model.py:5" in result.stderr
    result = xlac("compile", f"{model_file}:loss", "--arg", "f32[3,")
    assert result.returncode == 2 and "malformed" in result.stderr
    result = xlac("compile", f"{model_file}:nope", "--arg", "f32[3]")
    assert result.returncode != 0 and "no function 'nope'" in result.stderr
