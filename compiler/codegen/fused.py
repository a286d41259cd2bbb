"""Kernels of ``fusion`` equations: one loop nest for a whole body.

The schedule comes from ``plan_fusion`` (see [Fusion schedules] in
fusion_plan.py), re-derived here from the body, so a fusion that does not fit
the rules (e.g. parsed from hand-written IR) is a LoweringError, never wrong code.

Every element is computed by the body's primitives' own emitters
(scalar_ops.ELEMENTWISE_EMITTERS, index_ops.INDEX_EMITTERS): values read at
the position being computed ("aligned") are computed once per position in
straight-line code and kept in registers; values read through an index map
("gathered") come from element generators computing them inline at whatever
position is asked (NOTE: [Elemental emission] in elemental.py). Loops are
counted loops with static trip counts over contiguous positions, and kernels
take their buffers ``noalias``, so LLVM vectorises them for the host CPU.

NOTE: [Fused reduction tolerance]
Reductions in fusions accumulate exactly as the reduction kernels do
(reduce.py, NOTE: [Reduction tolerance]): float sums carry ``reassoc`` so LLVM
vectorises them with several partial sums, which makes a fused float
``reduce_sum`` of n terms differ from numpy's pairwise sum by rounding only,
at most about ``n * eps * sum(|x|)`` (tests/compiler/test_fuse.py checks
``2 n eps sum|x|`` against float64). Integer sums wrap and are exact; max/min
are exact (nan propagates). The fused producers compute every element with
the same IEEE operations as the unfused kernels, so results that do not go
through a float sum are bitwise equal to the unfused program.
"""

from __future__ import annotations

import weakref

import llvmlite.ir as ll

from ir.core import Eqn, Function, Value
from ir.dtypes import TensorType
from compiler.codegen.arrays import Array, Index
from compiler.codegen.elemental import Generator, array_generator, element_generator
from compiler.codegen.errors import LoweringError
from compiler.codegen.fusion_plan import (EXPENSIVE, FusionPlan, NotFusible, operand_access,
                                          plan_fusion)
from compiler.codegen.index_ops import INDEX_EMITTERS
from compiler.codegen.llvm_types import constant, index_constant
from compiler.codegen.loops import for_range, loop_nest
from compiler.codegen.reduce import (_identity_and_combine, argreduce_scratch_bytes,
                                     emit_argreduce, emit_reduce)
from compiler.codegen.scalar_ops import ELEMENTWISE_EMITTERS

__all__ = ["fusion_plan", "fusion_scratch_bytes", "fusion_scratch_layout", "emit_fusion",
           "emit_fusion_epilogue", "inplace_pairs", "epilogue_results", "span_extent"]

_NUW_NSW = ("nuw", "nsw")
_PLANS: "weakref.WeakKeyDictionary[Function, FusionPlan]" = weakref.WeakKeyDictionary()


def fusion_plan(eqn: Eqn) -> FusionPlan:
    """The schedule of fusion ``eqn`` (memoised per body); LoweringError if it has none."""
    body = eqn.body
    plan = _PLANS.get(body)
    if plan is None:
        try:
            plan = plan_fusion(body.eqns, body.params, body.outputs)
        except NotFusible as error:
            loc = f" (at {error.eqn.loc})" if error.eqn is not None and error.eqn.loc else ""
            raise LoweringError(f"fusion{' at ' + eqn.loc if eqn.loc else ''} cannot be one "
                                f"kernel: {error}{loc}") from None
        if len(set(body.params)) != len(body.params):
            raise LoweringError("a fusion body lists a parameter twice")
        _PLANS[body] = plan
    return plan


def fusion_scratch_bytes(eqn: Eqn) -> int:
    """Arena bytes the kernel of fusion ``eqn`` needs besides its results."""
    private, shared = fusion_scratch_layout(eqn)
    return private + shared


