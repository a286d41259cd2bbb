"""The verifier: checks a Function's invariants and reports faults with IR context.

Checked: every parameter and value is defined exactly once; operands are defined before
use (a body sees only its own parameters and the values of its own equations); each op
is registered and has no body, or is an unregistered region op with a body; arity and
attributes fit the op's schema and the stored attributes are already normalised; the
op's type rule reproduces every recorded result type; a body's parameter and result
types equal its equation's operand and result types; the function's results are defined.

NOTE: [Verify never crashes]
Passes under development produce arbitrary garbage (a tuple where a Value belongs, numpy
scalars as attributes, a body that is not a Function). The verifier inspects every field
before trusting it and turns anything it cannot check into a VerifyError, so a broken
pass is reported against its IR rather than as a traceback from inside the verifier.

>>> from ir import Builder, Eqn, TensorType, Value
>>> b = Builder("f")
>>> x = b.param(TensorType("f32", (3,)))
>>> fn = b.finish([b.exp(x)])
>>> verify(fn)
>>> fn.eqns[0].outputs = (Value(TensorType("f32", (4,))),)
>>> fn.outputs = list(fn.eqns[0].outputs)
>>> verify(fn, pass_name="simplify")  # doctest: +ELLIPSIS
Traceback (most recent call last):
  ...
ir.errors.VerifyError: after pass 'simplify': eqn 0 'exp': result 0 (%1) is recorded as f32[4] ...
    func @f(%0: f32[3]) -> (f32[4]) {
      %1 = exp %0 : f32[4]  <--- HERE
      return %1
    }
"""

from __future__ import annotations

import math

from ir.core import Eqn, Function, Value
from ir.dtypes import DType, TensorType
from ir.errors import IRError, VerifyError
from ir.graph import value_names
from ir.ops import get_op, infer_types
from ir.printer import format_attr, print_function

__all__ = ["verify"]

_WINDOW = 10  # lines of IR shown on each side of the fault


class _Fault(Exception):
    """One broken invariant: what is wrong, where (a phrase) and which printed line."""

    def __init__(self, message: str, where: str = "", anchor: tuple | None = None):
        super().__init__(message)
        self.message, self.where, self.anchor = message, where, anchor


def verify(fn: Function, *, pass_name: str | None = None) -> None:
    """Raise ``VerifyError`` if ``fn`` breaks an IR invariant; return None otherwise.

    The message names the pass (when given), the equation (index, op and source
    location) and what is wrong, followed by the printed IR around the fault.
    """
    head = f"after pass '{pass_name}': " if pass_name else ""
    try:
        _Checker(fn).block(fn, None)
    except _Fault as fault:
        where = f"{fault.where}: " if fault.where else ""
        raise VerifyError(head + where + fault.message + _context(fn, fault.anchor)) from None
    except Exception as error:  # a gap in the checks below must still read as a VerifyError
        raise VerifyError(
            f"{head}the IR is too malformed to check: {type(error).__name__}: {error}"
            + _context(fn, None)
        ) from None


