"""Graph views of a Function with networkx: dependencies, topological order, DOT.

The IR is a flat equation list kept in topological order (see NOTE: [SSA invariants]
in ``ir.core``); these views are derived on demand and never stored.

>>> from ir import Builder, TensorType
>>> b = Builder("f")
>>> x = b.param(TensorType("f32", (3,)))
>>> y = b.exp(x)
>>> fn = b.finish([b.mul(y, x)])
>>> sorted(dependency_graph(fn).edges)
[(0, 1)]
>>> [eqn.op for eqn in topological_order(fn)]
['exp', 'mul']
>>> to_dot(fn).splitlines()[0]
'digraph "f" {'
"""

from __future__ import annotations

import networkx as nx

from ir.core import Eqn, Function, Value
from ir.errors import VerifyError

__all__ = ["dependency_graph", "topological_order", "to_dot", "value_names"]


def _items(x) -> list:
    # Malformed IR (a field that is not a list) reads as empty rather than crashing a view.
    return list(x) if isinstance(x, (list, tuple)) else []


def value_names(fn: Function) -> dict[Value, str]:
    """The ``%n`` name of every value defined in ``fn`` (bodies included), as printed.

    Mirrors the printer's numbering: parameters, then each equation's results, then its
    body's parameters and equations, in order. A value defined twice gets its last name.
    """
    names: dict[Value, str] = {}
    count = 0

    def define(values) -> None:
        nonlocal count
        for v in _items(values):
            if isinstance(v, Value):
                names[v] = f"%{count}"
            count += 1

    def block(f: Function) -> None:
        for eqn in _items(getattr(f, "eqns", None)):
            define(getattr(eqn, "outputs", None))
            body = getattr(eqn, "body", None)
            if isinstance(body, Function):
                define(body.params)
                block(body)

    define(getattr(fn, "params", None))
    block(fn)
    return names


def dependency_graph(fn: Function) -> nx.DiGraph:
    """Nodes are equation indices (with an ``op`` attribute); an edge runs from the
    equation producing a value to each equation reading it, carrying the ``values``.

    Bodies are not expanded: a fusion is one node.
    """
    graph = nx.DiGraph()
    producer: dict[Value, int] = {}
    for i, eqn in enumerate(fn.eqns):
        graph.add_node(i, op=eqn.op)
        for v in eqn.outputs:
            producer[v] = i
    for i, eqn in enumerate(fn.eqns):
        for v in eqn.inputs:
            j = producer.get(v)
            if j is None:
                continue  # a parameter (or an undefined value, which verify reports)
            if graph.has_edge(j, i):
                graph.edges[j, i]["values"].append(v)
            else:
                graph.add_edge(j, i, values=[v])
    return graph


def topological_order(fn: Function) -> list[Eqn]:
    """The equations in an order where each comes after its producers.

    Ties keep the original order, so an already valid function comes back unchanged.
    Raises ``VerifyError`` naming the equations of a dependency cycle.
    """
    graph = dependency_graph(fn)
    try:
        order = list(nx.lexicographical_topological_sort(graph))
    except nx.NetworkXUnfeasible:
        cycle = [u for u, _ in nx.find_cycle(graph)]
        path = " -> ".join(f"eqn {i} '{fn.eqns[i].op}'" for i in [*cycle, cycle[0]])
        raise VerifyError(f"@{fn.name}: dependency cycle {path}; no valid order exists") from None
    return [fn.eqns[i] for i in order]


def to_dot(fn: Function) -> str:
    """A Graphviz DOT rendering of the dataflow of ``fn``.

    One node per parameter and per equation, labelled with names, op, types and source
    location, and a ``return`` node; a body is drawn as a cluster next to its equation.
    """
    graph = _dataflow(fn, value_names(fn))
    lines = [f"digraph {_quote(fn.name)} {{", '  node [shape=box, fontname="monospace"];']
    _emit_cluster(graph, None, lines, "  ")
    for u, v, data in graph.edges(data=True):
        style = ", style=dashed" if data.get("dashed") else ""
        lines.append(f"  {u} -> {v} [label={_quote(data.get('label', ''))}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# NOTE: [DOT without pydot]
# networkx writes DOT only through pydot or pygraphviz, neither of which is a dependency.
# The graph is still built with networkx (nodes carry label/shape/cluster attributes) and
# only the final text is written here.


def _dataflow(fn: Function, names: dict[Value, str]) -> nx.DiGraph:
    graph = nx.DiGraph(clusters={})  # cluster name -> (parent cluster, label)

    def flow(source: str, target: str, value: Value) -> None:
        # One edge per node pair (DiGraph); it lists every value that flows along it.
        name = names.get(value, "%?")
        if graph.has_edge(source, target):
            graph.edges[source, target]["label"] += f", {name}"
        else:
            graph.add_edge(source, target, label=name)

    def block(f: Function, prefix: str, cluster: str | None) -> str:
        producer: dict[Value, str] = {}
        for k, p in enumerate(f.params):
            node = f"{prefix}p{k}"
            graph.add_node(node, label=f"{names.get(p, '%?')}: {p.type}", shape="ellipse",
                           cluster=cluster)
            producer[p] = node
        for i, eqn in enumerate(f.eqns):
            node = f"{prefix}e{i}"
            results = ", ".join(names.get(v, "%?") for v in eqn.outputs)
            types = ", ".join(str(v.type) for v in eqn.outputs)
            label = f"{results} = {eqn.op}\n{types}" + (f"\n{eqn.loc}" if eqn.loc else "")
            graph.add_node(node, label=label, shape="box", cluster=cluster)
            for v in eqn.inputs:
                if v in producer:
                    flow(producer[v], node, v)
            for v in eqn.outputs:
                producer[v] = node
            if eqn.body is not None:
                name = f"cluster_{node}"
                graph.graph["clusters"][name] = (cluster, f"body of {results} = {eqn.op}")
                ret = block(eqn.body, f"{node}_", name)
                graph.add_edge(ret, node, dashed=True)
        ret = f"{prefix}ret"
        graph.add_node(ret, label="return", shape="plain", cluster=cluster)
        for v in f.outputs:
            if v in producer:
                flow(producer[v], ret, v)
        return ret

    block(fn, "", None)
    return graph


def _emit_cluster(graph: nx.DiGraph, cluster: str | None, lines: list[str], indent: str) -> None:
    for node, data in graph.nodes(data=True):
        if data["cluster"] == cluster:
            lines.append(f"{indent}{node} [label={_quote(data['label'])}, shape={data['shape']}];")
    for name, (parent, label) in graph.graph["clusters"].items():
        if parent == cluster:
            lines.append(f"{indent}subgraph {name} {{")
            lines.append(f"{indent}  label={_quote(label)}; style=dashed;")
            _emit_cluster(graph, name, lines, indent + "  ")
            lines.append(f"{indent}}}")


def _quote(text: str) -> str:
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
