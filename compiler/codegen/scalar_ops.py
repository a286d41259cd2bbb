"""Scalar emitters of the elementwise ops: ``(builder, eqn, operand values) -> value``.

``ELEMENTWISE_EMITTERS[op]`` computes one output element from one element of
each operand (register values: bool is ``i1``). Each follows the op's numpy
``ref`` in ir/ops/elementwise.py:

- Integer arithmetic wraps (no ``nsw``/``nuw``), as numpy's fixed-width ints do.
- Float arithmetic carries no fast-math flags: results are IEEE-exact, so the
  native code is bit-for-bit equal to numpy for add/sub/mul/div/sqrt/floor...
- ``maximum``/``minimum`` use ``llvm.maximum``/``llvm.minimum``: nan wins, and
  -0 < +0 (numpy's own choice between equal zeros varies by code path).
- Transcendentals (exp, log, expm1, log1p, tanh, logistic, sin, cos, pow) are
  branch-free vectorisable IR from vmath.py (error bounds there); the dtypes it
  does not cover (f64 sin/cos/pow) call libm through ``LIBM_EMITTERS``.
"""

from __future__ import annotations

from typing import Callable

import llvmlite.ir as ll

from ir.core import Eqn
from ir.dtypes import DType
from compiler import flags
from compiler.codegen import vmath
from compiler.codegen.intrinsics import call_intrinsic, call_libm
from compiler.codegen.llvm_types import I1, constant, value_type

__all__ = ["ELEMENTWISE_EMITTERS", "LIBM_EMITTERS", "ScalarEmitter", "convert"]

ScalarEmitter = Callable[[ll.IRBuilder, Eqn, list], ll.Value]

ELEMENTWISE_EMITTERS: dict[str, ScalarEmitter] = {}


def _emitter(name: str):
    def register(fn: ScalarEmitter) -> ScalarEmitter:
        ELEMENTWISE_EMITTERS[name] = fn
        return fn

    return register


def _dtype(eqn: Eqn) -> DType:
    return eqn.inputs[0].dtype


def _const(eqn_or_dtype, value) -> ll.Constant:
    dtype = eqn_or_dtype if isinstance(eqn_or_dtype, DType) else _dtype(eqn_or_dtype)
    return constant(dtype, value)


# -- unary -------------------------------------------------------------------

@_emitter("stop_gradient")
def _stop_gradient(b, eqn, xs):
    return xs[0]


@_emitter("neg")
def _neg(b, eqn, xs):
    (x,) = xs
    return b.fneg(x) if _dtype(eqn).is_float else b.sub(_const(eqn, 0), x)


@_emitter("abs")
def _abs(b, eqn, xs):
    (x,) = xs
    if _dtype(eqn).is_float:
        return call_intrinsic(b, "llvm.fabs", [x])
    # INT_MIN stays INT_MIN (wraps, like numpy): the poison flag must be false.
    return call_intrinsic(b, "llvm.abs", [x], extra_args=[ll.Constant(I1, 0)])


@_emitter("sign")
def _sign(b, eqn, xs):
    (x,) = xs
    zero, one, minus_one = _const(eqn, 0), _const(eqn, 1), _const(eqn, -1)
    if _dtype(eqn).is_float:
        # nan stays nan and both zeros give +0 (numpy: x > 0 ? 1 : x < 0 ? -1 : x == 0 ? 0 : x).
        rest = b.select(b.fcmp_ordered("==", x, zero), zero, x)
        rest = b.select(b.fcmp_ordered("<", x, zero), minus_one, rest)
        return b.select(b.fcmp_ordered(">", x, zero), one, rest)
    rest = b.select(b.icmp_signed("<", x, zero), minus_one, zero)
    return b.select(b.icmp_signed(">", x, zero), one, rest)


def _intrinsic_unary(name: str, intrinsic: str) -> None:
    ELEMENTWISE_EMITTERS[name] = lambda b, eqn, xs: call_intrinsic(b, intrinsic, xs)


_intrinsic_unary("sqrt", "llvm.sqrt")
_intrinsic_unary("floor", "llvm.floor")


@_emitter("rsqrt")
def _rsqrt(b, eqn, xs):
    # Two correctly rounded steps, as numpy's 1 / sqrt(x): no approximation.
    return b.fdiv(_const(eqn, 1), call_intrinsic(b, "llvm.sqrt", xs))


# -- transcendentals ---------------------------------------------------------------

# The scalar libm versions: one call per element (LLVM scalarises ``llvm.exp``
# & co. into libm calls), so loops over them do not vectorise. They serve the
# dtypes vmath.py does not cover, and every dtype under XLAC_SCALAR_LIBM=1 (the
# benchmarks' baseline; the flag is part of compile-cache keys).
LIBM_EMITTERS: dict[str, ScalarEmitter] = {
    "exp": lambda b, eqn, xs: call_intrinsic(b, "llvm.exp", xs),
    "log": lambda b, eqn, xs: call_intrinsic(b, "llvm.log", xs),
    "tanh": lambda b, eqn, xs: call_intrinsic(b, "llvm.tanh", xs),
    "sin": lambda b, eqn, xs: call_intrinsic(b, "llvm.sin", xs),
    "cos": lambda b, eqn, xs: call_intrinsic(b, "llvm.cos", xs),
    "pow": lambda b, eqn, xs: call_intrinsic(b, "llvm.pow", xs),
    "log1p": lambda b, eqn, xs: call_libm(b, "log1p", xs),
    "expm1": lambda b, eqn, xs: call_libm(b, "expm1", xs),
}


