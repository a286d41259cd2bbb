"""What may be fused into one kernel, and how a fusion's loops are scheduled.

The code generator owns these rules (what one kernel can compute) and
re-derives the schedule from a fusion's body (``compiler/codegen/fused.py``);
the fusion pass (``compiler/passes/fuse.py``) asks the same function whether a
candidate group of equations is legal, so the two never disagree about what a
fusion means. Pure IR analysis: no LLVM here.

NOTE: [Fusion schedules]
A fusion computes its results in one of three loop structures (``plan_fusion``):

``loop``   no reduction. One loop nest over the shape of the first result; every
           result has that many elements and is stored at the same position.
``row``    reductions that each reduce a contiguous trailing block: an input of
           ``rows * cols`` elements (row-major) reduced to ``rows`` elements
           (``[N, C] -> [N]``, ``[N, 1, C] -> [N, 1]``, ``[N] -> []``), all with
           the same ``rows`` and ``cols``. An outer loop runs over the rows; inside
           it a short sequence of inner loops over the ``cols`` elements of the
           row. Values of ``rows`` elements ("row values": the reductions and
           what is computed from them, e.g. ``log(sum)``) are scalars in
           registers, computed once per row; values of ``rows * cols`` elements
           ("full values") are computed inside the inner loops. A reduction that
           reads the result of another one runs in a later inner loop, so
           softmax, log-softmax and cross-entropy forward and backward each
           become one kernel that streams the input from memory once (a row
           stays in L1 between the inner loops).
           Reductions *across rows* accumulate over the outer loop instead:
           a column reduction (a leading block reduced, ``[N, C] -> [C]``, as
           bias gradients need) adds each position of an inner loop into a
           ``cols``-element partial, a total reduction (``[N, C] -> []``, or of
           a row value, ``[N] -> []``) adds each row's sum into a scalar
           partial. Partials live in the arena, one per block of
           ``block_rows`` rows (``ACROSS_BLOCKS`` blocks, fixed by the shape, so
           a chunk of the thread pool owns whole blocks and results are the same
           for any thread count); after the last row they are combined in block
           order, and the "epilogue" of elementwise work on the results (a
           mean's division) is computed then, per result element. Nothing
           else in the fusion may read such a result. Layernorm forward and
           backward (row statistics, y, dx, the loss and the column sums for
           dgamma and dbeta) is one kernel that reads x and dy once.
``nest``   a single reduction of another kind (over leading or middle axes,
           argmax/argmin): its elementwise producers are computed inline at
           every element the reduction reads; the reduction is the only result.

Access. A member value is read either *aligned* -- at the position being
computed (an elementwise consumer, a reshape, a broadcast that only adds
size-1 axes, a reduction reading its row, a broadcast of a row value along
the row) -- or *gathered* through an index map (transpose, slice, pad, concat,
a broadcast that repeats elements). Aligned values are computed once per
position and kept in registers; gathered values are recomputed by their
element generator at every read. A value computed from a reduction of the
fusion cannot be gathered (only its own row is known). An expensive op
(``EXPENSIVE``) is never computed more than once per element: if a candidate
group would repeat it (a broadcast repeating an ``exp``, an expensive value
read both aligned and through a transpose, an argmax along the last axis,
which reads its input twice), the group is rejected and the value is
materialised instead. In a ``row`` fusion a full value needed by several inner
loops is recomputed when it is cheap and kept in a row-sized scratch buffer
(L1-resident) when it is expensive (``RowLoop.cache``).

NOTE: [One-hot masks]
Integer labels reach a row fusion as a mask ``iota(col) == broadcast(label)``
(cross-entropy's picked logit and its gradient). Compared in the inner loop it
costs a vector compare and blend per element (on 64-bit lanes, once LLVM has
widened the column index), for one true column per row. An inner loop whose
only use of such a mask is in stored results and in "picks" (``reduce_sum
(select(mask, v, 0))``) runs with the mask false instead (``RowLoop.one_hot``);
the hot column is then computed on its own, with the mask true, before the loop
(``RowLoop.fixups``: stored after the loop when 0 <= label < cols; picks: v
there, plus 0 so that a -0 sums like the loop would, else 0). The values are the
loop's own at every position, bit for bit. A loop that caches a value depending
on the mask, reduces it otherwise, or holds two masks keeps the compare.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

from ir.core import Eqn, Value
from ir.ops import is_elementwise
from ir.errors import IRError

__all__ = [
    "NotFusible", "FusionPlan", "RowLoop", "plan_fusion", "is_fusible", "row_split",
    "column_split", "is_row_broadcast", "operand_access", "ACROSS", "ACROSS_BLOCKS", "INDEX_OPS", "CHEAP_TO_DUPLICATE", "REDUCTIONS",
    "ROW_REDUCTIONS", "EXPENSIVE", "FUSION_OP",
]

FUSION_OP = "fusion"

# Data movement and sources: computed as index maps, no arithmetic.
INDEX_OPS = frozenset({"broadcast", "reshape", "transpose", "slice", "pad", "concat", "iota",
                       "constant"})
# Producers cloned into every group that reads them (a load or a literal per element).
CHEAP_TO_DUPLICATE = frozenset({"constant", "iota", "broadcast", "reshape", "transpose", "slice"})
ROW_REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min"})
# Access classes of reductions across rows and of the epilogue computed from them.
ACROSS = ("total", "column")
# Partials of a reduction across rows: one per block of rows, at most this many blocks.
ACROSS_BLOCKS = 16
REDUCTIONS = ROW_REDUCTIONS | {"argmax", "argmin"}
# Ops worth materialising rather than computing twice (transcendentals and division).
EXPENSIVE = frozenset({"exp", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "pow",
                       "sqrt", "rsqrt", "div"})


class NotFusible(IRError):
    """A candidate group that cannot be one kernel; ``eqn`` is the equation at fault."""

    def __init__(self, message: str, eqn: Eqn | None = None):
        super().__init__(message)
        self.eqn = eqn


def _size(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def is_fusible(eqn: Eqn) -> bool:
    """Whether ``eqn`` may join a fusion: an elementwise, index or reduction
    primitive with no empty operand or result (empty tensors need no loop)."""
    if eqn.body is not None or len(eqn.outputs) != 1:
        return False
    if not (is_elementwise(eqn.op) or eqn.op in INDEX_OPS or eqn.op in REDUCTIONS):
        return False
    return all(v.type.size > 0 for v in (*eqn.inputs, *eqn.outputs))


def row_split(eqn: Eqn) -> tuple[int, int] | None:
    """``(rows, cols)`` if reduction ``eqn`` reduces a contiguous trailing block
    of its row-major input (row ``p`` is elements ``[p*cols, (p+1)*cols)``, and
    output element ``p`` is its result); None otherwise."""
    if eqn.op not in ROW_REDUCTIONS:
        return None
    shape, axes = eqn.inputs[0].shape, set(eqn.attrs["axes"])
    kept = [i for i, d in enumerate(shape) if d > 1 and i not in axes]
    reduced = [i for i, d in enumerate(shape) if d > 1 and i in axes]
    if kept and reduced and max(kept) > min(reduced):
        return None
    cols = _size([shape[i] for i in axes])
    return _size(shape) // max(cols, 1), cols


def column_split(eqn: Eqn) -> tuple[int, int] | None:
    """``(rows, cols)`` if reduction ``eqn`` reduces a contiguous leading block of
    its row-major input to ``cols > 1`` elements (output element ``c`` sums
    elements ``c, cols + c, 2 cols + c, ...``: a column sum); None otherwise."""
    if eqn.op not in ROW_REDUCTIONS:
        return None
    shape, axes = eqn.inputs[0].shape, set(eqn.attrs["axes"])
    kept = [i for i, d in enumerate(shape) if d > 1 and i not in axes]
    reduced = [i for i, d in enumerate(shape) if d > 1 and i in axes]
    if not kept or not reduced or max(reduced) > min(kept):
        return None
    cols = _size([shape[i] for i in kept])
    return _size(shape) // cols, cols


def _is_total(eqn: Eqn) -> bool:
    """A reduction of all of its (two or more) elements to one."""
    return eqn.op in ROW_REDUCTIONS and eqn.outputs[0].type.size == 1 and \
        eqn.inputs[0].type.size >= 2


def _splits(shape: Sequence[int], rows: int, cols: int) -> list[int]:
    """Every k with prod(shape[:k]) == rows and prod(shape[k:]) == cols."""
    return [k for k in range(len(shape) + 1)
            if _size(shape[:k]) == rows and _size(shape[k:]) == cols]


def is_row_broadcast(eqn: Eqn, rows: int, cols: int) -> bool:
    """Whether broadcast ``eqn`` of a ``rows``-element operand repeats element
    ``p`` over row ``p`` of its ``rows * cols``-element result."""
    if eqn.op != "broadcast" or eqn.inputs[0].type.size != rows:
        return False
    out, operand, dims = eqn.outputs[0].shape, eqn.inputs[0].shape, eqn.attrs["dims"]
    if _size(out) != rows * cols:
        return False
    for k in _splits(out, rows, cols):
        ok = True
        for d, extent in enumerate(out):
            mapped = dims.index(d) if d in dims else None
            if d < k and extent > 1:
                ok = mapped is not None and operand[mapped] == extent
            elif d >= k and mapped is not None:
                ok = operand[mapped] == 1
            if not ok:
                break
        if ok:
            return True
    return False


def operand_access(eqn: Eqn, access: str, rows: int, cols: int) -> list[str | None]:
    """How ``eqn`` reads each operand when its own result is read aligned as
    ``access`` ("row" or "full"): the operand's aligned access, or None when the
    operand is gathered through the op's index map."""
    if is_elementwise(eqn.op):
        return [access] * len(eqn.inputs)
    if eqn.op == "reshape" or (eqn.op == "broadcast"
                               and eqn.inputs[0].type.size == eqn.outputs[0].type.size):
        return [access]  # same row-major position
    if access == "full" and is_row_broadcast(eqn, rows, cols):
        return ["row"]
    if eqn.op in ROW_REDUCTIONS and access == "row" and cols > 1 and row_split(eqn) == (rows, cols):
        return ["full"]
    return [None] * len(eqn.inputs)


