"""Vector-Jacobian product rules, one per primitive, keyed by op name.

A rule has the signature ``rule(b, eqn, cotangent) -> list[Value | None]``: given
the cotangent of the equation's (single) output it emits, with the same
``Builder`` users have, the cotangent of each operand, or ``None`` for "no
contribution". Rules may be called for an equation even when only some operands
need a gradient; the pass driver drops the cotangents it does not need and
removes the equations that computed them.

NOTE: [What rules may assume and must guarantee]
- The driver only calls a rule when the output is floating point and has a
  cotangent, and only keeps cotangents of floating-point operands. Rules do not
  test dtypes (except ``cast``) and never accumulate fan-out or unbroadcast:
  both happen once, in ``compiler.autodiff.grad``.
- A returned cotangent has exactly its operand's type (the driver checks this).
- Rules emit registry primitives only, so gradient IR can be differentiated
  again (grad of grad), optimised and lowered like any other IR. Where a rule
  guards a singularity it uses the "double select" pattern: the unselected
  branch is itself computed from a safe operand, so neither its value nor its
  own derivative can leak a nan through the select.

NOTE: [Non-differentiable and zero-gradient ops]
``NONDIFFERENTIABLE`` lists the ops whose outputs carry no cotangent back to
their operands. The driver treats them as constants, exactly as JAX does, so
using one on a path from a differentiated parameter to the output is fine (its
contribution is zero):
- ``compare``, ``argmax``, ``argmin``: their outputs are bool / i64.
- ``constant``, ``iota``: no operands.
- ``floor``, ``sign``: piecewise constant; the derivative is 0 almost everywhere
  and we use 0 everywhere (JAX does the same; the jumps get no delta).
``cast`` has a rule: between float types the cotangent is cast back; a cast to
an integer or bool type ends the path (non-float values never carry
cotangents) and a cast from one starts no path (integer/bool values are never
differentiated). So ``cast(cast(x, i32), f32)`` has zero gradient w.r.t. ``x``.
"""

from __future__ import annotations

from typing import Callable

from ir import Builder, Eqn, Value

__all__ = ["RULES", "NONDIFFERENTIABLE", "VJPRule"]

VJPRule = Callable[[Builder, Eqn, Value], list]

NONDIFFERENTIABLE: frozenset[str] = frozenset(
    {"compare", "argmax", "argmin", "constant", "iota", "floor", "sign", "stop_gradient"}
)


# Small helpers shared by the rules: constants shaped like a value.
def _full(b: Builder, like: Value, value: float) -> Value:
    return b.constant(value, like.dtype, like.shape)


def _zeros(b: Builder, like: Value) -> Value:
    return _full(b, like, 0.0)


def _unreduce(b: Builder, g: Value, target: Value, axes) -> Value:
    """Broadcast ``g`` (the result of reducing ``target`` over ``axes``) back to ``target``."""
    if not axes:
        return g
    kept = [a for a in range(target.type.rank) if a not in axes]
    return b.broadcast(g, shape=target.shape, dims=kept)


# --- elementwise unary ---------------------------------------------------------------------


def _abs(b, eqn, g):
    """d|x| = sign(x): 0 at x == 0 (a subgradient; JAX picks 1 there)."""
    return [b.mul(g, b.sign(eqn.inputs[0]))]


def _log1p(b, eqn, g):
    (x,) = eqn.inputs
    return [b.div(g, b.add(x, _full(b, x, 1.0)))]


def _expm1(b, eqn, g):
    y = eqn.output
    return [b.mul(g, b.add(y, _full(b, y, 1.0)))]


def _sqrt(b, eqn, g):
    """d sqrt(x) = 0.5 / sqrt(x), computed from the output."""
    return [b.div(b.mul(g, _full(b, g, 0.5)), eqn.output)]


def _rsqrt(b, eqn, g):
    """d x^(-1/2) = -0.5 x^(-3/2) = -0.5 y^3, from the output y."""
    y = eqn.output
    return [b.mul(g, b.mul(_full(b, y, -0.5), b.mul(y, b.mul(y, y))))]


def _tanh(b, eqn, g):
    """d tanh(x) = 1 - y^2, from the output y."""
    y = eqn.output
    return [b.mul(g, b.sub(_full(b, y, 1.0), b.mul(y, y)))]


def _logistic(b, eqn, g):
    """d logistic(x) = y (1 - y), from the output y."""
    y = eqn.output
    return [b.mul(g, b.mul(y, b.sub(_full(b, y, 1.0), y)))]


# --- elementwise binary --------------------------------------------------------------------


