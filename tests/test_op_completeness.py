"""Every primitive has all of its parts: type rule and reference semantics (the
registry), a gradient rule or a declared absence of one, a lowering, a
documented contract and rows in the shared op test table."""

import pytest

from compiler.autodiff import NONDIFFERENTIABLE, RULES
from compiler.codegen import lowered_ops
from ir import all_ops
from op_samples import SAMPLES

OPS = sorted(all_ops())


@pytest.mark.parametrize("name", OPS)
def test_op_has_every_part(name):
    op = all_ops()[name]
    assert callable(op.infer) and callable(op.ref), "type rule and reference semantics"
    assert op.doc, "a one-line contract"
    assert (name in RULES) != (name in NONDIFFERENTIABLE), \
        "exactly one of: a VJP rule, or membership in NONDIFFERENTIABLE"
    assert name in lowered_ops(), "an LLVM lowering"
    assert SAMPLES.get(name), "rows in tests/op_samples.py (round trip, native, gradient tests)"


def test_no_rule_for_an_unknown_op():
    known = set(OPS)
    assert set(RULES) <= known and set(NONDIFFERENTIABLE) <= known
    assert lowered_ops() <= known | {"fusion"}
    assert set(SAMPLES) <= known