class _Checker:
    def __init__(self, fn):
        if not isinstance(fn, Function):
            raise _Fault(f"expected a Function, got {type(fn).__name__}")
        self.names = value_names(fn)
        self.defined: dict[Value, str] = {}  # value -> where it was defined (so far)
        self.all_defs = _definitions(fn)  # value -> (block, where), including later ones

    def name(self, v) -> str:
        if isinstance(v, Value):
            return self.names.get(v, f"%?{v.id}")
        text = repr(v)
        return text if len(text) <= 40 else text[:37] + "..."

    def block(self, fn: Function, owner: str | None) -> None:
        """Check one function or body (``owner`` describes the equation owning a body)."""
        where = owner or f"@{fn.name}"
        head = ("params", id(fn))
        visible: set[Value] = set()
        for k, p in enumerate(_seq(fn.params, "parameters", where, head)):
            self.value(p, f"parameter {k}", where, head)
            self.define(p, f"parameter {k} of {where}", visible, where, head, f"parameter {k}")
        for i, eqn in enumerate(_seq(fn.eqns, "equations", where, head)):
            self.eqn(fn, i, eqn, owner, visible)
        tail = ("return", id(fn))
        for k, v in enumerate(_seq(fn.outputs, "results", where, tail)):
            self.value(v, f"result {k}", f"return of {where}", tail)
            if v not in visible:
                raise _Fault(self.undefined(fn, v, f"result {k}"), f"return of {where}", tail)

    def eqn(self, fn: Function, i: int, eqn, owner: str | None, visible: set[Value]) -> None:
        anchor = ("eqn", id(fn), i)
        if not isinstance(eqn, Eqn):
            raise _Fault(f"equation {i} is a {type(eqn).__name__}, not an Eqn", owner or "", anchor)
        where = _where(eqn, i, owner)
        if not isinstance(eqn.op, str) or not eqn.op:
            raise _Fault(f"op must be a non-empty string, got {eqn.op!r}", where, anchor)
        one_line = isinstance(eqn.loc, str) and "\n" not in eqn.loc and "\r" not in eqn.loc
        if eqn.loc is not None and not one_line:
            raise _Fault(f"loc must be None or a one-line string, got {eqn.loc!r}", where, anchor)
        inputs = _seq(eqn.inputs, "inputs", where, anchor)
        for k, v in enumerate(inputs):
            self.value(v, f"operand {k}", where, anchor)
            if v not in visible:
                raise _Fault(self.undefined(fn, v, f"operand {k}"), where, anchor)
        outputs = _seq(eqn.outputs, "outputs", where, anchor)
        if not outputs:
            raise _Fault("an equation needs at least one result", where, anchor)
        for k, v in enumerate(outputs):
            self.value(v, f"result {k}", where, anchor)
        if not isinstance(eqn.attrs, dict):
            raise _Fault(f"attrs must be a dict, got {type(eqn.attrs).__name__}", where, anchor)
        self.types(eqn, inputs, outputs, where, anchor)
        for k, v in enumerate(outputs):
            self.define(v, where, visible, where, anchor, f"result {k}")
        if eqn.body is not None:
            self.body(eqn, inputs, outputs, where, anchor)

    def types(self, eqn: Eqn, inputs, outputs, where: str, anchor: tuple) -> None:
        """The registry's view: op known, arity, attrs normalised, result types."""
        try:
            get_op(eqn.op)
        except IRError as error:
            if eqn.body is None:
                raise _Fault(f"{error} (only an equation with a body may use an unregistered op)",
                             where, anchor) from None
            # An op with a body (fusion) is typed by its body, checked in body(); its attrs
            # have no schema but must still be values the text format can carry.
            for key, value in eqn.attrs.items():
                if not isinstance(key, str) or not _printable_attr(value):
                    raise _Fault(
                        f"attribute {key!r}={value!r} is not an attribute value; attributes are "
                        "ints, floats, bools, strings, dtypes or tuples of them", where, anchor
                    ) from None
            return
        if isinstance(eqn.body, Function):  # (a body of another kind fails in body())
            # Passes read a registered op by its registry entry and the interpreter
            # would run the body: the two meanings must never disagree.
            raise _Fault(f"'{eqn.op}' is a primitive and carries no body; only an unregistered "
                         "region op (such as 'fusion') has one", where, anchor)
        try:
            attrs, types = infer_types(eqn.op, [v.type for v in inputs], eqn.attrs)
        except IRError as error:
            raise _Fault(f"the op's rules reject it: {error}", where, anchor) from None
        except Exception as error:
            raise _Fault(f"the type rule of '{eqn.op}' failed: {type(error).__name__}: {error}",
                         where, anchor) from None
        if not _same(attrs, eqn.attrs):
            raise _Fault(
                f"attrs are not normalised: stored {eqn.attrs!r}, normal form {attrs!r}; build "
                "equations with Builder or ir.ops.check_attrs", where, anchor)
        if len(types) != len(outputs):
            raise _Fault(
                f"the type rule of '{eqn.op}' gives {len(types)} result(s) ({_fmt(types)}) but "
                f"the equation has {len(outputs)}", where, anchor)
        for k, (t, v) in enumerate(zip(types, outputs, strict=True)):
            if t != v.type:
                raise _Fault(
                    f"result {k} ({self.name(v)}) is recorded as {v.type} but the type rule of "
                    f"'{eqn.op}' gives {t}", where, anchor)

    def body(self, eqn: Eqn, inputs, outputs, where: str, anchor: tuple) -> None:
        body = eqn.body
        if not isinstance(body, Function):
            raise _Fault(f"body must be a Function or None, got {type(body).__name__}",
                         where, anchor)
        params = _seq(body.params, "body parameters", where, anchor)
        for k, p in enumerate(params):
            self.value(p, f"body parameter {k}", where, anchor)
        got, want = [p.type for p in params], [v.type for v in inputs]
        if got != want:
            raise _Fault(f"body parameter types ({_fmt(got)}) differ from the operand types "
                         f"({_fmt(want)})", where, anchor)
        self.block(body, f"body of {where}")
        results = _seq(body.outputs, "body results", where, anchor)
        got, want = [v.type for v in results], [v.type for v in outputs]
        if got != want:
            raise _Fault(f"the body returns ({_fmt(got)}) but the equation's result types are "
                         f"({_fmt(want)})", f"return of body of {where}", ("return", id(body)))

    def value(self, v, what: str, where: str, anchor: tuple) -> None:
        if not isinstance(v, Value):
            raise _Fault(f"{what} is not an IR Value but {type(v).__name__} {self.name(v)}",
                         where, anchor)
        if not isinstance(v.type, TensorType):
            raise _Fault(f"{what} ({self.name(v)}) has type {v.type!r}, not a TensorType",
                         where, anchor)

    def define(self, v: Value, site: str, visible: set[Value], where: str, anchor: tuple,
               what: str) -> None:
        if v in self.defined:
            raise _Fault(f"{what} ({self.name(v)}) is already defined by "
                         f"{self.defined[v]}; each value is defined exactly once", where, anchor)
        self.defined[v] = site
        visible.add(v)

    def undefined(self, fn: Function, v: Value, what: str) -> str:
        defs = self.all_defs.get(v)
        if defs is None:
            return f"{what} ({self.name(v)}) is not defined anywhere in the function"
        block, site = defs
        if block is fn:
            return f"{what} ({self.name(v)}) is used before its definition by {site}"
        return (f"{what} ({self.name(v)}) is defined in another region, by {site}; a body sees "
                "only its own parameters and the values of its own equations")