def _transcendental(name: str) -> ScalarEmitter:
    libm = LIBM_EMITTERS[name]

    def emit(b, eqn, xs):
        if flags.get("scalar_libm") == "1" or not vmath.has_vector_version(name, xs[0].type):
            return libm(b, eqn, xs)
        return vmath.emit(b, name, xs)

    return emit


def _libm_logistic(b, eqn, xs):
    # The ref's two branches, stable in both tails: e = exp(-|x|) never overflows.
    (x,) = xs
    one, zero = _const(eqn, 1), _const(eqn, 0)
    e = call_intrinsic(b, "llvm.exp", [b.fneg(call_intrinsic(b, "llvm.fabs", [x]))])
    denominator = b.fadd(one, e)
    positive = b.fdiv(one, denominator)
    negative = b.fdiv(e, denominator)
    return b.select(b.fcmp_ordered(">=", x, zero), positive, negative)


LIBM_EMITTERS["logistic"] = _libm_logistic
for _name in LIBM_EMITTERS:
    ELEMENTWISE_EMITTERS[_name] = _transcendental(_name)


# -- binary ------------------------------------------------------------------

def _arith(name: str, float_op: str, int_op: str) -> None:
    def emit(b, eqn, xs):
        x, y = xs
        return getattr(b, float_op if _dtype(eqn).is_float else int_op)(x, y)

    ELEMENTWISE_EMITTERS[name] = emit


_arith("add", "fadd", "add")
_arith("sub", "fsub", "sub")
_arith("mul", "fmul", "mul")


@_emitter("div")
def _div(b, eqn, xs):
    return b.fdiv(*xs)  # the type rule admits floats only (no division by zero traps)


@_emitter("maximum")
def _maximum(b, eqn, xs):
    return call_intrinsic(b, "llvm.maximum" if _dtype(eqn).is_float else "llvm.smax", xs)


@_emitter("minimum")
def _minimum(b, eqn, xs):
    return call_intrinsic(b, "llvm.minimum" if _dtype(eqn).is_float else "llvm.smin", xs)


_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


@_emitter("compare")
def _compare(b, eqn, xs):
    x, y = xs
    op = _COMPARE[eqn.attrs["direction"]]
    dtype = _dtype(eqn)
    if dtype.is_float:
        # Ordered compares are false on nan; "ne" is unordered, so nan != anything.
        if op == "!=":
            return b.fcmp_unordered(op, x, y)
        return b.fcmp_ordered(op, x, y)
    if dtype is DType.bool:
        return b.icmp_unsigned(op, x, y)  # false < true
    return b.icmp_signed(op, x, y)


@_emitter("select")
def _select(b, eqn, xs):
    predicate, on_true, on_false = xs
    return b.select(predicate, on_true, on_false)


@_emitter("cast")
def _cast(b, eqn, xs):
    (x,) = xs
    return convert(b, x, _dtype(eqn), eqn.attrs["dtype"])


def convert(b: ll.IRBuilder, x: ll.Value, source: DType, target: DType) -> ll.Value:
    """``x`` of dtype ``source`` as ``target``, with the semantics of the ``cast`` op."""
    if source is target:
        return x
    to = value_type(target)
    if target is DType.bool:  # x != 0; nan is true
        if source.is_float:
            return b.fcmp_unordered("!=", x, constant(source, 0))
        return b.icmp_unsigned("!=", x, constant(source, 0))
    if source is DType.bool:
        return b.uitofp(x, to) if target.is_float else b.zext(x, to)
    if source.is_float and target.is_float:
        return b.fpext(x, to) if target is DType.f64 else b.fptrunc(x, to)
    if target.is_float:
        return b.sitofp(x, to)
    if source.is_int:  # int -> int wraps
        if to.width > x.type.width:
            return b.sext(x, to)
        return b.trunc(x, to)
    return _float_to_int(b, x, source, target)


def _float_to_int(b, x, source: DType, target: DType) -> ll.Value:
    # fptosi is poison for nan and out-of-range inputs; the cast op defines
    # them as 0. Truncate first, test the range on the truncated value
    # ([-2^(n-1), 2^(n-1)) is exact in both float types), and select: select
    # never propagates poison from the arm it does not pick.
    bits = value_type(target).width
    t = call_intrinsic(b, "llvm.trunc", [x])
    low = constant(source, -(2.0 ** (bits - 1)))
    high = constant(source, 2.0 ** (bits - 1))
    in_range = b.and_(b.fcmp_ordered(">=", t, low), b.fcmp_ordered("<", t, high))
    return b.select(in_range, b.fptosi(t, value_type(target)), constant(target, 0))
