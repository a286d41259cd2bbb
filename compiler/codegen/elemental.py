"""Element generators and the loop-nest driver of elemental kernels.

NOTE: [Elemental emission]
As in XLA's elemental IR emitter, an op is lowered by a *generator*: a
function ``(builder, index) -> value`` that computes the op's output element at
``index``. ``element_generator(eqn, operands)`` builds it from the generators
of the operands: elementwise ops apply their scalar emitter
(scalar_ops.ELEMENTWISE_EMITTERS) to the operand elements at the same index;
shape and source ops map the index (index_ops.INDEX_EMITTERS). Today every
operand generator loads from a materialised buffer (``array_generator``); a
fused kernel will instead pass the producer's own generator, computing the
operand element inline, with no change to the emitters.
"""

from __future__ import annotations

import llvmlite.ir as ll

from ir.core import Eqn
from compiler.codegen.arrays import Array, Index
from compiler.codegen.errors import LoweringError
from compiler.codegen.index_ops import INDEX_EMITTERS, Generator
from compiler.codegen.loops import for_range, loop_nest
from compiler.codegen.scalar_ops import ELEMENTWISE_EMITTERS

__all__ = ["Generator", "element_generator", "array_generator", "emit_elemental_kernel",
           "is_elemental"]

# Ops whose output element at linear position i only needs linear position i
# of its operands (or nothing): their kernels run one flat loop.
_FLAT_OPS = frozenset({"reshape", "constant"})


def is_elemental(op: str) -> bool:
    """Whether ``op`` is lowered through a generator (not a kernel of its own)."""
    return op in ELEMENTWISE_EMITTERS or op in INDEX_EMITTERS


def array_generator(array: Array) -> Generator:
    """The generator of a materialised value: a load from its buffer."""
    return lambda b, index: array.load(b, index)


def element_generator(eqn: Eqn, operands: list[Generator]) -> Generator:
    """The generator of ``eqn``'s output from its operands' generators."""
    scalar = ELEMENTWISE_EMITTERS.get(eqn.op)
    if scalar is not None:
        # Elementwise operands have the output's shape: the same index serves all.
        return lambda b, index: scalar(b, eqn, [g(b, index) for g in operands])
    mapping = INDEX_EMITTERS.get(eqn.op)
    if mapping is not None:
        return lambda b, index: mapping(b, eqn, index, operands)
    raise LoweringError(f"'{eqn.op}' has no elemental emitter")


def emit_elemental_kernel(b: ll.IRBuilder, eqn: Eqn, operands: list[Generator], out: Array) -> None:
    """Store every element of ``eqn``'s output into ``out``, one loop nest.

    Elementwise ops, reshape and constants run a flat loop over the linear
    index (long, contiguous: what the loop vectoriser likes best); the other
    index ops run a row-major nest with the last dimension innermost.
    """
    shape = out.type.shape
    size = out.type.size
    if size == 0:
        return
    generate = element_generator(eqn, operands)
    if eqn.op in ELEMENTWISE_EMITTERS or eqn.op in _FLAT_OPS:
        with for_range(b, size, name="i") as loop:
            index = Index(shape, linear=loop.index)
            out.store(b, index, generate(b, index))
    else:
        with loop_nest(b, shape) as dims:
            index = Index(shape, dims=dims)
            out.store(b, index, generate(b, index))
