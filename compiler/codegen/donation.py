"""Donated parameters: results written into their parameters' buffers.

``jit(step, donate_argnums=...)`` pairs results with parameters of the same
type, ``donated = {result index j: parameter index i}``; the runtime then
points result ``j``'s table slot at parameter ``i``'s buffer
(runtime/executable.py, [Donated parameters]). ``place_donated_results``
rewrites a function so that this is correct, and says which pairs need no
work at all.

NOTE: [When a result may be computed in place]
The memory plan (memory.py) puts a result straight into its table slot, so
for a donated result that slot *is* the parameter's buffer, and the kernel
producing the result overwrites the parameter while the program runs. That is
correct only if nothing needs the old values afterwards:

1. the producer is the last equation reading the parameter (in program
   order), and no result is the parameter itself;
2. the producer has one result, and its kernel reads the parameter only at
   the position it is about to write, and never again after writing it: an
   elementwise op, or a fusion reading it only aligned -- the pairs
   ``fused.inplace_pairs`` gives, which the memory plan uses to let results
   take over dying intermediates (memory.py, [In-place results]). Such a
   kernel loads every operand element it needs for ``out[k]`` before it
   stores ``out[k]`` and never touches ``in[k]`` again; the kernel writes the
   result through the parameter's own pointer (lower.py: a donated result's
   slot is its parameter's buffer), never through a second ``noalias``
   pointer to the same bytes. With several results
   that argument fails: a load feeding only a later result need not precede
   an earlier result's store, and ``noalias`` lets LLVM move it past that
   store; so no result of a multi-result kernel is written in place, except
   a column result of a row fusion: its epilogue stores it after every row
   has been read and every other result stored (``fused.epilogue_results``),
   as a bias update ``b - lr * sum(dz, axis=0)`` fused with the backward
   pass's masked gradient.

The plain SGD update ``p - lr * g`` at the end of a training step is such a
producer, so that step updates its parameters with no copy; so is a weight
update fused into its gradient GEMM's epilogue when the GEMM has one k block
(``W - lr * x^T dz``: [Epilogue in place] in gemm_fusion.py). An optimiser with
state (momentum, Adam) computes the new state and the new parameter in one
multi-output fusion: those results are copied (one elementwise pass per
donated buffer, still no allocation). Any other donated result is computed
into the arena as usual and copied into the parameter's buffer by a final
equation, after every read of any parameter.
A result that *is* a donated parameter whose buffer another result
overwrites reads a snapshot taken by a copy at the very start.

The copies are ``reshape`` equations to the same shape (an elementwise copy
loop); no new primitive is needed.
"""

from __future__ import annotations

from typing import Mapping

from ir.core import Eqn, Function, Value
from ir.ops import infer_types
from compiler.codegen.fused import epilogue_results, inplace_pairs

__all__ = ["place_donated_results"]


def place_donated_results(fn: Function, donated: Mapping[int, int]) -> tuple[Function, set[int]]:
    """``(fn', unchanged)``: ``fn'`` computes the same results, each donated one in a
    way that may be written into its parameter's buffer; ``unchanged`` holds the
    donated results that *are* their parameter (nothing to compute or copy).
    """
    if not donated:
        return fn, set()
    params, outputs = fn.params, list(fn.outputs)
    for j, i in donated.items():
        if outputs[j].type != params[i].type:
            raise ValueError(f"result {j} ({outputs[j].type}) cannot be written into "
                             f"parameter {i} ({params[i].type})")
    unchanged = {j for j, i in donated.items() if outputs[j] is params[i]}
    overwritten = {params[i] for j, i in donated.items() if j not in unchanged}

    prologue: list[Eqn] = []
    epilogue: list[Eqn] = []
    snapshots: dict[Value, Value] = {}

    def snapshot(param: Value) -> Value:
        if param not in snapshots:
            snapshots[param] = _copy(param, prologue)
        return snapshots[param]

    # A result that is an overwritten parameter reads a copy taken before anything ran.
    for j, value in enumerate(outputs):
        if value in overwritten and j not in unchanged:
            saved = snapshot(value)
            outputs[j] = _copy(saved, epilogue) if j in donated else saved

    last_reader = _last_readers(fn)
    producer = {out: eqn for eqn in fn.eqns for out in eqn.outputs}
    placed: set[Value] = set()  # values already located at an earlier result slot
    for j, value in enumerate(outputs):
        if j in donated and j not in unchanged and value not in placed and value in producer:
            # (A parameter or snapshot result is copied at the end by the memory plan.)
            param = params[donated[j]]
            if not _may_write_in_place(producer[value], value, param, last_reader):
                outputs[j] = _copy(value, epilogue)
        placed.add(outputs[j])
    eqns = prologue + list(fn.eqns) + epilogue
    return Function(fn.name, list(fn.params), eqns, outputs), unchanged


def _copy(value: Value, eqns: list[Eqn]) -> Value:
    attrs, (type_,) = infer_types("reshape", [value.type], {"shape": list(value.type.shape)})
    result = Value(type_)
    eqns.append(Eqn("reshape", (value,), (result,), attrs, None))
    return result


def _last_readers(fn: Function) -> dict[Value, Eqn]:
    last: dict[Value, Eqn] = {}
    for eqn in fn.eqns:
        for value in eqn.inputs:
            last[value] = eqn
    return last


def _may_write_in_place(producer: Eqn, value: Value, param: Value,
                        last_reader: dict[Value, Eqn]) -> bool:
    """Rules 1 and 2 of [When a result may be computed in place]."""
    reader = last_reader.get(param)
    if reader is None:
        return True  # nobody reads the parameter
    if reader is not producer:
        return False
    k = producer.outputs.index(value)
    if len(producer.outputs) != 1 and k not in epilogue_results(producer):
        # With several results, a load feeding only a later result may be
        # scheduled after an earlier result's store: kernels take their
        # pointers noalias, so LLVM may move it there (seen: an SGD momentum
        # update read its new state as the parameter). One result only, or
        # one the fusion's epilogue stores after everything else.
        return False
    aligned = set(inplace_pairs(producer))
    return all((k, j) in aligned for j, v in enumerate(producer.inputs) if v is param)
