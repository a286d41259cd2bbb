"""networkx views: dependency graph, topological order (with cycle errors) and DOT text."""

from __future__ import annotations

import re

import pytest

from ir import Builder, DType, Eqn, TensorType, Value, VerifyError, parse_function, to_dot, verify
from ir.graph import dependency_graph, topological_order, value_names
from op_samples import all_samples

F3 = TensorType(DType.f32, (3,))


def diamond():
    """x -> exp, neg -> mul -> reduce_sum."""
    b = Builder("diamond")
    x = b.param(F3)
    with b.at('model.py:"4"'):
        e = b.exp(x)
    n = b.neg(x)
    m = b.mul(e, n)
    return b.finish([b.reduce_sum(m, axes=[0]), e])


def test_dependency_graph_nodes_and_edges():
    fn = diamond()
    g = dependency_graph(fn)
    assert list(g.nodes) == [0, 1, 2, 3]
    assert [g.nodes[i]["op"] for i in g] == ["exp", "neg", "mul", "reduce_sum"]
    assert sorted(g.edges) == [(0, 2), (1, 2), (2, 3)]  # parameters are not nodes
    assert g.edges[0, 2]["values"] == [fn.eqns[0].output]


def test_one_edge_lists_every_value_between_two_equations():
    b = Builder("f")
    x = b.param(F3)
    y = b.exp(x)
    b.mul(y, y)
    g = dependency_graph(b.finish([]))
    assert list(g.edges) == [(0, 1)] and g.edges[0, 1]["values"] == [y, y]


@pytest.mark.parametrize("sample", all_samples()[::7], ids=lambda s: s.id)
def test_topological_order_keeps_a_valid_order(sample):
    fn = sample.function()
    assert topological_order(fn) == fn.eqns


def test_topological_order_repairs_a_shuffled_function():
    fn = diamond()
    original = list(fn.eqns)
    fn.eqns = original[::-1]
    with pytest.raises(VerifyError, match="used before its definition"):
        verify(fn)
    fn.eqns = topological_order(fn)
    assert fn.eqns == [original[1], original[0], original[2], original[3]]  # ties: list order
    verify(fn)


def test_cycle_is_a_verify_error_naming_the_equations():
    b = Builder("loop")
    x = b.param(F3)
    a_out, b_out = Value(F3), Value(F3)
    b.eqns += [Eqn("add", (x, b_out), (a_out,)), Eqn("neg", (a_out,), (b_out,))]
    fn = b.finish([b_out])
    with pytest.raises(VerifyError, match=r"@loop: dependency cycle eqn 0 'add' -> eqn 1 'neg' "
                                          r"-> eqn 0 'add'"):
        topological_order(fn)


def test_value_names_match_the_printer():
    fn = parse_function(
        "func @g(%0: f32[3]) -> (f32[3]) {\n"
        "  %1 = fusion %0 : f32[3] body(%2: f32[3]) {\n"
        "    %3 = exp %2 : f32[3]\n"
        "    return %3\n"
        "  }\n"
        "  %4 = neg %1 : f32[3]\n"
        "  return %4\n"
        "}\n"
    )
    names = value_names(fn)
    body = fn.eqns[0].body
    assert [names[v] for v in [fn.params[0], fn.eqns[0].output, body.params[0],
                               body.eqns[0].output, fn.eqns[1].output]] == [
        "%0", "%1", "%2", "%3", "%4"]


def test_to_dot_has_a_node_per_param_and_equation():
    fn = diamond()
    dot = to_dot(fn)
    assert dot.startswith('digraph "diamond" {\n') and dot.endswith("}\n")
    nodes = re.findall(r"^  (\w+) \[label=", dot, flags=re.M)
    assert nodes == ["p0", "e0", "e1", "e2", "e3", "ret"]
    assert '"%1 = exp\\nf32[3]\\nmodel.py:\\"4\\""' in dot  # op, type, escaped loc
    assert '"%4 = reduce_sum\\nf32[]"' in dot
    edges = re.findall(r"^  (\w+) -> (\w+)", dot, flags=re.M)
    assert sorted(edges) == sorted([("p0", "e0"), ("p0", "e1"), ("e0", "e2"), ("e1", "e2"),
                                    ("e2", "e3"), ("e3", "ret"), ("e0", "ret")])


def test_to_dot_draws_a_body_as_a_cluster():
    fn = parse_function(
        "func @g(%0: f32[3]) -> (f32[3]) {\n"
        "  %1 = fusion %0 : f32[3] body(%2: f32[3]) {\n"
        "    %3 = exp %2 : f32[3]\n"
        "    return %3\n"
        "  }\n"
        "  return %1\n"
        "}\n"
    )
    dot = to_dot(fn)
    assert "subgraph cluster_e0 {" in dot and 'label="body of %1 = fusion"' in dot
    assert "e0_p0 -> e0_e0" in dot and "e0_ret -> e0 [label=\"\", style=dashed];" in dot
    assert dot.count("{") == dot.count("}")
