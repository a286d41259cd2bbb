"""Writing what each compilation stage produced, for debugging.

One folder per compiled function (``<dump_dir>/<name>-<hash>/``) holding
``00-traced.ir``, ``01-simplify.ir``, ... (the IR after every pass, with the
format's version header, so each file parses back), ``changes.diff`` (a unified
diff between consecutive IR dumps), ``fusion.txt`` (the kernel count before
and after fusion, each fusion's ops, and why the remaining producer-consumer
pairs were not fused), the LLVM IR before and after LLVM's optimiser
(``llvm.ll``, ``llvm-optimized.ll``), the assembly (``assembly.s``), the
memory plan (``memory-plan.txt``) and ``summary.txt`` with each pass's time,
its equation counts and the final kernel count.

Every ``.ir`` file parses back with ``ir.parse_function``.
"""

from __future__ import annotations

import difflib
import hashlib
import os

from collections import Counter

from ir import Function, print_function
from ir.graph import value_names

__all__ = ["Dump"]


class Dump:
    def __init__(self, root: str):
        self.root = root
        self.folder: str | None = None
        self._count = 0
        self._texts: list[tuple[str, str]] = []
        self._last: Function | None = None

    def _path(self, filename: str) -> str:
        return os.path.join(self.folder, filename)

    def ir(self, stage: str, fn: Function) -> None:
        text = print_function(fn, header=True)
        if self.folder is None:
            digest = hashlib.sha256(print_function(fn, show_locs=False).encode()).hexdigest()[:10]
            self.folder = os.path.join(self.root, f"{fn.name}-{digest}")
            os.makedirs(self.folder, exist_ok=True)
        with open(self._path(f"{self._count:02d}-{stage}.ir"), "w") as f:
            f.write(text)
        self._texts.append((f"{self._count:02d}-{stage}.ir", text))
        self._count += 1
        self._write_diff()
        if stage == "fuse" and self._last is not None:
            self._fusion_report(self._last, fn)
        self._last = fn

    def _fusion_report(self, before: Function, after: Function) -> None:
        from compiler.passes.fuse import explain_fusion, kernel_count

        names = value_names(after)
        lines = [f"kernels: {kernel_count(before)} before fusion, {kernel_count(after)} after", ""]
        for eqn in after.eqns:
            if eqn.body is None:
                continue
            results = ", ".join(names.get(v, "%?") for v in eqn.outputs)
            ops = Counter(e.op for e in eqn.body.eqns)
            listed = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(ops.items()))
            loc = f"  # {eqn.loc}" if eqn.loc else ""
            lines.append(f"{results} = fusion {{kind={eqn.attrs.get('kind')}}}: "
                         f"{len(eqn.body.eqns)} ops ({listed}) -> "
                         f"{', '.join(str(v.type) for v in eqn.outputs)}{loc}")
        decisions = explain_fusion(before)
        lines += ["", f"not fused ({len(decisions)} producer-consumer pairs):"]
        lines += [f"  {d}" for d in decisions] or ["  none"]
        with open(self._path("fusion.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _write_diff(self) -> None:
        chunks = []
        for (name_a, a), (name_b, b) in zip(self._texts, self._texts[1:]):
            chunks.extend(difflib.unified_diff(a.splitlines(True), b.splitlines(True), name_a, name_b))
        with open(self._path("changes.diff"), "w") as f:
            f.writelines(chunks)

    def executable(self, exe) -> None:
        for attribute, filename in (("llvm_ir", "llvm.ll"), ("optimized_llvm_ir", "llvm-optimized.ll"),
                                    ("asm", "assembly.s"), ("memory_plan", "memory-plan.txt")):
            text = getattr(exe, attribute, None)
            if text is not None:
                with open(self._path(filename), "w") as f:
                    f.write(str(text))

    def summary(self, records) -> None:
        lines = [f"{'pass':<20} {'ms':>9} {'eqns before':>12} {'eqns after':>11}"]
        for r in records:
            lines.append(f"{r.name:<20} {r.seconds * 1e3:9.2f} {r.eqns_before:12d} {r.eqns_after:11d}")
        if self._last is not None:
            from compiler.passes.fuse import kernel_count

            fusions = sum(1 for e in self._last.eqns if e.body is not None)
            lines.append(f"kernels: {kernel_count(self._last)} ({fusions} fusions)")
        with open(self._path("summary.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
