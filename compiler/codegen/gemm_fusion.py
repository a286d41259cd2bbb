"""Kernels of ``fusion {kind="gemm"}``: a dot whose elementwise consumers run in
the GEMM's write-back (the epilogue).

The body (made by compiler/passes/gemm_epilogue.py) holds one ``dot`` of two
body parameters and elementwise (and index) equations that read its result
only at the position being computed::

    %4 = fusion %0, %1, %2 {kind="gemm"} : f32[256,512] body(%5, %6, %7) {
      %8 = dot %5, %6 : f32[256,512]
      %9 = broadcast %7 {dims=[1], shape=[256,512]} : f32[256,512]
      %10 = add %8, %9 : f32[256,512]
      ...
      return %12
    }

The GEMM (gemm.py) stores each finished micro-tile of the product into the
buffer of a result of the same type (or of the dot's own result, when the
fusion returns it) and then, while that tile is in L1, computes every result
of the body at the tile's positions with the ops' own element emitters
(elemental.py, index_ops.py), reading the product back from the tile. So the
product never makes a separate trip through memory. The arithmetic is the
same as unfused (the product, then the same scalar ops), so results are
bitwise equal to the unfused program.

NOTE: [Epilogue in place]
A result may be written over an operand the epilogue reads (the SGD update
``W - lr * x^T dz`` of a donated W, or a dying intermediate: memory.py,
[In-place results]) when the write-back can read every ``W[i, j]`` before
writing the result at ``[i, j]`` and never reads it again. ``inplace_operands``
offers operand j only when all of these hold, and everything else refuses:

1. the fusion has one result, of the product's type, not the product itself;
2. the plan is the panel GEMM with one k block (``gemm.can_stage``): with
   several, partial sums accumulate in C across k blocks; the skinny kernel
   and the plain loops store the whole product before any epilogue runs;
3. parameter j is not an operand of the dot (the GEMM reads those across
   positions and threads), is bound to no other parameter, has the result's
   shape, and reaches the result only through elementwise equations (no
   broadcast, transpose or other index map on the way), so it is read at the
   position being written only and it feeds that store (data flow orders
   the load before the store).

The kernel then stages each product tile privately ([Staged tiles] in
gemm.py) and reads W through the result's own pointer, never through a
second ``noalias`` pointer to the same bytes. The tile's values and the
epilogue's arithmetic are the same as when the product goes through C, so
results are bitwise equal to the program without the pair.
"""

from __future__ import annotations

import llvmlite.ir as ll

from ir.core import Eqn, Value
from compiler.codegen.arrays import Array, Index
from compiler.codegen.dot import (dot_plan, dot_scratch_bytes, dot_shape, emit_dot_loops,
                                  emit_product)
from compiler.codegen.elemental import Generator, array_generator, element_generator
from compiler.codegen.errors import LoweringError
from compiler.codegen.gemm import Epilogue, can_stage
from compiler.codegen.gemm_plan import GemmPlan
from compiler.codegen.gemm_pack import counted_loop
from compiler.codegen.llvm_types import index_constant
from ir.dtypes import TensorType

__all__ = ["GEMM_KIND", "is_gemm_fusion", "gemm_fusion_scratch_bytes", "emit_gemm_fusion",
           "product_buffer", "inplace_operands"]

GEMM_KIND = "gemm"
_NUW_NSW = ("nuw", "nsw")


def is_gemm_fusion(eqn: Eqn) -> bool:
    return eqn.body is not None and eqn.attrs.get("kind") == GEMM_KIND


def _dot_of(eqn: Eqn) -> Eqn:
    dots = [e for e in eqn.body.eqns if e.op == "dot"]
    params = set(eqn.body.params)
    if len(dots) != 1 or not all(v in params for v in dots[0].inputs):
        raise LoweringError(f"a gemm fusion{' at ' + eqn.loc if eqn.loc else ''} must hold "
                            "exactly one dot of two of its parameters")
    return dots[0]