def _seq(x, what: str, where: str, anchor: tuple) -> list:
    if not isinstance(x, (list, tuple)):
        raise _Fault(f"{what} must be a list or tuple, got {type(x).__name__}", where, anchor)
    return list(x)


def _where(eqn: Eqn, i: int, owner: str | None) -> str:
    loc = f" ({eqn.loc})" if isinstance(eqn.loc, str) and eqn.loc else ""
    text = f"eqn {i} '{eqn.op}'{loc}"
    return f"{text} in the {owner}" if owner else text


def _definitions(fn: Function) -> dict[Value, tuple[Function, str]]:
    """Where each value is defined (first definition), for "used before defined" messages."""
    defs: dict[Value, tuple[Function, str]] = {}

    def block(f: Function, owner: str | None) -> None:
        for k, p in enumerate(_items(f.params)):
            if isinstance(p, Value):
                defs.setdefault(p, (f, f"parameter {k} of {owner or '@' + str(f.name)}"))
        for i, eqn in enumerate(_items(f.eqns)):
            if not isinstance(eqn, Eqn):
                continue
            where = _where(eqn, i, owner)
            for v in _items(eqn.outputs):
                if isinstance(v, Value):
                    defs.setdefault(v, (f, where))
            if isinstance(eqn.body, Function):
                block(eqn.body, f"body of {where}")

    block(fn, None)
    return defs


