"""The IR text format (parser side): ``parse_function`` reads what ``print_function`` writes.

The grammar is the one documented in ``ir.printer``; ``print_function(parse_function(t))``
is ``t`` for every ``t`` the printer produced. Equations of registered ops are rebuilt
through the registry (``infer_types``), so a parsed function is as checked as a built one.

>>> from ir import parse_function, print_function
>>> fn = parse_function('''
... # xla-py ir v1
... func @f(%0: f32[3]) -> (f32[]) {
...   %1 = mul %0, %0 : f32[3]  # model.py:4
...   %2 = reduce_sum %1 {axes=[0]} : f32[]  # model.py:5 (grad)
...   return %2
... }
... ''')
>>> fn.eqns[1].attrs, fn.eqns[1].loc
({'axes': (0,)}, 'model.py:5 (grad)')
>>> print(print_function(fn), end="")
func @f(%0: f32[3]) -> (f32[]) {
  %1 = mul %0, %0 : f32[3]  # model.py:4
  %2 = reduce_sum %1 {axes=[0]} : f32[]  # model.py:5 (grad)
  return %2
}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from ir.core import Eqn, Function, Value
from ir.dtypes import DType, TensorType, parse_type
from ir.errors import IRError, ParseError
from ir.ops import get_op, infer_types

__all__ = ["parse_function"]

# One token kind per alternative; order matters where prefixes overlap ("->" before numbers,
# numbers before names so "-inf" is one token, strings before comments so "#" can be quoted).
_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<comment>\#.*)
    | (?P<type>[A-Za-z_]\w*\[[^\]]*\])
    | (?P<value>%[\w.?]+)
    | (?P<func>@[^\s(]*)
    | (?P<arrow>->)
    | (?P<number>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+](?:inf|nan)\b)
    | (?P<name>[A-Za-z_][\w.]*)
    | (?P<punct>[=,:(){}\[\]])
    """,
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
# A function name runs up to the '(' opening the parameters, which contain no parentheses;
# the greedy name backtracks to the last '(' that is followed by a whole signature.
_SIGNATURE_NAME = re.compile(r"\s*func\s+@(.*)(?=\([^()]*\)\s*->\s*\([^()]*\)\s*\{)")
_VERSION = re.compile(r"#\s*xla-py\s+ir\s+v(\S*)\s*")
_NAMED_ATTRS = {"true": True, "false": False, "inf": float("inf"), "nan": float("nan")}
_ATTR_HINT = "a number, true/false, a dtype, a \"string\" or a [list]"
# Bodies nest at most this deep: the printer, verifier and interpreter recurse per level.
MAX_BODY_NESTING = 64


class _Token(NamedTuple):
    kind: str
    text: str
    col: int


def _error(number: int, text: str, message: str, col: int | None = None) -> ParseError:
    """A ParseError naming the line, quoting it and pointing at the column when known."""
    gutter = f"  {number} | "
    lines = [f"line {number}: {message}", gutter + text]
    if col is not None:
        lines.append(" " * (len(gutter) - 2) + "| " + " " * col + "^")
    return ParseError("\n".join(lines))


