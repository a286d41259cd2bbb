"""Cut a module into parts while it is being generated, a few functions at a time.

NOTE: [Parts of a module still being generated]
``split_module`` (runtime/module_split.py) cuts a finished module; a code
generator that hands over its functions as it finishes them lets other
processes compile the first parts while it generates the rest
(runtime/loader.py, ``PartCompiler``). A ``ModuleStream`` turns each batch of
finished definitions into a module of its own:

- the rest of the module so far (globals, declarations, metadata: the
  *context*) is copied into every part; a non-internal constant stays
  defined in the first part that has it and becomes an internal copy in
  later ones; a mutable global cannot be shared and stops the stream;
- a function LLVM may inline (internal, not ``noinline``) stays internal in
  its part, and a later part that uses it gets its own copy (it would be
  inlined there anyway), so what is inlined where is what the whole module
  would inline; every other function becomes external, since a later part
  may call it (it is declared there);
- a definition equal to an earlier internal one but for its name is dropped
  and every later use renamed (the same product's GEMM packing, a kernel
  repeated for another gradient): ``merge_duplicates`` for a module in
  pieces. Batches are compared callees first (a generator defines a
  function before the helpers it creates), so a caller whose callees were
  merged can be merged too.

Functions may only use functions defined in the same or an earlier batch.
"""

from __future__ import annotations

import re
from typing import Sequence

from runtime.module_split import (_NAME, _REFERENCE, _declaration, _Function, _global_kind,
                                  _internal_copy, _parse)

__all__ = ["ModuleStream", "StreamError"]

_DECLARE = re.compile(r"declare\s+[^@]*?" + _NAME)


class StreamError(ValueError):
    """The generated text cannot be cut into parts (the module is then compiled whole)."""


class ModuleStream:
    """Parts of a module whose function definitions arrive in batches (see
    [Parts of a module still being generated])."""

    def __init__(self):
        self._defined: dict[str, _Function] = {}  # every definition handed out so far
        self._renames: dict[str, str] = {}        # merged duplicate -> the one kept
        self._first: dict[str, str] = {}          # definition text, own name blanked -> name
        self._constants: set[str] = set()         # non-internal constants already defined
        self._rename_pattern: re.Pattern | None = None
        self._declared: set[str] = set()          # functions earlier contexts declared

    @property
    def names(self) -> set[str]:
        """Functions the parts so far define (duplicates that were merged away excluded)."""
        return set(self._defined)

    @staticmethod
    def parse(definitions: Sequence[str]) -> tuple[list[str], list[_Function]]:
        """(other top-level lines, functions) of function definition texts;
        ``StreamError`` if they are not in the form [Splitting a module] expects."""
        parsed = _parse("\n".join(definitions))
        if parsed is None:
            raise StreamError("unrecognised function definitions")
        return parsed

    def part(self, context: str, definitions: Sequence[str] | tuple[list[str], list[_Function]]
             ) -> str | None:
        """The text of a module defining ``definitions`` (texts of function
        definitions, in the order they were created, or what ``parse`` made
        of them) with ``context`` (the module's other top-level lines so far);
        None if every definition was a duplicate. Raises ``StreamError`` when
        the text cannot be split."""
        if isinstance(definitions, tuple):
            extra, functions = definitions
        else:
            extra, functions = self.parse(definitions)
        kept = self._merge(functions)
        if not kept:
            return None
        mine = {fn.name for fn in kept}
        for fn in kept:
            if fn.internal and fn.name in self._declared:
                # An earlier part declared it (it was used before it was
                # defined): internal here, that declaration would stay unresolved.
                raise StreamError(f"{fn.name!r} was used before its definition")
        lines = self._context(context.split("\n") + [line for line in extra if line.strip()],
                              mine)
        copies: list[_Function] = []
        declared: dict[str, str] = {}
        todo = list(kept)
        while todo:  # references of the part and of the inlinable copies it takes
            fn = todo.pop()
            for ref in sorted(fn.references):
                earlier = self._defined.get(ref)
                if earlier is None or ref in mine or ref in declared:
                    continue
                if earlier.inlinable:
                    mine.add(ref)
                    copies.append(earlier)
                    todo.append(earlier)
                else:
                    declaration = _declaration(earlier)
                    if declaration is None:
                        raise StreamError(f"cannot declare {ref!r}")
                    declared[ref] = declaration
        body = []
        for fn in kept:
            self._defined[fn.name] = fn
            if fn.internal and not fn.inlinable:
                # A later part may call it: external (names are unique in a program).
                body.append(re.sub(r"^define\s+(internal|private)\s+", "define ", fn.text))
            else:
                body.append(fn.text)
        return "\n".join(lines + list(declared.values()) + body
                         + [fn.text for fn in copies]) + "\n"

    def _rename(self, text: str) -> str:
        if self._rename_pattern is None:
            return text
        return self._rename_pattern.sub(lambda m: f'@"{self._renames[m.group(0)[2:-1]]}"', text)

    def _merge(self, functions: list[_Function]) -> list[_Function]:
        kept = []
        for fn in reversed(functions):  # callees (created later) first
            text = self._rename(fn.text)
            if text != fn.text:
                fn = _parse(text)[1][0]
            own = f'@"{fn.name}"'
            if fn.internal and own in fn.header:
                key = text.replace(own, '@"\0"')
                first = self._first.setdefault(key, fn.name)
                if first != fn.name:
                    self._renames[fn.name] = first
                    self._rename_pattern = re.compile(
                        "|".join(re.escape(f'@"{name}"') for name in self._renames))
                    continue
            kept.append(fn)
        kept.reverse()
        if len(kept) < len(functions):  # callers in the batch may use what was merged
            kept = [_parse(self._rename(fn.text))[1][0] for fn in kept]
        return kept

    def _context(self, lines: list[str], mine: set[str]) -> list[str]:
        out = []
        for line in lines:
            if line.startswith("declare "):
                declared = _DECLARE.match(line)
                if declared is not None:
                    self._declared.add(declared.group("quoted") or declared.group("plain"))
            kind = _global_kind(line)
            if kind is not None and kind[1] == "mutable":
                raise StreamError(f"mutable global {kind[0]!r} cannot be shared by parts")
            if kind is not None and kind[1] == "constant":
                used = {m.group("quoted") or m.group("plain")
                        for m in _REFERENCE.finditer(line, line.index("="))}
                if used & (mine | set(self._defined)):
                    raise StreamError(f"constant {kind[0]!r} holds function addresses")
                if kind[0] in self._constants:
                    line = _internal_copy(line)
                elif not re.match(r"[^=]*=\s*(internal|private)\b", line):
                    self._constants.add(kind[0])
            out.append(self._rename(line))
        return out
