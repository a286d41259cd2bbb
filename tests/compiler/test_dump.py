"""Dumps for debugging: ``jit(f, dump_dir=...)``, ``XLAC_DUMP_DIR`` and ``xlac compile
--dump-dir`` write the IR after every pass (parsing back), the LLVM IR before and after
optimisation, the assembly, the memory plan, the fusion report and a summary."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from compiler import functional, jit, nn
from compiler.pipeline import PASSES, clear_cache, compile_function
from ir import parse_function, print_function

pytestmark = pytest.mark.llvm

EXPECTED = {"llvm.ll", "llvm-optimized.ll", "assembly.s", "memory-plan.txt", "summary.txt",
            "changes.diff", "fusion.txt"}


def ce_loss(logits, labels):
    return nn.cross_entropy(logits, labels)


def check_folder(folder):
    files = set(os.listdir(folder))
    assert EXPECTED <= files, EXPECTED - files
    stages = sorted(f for f in files if f.endswith(".ir"))
    assert stages[0] == "00-traced.ir"
    assert [s.split("-", 1)[1][:-3] for s in stages[1:]] == [name for name, _ in PASSES]
    for stage in stages:
        text = open(os.path.join(folder, stage)).read()
        assert text.startswith("# xla-py ir v1\n")
        assert print_function(parse_function(text), header=True) == text
    summary = open(os.path.join(folder, "summary.txt")).read()
    assert "fuse" in summary and "lower_and_load" in summary and "kernels:" in summary
    assert "define" in open(os.path.join(folder, "llvm.ll")).read()
    assert "arena:" in open(os.path.join(folder, "memory-plan.txt")).read()
    return files


def only_folder(root):
    (name,) = os.listdir(root)
    return os.path.join(root, name)


def test_jit_dump_dir_writes_every_stage(tmp_path):
    clear_cache()
    step = jit(functional.value_and_grad(ce_loss), dump_dir=str(tmp_path))
    logits = np.random.default_rng(0).standard_normal((16, 10)).astype(np.float32)
    labels = np.arange(16, dtype=np.int32) % 10
    step(logits, labels)
    folder = only_folder(tmp_path)
    check_folder(folder)
    (fuse_stage,) = [f for f in os.listdir(folder) if f.endswith("-fuse.ir")]
    fused = parse_function(open(os.path.join(folder, fuse_stage)).read())
    assert any(e.op == "fusion" for e in fused.eqns)
    report = open(os.path.join(folder, "fusion.txt")).read()
    assert report.startswith("kernels: ") and "fusion {kind=reduce}" in report
    assert "not fused" in report


def test_dump_is_written_even_if_the_program_was_compiled_before(tmp_path):
    f = jit(lambda x: nn.softmax(x * 2))
    x = np.ones((4, 5), np.float32)
    f(x)
    dumped = jit(lambda x: nn.softmax(x * 2), dump_dir=str(tmp_path))
    dumped(x)
    check_folder(only_folder(tmp_path))


def test_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("XLAC_DUMP_DIR", str(tmp_path))
    b_fn = jit(lambda x: (x * x + 1.0).sum()).lower(np.ones(8, np.float32)).function
    compile_function(b_fn)
    check_folder(only_folder(tmp_path))


def test_cli_dump_dir(tmp_path):
    model = tmp_path / "model.py"
    model.write_text(textwrap.dedent("""
        import compiler as xp

        def loss(w, x):
            return xp.sum(xp.tanh(x @ w) ** 2)
    """))
    dumps = tmp_path / "dumps"
    result = subprocess.run(
        [sys.executable, "-m", "compiler.cli", "compile", f"{model}:loss", "--arg", "f32[3,2]",
         "--arg", "f32[4,3]", "--grad", "--emit", "ir", "--dump-dir", str(dumps)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    parse_function(result.stdout)
    check_folder(only_folder(dumps))