def _div(b, eqn, g):
    """z = x / y: dx = g / y, dy = -g x / y^2 = -(g / y) z."""
    gx = b.div(g, eqn.inputs[1])
    return [gx, b.neg(b.mul(gx, eqn.output))]


def _pow(b, eqn, g):
    """z = x ** y.

    dx = g y x^(y-1), defined as 0 where x == y == 0 (x ** 0 is constant in x, and
    y x^(y-1) would be 0 * inf there). dy = g z log(x) for x > 0 and 0 for
    x <= 0: at x == 0 this matches JAX (the limit of z log x is 0 for y > 0); for
    x < 0, where x ** y is only real for integer y, JAX returns nan and we return
    0. Both guards put a safe operand in the unselected branch (y -> 1, x -> 1)
    so that neither the nan of that branch nor the nan of its derivative reaches
    the gradient or the gradient of the gradient. The guard of dx only covers
    x == y == 0 (not all of y == 0) so that d(dx)/dy stays right at y == 0.
    """
    x, y = eqn.inputs
    zero, one = _zeros(b, x), _full(b, x, 1.0)
    x_is_zero = b.compare(x, zero, "eq")
    both_zero = b.select(x_is_zero, b.compare(y, zero, "eq"), x_is_zero)  # x == 0 and y == 0
    safe_y = b.select(both_zero, one, y)
    dzdx = b.mul(safe_y, b.pow(x, b.sub(safe_y, one)))
    gx = b.mul(g, b.select(both_zero, zero, dzdx))
    x_positive = b.compare(x, zero, "gt")
    safe_log_x = b.log(b.select(x_positive, x, one))
    gy = b.mul(g, b.select(x_positive, b.mul(eqn.output, safe_log_x), zero))
    return [gx, gy]


def _share(b: Builder, x: Value, other: Value, out: Value) -> Value:
    """1 where x alone attains ``out``, 0.5 where x and ``other`` tie, 0 elsewhere (and at nan)."""
    one, zero = _full(b, x, 1.0), _zeros(b, x)
    half = _full(b, x, 0.5)
    x_wins = b.compare(x, out, "eq")
    tie = b.compare(other, out, "eq")
    return b.select(x_wins, b.select(tie, half, one), zero)


def _extremum(b, eqn, g):
    """maximum / minimum: the cotangent goes to the operand that is the result.

    Where x == y each operand gets half (as JAX does), so the two shares always
    add up to g; where either operand is nan, neither gets anything.
    """
    x, y = eqn.inputs
    out = eqn.output
    return [b.mul(g, _share(b, x, y, out)), b.mul(g, _share(b, y, x, out))]


# --- select, cast ----------------------------------------------------------------------------


def _select(b, eqn, g):
    pred = eqn.inputs[0]
    zero = _zeros(b, g)
    return [None, b.select(pred, g, zero), b.select(pred, zero, g)]


def _cast(b, eqn, g):
    """Between float types: cast the cotangent back; a non-float operand gets none."""
    (x,) = eqn.inputs
    return [b.cast(g, x.dtype) if x.dtype.is_float else None]


# --- reductions ----------------------------------------------------------------------------


def _reduce_sum(b, eqn, g):
    (x,) = eqn.inputs
    return [_unreduce(b, g, x, eqn.attrs["axes"])]


def _reduce_extremum(b, eqn, g):
    """reduce_max / reduce_min: the cotangent is split evenly between tied extrema.

    With k elements equal to the extremum each gets g / k (JAX's rule), so the
    shares add up to g. A nan extremum matches no element: the gradient is nan.
    """
    (x,) = eqn.inputs
    axes = eqn.attrs["axes"]
    hits = b.cast(b.compare(x, _unreduce(b, eqn.output, x, axes), "eq"), x.dtype)
    count = _unreduce(b, b.reduce_sum(hits, axes=axes), x, axes)
    return [b.div(b.mul(_unreduce(b, g, x, axes), hits), count)]


# --- shape ops ---------------------------------------------------------------------------


def _broadcast(b, eqn, g):
    """Sum over the new axes and the stretched size-1 axes, then restore the size-1 axes."""
    (x,) = eqn.inputs
    dims, shape = eqn.attrs["dims"], eqn.attrs["shape"]
    stretched = {d for d, n in zip(dims, x.shape, strict=True) if n == 1 and shape[d] != 1}
    axes = [a for a in range(len(shape)) if a not in dims or a in stretched]
    summed = b.reduce_sum(g, axes=axes) if axes else g
    return [b.reshape(summed, shape=x.shape) if summed.shape != x.shape else summed]


def _transpose(b, eqn, g):
    perm = eqn.attrs["perm"]
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return [b.transpose(g, perm=inverse)]