def _check_epilogue(eqn: Eqn, dot: Eqn) -> None:
    """Refuse bodies the write-back cannot compute in place: every result must
    have the product's shape (results are stored at the tile's positions), and
    whatever depends on the product must be elementwise in it (read only at the
    position being written, never gathered through an index op)."""
    from ir.ops import get_op

    where = f" at {eqn.loc}" if eqn.loc else ""
    product = dot.outputs[0]
    for value in eqn.body.outputs:
        if value.shape != product.shape:
            raise LoweringError(
                f"gemm fusion{where}: result {value.type} does not have the product's shape "
                f"{list(product.shape)}; only elementwise epilogues can run in the write-back")
    derived = {product}
    for e in eqn.body.eqns:
        if e is dot or not any(v in derived for v in e.inputs):
            continue
        if e.body is not None or get_op(e.op).kind != "elementwise":
            raise LoweringError(
                f"gemm fusion{where}: '{e.op}' reads the product through an index map; only "
                "elementwise epilogues can run in the GEMM's write-back")
        derived.update(e.outputs)


def product_buffer(eqn: Eqn) -> int | None:
    """Which result's buffer holds the product while the epilogue runs: the
    dot's own result if the fusion returns it, else the first result of the
    product's type; None if there is none (the pass never builds that)."""
    product = _dot_of(eqn).outputs[0]
    outputs = list(eqn.body.outputs)
    if product in outputs:
        return outputs.index(product)
    for k, value in enumerate(outputs):
        if value.type == product.type:
            return k
    return None


def inplace_operands(eqn: Eqn) -> list[int]:
    """Operands j whose buffer result 0 may share ([Epilogue in place])."""
    from ir.ops import get_op

    if not is_gemm_fusion(eqn) or len(eqn.outputs) != 1:
        return []
    try:
        dot = _dot_of(eqn)
    except LoweringError:
        return []
    plan = dot_plan(dot)
    if not isinstance(plan, GemmPlan) or not can_stage(plan):
        return []
    body = eqn.body
    result, product = body.outputs[0], dot.outputs[0]
    if result is product or result.type != product.type:
        return []
    found = []
    for j, param in enumerate(body.params):
        if param in dot.inputs or param is result or param.type.shape != result.type.shape \
                or sum(v is eqn.inputs[j] for v in eqn.inputs) > 1:
            continue
        derived, aligned = {param}, True
        for e in body.eqns:
            if not any(v in derived for v in e.inputs):
                continue
            if e.body is not None or get_op(e.op).kind != "elementwise" or \
                    any(v.type.shape != result.type.shape for v in e.outputs):
                aligned = False
                break
            derived.update(e.outputs)
        if aligned and result in derived:
            found.append(j)
    return found


def gemm_fusion_scratch_bytes(eqn: Eqn) -> int:
    return dot_scratch_bytes(_dot_of(eqn))


def emit_gemm_fusion(b: ll.IRBuilder, eqn: Eqn, ins: list[Array], outs: list[Array],
                     scratch: ll.Value | None, in_place: dict[int, int] | None = None) -> None:
    """The kernel of gemm fusion ``eqn`` (see the module docstring); ``in_place``
    maps result 0 to the operand whose buffer it is written over, if any
    ([Epilogue in place]: ``outs[0]`` then points at that operand's buffer)."""
    body = eqn.body
    dot = _dot_of(eqn)
    _check_epilogue(eqn, dot)
    slot = product_buffer(eqn)
    if slot is None:
        raise LoweringError("a gemm fusion needs a result of its product's type to hold it")
    over = set((in_place or {}).values())
    if in_place and (set(in_place) != {0} or not over <= set(inplace_operands(eqn))):
        raise LoweringError(f"gemm fusion{' at ' + eqn.loc if eqn.loc else ''} cannot write "
                            f"its results over operands {sorted(in_place.items())}")
    position = {p: i for i, p in enumerate(body.params)}
    product_array = outs[slot]
    lhs, rhs = (ins[position[v]] for v in dot.inputs)
    producer = {v: e for e in body.eqns for v in e.outputs}
    # Buffers the epilogue touches: every input it reads, every result but the
    # product's; an operand under the result is read through the result's pointer.
    read = [i for i, p in enumerate(body.params)
            if (any(p in e.inputs for e in body.eqns if e is not dot) or (p in body.outputs))
            and i not in over]
    written = [k for k in range(len(outs)) if k != slot]
    plan = dot_plan(dot)
    width = plan.lanes if plan is not None else 0
    tile_shape = (plan.mr, plan.nr) if over else None
    epilogue = Epilogue(
        pointers=[ins[i].pointer for i in read] + [outs[k].pointer for k in written],
        apply=lambda b, c, pointers, batch, row, col, rows, cols, tile=None: _apply(
            b, eqn, dot, producer, position, slot, read, written, ins, outs, c, pointers,
            batch, row, col, rows, cols, width, over, tile, tile_shape),
        staged=bool(over),
    )
    out_type = dot.outputs[0].type
    if out_type.size == 0:
        return
    shape = dot_shape(dot)
    if plan is not None:
        emit_product(b, plan, b.function.name, product_array.pointer, lhs.pointer, rhs.pointer,
                     scratch, epilogue)
        return
    # Small or k = 0: the plain product, then the epilogue over the whole result.
    emit_dot_loops(b, dot, [lhs, rhs], product_array)
    with counted_loop(b, index_constant(shape.batch), name="epilogue.batch") as batch:
        epilogue.apply(b, product_array.pointer, epilogue.pointers, batch, index_constant(0),
                       index_constant(0), index_constant(shape.m), index_constant(shape.n))


