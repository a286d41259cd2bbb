"""The IR text format (printer side). ``ir.parser`` reads it back.

Grammar by example::

    # xla-py ir v1
    func @f(%0: f32[4,3], %1: f32[3]) -> (f32[4,3]) {
      %2 = broadcast %1 {dims=[1], shape=[4,3]} : f32[4,3]  # model.py:12
      %3 = mul %0, %2 : f32[4,3]  # model.py:12
      return %3
    }

Values are renumbered in definition order, so ``print(parse(print(f)))`` is
identical to ``print(f)``. Attributes print sorted by name; a trailing
``# file:line`` is the equation's source location. An equation with a body (a
fusion) prints it as a nested block ``body(%p: type, ...) { ... return ... }``.
"""

from __future__ import annotations

import math

from ir.core import Eqn, Function, Value
from ir.dtypes import DType

__all__ = ["print_function", "format_attr", "IR_VERSION_LINE"]

IR_VERSION_LINE = "# xla-py ir v1"


def format_attr(value) -> str:
    """One attribute value in the text syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, DType):
        return value.value
    if isinstance(value, str):
        return '"' + "".join(_escape_char(c) for c in value) + '"'
    if isinstance(value, tuple):
        return "[" + ",".join(format_attr(v) for v in value) + "]"
    raise TypeError(f"cannot print attribute value {value!r}")


# The text is one equation per line: a line break, tab or other unprintable
# character inside a string attribute is escaped so it cannot split the line.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape_char(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    if c.isprintable():
        return c
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class _Namer:
    def __init__(self):
        self.names: dict[Value, str] = {}
        self.count = 0  # not len(names): a value defined twice (broken IR) must not reuse a number

    def define(self, value: Value) -> str:
        name = f"%{self.count}"
        self.count += 1
        self.names[value] = name
        return name

    def __getitem__(self, value: Value) -> str:
        # An undefined operand still prints (as %?id) so broken IR can be shown in errors.
        return self.names.get(value, f"%?{value.id}")


def print_function(fn: Function, header: bool = False, show_locs: bool = True) -> str:
    """The text of ``fn``; ``header`` prepends the format's version line."""
    namer = _Namer()
    lines = [IR_VERSION_LINE] if header else []
    params = ", ".join(f"{namer.define(p)}: {p.type}" for p in fn.params)
    results = ", ".join(str(v.type) for v in fn.outputs)
    lines.append(f"func @{fn.name}({params}) -> ({results}) {{")
    _print_block(fn, namer, lines, "  ", show_locs)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _print_block(fn: Function, namer: _Namer, lines: list[str], indent: str, show_locs: bool):
    for eqn in fn.eqns:
        lines.append(indent + _format_eqn(eqn, namer, show_locs))
        if eqn.body is not None:
            body = eqn.body
            params = ", ".join(f"{namer.define(p)}: {p.type}" for p in body.params)
            lines[-1] = _insert_body_open(lines[-1], params, eqn, show_locs)
            _print_block(body, namer, lines, indent + "  ", show_locs)
            lines.append(indent + "}")
    lines.append(indent + "return " + ", ".join(namer[v] for v in fn.outputs))


def _format_eqn(eqn: Eqn, namer: _Namer, show_locs: bool) -> str:
    operands = ", ".join(namer[v] for v in eqn.inputs)
    results = ", ".join(namer.define(v) for v in eqn.outputs)
    text = f"{results} = {eqn.op}"
    if operands:
        text += " " + operands
    if eqn.attrs:
        text += " {" + ", ".join(f"{k}={format_attr(v)}" for k, v in sorted(eqn.attrs.items())) + "}"
    text += " : " + ", ".join(str(v.type) for v in eqn.outputs)
    if show_locs and eqn.loc:
        text += "  # " + eqn.loc
    return text


def _insert_body_open(line: str, params: str, eqn: Eqn, show_locs: bool) -> str:
    # The body opens on the equation's own line, before its location comment.
    suffix = f"  # {eqn.loc}" if show_locs and eqn.loc else ""
    head = line[: len(line) - len(suffix)] if suffix else line
    return f"{head} body({params}) {{{suffix}"
