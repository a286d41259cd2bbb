"""GEMM epilogues: a dot and the elementwise work on its result become one kernel.

After ``fuse``, a product is often read by exactly one elementwise kernel: a
bias add and ReLU (``relu(x @ w + b)``), a scaling of a gradient. This pass
moves that consumer into a ``fusion {kind="gemm"}`` together with the dot;
the code generator applies it to each tile of the product in the GEMM's
write-back (compiler/codegen/gemm_fusion.py), so the product is not written
out and read back by a separate loop::

    %3 = dot %0, %1 : f32[256,512]
    %5 = fusion %3, %2 {kind="loop"} : f32[256,512] body(...) { add, max ... }
  ->
    %5 = fusion %0, %1, %2 {kind="gemm"} : f32[256,512] body(...) {
      %8 = dot %6, %7 : f32[256,512]
      ... the loop fusion's equations, reading %8 ...
    }

Conditions: the dot takes the blocked GEMM (``use_blocked``: small products
gain nothing); its one reader is an elementwise primitive or a ``loop``
fusion whose results all have the product's shape and which reads the
product only elementwise (at the position being computed, never through a
transpose, broadcast or slice); and one of that reader's results has the
product's type (its buffer holds the tile meanwhile). If the function also
returns the product, the gemm fusion returns it too.

Pre: valid IR after ``fuse``. Post: valid IR; results are unchanged (the same
product, then the same scalar operations).
"""

from __future__ import annotations

from ir import Eqn, Function, Value, uses
from ir.ops import is_elementwise
from compiler.codegen.dot import dot_shape
from compiler.codegen.gemm_fusion import GEMM_KIND
from compiler.codegen.gemm_plan import use_blocked

__all__ = ["fuse_gemm_epilogues"]

_FUSION = "fusion"


def _reads_aligned(body: Function, param: Value) -> bool:
    """Whether ``body`` reads ``param`` only as an operand of elementwise ops."""
    return all(is_elementwise(e.op) for e in body.eqns if param in e.inputs) \
        and param not in body.outputs


def _epilogue_ok(dot: Eqn, reader: Eqn) -> bool:
    product = dot.outputs[0]
    shape = product.type.shape
    if any(v.type.shape != shape for v in reader.outputs):
        return False
    if not any(v.type == product.type for v in reader.outputs):
        return False
    if reader.body is None:
        return is_elementwise(reader.op) and len(reader.outputs) == 1
    if reader.op != _FUSION or reader.attrs.get("kind") != "loop":
        return False
    params = [p for p, v in zip(reader.body.params, reader.inputs, strict=True) if v is product]
    return all(_reads_aligned(reader.body, p) for p in params)


def fuse_gemm_epilogues(fn: Function) -> Function:
    """Merge each blocked dot with its one elementwise reader (see the module docstring)."""
    readers = uses(fn)
    results = set(fn.outputs)
    merged: dict[Eqn, Eqn] = {}  # reader -> its dot
    for eqn in fn.eqns:
        if eqn.op != "dot" or eqn.body is not None or not use_blocked(dot_shape(eqn)):
            continue
        product = eqn.outputs[0]
        distinct = {id(r): r for r in readers.get(product, ())}
        if len(distinct) != 1:
            continue
        reader = next(iter(distinct.values()))
        if reader not in merged and _epilogue_ok(eqn, reader):
            merged[reader] = eqn
    if not merged:
        return fn
    dots = set(merged.values())
    eqns = []
    for eqn in fn.eqns:
        if eqn in dots:
            continue
        dot = merged.get(eqn)
        eqns.append(eqn if dot is None else _gemm_fusion(dot, eqn, dot.outputs[0] in results))
    return Function(fn.name, list(fn.params), eqns, list(fn.outputs))


def _gemm_fusion(dot: Eqn, reader: Eqn, keep_product: bool) -> Eqn:
    """One ``fusion {kind="gemm"}`` computing ``dot`` and then ``reader``."""
    product = dot.outputs[0]
    inputs: list[Value] = []
    for v in (*dot.inputs, *reader.inputs):
        if v is not product and v not in inputs:
            inputs.append(v)
    params = {v: Value(v.type) for v in inputs}
    inner_product = Value(product.type)
    body_dot = Eqn("dot", tuple(params[v] for v in dot.inputs), (inner_product,),
                   dict(dot.attrs), dot.loc)

    def outer(v: Value) -> Value:
        return inner_product if v is product else params[v]

    if reader.body is None:
        rename = {}
        outs = tuple(Value(v.type) for v in reader.outputs)
        body_eqns = [Eqn(reader.op, tuple(outer(v) for v in reader.inputs), outs,
                         dict(reader.attrs), reader.loc)]
        rename.update(zip(reader.outputs, outs, strict=True))
        body_outputs = list(outs)
    else:
        inner = reader.body
        rename = {p: outer(v) for p, v in zip(inner.params, reader.inputs, strict=True)}
        body_eqns = []
        for e in inner.eqns:
            outs = tuple(Value(v.type) for v in e.outputs)
            rename.update(zip(e.outputs, outs, strict=True))
            body_eqns.append(Eqn(e.op, tuple(rename[v] for v in e.inputs), outs,
                                 dict(e.attrs), e.loc))
        body_outputs = [rename[v] for v in inner.outputs]
    outputs = list(reader.outputs)
    if keep_product:
        body_outputs.append(inner_product)
        outputs.append(product)
    body = Function(_FUSION, [params[v] for v in inputs], [body_dot, *body_eqns], body_outputs)
    return Eqn(_FUSION, tuple(inputs), tuple(outputs), {"kind": GEMM_KIND}, reader.loc, body)