def _apply(b, eqn, dot, producer, position, slot, read, written, ins, outs, c, pointers,
           batch, row, col, rows, cols, width: int, over=frozenset(), tile=None,
           tile_shape: tuple[int, int] | None = None) -> None:
    """Compute every result of the body at rows x cols of the product's tile
    (read from C, or from the staged ``tile`` of ``tile_shape``)."""
    body = eqn.body
    product = dot.outputs[0]
    out_shape = product.type.shape
    arrays: dict[Value, Array] = {}
    if tile is None:
        arrays[product] = Array(c, product.type)
    for i, pointer in zip(read, pointers[:len(read)], strict=True):
        arrays[body.params[i]] = Array(pointer, ins[i].type)
    for i in over:  # written over by the result: one pointer for both ([Epilogue in place])
        arrays[body.params[i]] = Array(c, ins[i].type)
    results = [Array(c, outs[slot].type) if k == slot else None for k in range(len(outs))]
    for k, pointer in zip(written, pointers[len(read):], strict=True):
        results[k] = Array(pointer, outs[k].type)
    batch_dims = _unflatten(b, batch, out_shape[:-2])

    with counted_loop(b, rows, name="epilogue.r") as r:
        i = b.add(row, r, flags=_NUW_NSW)
        # One host vector wide, tail folded (loop_hints): W4's epilogues
        # compiled in 8-12 ms each instead of 10-15, equally fast.
        with counted_loop(b, cols, name="epilogue.j", vectorize=True, width=width) as j:
            here = Index(out_shape, dims=[*batch_dims, i, b.add(col, j, flags=_NUW_NSW)])
            fixed = {}
            if tile is not None:
                # The product is read only where it is written (_check_epilogue).
                staged = Array(tile, TensorType(product.type.dtype, tile_shape))
                at = Index(staged.type.shape, dims=[r, j])
                fixed[product] = lambda b, index, staged=staged, at=at: staged.load(b, at)
            generate = _Generators(producer, arrays, here, fixed)
            # Everything is computed before anything is stored: a result may
            # share the product's buffer.
            values = [generate(v)(b, here) for v in body.outputs]
            for array, value in zip(results, values, strict=True):
                array.store(b, here, value)


def _unflatten(b, flat, extents) -> list:
    """Per-axis indices of a row-major flat index over ``extents``."""
    dims = []
    for axis, extent in reversed(list(enumerate(extents))):
        if axis == 0:
            dims.append(flat)
        else:
            dims.append(b.urem(flat, index_constant(extent)))
            flat = b.udiv(flat, index_constant(extent))
    return dims[::-1]


class _Generators:
    """Element generators of the body's values; values read at the position
    being computed (``here``) are computed once there."""

    def __init__(self, producer, arrays, here: Index, fixed=None):
        self.producer, self.arrays, self.here = producer, arrays, here
        self._made: dict[Value, Generator] = dict(fixed or {})
        self._memo: dict[Value, ll.Value] = {}

    def __call__(self, value: Value) -> Generator:
        made = self._made.get(value)
        if made is not None:
            return made
        array = self.arrays.get(value)
        if array is not None:
            inner = array_generator(array)
        else:
            eqn = self.producer[value]
            inner = element_generator(eqn, [self(v) for v in eqn.inputs])

        def generate(b, index, value=value, inner=inner):
            if index is not self.here:
                return inner(b, index)
            if value not in self._memo:
                self._memo[value] = inner(b, index)
            return self._memo[value]

        self._made[value] = generate
        return generate