def _slice(b, eqn, g):
    """Scatter the cotangent back with a pad: steps become interior padding."""
    (x,) = eqn.inputs
    start, step = eqn.attrs["start"], eqn.attrs["step"]
    high = []
    for lo, st, n, d in zip(start, step, g.shape, x.shape, strict=True):
        covered = (n - 1) * st + 1 if n else 0  # last kept index + 1, relative to lo
        high.append(d - lo - covered)
    return [b.pad(g, low=start, high=high, interior=[st - 1 for st in step])]


def _pad(b, eqn, g):
    """Keep the cotangent of the operand's elements: a strided slice of the padded cotangent."""
    (x,) = eqn.inputs
    low, interior = eqn.attrs["low"], eqn.attrs["interior"]
    stop = [
        lo + (d - 1) * (it + 1) + 1 if d else lo
        for lo, it, d in zip(low, interior, x.shape, strict=True)
    ]
    return [b.slice(g, start=low, stop=stop, step=[it + 1 for it in interior])]


def _concat(b, eqn, g):
    axis = eqn.attrs["axis"]
    result, offset = [], 0
    for x in eqn.inputs:
        start = [offset if a == axis else 0 for a in range(x.type.rank)]
        stop = [offset + n if a == axis else n for a, n in enumerate(x.shape)]
        result.append(b.slice(g, start=start, stop=stop, step=[1] * x.type.rank))
        offset += x.shape[axis]
    return result


# --- linear algebra ------------------------------------------------------------------------


def _dot_t(b, x, y, tx: bool, ty: bool):
    """op(x) @ op(y), op transposing the last two axes where asked (dot attributes)."""
    attrs = {name: True for name, flag in (("transpose_lhs", tx), ("transpose_rhs", ty)) if flag}
    return b.dot(x, y, **attrs)


def _dot(b, eqn, g):
    """C = op(A) @ op(B) (batched; op = transpose_lhs/_rhs): dop(A) = G @ op(B)^T and
    dop(B) = op(A)^T @ G, written as dots with transposed operands, never transposes."""
    lhs, rhs = eqn.inputs
    ta = bool(eqn.attrs.get("transpose_lhs", False))
    tb = bool(eqn.attrs.get("transpose_rhs", False))
    # dA = (G @ op(B)^T)^T = op(B) @ G^T when A is stored transposed.
    d_lhs = _dot_t(b, rhs, g, tb, True) if ta else _dot_t(b, g, rhs, False, not tb)
    # dB = (op(A)^T @ G)^T = G^T @ op(A) when B is stored transposed.
    d_rhs = _dot_t(b, g, lhs, True, ta) if tb else _dot_t(b, lhs, g, not ta, False)
    return [d_lhs, d_rhs]


# NOTE: [The rule table]
# One entry per differentiable primitive; the completeness test checks that every
# registry op is here or in NONDIFFERENTIABLE. The one-line lambdas read as maths:
# x = eqn.inputs[0], y = eqn.output, g = the output's cotangent.
def _x(eqn: Eqn) -> Value:
    return eqn.inputs[0]


RULES: dict[str, VJPRule] = {
    "neg": lambda b, eqn, g: [b.neg(g)],
    "abs": _abs,
    "exp": lambda b, eqn, g: [b.mul(g, eqn.output)],
    "log": lambda b, eqn, g: [b.div(g, _x(eqn))],
    "log1p": _log1p,
    "expm1": _expm1,
    "sqrt": _sqrt,
    "rsqrt": _rsqrt,
    "tanh": _tanh,
    "logistic": _logistic,
    "sin": lambda b, eqn, g: [b.mul(g, b.cos(_x(eqn)))],
    "cos": lambda b, eqn, g: [b.neg(b.mul(g, b.sin(_x(eqn))))],
    "add": lambda b, eqn, g: [g, g],
    "sub": lambda b, eqn, g: [g, b.neg(g)],
    "mul": lambda b, eqn, g: [b.mul(g, eqn.inputs[1]), b.mul(eqn.inputs[0], g)],
    "div": _div,
    "pow": _pow,
    "maximum": _extremum,
    "minimum": _extremum,
    "select": _select,
    "cast": _cast,
    "reduce_sum": _reduce_sum,
    "reduce_max": _reduce_extremum,
    "reduce_min": _reduce_extremum,
    "broadcast": _broadcast,
    "reshape": lambda b, eqn, g: [b.reshape(g, shape=_x(eqn).shape)],
    "transpose": _transpose,
    "reverse": lambda b, eqn, g: [b.reverse(g, axes=eqn.attrs["axes"])],
    "slice": _slice,
    "pad": _pad,
    "concat": _concat,
    "dot": _dot,
}
