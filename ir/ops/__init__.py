"""The op registry: one ``OpDef`` per primitive, holding what the op *is*.

NOTE: [Where an op's rules live]
An ``OpDef`` holds the name, arity, attribute schema, type rule and numpy
reference semantics. The other layers key their rules by the same name: the
vector-Jacobian product in ``compiler/autodiff/rules.py`` and the LLVM emitter
in ``compiler/codegen``. ``tests/test_op_completeness.py`` proves every op has
all of them. Adding an op: define it in the family module below, add its VJP
rule and emitter, and add a row to the op test table.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ir.dtypes import DType, TensorType, dtype_of
from ir.errors import IRError

__all__ = ["OpDef", "defop", "get_op", "is_elementwise", "all_ops", "check_attrs", "infer_types",
           "ATTR_KINDS"]

# Attribute kinds: how each is validated and normalised.
ATTR_KINDS = ("int", "ints", "float", "bool", "dtype", "str", "literal")


@dataclass(frozen=True)
class OpDef:
    """Everything the IR layer knows about one primitive.

    ``arity`` is the operand count, or None for variadic ops (concat).
    ``attrs`` maps attribute names to kinds (see ``ATTR_KINDS``); names listed in
    ``optional_attrs`` may be omitted. ``infer(input_types, attrs)`` returns the
    result types or raises ``ShapeError``/``DTypeError``; ``ref(arrays, attrs)``
    evaluates the op with numpy (the living spec of its semantics).
    ``kind`` groups ops for passes and codegen: "elementwise", "reduce",
    "shape", "linalg" or "source" (no operands).
    """

    name: str
    arity: int | None
    infer: Callable[[Sequence[TensorType], dict], list[TensorType]]
    ref: Callable[[Sequence[np.ndarray], dict], Any]
    kind: str
    attrs: dict[str, str] = field(default_factory=dict)
    optional_attrs: frozenset[str] = frozenset()
    doc: str = ""


_REGISTRY: dict[str, OpDef] = {}


def defop(name: str, *, arity, infer, ref, kind, attrs=None, optional_attrs=(), doc="") -> OpDef:
    """Register a primitive; defining one name twice is an error."""
    if name in _REGISTRY:
        raise IRError(f"op {name!r} is defined twice")
    op = OpDef(name, arity, infer, ref, kind, dict(attrs or {}), frozenset(optional_attrs), doc)
    _REGISTRY[name] = op
    return op


def get_op(name: str) -> OpDef:
    """The OpDef of ``name``; an unknown name is an IRError listing close names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise IRError(f"unknown op {name!r}{_suggestion(name, len(_REGISTRY))}") from None


def is_elementwise(name: str) -> bool:
    """Whether ``name`` is a registered elementwise primitive (False for region
    ops such as ``fusion``, which are not registered)."""
    op = _REGISTRY.get(name)
    return op is not None and op.kind == "elementwise"


@functools.lru_cache(maxsize=64)
def _suggestion(name: str, registered: int) -> str:
    # Callers probe names that are not primitives ("fusion") on every
    # equation: difflib once per name (and registry size), not per probe.
    import difflib

    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def all_ops() -> dict[str, OpDef]:
    """All registered primitives by name."""
    return dict(_REGISTRY)


def _normalise(op: str, name: str, kind: str, value):
    def bad(expected):
        return IRError(f"{op}: attribute {name}={value!r} must be {expected}")

    if kind == "int":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise bad("an integer")
        return int(value)
    if kind == "ints":
        if not isinstance(value, (list, tuple)):
            raise bad("a list of integers")
        return tuple(_normalise(op, name, "int", v) for v in value)
    if kind == "float":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise bad("a number")
        return float(value)
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise bad("true or false")
        return bool(value)
    if kind == "dtype":
        try:
            return dtype_of(value)
        except IRError:
            raise bad("a dtype (f32, f64, i32, i64, bool)") from None
    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind == "literal":  # a scalar or a flat list of scalars (constant values)
        if isinstance(value, np.ndarray):
            value = value.ravel().tolist()
        if isinstance(value, (list, tuple)):
            return tuple(_normalise(op, name, "literal", v) for v in value)
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value)
        raise bad("a number, a boolean or a list of them")
    raise IRError(f"{op}: unknown attribute kind {kind!r} for {name}")


def check_attrs(opdef: OpDef, attrs: dict) -> dict:
    """Validate ``attrs`` against the op's schema and return them normalised."""
    unknown = set(attrs) - set(opdef.attrs)
    if unknown:
        expected = ", ".join(sorted(opdef.attrs)) or "none"
        raise IRError(
            f"{opdef.name}: unknown attribute(s) {', '.join(sorted(unknown))}; "
            f"expected: {expected}"
        )
    missing = set(opdef.attrs) - set(attrs) - opdef.optional_attrs
    if missing:
        raise IRError(f"{opdef.name}: missing attribute(s) {', '.join(sorted(missing))}")
    return {k: _normalise(opdef.name, k, opdef.attrs[k], v) for k, v in sorted(attrs.items())}


def infer_types(op: str, input_types: Sequence[TensorType], attrs: dict) -> tuple[dict, list[TensorType]]:
    """Check an application of ``op`` and return (normalised attrs, result types).

    Raises an IRError subclass naming the op and what does not fit.
    """
    opdef = get_op(op)
    if opdef.arity is not None and len(input_types) != opdef.arity:
        raise IRError(f"{op}: expected {opdef.arity} operand(s), got {len(input_types)}")
    attrs = check_attrs(opdef, attrs)
    return attrs, opdef.infer(list(input_types), attrs)


# Importing the families registers their ops.
from ir.ops import elementwise, reduce, shape, linalg, source  # noqa: E402,F401
