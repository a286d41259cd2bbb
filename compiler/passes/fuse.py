"""Fusion: groups of elementwise, index and reduction ops become one ``fusion`` equation.

A fusion equation carries its group as a body (a nested Function of the
original primitives, with their source locations) and ``kind="loop"`` or
``kind="reduce"``; the code generator lowers it to one kernel (see
[Fusion schedules] in compiler/codegen/fusion_plan.py)::

    %3 = fusion %0 {kind="loop"} : f32[1024] body(%4: f32[1024]) {
      %5 = tanh %4 : f32[1024]  # model.py:3
      %6 = mul %5, %4 : f32[1024]  # model.py:3
      return %6
    }

Pre: valid IR (autodiff already ran: ``fusion`` is not differentiable). Post:
every equation is a primitive or a fusion; each fusion's body verifies, has
at least two equations and satisfies ``plan_fusion``; the groups form an
acyclic graph (checked with networkx); no producer-consumer pair of fusible
equations is left apart unless ``explain_fusion`` names why (a cycle, or a
rule of fusion_plan.py). Results are the same as before: the interpreter
runs the bodies with the same numpy references.

How groups form (greedy, like XLA's producer-consumer and sibling fusion):
1. Cheap producers (constants, iota, broadcast, reshape, transpose, slice)
   read by several equations are cloned, one private copy per reader, so each
   group computes them inline; expensive ones are never duplicated.
2. Every fusible equation starts as its own group. Walking consumers from
   the last to the first, a producer's group joins its consumer's group when
   the union is still one kernel (``plan_fusion``) and merging creates no
   cycle in the group graph. A producer value also needed elsewhere becomes
   an extra result of the fusion (multi-output) instead of being recomputed.
3. Groups reading a common value (siblings, e.g. a max and a sum over the
   same logits) merge under the same conditions. Steps 2-3 repeat until
   nothing changes; leftover clones are merged again by CSE.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ir import Eqn, Function, Value
from ir.graph import value_names

from compiler.passes.cse import eliminate_common_subexpressions
from compiler.passes.dce import eliminate_dead_code
from compiler.codegen.fusion_plan import (CHEAP_TO_DUPLICATE, FUSION_OP, REDUCTIONS, NotFusible,
                                          column_split, is_fusible, plan_fusion, row_split)
from compiler.passes.rewrite import Rewriter

__all__ = ["fuse", "explain_fusion", "FusionDecision", "kernel_count"]

_MAX_ROUNDS = 8


def fuse(fn: Function) -> Function:
    """Group fusible equations of ``fn`` into ``fusion`` equations (see the module doc)."""
    fn = _clone_cheap_producers(fn)
    groups = _Groups(fn)
    groups.grow()
    return eliminate_dead_code(eliminate_common_subexpressions(groups.rewrite()))


def kernel_count(fn: Function) -> int:
    """How many kernels the backend emits for ``fn``: one per top-level equation
    with a non-empty result (a fusion is one kernel)."""
    return sum(1 for e in fn.eqns if any(v.type.size for v in e.outputs))


@dataclass(frozen=True)
class FusionDecision:
    """Why ``producer`` (an equation of the input function) was not fused into
    ``consumer``; ``text`` names both as they print."""

    producer: Eqn
    consumer: Eqn
    reason: str
    text: str

    def __str__(self) -> str:
        return self.text


def explain_fusion(fn: Function) -> list[FusionDecision]:
    """For every producer-consumer pair that fusion leaves in different kernels,
    the reason (the last one found while growing the groups). Equations are
    those of ``fn`` after cheap producers were cloned; values print with the
    names ``fn`` prints them with (clones as ``%?``)."""
    names = value_names(fn)
    fn = _clone_cheap_producers(fn)
    groups = _Groups(fn)
    groups.grow()
    decisions, seen = [], set()
    for consumer in fn.eqns:
        for v in consumer.inputs:
            producer = groups.producer.get(v)
            if producer is None or groups.same(producer, consumer) or (producer, consumer) in seen:
                continue
            seen.add((producer, consumer))
            reason = groups.reasons.get((producer, consumer)) or _static_reason(producer, consumer)
            text = (f"{_describe(producer, names)} -> {_describe(consumer, names)}: {reason}")
            decisions.append(FusionDecision(producer, consumer, reason, text))
    return decisions


def _static_reason(producer: Eqn, consumer: Eqn) -> str:
    for e in (producer, consumer):
        if not is_fusible(e):
            if e.body is not None:
                return f"'{e.op}' is already a fusion"
            return f"'{e.op}' is not fusible (its own kernel)"
    return "not tried"


def _describe(eqn: Eqn, names: dict[Value, str]) -> str:
    results = ", ".join(names.get(v, "%?") for v in eqn.outputs)
    loc = f" ({eqn.loc})" if eqn.loc else ""
    return f"{results} = {eqn.op}{loc}"


# -- step 1: private copies of cheap producers -------------------------------------------


def _clone_cheap_producers(fn: Function) -> Function:
    """Give every reader of a multiply-read cheap producer its own copy."""
    readers: dict[Value, set] = {}
    for e in fn.eqns:
        for v in e.inputs:
            readers.setdefault(v, set()).add(id(e))
    for v in fn.outputs:
        readers.setdefault(v, set()).add("result")
    producer = {v: e for e in fn.eqns for v in e.outputs}

    eqns: list[Eqn] = []

    def private(v: Value, copy: bool = False) -> Value:
        """A fresh copy of v's cheap producer chain if it is shared (or ``copy``:
        the reader is itself a copy), emitted before the current reader."""
        e = producer.get(v)
        if e is None or e.op not in CHEAP_TO_DUPLICATE or e.body is not None:
            return v
        if not copy and len(readers[v]) <= 1:
            return v
        inputs = tuple(private(u, copy=True) for u in e.inputs)
        outputs = tuple(Value(u.type) for u in e.outputs)
        eqns.append(Eqn(e.op, inputs, outputs, dict(e.attrs), e.loc))
        return outputs[0]

    changed = False
    for e in fn.eqns:
        if not is_fusible(e):
            eqns.append(e)
            continue
        inputs = tuple(private(v) for v in e.inputs)
        changed |= inputs != e.inputs
        if inputs != e.inputs:
            e = Eqn(e.op, inputs, e.outputs, e.attrs, e.loc, e.body)
        eqns.append(e)
    if not changed:
        return fn
    return eliminate_dead_code(Function(fn.name, list(fn.params), eqns, list(fn.outputs)))


# -- step 2-3: growing groups ---------------------------------------------------------------


class _Groups:
    """Equations partitioned into groups, with the group graph kept up to date."""

    def __init__(self, fn: Function):
        self.fn = fn
        self.position = {e: i for i, e in enumerate(fn.eqns)}
        self.producer: dict[Value, Eqn] = {v: e for e in fn.eqns for v in e.outputs}
        self.readers: dict[Value, list[Eqn]] = {}
        for e in fn.eqns:
            for v in e.inputs:
                self.readers.setdefault(v, []).append(e)
        self.results = set(fn.outputs)
        self.group: dict[Eqn, int] = {e: i for i, e in enumerate(fn.eqns)}
        self.members: dict[int, list[Eqn]] = {i: [e] for i, e in enumerate(fn.eqns)}
        self.succ: dict[int, set[int]] = {i: set() for i in self.members}
        self.pred: dict[int, set[int]] = {i: set() for i in self.members}
        for e in fn.eqns:
            for v in e.inputs:
                p = self.producer.get(v)
                if p is not None:
                    self.succ[self.group[p]].add(self.group[e])
                    self.pred[self.group[e]].add(self.group[p])
        self.fusible = {e: is_fusible(e) for e in fn.eqns}
        self.reasons: dict[tuple[Eqn, Eqn], str] = {}
        # A group's version changes when it grows: a check that failed for two
        # versions fails again (memoised), and summaries are recomputed.
        self.version: dict[int, int] = {i: 0 for i in self.members}
        self._failed: dict[tuple, str] = {}
        self._summaries: dict[tuple[int, int], tuple] = {}

    def same(self, a: Eqn, b: Eqn) -> bool:
        return self.group[a] == self.group[b]

    # -- the group as a fusion candidate

    def _outputs(self, members: list[Eqn]) -> list[Value]:
        inside = set(members)
        return [v for e in members for v in e.outputs
                if v in self.results or any(r not in inside for r in self.readers.get(v, ()))]

    @staticmethod
    def _inputs(members: list[Eqn]) -> list[Value]:
        defined = {v for e in members for v in e.outputs}
        seen, inputs = set(), []
        for e in members:
            for v in e.inputs:
                if v not in defined and v not in seen:
                    seen.add(v)
                    inputs.append(v)
        return inputs

    def _union_members(self, a: int, b: int) -> list[Eqn]:
        return sorted(self.members[a] + self.members[b], key=self.position.__getitem__)

    def _summary(self, g: int) -> tuple:
        """(row splits of row and column reductions, has a total reduction, has a
        reduction that fuses only alone, output sizes) of group g."""
        key = (g, self.version[g])
        found = self._summaries.get(key)
        if found is None:
            splits, totals, alone = set(), False, False
            for e in self.members[g]:
                if e.op in REDUCTIONS:
                    split, column = row_split(e), column_split(e)
                    if column is not None:
                        splits.add(column)
                    elif split is not None and split[0] == 1 and split[1] >= 2:
                        totals = True  # fits any rows x cols of its size (plan_fusion)
                    elif split is None or split[1] < 2:
                        alone = True
                    else:
                        splits.add(split)
            sizes = frozenset(v.type.size for v in self._outputs(self.members[g]))
            found = self._summaries[key] = (frozenset(splits), totals, alone, sizes)
        return found

    def _quick_reject(self, a: int, b: int) -> str | None:
        """Reasons ``plan_fusion`` would certainly give, read from the two summaries."""
        splits_a, totals_a, alone_a, sizes_a = self._summary(a)
        splits_b, totals_b, alone_b, sizes_b = self._summary(b)
        if (alone_a and (alone_b or splits_b or totals_b)) or \
                (alone_b and (splits_a or totals_a)):
            return "a reduction over axes that are not a trailing block (or an argmax/argmin) is " \
                   "fused only as the single reduction of its fusion"
        if splits_a and splits_b and splits_a != splits_b:
            described = ", ".join(f"{r} rows of {c}" for r, c in sorted(splits_a | splits_b))
            return f"reductions over differently sized rows ({described})"
        linked = b in self.succ[a] or a in self.succ[b]
        if not linked and not (splits_a or splits_b or totals_a or totals_b or alone_a
                               or alone_b) and \
                len(sizes_a | sizes_b) > 1:
            return "results of different sizes need different loops"
        return None

    def _check(self, a: int, b: int) -> str | None:
        """None if groups a and b may merge, else why not (memoised per version)."""
        key = (a, self.version[a], b, self.version[b])
        if key not in self._failed:
            reason = self._check_now(a, b)
            if reason is None:
                return None
            self._failed[key] = reason
        return self._failed[key]

    def _check_now(self, a: int, b: int) -> str | None:
        if any(not self.fusible[e] for e in self.members[a] + self.members[b]):
            culprit = next(e for e in self.members[a] + self.members[b] if not self.fusible[e])
            return f"'{culprit.op}' is not fusible (its own kernel)"
        quick = self._quick_reject(a, b)
        if quick is not None:
            return quick
        members = self._union_members(a, b)
        try:
            plan_fusion(members, self._inputs(members), self._outputs(members), schedule=False,
                        checked=True)
        except NotFusible as error:
            return str(error)
        if self._reaches(a, b) or self._reaches(b, a):
            return "merging would create a cycle: a path between them leaves the group"
        return None

    def _reaches(self, source: int, target: int) -> bool:
        """A path source -> X -> ... -> target through some other group X."""
        stack = [g for g in self.succ[source] if g != target]
        seen = set(stack)
        while stack:
            g = stack.pop()
            for h in self.succ[g]:
                if h == target:
                    return True
                if h not in seen and h != source:
                    seen.add(h)
                    stack.append(h)
        return False

    def _merge(self, a: int, b: int) -> None:
        """Merge group b into group a."""
        for e in self.members[b]:
            self.group[e] = a
        self.members[a] = self._union_members(a, b)
        del self.members[b]
        # A failed check stays failed until one of its groups grows: the rules look
        # only at the two groups, and merging elsewhere only adds paths (cycles).
        self.version[a] += 1
        succ = (self.succ.pop(b) | self.succ[a]) - {a, b}
        pred = (self.pred.pop(b) | self.pred[a]) - {a, b}
        self.succ[a], self.pred[a] = succ, pred
        for g in succ:
            self.pred[g].discard(b)
            self.pred[g].add(a)
        for g in pred:
            self.succ[g].discard(b)
            self.succ[g].add(a)

    def _try(self, a: int, b: int, pair: tuple[Eqn, Eqn] | None) -> bool:
        reason = self._check(a, b)
        if reason is not None:
            if pair is not None:
                self.reasons[pair] = reason
            return False
        self._merge(a, b)
        return True

    # -- the greedy growth

    def grow(self) -> None:
        for _ in range(_MAX_ROUNDS):
            changed = self._producer_consumer()
            changed |= self._siblings()
            if not changed:
                return

    def _producer_consumer(self) -> bool:
        changed = False
        progress = True
        while progress:
            progress = False
            for consumer in reversed(self.fn.eqns):
                if not self.fusible[consumer]:
                    continue
                for v in consumer.inputs:
                    producer = self.producer.get(v)
                    if producer is None or not self.fusible[producer]:
                        continue
                    a, b = self.group[producer], self.group[consumer]
                    if a != b and self._try(b, a, (producer, consumer)):
                        progress = changed = True
        return changed

    def _siblings(self) -> bool:
        changed = False
        for readers in self.readers.values():
            groups = list(dict.fromkeys(self.group[r] for r in readers if self.fusible[r]))
            for i, a in enumerate(groups):
                for b in groups[i + 1:]:
                    # _try merges b into a: a stays a group; a merged b is gone.
                    if a in self.members and b in self.members:
                        changed |= self._try(a, b, None)
        return changed

    # -- the result

    def rewrite(self) -> Function:
        graph = nx.DiGraph()
        first = {g: min(self.position[e] for e in members) for g, members in self.members.items()}
        graph.add_nodes_from(self.members)
        for g, succ in self.succ.items():
            graph.add_edges_from((g, h) for h in succ)
        if not nx.is_directed_acyclic_graph(graph):  # a bug in the merge checks, never user error
            raise RuntimeError(f"fusion of @{self.fn.name} produced a cyclic group graph")
        rw = Rewriter(self.fn)
        for g in nx.lexicographical_topological_sort(graph, key=first.__getitem__):
            members = self.members[g]
            if len(members) == 1:
                rw.keep(members[0])
            else:
                self._emit_fusion(rw, members)
        return rw.finish()

    def _emit_fusion(self, rw: Rewriter, members: list[Eqn]) -> None:
        inputs, outputs = self._inputs(members), self._outputs(members)
        plan = plan_fusion(members, inputs, outputs)
        params = [Value(v.type) for v in inputs]
        rename = dict(zip(inputs, params, strict=True))
        body_eqns = [Eqn(e.op, tuple(rename.get(v, v) for v in e.inputs), e.outputs, dict(e.attrs),
                         e.loc) for e in members]
        body = Function(FUSION_OP, params, body_eqns, list(outputs))
        # Clones of one cheap producer that landed in the same group are one value.
        merged = eliminate_common_subexpressions(body)
        try:
            plan_fusion(merged.eqns, merged.params, merged.outputs)
            body = merged
        except NotFusible:
            pass
        results = tuple(Value(v.type) for v in outputs)
        root = self.producer[outputs[-1]]
        rw.eqns.append(Eqn(FUSION_OP, tuple(rw.resolve(v) for v in inputs), results,
                           {"kind": plan.kind}, root.loc, body))
        for old, new in zip(outputs, results, strict=True):
            rw.replace(old, new)