def fusion_scratch_layout(eqn: Eqn) -> tuple[int, int]:
    """(bytes private to one thread, a multiple of 64; bytes shared by all
    threads: the partials of reductions across rows). The serial kernel's
    scratch holds the private part, then the shared part."""
    plan = fusion_plan(eqn)
    if plan.mode == "nest":
        private = argreduce_scratch_bytes(plan.root) if plan.root.op in ("argmax", "argmin") \
            else 0
        return -(-private // 64) * 64, 0
    return plan.scratch_bytes(), plan.shared_bytes()


def inplace_pairs(eqn: Eqn) -> list[tuple[int, int]]:
    """``(result k, operand j)`` pairs whose buffers may be one: the kernel reads
    operand j only at the position it is about to write in result k, and never
    again after writing it (see NOTE: [In-place results] in memory.py)."""
    if eqn.body is not None and eqn.attrs.get("kind") == "gemm":
        from compiler.codegen.gemm_fusion import inplace_operands  # imports this module's peers

        return [(0, j) for j in inplace_operands(eqn)]  # [Epilogue in place] in gemm_fusion.py
    if eqn.body is None:
        if not _elementwise(eqn.op):
            return []
        out = eqn.outputs[0].type
        return [(0, j) for j, v in enumerate(eqn.inputs) if _same_layout(v.type, out)]
    if eqn.attrs.get("kind") not in ("loop", "reduce"):
        return []  # a region this module does not lower (e.g. a GEMM with its epilogue)
    plan = fusion_plan(eqn)
    if plan.mode == "nest":
        return []
    pairs = []
    late = _epilogue_results(plan)
    for k, result in enumerate(plan.outputs):
        for j, param in enumerate(plan.inputs):
            how = plan.access.get(param)
            # A result of the epilogue is stored after every row has been read,
            # so reads of the operand anywhere in the rows (gathered too) are over.
            gathered = plan.gathered.get(param) and result not in late
            if (how is None or gathered or plan.access.get(result) != how
                    or not _same_layout(param.type, result.type)):
                continue
            if sum(v is eqn.inputs[j] for v in eqn.inputs) > 1:
                continue  # the buffer is also another parameter, which may be gathered
            loop = None
            if plan.mode == "row" and how == "full":
                loop = plan.store_loop(result)
                reads = plan.reads.get(param, {0})
                if max(reads) > loop:
                    continue
                if loop not in reads:
                    pairs.append((k, j))  # read only by earlier inner loops
                    continue
            if _feeds(plan, param, result, loop):
                pairs.append((k, j))
    return pairs


def epilogue_results(eqn: Eqn) -> set[int]:
    """Indices of the results of fusion ``eqn`` stored by its epilogue
    (``emit_fusion_epilogue``): after every row has been read and every other
    result stored, one column at a time. Such a result may be written over
    an operand even when the fusion has other results (donation.py)."""
    if eqn.body is None or eqn.attrs.get("kind") not in ("loop", "reduce"):
        return set()
    plan = fusion_plan(eqn)
    late = _epilogue_results(plan)
    return {k for k, v in enumerate(plan.outputs) if v in late}


def _epilogue_results(plan: FusionPlan) -> set[Value]:
    # Totals are stored before the columns, whose loop may read scalar
    # operands: only column results come last.
    if plan.mode != "row" or not plan.across:  # no epilogue without sums across rows
        return set()
    return {v for v in plan.outputs if plan.access.get(v) == "column"}


def _feeds(plan: FusionPlan, param: Value, result: Value, loop: int | None) -> bool:
    """Whether the element of ``param`` loaded at a position feeds ``result`` at
    that position (in inner loop ``loop`` of a row fusion).

    Kernels take their pointers ``noalias``, so LLVM may move a load past a
    store to another pointer when no data flows from one to the other. A result
    stored over an operand's buffer is safe only when the store depends on that
    operand's load at the same position (NOTE: [In-place results] in memory.py);
    a load feeding only another result, or only a reduction, gives no such order.
    """
    how = plan.access[result]
    producer = {v: e for e in plan.eqns for v in e.outputs}
    stack, seen = [result], set()
    while stack:
        v = stack.pop()
        if v is param:
            return True
        if v in seen:
            continue
        seen.add(v)
        if loop is not None and plan.cached.get(v, loop) < loop:
            continue  # read back from row scratch in this loop, not recomputed
        e = producer.get(v)
        if e is None:
            continue
        for u, access in zip(e.inputs, operand_access(e, how, plan.rows, plan.cols),
                             strict=True):
            if access == how:
                stack.append(u)
    return False


def _elementwise(op: str) -> bool:
    return op in ELEMENTWISE_EMITTERS


def _same_layout(a: TensorType, b: TensorType) -> bool:
    return a.size == b.size and a.dtype.itemsize == b.dtype.itemsize


# -- evaluation -------------------------------------------------------------------------


class _Position:
    """Where the loops are: the linear position in a class ("row" or "full") and
    the memo of aligned values computed there."""

    def __init__(self, how: str, linear: ll.Value, *, parent: "_Position | None" = None,
                 shape: tuple | None = None, index: Index | None = None,
                 row: ll.Value | None = None, col: ll.Value | None = None,
                 rows: int = 0, cols: int = 0):
        self.how, self.linear, self.parent = how, linear, parent
        self.memo: dict[Value, ll.Value] = {}
        self._shape, self._index = shape, index
        self._row, self._col, self._rows, self._cols = row, col, rows, cols
        self._indices: dict[tuple, Index] = {}

    def index(self, b: ll.IRBuilder, shape: tuple) -> Index:
        """The Index of this position in a value of ``shape`` (same element count)."""
        shape = tuple(shape)
        if shape == self._shape and self._index is not None:
            return self._index
        found = self._indices.get(shape)
        if found is None:
            dims = self._split_dims(b, shape) if self.how == "full" else None
            found = Index(shape, dims=dims, linear=self.linear)
            self._indices[shape] = found
        return found

    def _split_dims(self, b: ll.IRBuilder, shape: tuple) -> list | None:
        # Per-axis indices straight from (row, col) when the shape splits there,
        # so no division by the row length happens in the inner loop.
        for k in range(len(shape) + 1):
            if _size(shape[:k]) == self._rows and _size(shape[k:]) == self._cols:
                head = Index(shape[:k], linear=self._row).dims(b) if k else []
                tail = Index(shape[k:], linear=self._col).dims(b) if k < len(shape) else []
                return head + tail
        return None


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class _Evaluator:
    """Computes body values at positions: aligned (memoised) or gathered (generators)."""

    def __init__(self, plan: FusionPlan, inputs: dict[Value, Generator]):
        self.plan = plan
        self.inputs = inputs
        self.producer = {v: e for e in plan.eqns for v in e.outputs}
        self._generators: dict[Value, Generator] = {}

    def generator(self, v: Value) -> Generator:
        """v at any position, recomputed at every call (gathered reads)."""
        found = self._generators.get(v)
        if found is None:
            if v in self.inputs:
                found = self.inputs[v]
            else:
                e = self.producer[v]
                found = element_generator(e, [self.generator(u) for u in e.inputs])
            self._generators[v] = found
        return found

    def aligned(self, b: ll.IRBuilder, v: Value, at: _Position) -> ll.Value:
        """v at the position ``at`` (v is read aligned there), computed once."""
        how = self.plan.access[v]
        if how != at.how:  # a row value inside a row's inner loop: computed before it
            if at.parent is None or v not in at.parent.memo:
                raise LoweringError(f"fusion: row value {v.type} is not ready in the inner loop")
            return at.parent.memo[v]
        found = at.memo.get(v)
        if found is not None:
            return found
        if v in self.inputs:
            value = self.inputs[v](b, at.index(b, v.shape))
        else:
            e = self.producer[v]
            accesses = operand_access(e, how, self.plan.rows, self.plan.cols)
            if e.op in ELEMENTWISE_EMITTERS:
                value = ELEMENTWISE_EMITTERS[e.op](b, e, [self.aligned(b, u, at) for u in e.inputs])
            elif all(a is not None for a in accesses) and e.op in ("reshape", "broadcast"):
                value = self.aligned(b, e.inputs[0], at)
            elif e.op in INDEX_EMITTERS:
                value = INDEX_EMITTERS[e.op](b, e, at.index(b, v.shape),
                                            [self.generator(u) for u in e.inputs])
            else:  # a reduction: its value comes from its inner loop
                raise LoweringError(f"fusion: '{e.op}' result used before its loop ran")
        at.memo[v] = value
        return value


# -- kernels ----------------------------------------------------------------------------


def emit_fusion(b: ll.IRBuilder, eqn: Eqn, ins: list[Array], outs: list[Array],
                scratch: ll.Value | None, span: tuple[ll.Value, int] | None = None,
                shared: ll.Value | None = None) -> None:
    """Emit the loops computing every result of fusion ``eqn`` into ``outs``,
    reading its operands from the buffers ``ins``. ``span = (start, count)``
    restricts the outermost loop to ``count`` of its ``span_extent(eqn)``
    iterations from ``start`` (an i64 value): how a parallel kernel gives each
    chunk its share (compiler/codegen/parallel_fusion.py). A span of a fusion
    with reductions across rows covers whole blocks of rows, accumulates into
    the partials at ``shared`` and leaves the results to
    ``emit_fusion_epilogue``; without a span the kernel does it all, with the
    partials after the private scratch."""
    plan = fusion_plan(eqn)
    evaluator = _evaluator(eqn, plan, ins)
    if plan.mode == "loop":
        _emit_loop(b, plan, evaluator, outs, span)
    elif plan.mode == "row":
        if plan.across and shared is None:
            shared = _offset(b, scratch, plan.scratch_bytes())
        _emit_rows(b, eqn, plan, ins, outs, scratch, span, shared)
        if plan.across and span is None:
            emit_fusion_epilogue(b, eqn, ins, outs, shared)
    else:
        _emit_nest(b, plan, evaluator, outs, scratch)


def _evaluator(eqn: Eqn, plan: FusionPlan, ins: list[Array]) -> "_Evaluator":
    operands = [array_generator(a) for a in ins]
    return _Evaluator(plan, dict(zip(eqn.body.params, operands, strict=True)))


def _offset(b: ll.IRBuilder, pointer: ll.Value, nbytes: int) -> ll.Value:
    if nbytes == 0:
        return pointer
    return b.gep(pointer, [index_constant(nbytes)], inbounds=True, source_etype=ll.IntType(8))


def _partials(b: ll.IRBuilder, plan: FusionPlan, shared: ll.Value) -> dict[Eqn, Array]:
    """The ``[blocks, width]`` partials of each reduction across rows."""
    arrays, offset = {}, 0
    for r in plan.across:
        dtype, width = r.outputs[0].dtype, plan.across_width(r)
        arrays[r] = Array(_offset(b, shared, offset), TensorType(dtype, (plan.blocks, width)))
        offset += -(-plan.blocks * width * dtype.itemsize // 64) * 64
    return arrays


def emit_fusion_epilogue(b: ll.IRBuilder, eqn: Eqn, ins: list[Array], outs: list[Array],
                         shared: ll.Value) -> None:
    """Combine the partials of fusion ``eqn``'s reductions across rows in block
    order and store the results computed from them (its "total" and "column"
    results), once every row has been accumulated."""
    plan = fusion_plan(eqn)
    evaluator = _evaluator(eqn, plan, ins)
    partials = _partials(b, plan, shared)
    out_of = dict(zip(plan.outputs, outs, strict=True))
    for how, width in (("total", 1), ("column", plan.cols)):
        reductions = [r for r in plan.across if plan.access[r.outputs[0]] == how]
        results = [v for v in plan.outputs if plan.access[v] == how]
        if not results:
            continue
        with for_range(b, width, name=how) as loop:
            at = _Position(how, loop.index)
            for r in reductions:
                _, combine = _identity_and_combine(r.op, r.outputs[0].dtype)
                array = partials[r]
                value = None
                for block in range(plan.blocks):  # in block order: any thread count, same sum
                    index = Index(array.type.shape, dims=[index_constant(block), loop.index])
                    part = array.load(b, index)
                    value = part if value is None else combine(b, value, part)
                at.memo[r.outputs[0]] = value
            for v in results:
                out_of[v].store(b, at.index(b, v.shape), evaluator.aligned(b, v, at))


def span_extent(eqn: Eqn) -> int | None:
    """Iterations of fusion ``eqn``'s outermost loop, which ``span`` divides
    (None: the kernel cannot be split, a ``nest`` reduction)."""
    plan = fusion_plan(eqn)
    if plan.mode == "nest":
        return None
    if plan.mode == "row" or _flat(plan):
        return plan.rows
    return plan.shape[0] if plan.shape else None


def _spanned(b, span, count: int):
    """(start value, iterations) of the outermost loop."""
    return span if span is not None else (index_constant(0), count)


def _at(b, start, index):
    if isinstance(start, ll.Constant) and start.constant == 0:
        return index
    return b.add(start, index, flags=_NUW_NSW)


def _flat(plan: FusionPlan) -> bool:
    """Whether one flat loop serves (no value needs per-axis indices)."""
    if len(plan.shape) <= 1:
        return True
    for e in plan.eqns:
        if e.op in INDEX_EMITTERS and e.op not in ("reshape", "constant"):
            if e.op == "broadcast" and e.inputs[0].type.size == e.outputs[0].type.size:
                continue
            return False
    return True


def _emit_loop(b, plan: FusionPlan, evaluator: _Evaluator, outs: list[Array],
               span=None) -> None:
    shape = plan.shape

    def body(index: Index) -> None:
        at = _Position("row", index.linear(b), shape=shape, index=index)
        values = [evaluator.aligned(b, v, at) for v in plan.outputs]
        # Every load of this position happens before any store to it (in-place results).
        for out, v, value in zip(outs, plan.outputs, values, strict=True):
            out.store(b, at.index(b, v.shape), value)

    if _flat(plan):
        start, count = _spanned(b, span, plan.rows)
        with for_range(b, count, name="i") as loop:
            body(Index(shape, linear=_at(b, start, loop.index)))
        if count > 1 and any(e.op in EXPENSIVE for e in plan.eqns):
            _interleave(b, _LONG_BODY_INTERLEAVE)
    elif span is None:
        with loop_nest(b, shape) as dims:
            body(Index(shape, dims=dims))
    else:
        start, count = span
        with for_range(b, count, name="d0") as outer:
            with loop_nest(b, shape[1:]) as dims:
                body(Index(shape, dims=[_at(b, start, outer.index), *dims]))


# NOTE: [Interleaving long loop bodies]
# LLVM's cost model interleaves a vectorised loop whose body holds a
# transcendental (~30 dependent vector operations per element) only twice,
# for register pressure; four independent vectors per iteration give the
# out-of-order core enough to overlap the chains: W1 gelu 1.74 -> 1.61 ms
# (one thread, medians of 3 runs of 15, side by side by XLAC_CACHE_DIR=off
# processes with -force-vector-interleave=4 as the only difference).
_LONG_BODY_INTERLEAVE = 4


def _interleave(b: ll.IRBuilder, count: int) -> None:
    """Ask LLVM to interleave the loop that just ended (the builder sits in its
    exit block) ``count`` times once vectorised (``llvm.loop`` metadata)."""
    exit_block = b.block
    for block in reversed(b.function.blocks):
        branch = block.terminator
        if isinstance(branch, ll.instructions.ConditionalBranch) and exit_block in branch.operands:
            module = b.module
            option = module.add_metadata([ll.MetaDataString(module, "llvm.loop.interleave.count"),
                                          ll.Constant(ll.IntType(32), count)])
            # A loop ID is a node of its own that names itself first (LangRef);
            # add_metadata would hand every loop the same uniqued node.
            loop_id = ll.values.MDValue(module, [], name=str(len(module.metadata)))
            loop_id.operands = (loop_id, option)
            branch.set_metadata("llvm.loop", loop_id)
            return
    raise LoweringError("fusion: no loop branch found to interleave")


def _emit_rows(b, eqn: Eqn, plan: FusionPlan, ins: list[Array], outs: list[Array],
               scratch: ll.Value | None, span=None, shared: ll.Value | None = None) -> None:
    start, count = _spanned(b, span, plan.rows)
    if not plan.across:
        evaluator = _evaluator(eqn, plan, ins)
        out_of = dict(zip(plan.outputs, outs, strict=True))
        caches = _caches(b, plan, scratch)
        with for_range(b, count, name="row") as row_loop:
            _row_body(b, plan, evaluator, out_of, caches, {}, _at(b, start, row_loop.index))
        return
    # This span's blocks start from the identity (it starts at a block boundary).
    first = b.udiv(start, index_constant(plan.block_rows))
    with for_range(b, -(-count // plan.block_rows), name="block") as blocks:
        block = b.add(first, blocks.index, flags=_NUW_NSW)
        for r, array in _partials(b, plan, shared).items():
            identity, _ = _identity_and_combine(r.op, r.outputs[0].dtype)
            with for_range(b, array.type.shape[1], name="fill") as fill:
                array.store(b, Index(array.type.shape, dims=[block, fill.index]),
                            constant(r.outputs[0].dtype, identity))
    with for_range(b, count, name="row") as row_loop:
        _call_row_function(b, eqn, plan, ins, outs, scratch, shared,
                           _at(b, start, row_loop.index))


# NOTE: [One row function]
# With reductions across rows, an inner loop stores into the partials while it
# reads the operands. Inlined into a thread-pool chunk (whose pointers come from
# a context, not ``noalias`` parameters), LLVM versioned such loops with alias
# checks and vectorised the row reductions differently from the serial kernel:
# results 1 ulp apart between one and two threads. So one row is a function of
# its own, ``noalias`` and ``noinline``, that the serial kernel and every chunk
# call: the same machine code for every row, whatever the thread count.
_ROW_FUNCTIONS: "weakref.WeakKeyDictionary[ll.Module, dict]" = weakref.WeakKeyDictionary()


def _call_row_function(b: ll.IRBuilder, eqn: Eqn, plan: FusionPlan, ins: list[Array],
                       outs: list[Array], scratch: ll.Value | None, shared: ll.Value,
                       row: ll.Value) -> None:
    arrays = (*ins, *outs)
    pointers = list(dict.fromkeys(a.pointer for a in arrays))  # in-place results: one pointer
    pattern = tuple(pointers.index(a.pointer) for a in arrays)
    extra = ([scratch] if plan.cached else []) + [shared]
    table = _ROW_FUNCTIONS.setdefault(b.module, {})
    if eqn not in table:
        name = b.function.name.split(".")[0] + ".row"
        fn = ll.Function(b.module, ll.FunctionType(ll.VoidType(),
                                                   [a.type for a in (*pointers, *extra)]
                                                   + [index_constant(0).type]), name)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.attributes.add("nounwind")
        params = list(fn.args)
        for arg in params[:-1]:
            arg.add_attribute("noalias")
        inner = ll.IRBuilder(fn.append_basic_block("entry"))
        own = [Array(params[k], a.type) for k, a in zip(pattern, arrays, strict=True)]
        private = params[len(pointers)] if plan.cached else None
        _row_body(inner, plan, _evaluator(eqn, plan, own[:len(ins)]),
                  dict(zip(plan.outputs, own[len(ins):], strict=True)),
                  _caches(inner, plan, private), _partials(inner, plan, params[-2]), params[-1])
        inner.ret_void()
        table[eqn] = (fn, pattern)
    fn, first = table[eqn]
    if pattern != first:
        raise LoweringError("fusion: a row function called with buffers aliased differently")
    b.call(fn, [*pointers, *extra, row])


def _caches(b, plan: FusionPlan, scratch: ll.Value | None) -> dict[Value, Array]:
    """The row scratch of each cached value (one row each, 64-byte aligned)."""
    caches, offset = {}, 0
    for v in plan.cached:
        pointer = b.gep(scratch, [index_constant(offset)], inbounds=True,
                        source_etype=ll.IntType(8))
        caches[v] = Array(pointer, TensorType(v.dtype, (plan.cols,)))
        offset += -(-plan.cols * v.dtype.itemsize // 64) * 64
    return caches


def _row_body(b, plan: FusionPlan, evaluator: _Evaluator, out_of: dict[Value, Array],
              caches: dict[Value, Array], partials: dict[Eqn, Array], p: ll.Value) -> None:
    """Everything computed for row ``p``: its inner loops and row results."""
    rows, cols = plan.rows, plan.cols
    row_values = [e.outputs[0] for e in plan.eqns if plan.access.get(e.outputs[0]) == "row"]
    row_inputs = [v for v in plan.inputs if plan.access.get(v) == "row"]
    row = _Position("row", p)
    block = b.udiv(p, index_constant(plan.block_rows)) if plan.across else None

    def accumulate(r: Eqn, column: ll.Value, value: ll.Value) -> None:
        """partial[block, column] of reduction-across-rows r, combined with value."""
        _, combine = _identity_and_combine(r.op, r.outputs[0].dtype)
        array = partials[r]
        index = Index(array.type.shape, dims=[block, column])
        array.store(b, index, combine(b, array.load(b, index), value))

    def ready(level: int) -> None:
        """Compute the row values that only need reductions of loops <= level."""
        for v in row_inputs:
            evaluator.aligned(b, v, row)
        for v in row_values:
            if plan.level[v] <= level and v not in row.memo and \
                    evaluator.producer[v].op not in ("reduce_sum", "reduce_max", "reduce_min"):
                evaluator.aligned(b, v, row)

    for n, phase in enumerate(plan.loops, 1):
        ready(n - 1)
        hot = _hot_column(b, plan, evaluator, phase, n, row, p, caches) \
            if phase.one_hot is not None else None
        totals = [r for r in phase.across if plan.across_width(r) == 1]
        columns = [r for r in phase.across if plan.across_width(r) != 1]
        summed = [r for r in phase.reductions if r not in phase.picks] + totals
        inits, combines = [], []
        for r in summed:
            identity, combine = _identity_and_combine(r.op, r.inputs[0].dtype)
            inits.append(constant(r.inputs[0].dtype, identity))
            combines.append(combine)
        with for_range(b, cols, name=f"col{n}", carry=inits) as loop:
            q = loop.index
            linear = b.add(b.mul(p, index_constant(cols), flags=_NUW_NSW), q, flags=_NUW_NSW)
            at = _Position("full", linear, parent=row, row=p, col=q, rows=rows, cols=cols)
            column = Index((cols,), linear=q)
            for v, first in plan.cached.items():
                if first < n:
                    at.memo[v] = caches[v].load(b, column)
            if phase.one_hot is not None:
                at.memo[phase.one_hot] = ll.Constant(ll.IntType(1), 0)
            partial = [evaluator.aligned(b, r.inputs[0], at) for r in summed]
            kept = [(v, evaluator.aligned(b, v, at)) for v in phase.cache]
            stored = [(v, evaluator.aligned(b, v, at)) for v in phase.stores]
            for r in columns:
                accumulate(r, q, evaluator.aligned(b, r.inputs[0], at))
            for v, value in kept:
                caches[v].store(b, column, value)
            for v, value in stored:
                out_of[v].store(b, at.index(b, v.shape), value)
            loop.update(*[combine(b, acc, x) for combine, acc, x
                          in zip(combines, loop.carried, partial, strict=True)])
        for r, result in zip(summed, loop.results, strict=True):
            if r in totals:
                accumulate(r, index_constant(0), result)
            else:
                row.memo[r.outputs[0]] = result
        if hot is not None:
            in_range, at, picked, fixed = hot
            row.memo.update(picked)
            with b.if_then(in_range):
                for v, value in fixed:
                    out_of[v].store(b, at.index(b, v.shape), value)
    ready(len(plan.loops))
    for r in plan.across:
        if plan.access[r.inputs[0]] == "row":  # a total of a row value
            accumulate(r, index_constant(0), evaluator.aligned(b, r.inputs[0], row))
    for v in plan.outputs:
        if plan.access[v] == "row":
            out_of[v].store(b, row.index(b, v.shape), evaluator.aligned(b, v, row))


def _hot_column(b, plan: FusionPlan, evaluator: _Evaluator, phase, n: int, row: _Position,
                p: ll.Value, caches: dict) -> tuple:
    """The hot column of inner loop ``n``'s one-hot mask, computed before the
    loop (NOTE: [One-hot masks] in fusion_plan.py): (label in range, its
    position, {pick: value}, [(fixed-up result, value)]). Computed first, so
    that a result stored in place of an operand cannot have overwritten it."""
    label = evaluator.aligned(b, plan.one_hot[phase.one_hot], row)
    zero, cols = ll.Constant(label.type, 0), ll.Constant(label.type, plan.cols)
    in_range = b.and_(b.icmp_signed(">=", label, zero), b.icmp_signed("<", label, cols))
    col = b.select(in_range, label, zero)  # column 0 when out of range: read, never used
    if label.type.width < 64:
        col = b.zext(col, index_constant(0).type)
    linear = b.add(b.mul(p, index_constant(plan.cols), flags=_NUW_NSW), col, flags=_NUW_NSW)
    at = _Position("full", linear, parent=row, row=p, col=col, rows=plan.rows, cols=plan.cols)
    column = Index((plan.cols,), linear=col)
    for v, first in plan.cached.items():
        if first < n:
            at.memo[v] = caches[v].load(b, column)
    at.memo[phase.one_hot] = ll.Constant(ll.IntType(1), 1)
    picked = {}
    for r in phase.picks:
        chosen = evaluator.producer[r.inputs[0]]
        value = evaluator.aligned(b, chosen.inputs[1], at)
        dtype = r.inputs[0].dtype
        none = constant(dtype, 0)
        summed = b.fadd(value, none) if dtype.is_float else value  # -0 + 0 = +0, as the loop
        picked[r.outputs[0]] = b.select(in_range, summed, none)
    fixed = [(v, evaluator.aligned(b, v, at)) for v in phase.fixups]
    return in_range, at, picked, fixed


def _emit_nest(b, plan: FusionPlan, evaluator: _Evaluator, outs: list[Array],
               scratch: ll.Value | None) -> None:
    root = plan.root
    source = root.inputs[0]

    def element(b, index: Index) -> ll.Value:
        # A fresh position per read: the reduction reads each element once (twice
        # for argmax along the last axis, which plan_fusion accounted for).
        at = _Position("row", index.linear(b), shape=tuple(source.shape), index=index)
        return evaluator.aligned(b, source, at)

    if root.op in ("argmax", "argmin"):
        emit_argreduce(b, root, [element], outs, scratch)
    else:
        emit_reduce(b, root, [element], outs, scratch)
