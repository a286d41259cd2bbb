"""Counted loops and loop nests with static trip counts.

Loops are emitted in rotated (do-while) form, the shape LLVM's loop passes
expect: ``header: i = phi [0, pre], [i+1, latch] ... latch: br (i+1 < n)``.
A trip count of 1 emits no loop at all (the index is the constant 0), so
size-1 dimensions cost nothing. A trip count of 0 is the caller's business:
callers skip empty iteration spaces before asking for a loop.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import llvmlite.ir as ll

from compiler.codegen.llvm_types import I64, index_constant

__all__ = ["Loop", "for_range", "loop_nest"]


class Loop:
    """A counted loop in construction: ``index``, loop-carried ``carried`` values.

    Inside the ``with`` block, call ``update(*values)`` once with the carried
    values for the next iteration; after the block, ``results`` are their
    values after the last iteration.
    """

    def __init__(self, index: ll.Value, carried: list[ll.Value]):
        self.index = index
        self.carried = carried
        self.next_values: list[ll.Value] | None = None
        self.results: list[ll.Value] = []

    def update(self, *values: ll.Value) -> None:
        if len(values) != len(self.carried):
            raise ValueError(f"loop carries {len(self.carried)} values, update got {len(values)}")
        self.next_values = list(values)


@contextlib.contextmanager
def for_range(b: ll.IRBuilder, count: int, *, name: str = "i",
              carry: Sequence[ll.Value] = ()) -> Iterator[Loop]:
    """Emit ``for index in range(count)`` around the code of the ``with`` block."""
    if count < 1:
        raise ValueError(f"for_range needs a positive trip count, got {count}")
    if count == 1:
        loop = Loop(index_constant(0), list(carry))
        yield loop
        loop.results = loop.next_values if loop.next_values is not None else list(carry)
        return
    preheader = b.block
    body = b.append_basic_block(f"{name}.loop")
    b.branch(body)
    b.position_at_end(body)
    index = b.phi(I64, name=name)
    index.add_incoming(index_constant(0), preheader)
    phis = []
    for k, init in enumerate(carry):
        phi = b.phi(init.type, name=f"{name}.acc{k}")
        phi.add_incoming(init, preheader)
        phis.append(phi)
    loop = Loop(index, phis)
    yield loop
    # The body may have created blocks: the latch is wherever it ended.
    next_index = b.add(index, index_constant(1), name=f"{name}.next", flags=("nuw", "nsw"))
    more = b.icmp_unsigned("<", next_index, index_constant(count), name=f"{name}.more")
    latch = b.block
    # Appended only now, so blocks print in program order.
    exit_block = b.append_basic_block(f"{name}.exit")
    b.cbranch(more, body, exit_block)
    index.add_incoming(next_index, latch)
    next_values = loop.next_values if loop.next_values is not None else phis
    for phi, value in zip(phis, next_values, strict=True):
        phi.add_incoming(value, latch)
    b.position_at_end(exit_block)
    # The values computed in the last iteration dominate the exit block.
    loop.results = list(next_values)


@contextlib.contextmanager
def loop_nest(b: ll.IRBuilder, shape: Sequence[int], *, name: str = "d") -> Iterator[list[ll.Value]]:
    """Nested loops over ``shape`` in row-major order (last dimension innermost).

    Yields the list of indices, one per dimension; every dimension must be
    non-empty. A rank-0 shape runs the block once with no indices.
    """
    with contextlib.ExitStack() as stack:
        indices = []
        for axis, extent in enumerate(shape):
            loop = stack.enter_context(for_range(b, extent, name=f"{name}{axis}"))
            indices.append(loop.index)
        yield indices