class _Line:
    """The tokens of one line and a cursor over them."""

    def __init__(self, number: int, text: str, start: int = 0):
        self.number, self.text = number, text
        self.tokens: list[_Token] = []
        pos = start
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                bad = text[pos]
                what = "unterminated string" if bad == '"' else f"unexpected {bad!r}"
                raise self.error(what, pos)
            if m.lastgroup != "space":
                self.tokens.append(_Token(m.lastgroup, m.group(), pos))
            pos = m.end()
        self.pos = 0

    def error(self, message: str, col: int | None = None) -> ParseError:
        return _error(self.number, self.text, message, col)

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind in ("punct", "arrow", "name") and tok.text == text

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.pos += 1
            return True
        return False

    def next(self, expected: str, kind: str | None = None, text: str | None = None) -> _Token:
        """The next token; it must be of ``kind`` / spell ``text`` when given."""
        tok = self.peek()
        if tok is None or tok.kind == "comment":
            col = len(self.text.rstrip()) if tok is None else tok.col
            raise self.error(f"expected {expected}, got end of line", col)
        if (kind and tok.kind != kind) or (text and tok.text != text):
            raise self.error(f"expected {expected}, got {tok.text!r}", tok.col)
        self.pos += 1
        return tok

    def expect(self, text: str, expected: str | None = None) -> _Token:
        return self.next(expected or repr(text), text=text)

    def several(self, item) -> list:
        """``item (',' item)*``."""
        items = [item()]
        while self.accept(","):
            items.append(item())
        return items

    def enclosed(self, item, close: str, what: str) -> list:
        """``close`` or ``item (',' item)* close``: the rest of a bracketed list."""
        if self.accept(close):
            return []
        items = self.several(item)
        self.expect(close, f"',' or {close!r} after {what}")
        return items

    def comment(self) -> str | None:
        """The trailing ``# ...`` text (without '# '), consumed, or None."""
        tok = self.peek()
        if tok is None or tok.kind != "comment":
            return None
        self.pos += 1
        body = tok.text[1:]
        return body[1:] if body.startswith(" ") else body

    def end(self) -> None:
        self.comment()  # a trailing comment is allowed (and ignored) on any line
        tok = self.peek()
        if tok is not None:
            raise self.error(f"expected end of line, got {tok.text!r}", tok.col)


@dataclass
class _Pending:
    """An equation whose line is read; it is built once its body (if any) is closed."""

    line: _Line
    results: list[_Token]
    op: _Token
    inputs: list[Value]
    attrs: dict
    types: list[TensorType]
    types_col: int
    loc: str | None


@dataclass
class _Block:
    """A function or body being read: its own scope of visible value names."""

    name: str
    line: _Line
    params: list[Value]
    scope: dict[str, Value]
    result_types: list[TensorType] | None = None  # declared by a function's signature
    pending: _Pending | None = None  # the equation a body belongs to
    eqns: list[Eqn] = field(default_factory=list)
    outputs: list[Value] | None = None
    return_line: _Line | None = None


