"""Split the LLVM IR text of one module into parts that compile separately.

NOTE: [Splitting a module]
LLVM compiles a module on one thread and llvmlite serialises every call
behind one lock, so the only way to use a second core for one program is a
second process (notes/llvmlite.md §9). ``split_module`` cuts the text into
modules that together define the same symbols: every function definition
goes to exactly one part; the rest of the text (declarations, constants,
metadata) is copied into every part. A function referenced from a part
other than its own is made external in its part (``internal`` would hide it)
and declared in the others. A non-internal constant is defined in part 0
only and becomes an internal copy elsewhere (LLVM drops unused copies; no
code compares constant addresses). Mutable globals are never split: the
parts would each get their own. The object files of all parts, linked into
one JIT library, behave like the object of the whole module. A function LLVM
may inline always stays with its callers, so the generated code (and so the
results, down to the order of a vectorised sum) does not depend on the
split; other callers and callees stay together where the balance allows
(see ``_groups``). What is lost across parts is interprocedural facts about
functions that are never inlined (noinline micro-kernels, chunk bodies
called through the thread pool).

The text is what llvmlite prints (plus hand-written helpers in the same
style): each function body ends at a line that is exactly ``}``, names are
``@"quoted"`` or plain identifiers. Anything else makes ``split_module``
return None and the caller compiles the module whole.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["split_module", "merge_duplicates", "function_costs", "total_cost",
           "function_names"]

_NAME = r'@(?:"(?P<quoted>[^"]+)"|(?P<plain>[-a-zA-Z$._][-a-zA-Z$._0-9]*))'
_DEFINE = re.compile(r"define\s+(?:(?P<linkage>internal|private)\s+)?[^@]*?" + _NAME)
_REFERENCE = re.compile(_NAME)
_GLOBAL = re.compile(_NAME + r"\s*=\s*(?P<definition>.*)$")
_LOOP_MD = re.compile(r"!llvm\.loop (![0-9]+)")
_MD_NODE = re.compile(r"^(![0-9]+) = (?:distinct )?!\{(.*)\}\s*$")


@dataclass
class _Function:
    name: str
    internal: bool
    header: str           # the define line(s) up to and including the opening brace
    text: str             # the whole definition
    body_start: int       # where the body begins in ``text``
    cost: float = 0.0

    @functools.cached_property
    def references(self) -> set[str]:
        """Names of the globals (functions, constants) the body uses."""
        return {_name_of(m) for m in _REFERENCE.finditer(self.text, self.body_start)}

    @functools.cached_property
    def calls(self) -> set[str]:
        """Functions the body calls directly (not those it passes as values)."""
        text, called = self.text, set()
        for m in _REFERENCE.finditer(text, self.body_start):
            if text.startswith("(", m.end()):
                line = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
                if line.lstrip().startswith(("call ", "tail call ")) or " call " in line:
                    called.add(_name_of(m))
        return called

    @property
    def inlinable(self) -> bool:
        """Whether LLVM may inline it into its callers (internal, not noinline)."""
        return self.internal and "noinline" not in self.header.rsplit(")", 1)[-1].split()


def _name_of(match: re.Match) -> str:
    quoted = match.group("quoted")
    return quoted if quoted is not None else match.group("plain")


def _parse(text: str) -> tuple[list[str], list[_Function]] | None:
    """(top-level lines that are not function definitions, the definitions)."""
    rest: list[str] = []
    functions: list[_Function] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("define "):
            rest.append(line)
            i += 1
            continue
        match = _DEFINE.match(line)
        if match is None:
            return None
        start = i
        while "{" not in lines[i]:  # llvmlite puts the brace on the next line
            i += 1
            if i >= len(lines) or lines[i].startswith(("define ", "declare ")):
                return None
        header_end = i
        while i < len(lines) and lines[i] != "}":
            i += 1
        if i >= len(lines):
            return None
        header = "\n".join(lines[start:header_end + 1])
        functions.append(_Function(
            name=_name_of(match), internal=match.group("linkage") is not None, header=header,
            text="\n".join(lines[start:i + 1]), body_start=len(header) + 1))
        i += 1
    return rest, functions


def _declaration(fn: _Function) -> str | None:
    """``declare`` for a definition's header: its signature up to the closing
    parenthesis of the parameters (function attributes after it may not be
    valid on a declaration, and none are needed to call it)."""
    header = fn.header.replace("\n", " ")
    at = _DEFINE.match(header)
    if at is None:
        return None
    open_paren = header.find("(", at.end())
    depth, quoted = 0, False
    for k in range(open_paren, len(header)):
        ch = header[k]
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                signature = header[len("define "):k + 1]
                if fn.internal:
                    signature = re.sub(r"^(internal|private)\s+", "", signature)
                return "declare " + signature
    return None


def _loops_not_vectorized(rest: list[str]) -> set[str]:
    """Loop metadata IDs that turn the loop vectoriser off (the GEMM's loops)."""
    nodes = {}
    for line in rest:
        match = _MD_NODE.match(line)
        if match:
            nodes[match.group(1)] = match.group(2)
    off = {name for name, body in nodes.items() if '"llvm.loop.vectorize.enable", i1 0' in body}
    # A loop ID lists its hint nodes: !2 = !{!2, !0, !1}.
    return off | {name for name, body in nodes.items()
                  if any(ref in off for ref in re.findall(r"![0-9]+", body) if ref != name)}


def function_names(text: str) -> list[str]:
    """Names of the functions ``text`` defines."""
    lines = (line.group(0) for line in re.finditer(r"^define .*$", text, re.MULTILINE))
    return [_name_of(m) for m in map(_DEFINE.match, lines) if m is not None]


def function_costs(text: str) -> dict[str, float] | None:
    """A rough compile-time estimate (CPU ms, O1 with the vectorisers, Zen 4)
    for each function of a module: see ``_cost``."""
    parsed = _parse(text)
    if parsed is None:
        return None
    rest, functions = parsed
    off = _loops_not_vectorized(rest)
    return {fn.name: _cost(fn, off) for fn in functions}


def total_cost(functions: list[_Function], context: str = "") -> float:
    """The summed ``_cost`` of parsed functions, with the loop metadata in
    ``context`` (the module's other lines; without it every loop counts as
    vectorisable)."""
    off = _loops_not_vectorized(context.split("\n")) if context else set()
    return sum(_cost(fn, off) for fn in functions)


_INLINED = 1.5  # cost factor of a function LLVM will inline (W4: parts within ~5%)
_INSTRUCTION = re.compile(r"^\s+(?:%\S+ = |store |call |br |ret )", re.MULTILINE)


def _cost(fn: _Function, not_vectorized: set[str]) -> float:
    """Fitted on the functions of the W4 training step (each compiled alone,
    mean error ~3 ms): a fixed cost per function, a little per instruction,
    ~21 ms per loop the loop vectoriser may widen (runtime checks, vector and
    remainder loops), shuffles (instruction selection tries many lowerings).
    Loops without metadata cannot be told from branches in the text (blocks
    are not printed in loop order); in a function without loop metadata a
    block with phis stands in for a loop header (~4 ms each)."""
    loops = _LOOP_MD.findall(fn.text)
    vectorizable = sum(1 for ref in loops if ref not in not_vectorized)
    headers = 0 if loops else _phi_blocks(fn.text)
    return (3.0 + 0.01 * len(_INSTRUCTION.findall(fn.text)) + 21.0 * vectorizable
            + 0.2 * fn.text.count("shufflevector") + 4.0 * headers)


_LABEL = re.compile(r'^"?[^\s":]+"?:')


def _phi_blocks(text: str) -> int:
    blocks, block = set(), None
    for line in text.split("\n"):
        if _LABEL.match(line):
            block = line
        elif " = phi " in line:
            blocks.add(block)
    return len(blocks)


def _groups(functions: list[_Function], limit: float) -> list[list[_Function]]:
    """Functions that must or should stay in one part.

    Must: a function LLVM may inline stays with every function that calls
    it, so that what is inlined where (and so the generated code, e.g. the
    order of a vectorised sum) does not depend on the split. Should: a
    function with a single caller joins that caller's group (a kernel and the
    chunk bodies it outlines, a micro-kernel only one GEMM calls), unless the
    group would cost more than ``limit`` (the entry calls every kernel:
    joining them all would leave nothing to balance).
    """
    by_name = {fn.name: fn for fn in functions}
    callers: dict[str, set[str]] = {fn.name: set() for fn in functions}
    for fn in functions:
        for ref in fn.references:
            if ref in callers and ref != fn.name:
                callers[ref].add(fn.name)
    parent: dict[str, str] = {}
    cost = {fn.name: fn.cost for fn in functions}

    def root(name: str) -> str:
        while name in parent:
            name = parent[name]
        return name

    def join(a: str, b: str) -> None:
        a, b = root(a), root(b)
        if a != b:
            parent[a] = b
            cost[b] += cost[a]

    for fn in functions:
        for callee in fn.calls:
            if callee in callers and callee != fn.name and by_name[callee].inlinable:
                join(callee, fn.name)
    # Callees first (the text lists callers before what they outline, so
    # reversed order joins a chunk body to its kernel before the kernel is
    # considered for joining the entry).
    for fn in reversed(functions):
        if len(callers[fn.name]) != 1:
            continue
        (caller,) = callers[fn.name]
        if root(fn.name) != root(caller) and cost[root(fn.name)] + cost[root(caller)] <= limit:
            join(fn.name, caller)
    groups: dict[str, list[_Function]] = {}
    for fn in functions:
        groups.setdefault(root(fn.name), []).append(fn)
    return list(groups.values())


def merge_duplicates(text: str) -> tuple[str, int]:
    """``text`` with internal functions that are identical but for their name
    defined once (every use renamed to the first), and how many went.

    Code generators specialise per call site and often produce the same
    function twice (e.g. the same GEMM packing routine for two products of
    one shape); LLVM would optimise and compile each copy. Repeats until no
    pair is left (callers may become equal once their callees are merged).
    Only ``@"quoted"`` names are merged, which is how llvmlite prints them.
    """
    removed = 0
    while True:
        parsed = _parse(text)
        if parsed is None:
            return text, removed
        _, functions = parsed
        first: dict[str, str] = {}
        renames: dict[str, str] = {}
        for fn in functions:
            own = f'@"{fn.name}"'
            if not fn.internal or own not in fn.header:
                continue
            key = fn.text.replace(own, '@"\0"')
            kept = first.setdefault(key, fn.name)
            if kept != fn.name:
                renames[fn.name] = kept
        if not renames:
            return text, removed
        gone = {functions[k].text for k in range(len(functions)) if functions[k].name in renames}
        kept_text = text
        for fn_text in gone:
            kept_text = kept_text.replace(fn_text + "\n", "", 1)
        pattern = re.compile("|".join(re.escape(f'@"{name}"') for name in renames))
        text = pattern.sub(lambda m: f'@"{renames[m.group(0)[2:-1]]}"', kept_text)
        removed += len(renames)


def _global_kind(line: str) -> tuple[str, str] | None:
    """(name, kind) of a top-level global line, kind one of "declaration",
    "constant", "mutable" (also aliases and linkages kept out of splitting);
    None for other lines."""
    match = _GLOBAL.match(line)
    if match is None:
        return None
    words = match.group("definition").split()
    while words and words[0] in ("internal", "private", "unnamed_addr",
                                 "local_unnamed_addr", "dso_local"):
        words = words[1:]
    if words[:1] == ["external"]:
        return _name_of(match), "declaration"
    return _name_of(match), "constant" if words[:1] == ["constant"] else "mutable"


def _internal_copy(line: str) -> str:
    """A constant's definition as a private copy for another part (LLVM drops
    it where unused; no code compares constant addresses)."""
    if re.match(r"[^=]*=\s*(internal|private)\b", line):
        return line
    return re.sub(r"=\s*", "= internal ", line, count=1)


def split_module(text: str, parts: int = 2, *, min_part_cost: float = 0.0
                 ) -> list[str] | None:
    """The module's text cut into up to ``parts`` modules (see [Splitting a
    module]), balanced by estimated compile time (``function_costs``), each
    estimated at ``min_part_cost`` or more, costliest first; None if it
    cannot or need not be split."""
    parsed = _parse(text) if parts >= 2 else None
    if parsed is None:
        return None
    rest, functions = parsed
    off = _loops_not_vectorized(rest)
    called = {callee for fn in functions for callee in fn.calls}
    for fn in functions:
        fn.cost = _cost(fn, off)
        if fn.inlinable and fn.name in called:
            # Simplified on its own, then again inside each caller once inlined.
            fn.cost *= _INLINED
    if min_part_cost > 0:
        parts = min(parts, int(sum(fn.cost for fn in functions) // min_part_cost))
    parts = min(parts, len(functions))
    if parts < 2:
        return None
    names = {fn.name for fn in functions}
    globals_ = {}
    for k, line in enumerate(rest):
        kind = _global_kind(line)
        if kind is None or kind[1] == "declaration":
            continue
        if kind[1] == "mutable":
            return None  # each part would get its own
        globals_[kind[0]] = k

    # Longest processing time first, by groups that stay together.
    total = sum(fn.cost for fn in functions)
    groups = sorted(_groups(functions, total / (2 * parts)),
                    key=lambda g: -sum(fn.cost for fn in g))
    load = [0.0] * parts
    owner: dict[str, int] = {}
    for group in groups:
        p = min(range(parts), key=load.__getitem__)
        load[p] += sum(fn.cost for fn in group)
        for fn in group:
            owner[fn.name] = p
    # Largest first (for workers taking parts in turn); fewer groups than
    # parts leave some empty. Part 0 (the costliest) is never empty.
    used = sorted(set(owner.values()), key=lambda p: -load[p])
    if len(used) < 2:
        return None
    parts = len(used)
    owner = {name: used.index(p) for name, p in owner.items()}

    by_name = {fn.name: fn for fn in functions}
    exported = {ref for fn in functions for ref in fn.references
                if ref in names and owner[ref] != owner[fn.name]}
    declarations = {}
    for name in exported:
        declared = _declaration(by_name[name])
        if declared is None:
            return None
        declarations[name] = declared

    texts = []
    for p in range(parts):
        lines = list(rest)
        for name, k in globals_.items():
            if p != 0:
                lines[k] = _internal_copy(rest[k])
        mine = [fn for fn in functions if owner[fn.name] == p]
        needed = sorted({ref for fn in mine for ref in fn.references
                         if ref in names and owner[ref] != p})
        body = []
        for fn in mine:
            definition = fn.text
            if fn.name in exported and fn.internal:
                definition = re.sub(r"^define\s+(internal|private)\s+", "define ", definition)
            body.append(definition)
        texts.append("\n".join(lines + [declarations[n] for n in needed] + body) + "\n")
    return texts