def _items(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else []


def _printable_attr(value) -> bool:
    # Exact types: numpy scalars subclass float/int but print as "np.float64(1.5)".
    if type(value) is tuple:
        return all(_printable_attr(v) for v in value)
    return type(value) in (int, float, bool, str) or isinstance(value, DType)


def _same(a, b) -> bool:
    """Structural equality that tells bool from int and treats nan as equal to nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _fmt(types) -> str:
    return ", ".join(str(t) for t in types)


# -- the IR window --------------------------------------------------------------------------


def _context(fn, anchor: tuple | None) -> str:
    """The printed IR within ±_WINDOW lines of the anchored line, marked ``<--- HERE``."""
    try:
        lines, anchors = _render(fn)
    except Exception:  # noqa: BLE001 - the message without IR beats no message
        return ""
    if not lines:
        return ""
    at = anchors.get(anchor) if anchor is not None else None
    center = at if at is not None else 0
    lo, hi = max(0, center - _WINDOW), min(len(lines), center + _WINDOW + 1)
    out = ["    ..."] if lo > 0 else []
    for n in range(lo, hi):
        out.append("    " + lines[n] + ("  <--- HERE" if n == at else ""))
    if hi < len(lines):
        out.append("    ...")
    return "\n" + "\n".join(out)


def _render(fn) -> tuple[list[str], dict[tuple, int]]:
    """The printed lines of ``fn`` and the line of each anchor.

    The text is ``print_function``'s; when broken IR makes the printer fail, a lenient
    rendering with the same layout stands in.
    """
    if not isinstance(fn, Function):
        return [], {}
    names = value_names(fn)
    lines: list[str] = []
    anchors: dict[tuple, int] = {}
    _layout(fn, names, lines, anchors)
    try:
        printed = print_function(fn).split("\n")[:-1]
    except Exception:  # noqa: BLE001 - broken IR the printer cannot show
        return lines, anchors
    return (printed if len(printed) == len(lines) else lines), anchors


def _layout(fn: Function, names, lines: list[str], anchors: dict[tuple, int]) -> None:
    def name(v) -> str:
        return names.get(v, f"%?{v.id}") if isinstance(v, Value) else f"<{type(v).__name__}>"

    def typed(v) -> str:
        return f"{name(v)}: {getattr(v, 'type', '?')}"

    def block(f: Function, indent: str) -> None:
        for i, eqn in enumerate(_items(f.eqns)):
            anchors[("eqn", id(f), i)] = len(lines)
            lines.append(indent + _lenient_eqn(eqn, name))
            body = getattr(eqn, "body", None)
            if isinstance(body, Function):
                anchors[("params", id(body))] = len(lines) - 1
                lines[-1] += f" body({', '.join(typed(p) for p in _items(body.params))}) {{"
                block(body, indent + "  ")
                lines.append(indent + "}")
        anchors[("return", id(f))] = len(lines)
        lines.append(indent + "return " + ", ".join(name(v) for v in _items(f.outputs)))

    anchors[("params", id(fn))] = 0
    results = ", ".join(str(getattr(v, "type", "?")) for v in _items(fn.outputs))
    lines.append(f"func @{fn.name}({', '.join(typed(p) for p in _items(fn.params))}) -> "
                 f"({results}) {{")
    block(fn, "  ")
    lines.append("}")


def _lenient_eqn(eqn, name) -> str:
    if not isinstance(eqn, Eqn):
        return f"<not an Eqn: {eqn!r:.60}>"
    outputs, inputs = _items(eqn.outputs), _items(eqn.inputs)
    text = f"{', '.join(name(v) for v in outputs)} = {eqn.op}"
    if inputs:
        text += " " + ", ".join(name(v) for v in inputs)
    if isinstance(eqn.attrs, dict) and eqn.attrs:
        text += " {" + ", ".join(f"{k}={_lenient_attr(v)}" for k, v in eqn.attrs.items()) + "}"
    text += " : " + ", ".join(str(getattr(v, "type", "?")) for v in outputs)
    return text + (f"  # {eqn.loc}" if eqn.loc else "")


def _lenient_attr(value) -> str:
    try:
        return format_attr(value)
    except Exception:  # noqa: BLE001 - an unprintable attribute shows as its repr
        return repr(value)