def _gather_fraction(eqn: Eqn, k: int) -> float:
    """Reads of operand ``k`` per element of ``eqn``'s result, on average."""
    if eqn.op in ("pad", "concat"):  # only positions inside the operand read it
        return eqn.inputs[k].type.size / eqn.outputs[0].type.size
    return 1.0


@dataclass
class RowLoop:
    """One inner loop over a row: the reductions it accumulates, the full
    results it stores, and the full values it keeps in row scratch for later loops."""

    reductions: list[Eqn] = field(default_factory=list)
    stores: list[Value] = field(default_factory=list)
    cache: list[Value] = field(default_factory=list)
    one_hot: Value | None = None   # the mask this loop runs with as false ([One-hot masks])
    picks: list[Eqn] = field(default_factory=list)     # reductions taken at the hot column
    fixups: list[Value] = field(default_factory=list)  # stores recomputed at the hot column
    across: list[Eqn] = field(default_factory=list)    # reductions across rows fed here


@dataclass
class FusionPlan:
    """How one fusion is computed (see [Fusion schedules]).

    ``rows``/``cols``: the row and column counts of a ``row`` fusion; for
    ``loop`` and ``nest``, ``rows`` is the number of positions and ``cols`` 1.
    ``shape``: the iteration shape of ``loop`` (first result) and ``nest`` (the
    reduction's input). ``access[v]``: "row"/"full" for values read aligned;
    ``gathered[v]``: element reads through index maps per run. ``level[v]``:
    how many reductions deep v is (row fusions). ``loops``: the inner loops of
    a row fusion; ``cached[v]``: the loop that stores v into row scratch.
    ``reads[v]``: for each input read aligned in a row fusion, the inner loops
    (0 = outside any) that read it. ``one_hot[mask]``: the row value holding
    the true column of each one-hot mask (NOTE: [One-hot masks]). ``across``:
    the reductions across rows (access "total"/"column" for them and their
    epilogue), with partials per ``block_rows`` rows.
    """

    mode: str
    rows: int
    cols: int
    shape: tuple[int, ...] | None
    root: Eqn | None
    eqns: list[Eqn]
    inputs: list[Value]
    outputs: list[Value]
    access: dict[Value, str]
    gathered: dict[Value, float]
    level: dict[Value, int]
    loops: list[RowLoop] = field(default_factory=list)
    cached: dict[Value, int] = field(default_factory=dict)
    reads: dict[Value, set[int]] = field(default_factory=dict)
    one_hot: dict[Value, Value] = field(default_factory=dict)  # mask -> its row label value
    across: list[Eqn] = field(default_factory=list)  # reductions across rows
    block_rows: int = 0                               # rows per block of their partials

    @property
    def blocks(self) -> int:
        """How many partials each reduction across rows keeps."""
        return -(-self.rows // self.block_rows) if self.across else 0

    def across_width(self, r: Eqn) -> int:
        """Elements of reduction-across-rows ``r``'s result: 1 or ``cols``."""
        return 1 if r.outputs[0].type.size == 1 else self.cols

    def shared_bytes(self) -> int:
        """Arena bytes for the partials of reductions across rows (shared by all
        threads: each block is written by one)."""
        return sum(-(-self.blocks * self.across_width(r) * r.outputs[0].dtype.itemsize // 64) * 64
                   for r in self.across)

    @property
    def kind(self) -> str:
        """The ``kind`` attribute of the fusion equation: "loop" or "reduce"."""
        return "loop" if self.mode == "loop" else "reduce"

    def store_loop(self, v: Value) -> int:
        """The inner loop storing full result ``v`` (row fusions)."""
        for n, loop in enumerate(self.loops, 1):
            if v in loop.stores:
                return n
        raise KeyError(v)

    def scratch_bytes(self) -> int:
        """Arena bytes for the row scratch of cached values (64-byte aligned each)."""
        return sum(-(-self.cols * v.dtype.itemsize // 64) * 64 for v in self.cached)


def _evaluations_per_read(root: Eqn) -> int:
    # argmax/argmin along the last axis read each element twice (a max pass and a
    # first-match pass, see reduce.py); everything else reads it once.
    if root.op in ("argmax", "argmin") and root.attrs["axis"] == root.inputs[0].type.rank - 1:
        return 2
    return 1


def plan_fusion(eqns: Sequence[Eqn], inputs: Sequence[Value], outputs: Sequence[Value], *,
                schedule: bool = True, checked: bool = False) -> FusionPlan:
    """The schedule of a fusion of ``eqns`` (in a valid order) reading ``inputs``
    and producing ``outputs``; raises ``NotFusible`` naming what prevents it.

    ``schedule=False`` only decides legality (the inner loops of a row fusion
    are not planned); ``checked=True`` trusts that every equation is fusible.
    """
    eqns, inputs, outputs = list(eqns), list(inputs), list(outputs)
    if not eqns or not outputs:
        raise NotFusible("a fusion needs equations and results")
    for e in eqns:
        if not checked and not is_fusible(e):
            raise NotFusible(f"'{e.op}' cannot be fused", e)
    producer = {v: e for e in eqns for v in e.outputs}
    reductions = [e for e in eqns if e.op in REDUCTIONS]

    root, splits, totals, across = None, set(), [], []
    for r in reductions:
        split, column = row_split(r), column_split(r)
        if column is not None:
            splits.add(column)
            across.append(r)
        elif _is_total(r):
            totals.append(r)
        elif split is None or split[1] < 2:
            root = r
        else:
            splits.add(split)
    if root is None and totals and not splits:
        # Only totals: one row of all elements (the totals are row reductions).
        splits = {row_split(t) for t in totals}
        totals = []
    if root is not None:
        if len(reductions) > 1:
            raise NotFusible(f"'{root.op}' over axes that are not a trailing block (or an "
                             "argmax/argmin) is fused only as the single reduction of its fusion",
                             root)
        if outputs != list(root.outputs):
            raise NotFusible(f"'{root.op}' over axes that are not a trailing block (or an "
                             "argmax/argmin) must be the only result of its fusion", root)
        mode, shape = "nest", tuple(root.inputs[0].shape)
        rows, cols = _size(shape), 1
    elif splits:
        if len(splits) > 1:
            described = ", ".join(f"{r} rows of {c}" for r, c in sorted(splits))
            raise NotFusible(f"reductions over differently sized rows ({described})",
                             reductions[-1])
        mode, shape = "row", None
        rows, cols = splits.pop()
        for t in totals:
            if t.inputs[0].type.size not in (rows, rows * cols):
                raise NotFusible(f"a total '{t.op}' of {t.inputs[0].type} in a fusion over "
                                 f"{rows} x {cols} elements", t)
        across += totals
    else:
        sizes = sorted({v.type.size for v in outputs})
        if len(sizes) > 1:
            raise NotFusible("results of different sizes ("
                             + ", ".join(str(v.type) for v in outputs) + ") need different loops",
                             producer.get(outputs[-1]))
        mode, shape = "loop", tuple(outputs[0].shape)
        rows, cols = sizes[0], 1
    count = {"row": rows, "full": rows * cols, "total": 1, "column": cols}
    across_set = set(across)

    level: dict[Value, int] = {}
    after: set[Value] = set()  # values known only after the last row (an across reduction's)
    for e in eqns:
        depth = max((level.get(v, 0) for v in e.inputs), default=0)
        if mode == "row" and e.op in ROW_REDUCTIONS and e not in across_set:
            depth += 1
        level[e.outputs[0]] = depth
        if e in across_set or any(v in after for v in e.inputs):
            after.add(e.outputs[0])

    access: dict[Value, str] = {}
    gathered: dict[Value, float] = defaultdict(float)

    def align(v: Value, how: str, user: Eqn | None) -> None:
        if v.type.size != count[how]:
            what = {"row": "a row", "full": "a full position", "total": "total (after the last row)",
                    "column": "column (after the last row)"}[how]
            raise NotFusible(
                f"{v.type} is read per {what} of a fusion over {rows} x {cols} elements", user)
        if access.get(v, how) != how:
            raise NotFusible(f"{v.type} is read both per {access[v]} and per {how}", user)
        if v in after and how not in ACROSS:
            raise NotFusible(f"{v.type} depends on a reduction across rows, known only after "
                             "the last row", user)
        access[v] = how

    if mode == "nest":
        align(root.inputs[0], "row", root)
    else:
        for v in outputs:
            if v in after:
                if v.type.size not in (1, cols):
                    raise NotFusible(f"result {v.type} depends on a reduction across rows but "
                                     f"has neither 1 nor {cols} elements", producer.get(v))
                align(v, "total" if v.type.size == 1 else "column", producer.get(v))
            elif v.type.size == rows:
                align(v, "row", producer.get(v))
            elif mode == "row" and v.type.size == rows * cols:
                align(v, "full", producer.get(v))
            else:
                raise NotFusible(f"result {v.type} fits neither a row ({rows} elements) nor the "
                                 f"rows x cols ({rows} x {cols}) of the fusion", producer.get(v))

    for e in reversed(eqns):
        if e is root:
            continue
        v = e.outputs[0]
        how, reads = access.get(v), gathered.get(v, 0.0)
        if how is None and not reads:
            continue  # unused inside the group
        if e in across_set:
            if how != ("total" if v.type.size == 1 else "column") or reads:
                raise NotFusible(f"'{e.op}' reduces across rows: its result is read only by "
                                 "the epilogue of the fusion", e)
            source = e.inputs[0]
            align(source, "full" if source.type.size == rows * cols else "row", e)
            continue
        if how is not None:
            if e.op in REDUCTIONS and how != "row":
                raise NotFusible(f"'{e.op}' result read per element, not per row", e)
            per_element = count[how] * (_evaluations_per_read(root) if mode == "nest" else 1)
            for k, (u, operand) in enumerate(zip(e.inputs, operand_access(e, how, rows, cols),
                                                 strict=True)):
                if operand is None:
                    gathered[u] += per_element * _gather_fraction(e, k)
                else:
                    align(u, operand, e)
        if reads:
            if e.op in REDUCTIONS:
                raise NotFusible(f"'{e.op}' result read through an index map", e)
            for k, u in enumerate(e.inputs):
                gathered[u] += reads * _gather_fraction(e, k)

    for e in eqns:
        v = e.outputs[0]
        if e is not root and v not in access and not gathered.get(v):
            raise NotFusible(f"'{e.op}' result is not used by the fusion", e)
        if gathered.get(v) and (level.get(v, 0) > 0 or v in after):
            raise NotFusible(f"'{e.op}' depends on a reduction of the fusion but would be read at "
                             "other positions (through an index map); only its own row is known", e)
        if e.op in EXPENSIVE:
            factor = _evaluations_per_read(root) if mode == "nest" else 1
            evaluations = (count[access[v]] * factor if v in access else 0) + gathered.get(v, 0.0)
            if evaluations > v.type.size:
                times = evaluations / v.type.size
                raise NotFusible(f"'{e.op}' would be computed {times:.3g} times per element", e)

    plan = FusionPlan(mode, rows, cols, shape, root, eqns, inputs, outputs, access,
                      dict(gathered), level, across=across,
                      block_rows=-(-rows // ACROSS_BLOCKS) if across else 0)
    if mode == "row" and schedule:
        _schedule_rows(plan, producer)
    return plan


def _schedule_rows(plan: FusionPlan, producer: dict[Value, Eqn]) -> None:
    """Assign reductions and full results to inner loops; choose the cached values."""
    rows, cols = plan.rows, plan.cols
    reductions = [e for e in plan.eqns if e.op in ROW_REDUCTIONS and e not in plan.across]
    count = max((plan.level[r.outputs[0]] for r in reductions), default=0)
    stores = {v: plan.level.get(v, 0) + 1 for v in plan.outputs if plan.access[v] == "full"}
    # Reductions across rows of full values accumulate in the loop computing their input.
    fed = {r: plan.level.get(r.inputs[0], 0) + 1 for r in plan.across
           if plan.access[r.inputs[0]] == "full"}
    count = max([count, *stores.values(), *fed.values()])
    loops = [RowLoop() for _ in range(count)]
    for r in reductions:
        loops[plan.level[r.outputs[0]] - 1].reductions.append(r)
    for v in plan.outputs:
        if v in stores:
            loops[stores[v] - 1].stores.append(v)
    for r, n in fed.items():
        loops[n - 1].across.append(r)

    heavy_memo: dict[Value, bool] = {}

    def heavy(v: Value) -> bool:
        """Whether computing v at one position (recomputing what it gathers) is expensive."""
        if v not in heavy_memo:
            e = producer.get(v)
            if e is None or e.op in ROW_REDUCTIONS:
                heavy_memo[v] = False
            else:
                own = e.op in EXPENSIVE
                gathers = [u for u, how in zip(e.inputs, operand_access(e, "full", rows, cols),
                                               strict=True) if how is None]
                heavy_memo[v] = own or any(_cone_expensive(u, producer) for u in gathers)
        return heavy_memo[v]

    def cone(loop: RowLoop, cached: dict[Value, int], n: int) -> set[Value]:
        """Full values computed by inner loop ``n`` (stopping at cached ones)."""
        roots = [r.inputs[0] for r in (*loop.reductions, *loop.across)] + list(loop.stores)
        return _full_cone(plan, producer, roots, cached, n)

    uses: dict[Value, list[int]] = defaultdict(list)
    for n, loop in enumerate(loops, 1):
        for v in cone(loop, {}, n):
            uses[v].append(n)
    cached = {v: ns[0] for v, ns in uses.items()
              if len(ns) > 1 and v in producer and heavy(v)}
    for v, n in sorted(cached.items(), key=lambda item: plan.eqns.index(producer[item[0]])):
        loops[n - 1].cache.append(v)
    plan.loops, plan.cached = loops, cached
    plan.one_hot = _one_hot_masks(plan, producer)
    for n, loop in enumerate(loops, 1):
        _plan_one_hot(plan, producer, loop, n)

    reads: dict[Value, set[int]] = defaultdict(set)
    inputs = set(plan.inputs)
    for n, loop in enumerate(loops, 1):
        for v in cone(loop, cached, n):
            if v in inputs:
                reads[v].add(n)
    for v in plan.inputs:
        if plan.access.get(v) == "row":
            reads[v].add(0)
    plan.reads = dict(reads)


def _full_cone(plan: FusionPlan, producer: dict[Value, Eqn], roots, cached: dict[Value, int],
               n: int) -> set[Value]:
    """Full values computed at a position of inner loop ``n`` to get ``roots``
    (values cached by an earlier loop are read back, not recomputed)."""
    seen: set[Value] = set()
    stack = list(roots)
    while stack:
        v = stack.pop()
        if v in seen or plan.access.get(v) != "full":
            continue
        seen.add(v)
        if v in cached and cached[v] < n:
            continue
        e = producer.get(v)
        if e is None:
            continue
        for u, how in zip(e.inputs, operand_access(e, "full", plan.rows, plan.cols),
                          strict=True):
            if how == "full":
                stack.append(u)
    return seen


def _one_hot_masks(plan: FusionPlan, producer: dict[Value, Eqn]) -> dict[Value, Value]:
    """Full bool values ``col == label`` (an iota along the row's columns compared
    for equality with a row broadcast of integer row value ``label``): mask -> label."""
    masks = {}
    for e in plan.eqns:
        if e.op != "compare" or e.attrs["direction"] != "eq" or \
                plan.access.get(e.outputs[0]) != "full":
            continue
        for iota, other in (e.inputs, e.inputs[::-1]):
            source, spread = producer.get(iota), producer.get(other)
            if (source is not None and source.op == "iota" and source.outputs[0].dtype.is_int
                    and _counts_columns(source, plan.rows, plan.cols) and spread is not None
                    and is_row_broadcast(spread, plan.rows, plan.cols)):
                masks[e.outputs[0]] = spread.inputs[0]
                break
    return masks


def _counts_columns(iota: Eqn, rows: int, cols: int) -> bool:
    """Whether ``iota``'s element at row-major position (row, col) is col."""
    shape, d = iota.outputs[0].shape, iota.attrs["dimension"]
    return shape[d] == cols and any(
        k <= d and all(extent == 1 for j, extent in enumerate(shape) if j >= k and j != d)
        for k in _splits(shape, rows, cols))


def _plan_one_hot(plan: FusionPlan, producer: dict[Value, Eqn], loop: RowLoop, n: int) -> None:
    """Let inner loop ``n`` run with its one-hot mask false (NOTE: [One-hot masks])."""
    def cone(roots):
        return _full_cone(plan, producer, roots, plan.cached, n)

    inside = [m for m in plan.one_hot if m in cone([r.inputs[0] for r in loop.reductions]
                                                   + list(loop.stores))]
    if len(inside) != 1 or any(inside[0] in cone([v]) for v in loop.cache) or \
            any(inside[0] in cone([r.inputs[0]]) for r in loop.across):
        return
    mask = inside[0]
    picks = []
    for r in loop.reductions:
        if mask not in cone([r.inputs[0]]):
            continue
        chosen = producer.get(r.inputs[0])
        if not (r.op == "reduce_sum" and chosen is not None and chosen.op == "select"
                and chosen.inputs[0] is mask and _is_zero(producer.get(chosen.inputs[2]))
                and mask not in cone([chosen.inputs[1]])):
            return
        picks.append(r)
    loop.one_hot, loop.picks = mask, picks
    loop.fixups = [v for v in loop.stores if mask in cone([v])]


def _is_zero(e: Eqn | None) -> bool:
    return e is not None and e.op == "constant" and not isinstance(e.attrs["value"], list) \
        and e.attrs["value"] == 0


def _cone_expensive(v: Value, producer: dict[Value, Eqn]) -> bool:
    stack, seen = [v], set()
    while stack:
        u = stack.pop()
        e = producer.get(u)
        if u in seen or e is None or e.op in ROW_REDUCTIONS:
            continue
        seen.add(u)
        if e.op in EXPENSIVE:
            return True
        stack.extend(e.inputs)
    return False