def parse_function(text: str) -> Function:
    """Parse the text of one function, as written by ``ir.print_function``.

    Raises ``ParseError`` naming the line, quoting it and saying what was expected.
    """
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.defined: dict[str, int] = {}  # every value name -> the line defining it
        self.stack: list[_Block] = []
        self.result: Function | None = None

    def parse(self) -> Function:
        last = (1, "")
        for number, raw in enumerate(self.lines, start=1):
            text = raw.rstrip("\r")
            stripped = text.strip()
            if not stripped:
                continue
            last = (number, text)
            if stripped.startswith("#"):
                self._comment_line(number, text, stripped)
                continue
            if self.result is not None:
                col = len(text) - len(text.lstrip())
                raise _error(number, text, "expected nothing after the closing '}'", col)
            if self.stack:
                self._statement(_Line(number, text))
            else:
                self._signature(number, text)
        if self.stack:
            block = self.stack[-1]
            what = "the function" if block.pending is None else "the body"
            raise _error(*last, f"unexpected end of input; expected '}}' closing {what} "
                         f"opened on line {block.line.number}")
        if self.result is None:
            raise _error(*last, "no function; expected 'func @name(%0: f32[4]) -> (f32[4]) {'")
        return self.result

    @staticmethod
    def _comment_line(number: int, text: str, stripped: str) -> None:
        m = _VERSION.fullmatch(stripped)
        if m and m.group(1) != "1":
            raise _error(number, text, "unsupported IR format version; expected '# xla-py ir v1'")

    # -- lines ------------------------------------------------------------------------------

    def _signature(self, number: int, text: str) -> None:
        m = _SIGNATURE_NAME.match(text)
        if m:  # the name is free text ("grad(f)", "<lambda>"); tokens start at its '('
            name, line = m.group(1), _Line(number, text, m.end(1))
        else:  # not a well-formed signature: let the tokens say what is wrong
            line = _Line(number, text)
            line.expect("func", "'func @name(...) -> (...) {'")
            name = line.next("'@' and the function name", kind="func").text[1:]
        line.expect("(")
        scope: dict[str, Value] = {}
        params = self._params(line, scope)
        line.expect("->", "'->' and the result types")
        line.expect("(", "'(' before the result types")
        types = line.enclosed(lambda: self._type(line), ")", "a result type")
        line.expect("{", "'{' opening the function")
        line.end()
        self.stack.append(_Block(name, line, params, scope, result_types=types))

    def _statement(self, line: _Line) -> None:
        block = self.stack[-1]
        first = line.tokens[0]
        if line.at("}"):
            self._close(line)
        elif block.outputs is not None:
            raise line.error(
                f"expected '}}' after 'return' (line {block.return_line.number})", first.col
            )
        elif line.accept("return"):
            block.outputs = line.several(lambda: self._use(line, block)) if line.peek() else []
            line.end()
            block.return_line = line
        elif first.kind == "value":
            self._equation(line, block)
        else:
            raise line.error(
                f"expected an equation '%n = op ...', 'return' or '}}', got {first.text!r}",
                first.col,
            )

    def _equation(self, line: _Line, block: _Block) -> None:
        results = line.several(lambda: line.next("a result value", kind="value"))
        line.expect("=", "'=' after the results")
        op = line.next("an op name", kind="name")
        tok = line.peek()
        inputs = []
        if tok is not None and tok.kind == "value":
            inputs = line.several(lambda: self._use(line, block))
        attrs = self._attrs(line) if line.accept("{") else {}
        colon = line.expect(":", "':' and the result types")
        types = line.several(lambda: self._type(line))
        if len(types) != len(results):
            raise line.error(f"{len(results)} result(s) but {len(types)} result type(s)", colon.col)
        for result in results:
            self._claim(line, result)
        body_scope: dict[str, Value] | None = None
        if line.accept("body"):
            line.expect("(", "'(' and the body parameters")
            body_scope = {}
            body_params = self._params(line, body_scope)
            line.expect("{", "'{' opening the body")
            if len(self.stack) > MAX_BODY_NESTING:
                raise line.error(f"bodies are nested more than {MAX_BODY_NESTING} deep")
            got, want = [v.type for v in body_params], [v.type for v in inputs]
            if got != want:
                raise line.error(f"body parameters have types ({_fmt(got)}) but the operands "
                                 f"have ({_fmt(want)}); they must be equal")
        loc = line.comment() or None
        pending = _Pending(line, results, op, inputs, attrs, types, colon.col, loc)
        line.end()
        if body_scope is None:
            self._finish(pending, block, None)
        else:
            self.stack.append(_Block(op.text, line, body_params, body_scope, pending=pending))

    def _close(self, line: _Line) -> None:
        block = self.stack[-1]
        line.expect("}")
        line.end()
        if block.outputs is None:
            raise line.error("expected 'return' before the closing '}'", line.tokens[0].col)
        self.stack.pop()
        fn = Function(block.name, block.params, block.eqns, block.outputs)
        if block.pending is None:
            got = [v.type for v in block.outputs]
            if got != block.result_types:
                raise block.return_line.error(
                    f"returns ({_fmt(got)}) but the signature on line {block.line.number} "
                    f"declares ({_fmt(block.result_types)})"
                )
            self.result = fn
        else:
            self._finish(block.pending, self.stack[-1], fn, block)

    def _finish(self, p: _Pending, block: _Block, body: Function | None,
                body_block: _Block | None = None) -> None:
        """Check an equation through the registry and append it to ``block``."""
        line, op = p.line, p.op.text
        in_types = [v.type for v in p.inputs]
        try:
            get_op(op)
            registered = True
        except IRError as error:
            if body is None:
                raise line.error(
                    f"{error} (only an equation with a body may use an unregistered op)", p.op.col
                ) from None
            registered = False
        attrs = dict(sorted(p.attrs.items()))  # the order check_attrs gives registered ops
        if registered and body is not None:
            raise line.error(f"'{op}' is a primitive and carries no body; only an unregistered "
                             "region op (such as 'fusion') has one", p.op.col)
        if registered:
            try:
                attrs, inferred = infer_types(op, in_types, p.attrs)
            except IRError as error:
                raise line.error(str(error), p.op.col) from None
            if list(inferred) != p.types:
                raise line.error(
                    f"{op}: the type rule gives {_fmt(inferred)} but the line says "
                    f"{_fmt(p.types)}", p.types_col)
        if body is not None and body.output_types != p.types:  # (parameters: see _equation)
            raise body_block.return_line.error(
                f"the body returns ({_fmt(body.output_types)}) but its equation on line "
                f"{line.number} has result types ({_fmt(p.types)})"
            )
        outputs = tuple(Value(t) for t in p.types)
        block.eqns.append(Eqn(op, tuple(p.inputs), outputs, attrs, p.loc, body))
        for tok, value in zip(p.results, outputs, strict=True):
            block.scope[tok.text] = value

    # -- pieces -----------------------------------------------------------------------------

    def _claim(self, line: _Line, tok: _Token) -> None:
        first = self.defined.get(tok.text)
        if first is not None:
            raise line.error(
                f"value {tok.text} is already defined on line {first}; every value is defined once",
                tok.col,
            )
        self.defined[tok.text] = line.number

    def _params(self, line: _Line, scope: dict[str, Value]) -> list[Value]:
        """``%a: type, ...)`` (the '(' is already read) into new values in ``scope``."""
        def param() -> Value:
            tok = line.next("a parameter '%n: type'", kind="value")
            line.expect(":", f"':' and the type of {tok.text}")
            value = Value(self._type(line))
            self._claim(line, tok)
            scope[tok.text] = value
            return value

        return line.enclosed(param, ")", "a parameter")

    def _use(self, line: _Line, block: _Block) -> Value:
        tok = line.next("an operand value", kind="value")
        value = block.scope.get(tok.text)
        if value is not None:
            return value
        if tok.text in self.defined:
            raise line.error(
                f"value {tok.text} (defined on line {self.defined[tok.text]}) is not visible here; "
                "a body sees only its own parameters and values",
                tok.col,
            )
        raise line.error(f"value {tok.text} is not defined before this use", tok.col)

    def _type(self, line: _Line) -> TensorType:
        tok = line.next("a tensor type such as f32[4,3]", kind="type")
        try:
            return parse_type(tok.text)
        except IRError as error:
            raise line.error(str(error), tok.col) from None

    def _attrs(self, line: _Line) -> dict:
        """``name=value, ...}`` (the '{' is already read)."""
        attrs: dict = {}

        def attr() -> None:
            key = line.next("an attribute name", kind="name")
            if key.text in attrs:
                raise line.error(f"attribute {key.text} is given twice", key.col)
            line.expect("=", f"'=' after attribute name {key.text}")
            attrs[key.text] = self._attr_value(line)

        line.enclosed(attr, "}", "an attribute")
        return attrs

    def _attr_value(self, line: _Line):
        tok = line.next(_ATTR_HINT)
        if tok.kind == "punct" and tok.text == "[":
            return tuple(line.enclosed(lambda: self._attr_value(line), "]", "a list item"))
        if tok.kind == "number":
            is_float = any(c in tok.text for c in ".eEn")  # "n" catches -inf and -nan
            return float(tok.text) if is_float else int(tok.text)
        if tok.kind == "string":
            return _unescape(line, tok)
        if tok.kind == "name" and tok.text in _NAMED_ATTRS:
            return _NAMED_ATTRS[tok.text]
        if tok.kind == "name" and tok.text in DType.__members__:
            return DType[tok.text]
        raise line.error(f"expected {_ATTR_HINT}, got {tok.text!r}", tok.col)


def _unescape(line: _Line, tok: _Token) -> str:
    def replace(m: re.Match) -> str:
        code = m.group(1)
        if code in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[code]
        if len(code) > 1 and int(code[1:], 16) <= 0x10FFFF:
            return chr(int(code[1:], 16))
        raise line.error(
            f"unknown escape '\\{code}' in string; use \\\\, \\\", \\n, \\t, \\r, \\xNN or "
            "\\uNNNN", tok.col + 1 + m.start())

    return _ESCAPE.sub(replace, tok.text[1:-1])


def _fmt(types) -> str:
    return ", ".join(str(t) for t in types)
