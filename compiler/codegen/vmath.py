"""Branch-free transcendentals written in LLVM IR, so that loops over them vectorise.

NOTE: [Why not libm]
A call to ``expf`` per element (or to ``llvm.exp``, which the backend
scalarises into ``expf`` calls) keeps the loop scalar: ~2.4 ns per element for
exp and ~15 for tanh (notes/llvmlite.md §4). Each function here is a straight
line of IR: range reduction, a minimax polynomial evaluated with ``llvm.fma``,
reconstruction by integer bit manipulation, and ``select`` for special values.
Nothing branches, calls or reads memory, so LLVM's loop vectoriser turns the
kernel loop into zmm/ymm code. No fast-math flags are used: every operation is
IEEE, and the error bounds below do not depend on what LLVM chooses to do.

Accuracy: max distance from the correctly rounded result, in ulps (in
parentheses: max error against the exact value, in ulps of the result). f32
unary functions: over all 2^32 inputs (benchmarks/vmath/check_exhaustive.py); f64
and f32 pow: dense sweeps of tests/compiler/test_vmath.py (long double
reference), which asserts these bounds:

========== ===================== ==========================================
function   f32                   f64
========== ===================== ==========================================
exp        1 (0.91)              1 (0.74)
log        1 (0.84)              1 (0.80)
expm1      1 (1.08)              1 (1.07)
log1p      1 (0.84)              1 (0.78)
tanh       3 (2.57)              1 (1.29)
logistic   2 (2.40)              1 (1.32)
sin, cos   1 (0.50), any x       libm (``llvm.sin``/``llvm.cos``, scalar)
pow        0 (0.50)              libm (``llvm.pow``, scalar)
========== ===================== ==========================================

f32 exp, tanh and logistic are cheaper forms (_exp_f32, _tanh_f32, one
division in logistic): 15 and 21 vector operations for exp and tanh in the
AVX-512 loop, against about 25 and 36 for the forms f64 keeps, counted in f32.
tanh and logistic trade their 1 ulp for that (tanh 3 ulp: 3.9% of results 1 ulp
or more off, 0.03% 2, 18 inputs 3; logistic 2 ulp: 2.9% 1 or more), within the
4 ulp the fusion issue allows.

f32 sin, cos and pow evaluate in double (f32 sin/cos after an exact
Payne-Hanek reduction), so they are correctly rounded but for double rounding.
f64 sin/cos would need a multi-word reduction and f64 pow a double-double log
to keep this accuracy; they stay on libm.

Special values follow C99 / numpy: exp overflows to inf and underflows through
the denormals to 0 at the correctly rounded thresholds; log(0) = -inf,
log(x < 0) = nan; log1p(-1) = -inf; expm1 and log1p keep -0 and are exact for
tiny arguments; tanh and logistic saturate at +-1 and 0/1; sin/cos of +-inf
are nan; pow follows C99 Annex F (pow(x, 0) = pow(1, y) = 1 even for nan,
negative bases with integer exponents, signed zeros and infinities).

The polynomial coefficients come from benchmarks/vmath/fit_coefficients.py (Remez exchange on
the relative error of the whole function, rounded to the target precision).

>>> import llvmlite.ir as ll
>>> module = ll.Module()
>>> fn = ll.Function(module, ll.FunctionType(ll.FloatType(), [ll.FloatType()]), "f")
>>> b = ll.IRBuilder(fn.append_basic_block())
>>> _ = b.ret(emit(b, "exp", [fn.args[0]]))
>>> "call" in str(module) and "@expf" not in str(module)  # intrinsics only
True
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import llvmlite.ir as ll

from compiler.codegen.intrinsics import call_intrinsic
from compiler.codegen.llvm_types import F32, F64, I32, I64
from runtime.target import host_target

__all__ = ["exp", "log", "expm1", "log1p", "tanh", "logistic", "sin", "cos", "pow",
           "VECTOR_FUNCTIONS", "has_vector_version", "emit"]


# -- number formats ------------------------------------------------------------

@dataclass(frozen=True)
class _Format:
    """What the algorithms need to know about a float type."""

    float_type: ll.Type
    int_type: ll.Type          # an integer of the same width, for bit manipulation
    mantissa_bits: int         # stored fraction bits (23 / 52)
    bias: int                  # exponent bias (127 / 1023)
    exp_lo: float              # exp(x) rounds to +0 for every x <= exp_lo
    exp_hi: float              # exp(x) overflows to inf for every x >= exp_hi
    expm1_lo: float            # expm1(x) rounds to -1 for every x <= expm1_lo
    tanh_hi: float             # tanh(x) rounds to 1 for every x >= tanh_hi

    @property
    def width(self) -> int:
        return self.int_type.width

    def bits_of(self, value: float) -> int:
        """The bit pattern of ``value`` rounded to this format."""
        if self.width == 32:
            return struct.unpack("<I", struct.pack("<f", value))[0]
        return struct.unpack("<Q", struct.pack("<d", value))[0]


_F32 = _Format(F32, I32, 23, 127, exp_lo=-104.0, exp_hi=89.0, expm1_lo=-20.0, tanh_hi=10.0)
_F64 = _Format(F64, I64, 52, 1023, exp_lo=-746.0, exp_hi=710.0, expm1_lo=-40.0, tanh_hi=20.0)
_FORMATS = {str(F32): _F32, str(F64): _F64}


# -- polynomial coefficients (benchmarks/vmath/fit_coefficients.py) --------------------------------

# e^r = 1 + r + r^2 q(r), |r| <= ln2/2: rel err 2^-28.3 (f32), 2^-57.9 (f64)
_EXP_Q = {
    32: (4.9999994e-01, 1.666652e-01, 4.16684e-02, 8.368856e-03, 1.3814309e-03),
    64: (0.5000000000000011, 0.16666666666666408, 0.04166666666652802, 0.008333333333497029,
         0.0013888888944274208, 0.0001984126950257506, 2.4801492359628222e-05,
         2.7557588514126222e-06, 2.763053454120774e-07, 2.4999846682473404e-08),
}
# e^r - 1 = r + r^2 q(r), |r| <= ln2/2: rel err 2^-26.2 (f32), 2^-61.7 (f64)
_EXPM1_Q = {
    32: (4.9999997e-01, 1.6666542e-01, 4.1667204e-02, 8.366652e-03, 1.3882497e-03),
    64: (0.5, 0.16666666666666677, 0.041666666666666505, 0.008333333333321506,
         0.0013888888888963539, 0.00019841269886498322, 2.480158717100453e-05,
         2.7557243780814548e-06, 2.755740330097561e-07, 2.5109203958361074e-08,
         2.087532531930578e-09),
}
# log1p(f) = 2s + s R(s^2), s = f/(2+f), R(z) = z (c1 + c2 z + ...): rel err 2^-30.2 / 2^-59.5
_LOG_R = {
    32: (6.6666776e-01, 3.9977568e-01, 2.987107e-01),
    64: (0.6666666666666734, 0.3999999999941602, 0.2857142874210216, 0.22222198601146237,
         0.18183562942542703, 0.15314084196441077, 0.14795630154264144),
}
# f64 tanh(x) = x + x^3 P(x^2), |x| <= 0.625: rel err 2^-61.2 (f32 tanh: _tanh_f32)
_TANH_P = {
    64: (-0.33333333333333315, 0.13333333333329742, -0.05396825396605894, 0.021869488468716065,
         -0.008863234312585695, 0.0035921139999236422, -0.001455725948283821,
         0.0005894517996439876, -0.00023701173170268997, 9.155841400057165e-05,
         -3.0187222348676313e-05, 6.042468986162678e-06),
}
_TANH_SMALL = 0.625  # f64: below, the odd polynomial; above, 1 - 2 / (e^2|x| + 1)
_TANH_CLAMP32 = 9.1  # f32 tanh rounds to 1 from 9.02 on

# f32 sin/cos evaluate in double on |r| <= pi/4: rel err 2^-37.5 / 2^-42.9
_SIN_S = (-0.16666666640786662, 0.008333329303631664, -0.00019839311877899664,
          2.718117876426997e-06)
_COS_C = (0.04166666661947295, -0.001388888349850062, 2.4799459740524192e-05,
          -2.7205720066322894e-07)

# Bits of 2/pi after 26 zero bits (bit 0 = most significant bit of word 0): the
# Payne-Hanek window of sin/cos (_reduce_pio2). Checked against mpmath in the tests.
_TWO_OVER_PI_WORDS = (0x00000028, 0xBE60DB93, 0x91054A7F, 0x09D5F47D,
                      0x4D377036, 0xD8A5664F, 0x10E4107F, 0x9458EAF7)
_TWO_OVER_PI_PAD = 26


# -- emission helpers ------------------------------------------------------------

class _Emitter:
    """An IRBuilder bound to one float format, with the few operations the
    algorithms use (all of them vectorisable)."""

    def __init__(self, b: ll.IRBuilder, type_: ll.Type):
        self.b = b
        self.fmt = _FORMATS[str(type_)]
        self.t = self.fmt.float_type
        self.it = self.fmt.int_type

    # constants
    def c(self, value: float) -> ll.Constant:
        return ll.Constant(self.t, value)

    def i(self, value: int) -> ll.Constant:
        bits = self.fmt.width
        return ll.Constant(self.it, int(value) % (1 << bits))  # two's complement

    # float arithmetic (IEEE, no fast-math flags)
    def add(self, x, y): return self.b.fadd(x, y)
    def sub(self, x, y): return self.b.fsub(x, y)
    def mul(self, x, y): return self.b.fmul(x, y)
    def div(self, x, y): return self.b.fdiv(x, y)
    def neg(self, x): return self.b.fneg(x)
    def fma(self, x, y, z): return call_intrinsic(self.b, "llvm.fma", [x, y, z])
    def rint(self, x): return call_intrinsic(self.b, "llvm.rint", [x])
    def abs(self, x): return call_intrinsic(self.b, "llvm.fabs", [x])
    def copysign(self, x, sign): return call_intrinsic(self.b, "llvm.copysign", [x, sign])
    def min(self, x, y): return call_intrinsic(self.b, "llvm.minnum", [x, y])  # nan -> other

    def max_keep_nan(self, x, bound: float):
        """max(x, bound), nan stays nan: one vmaxps (its unordered case returns x)."""
        c = self.c(bound)
        return self.b.select(self.lt(x, c), c, x)

    def min_keep_nan(self, x, bound: float):
        c = self.c(bound)
        return self.b.select(self.b.fcmp_ordered(">", x, c), c, x)

    def clamp(self, x, lo: float, hi: float):
        """``x`` limited to [lo, hi]; nan stays nan."""
        return self.min_keep_nan(self.max_keep_nan(x, lo), hi)

    def horner(self, t, coefficients) -> ll.Value:
        """c0 + c1 t + c2 t^2 + ..., one fma per coefficient."""
        acc = self.c(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            acc = self.fma(acc, t, self.c(c))
        return acc

    # comparisons and selection
    def lt(self, x, y): return self.b.fcmp_ordered("<", x, y)
    def ge(self, x, y): return self.b.fcmp_ordered(">=", x, y)
    def eq(self, x, y): return self.b.fcmp_ordered("==", x, y)
    def select(self, cond, x, y): return self.b.select(cond, x, y)

    # bits
    def bits(self, x): return self.b.bitcast(x, self.it)
    def from_bits(self, n): return self.b.bitcast(n, self.t)
    def to_float(self, n): return self.b.sitofp(n, self.t)

    def ldexp(self, p, n):
        """p * 2**n, rounded once (denormal results too; overflow gives inf)."""
        name = f"llvm.ldexp.{'f32' if self.fmt.width == 32 else 'f64'}.i{self.fmt.width}"
        fn = self.b.module.globals.get(name)
        if fn is None:
            fn = ll.Function(self.b.module, ll.FunctionType(self.t, [self.t, self.it]), name)
        return self.b.call(fn, [p, n])

    def pow2(self, n):
        """2**n as a float, for an integer ``n`` in the normal exponent range."""
        fmt = self.fmt
        biased = self.b.add(n, self.i(fmt.bias))
        return self.from_bits(self.b.shl(biased, self.i(fmt.mantissa_bits)))


def _ln2(m: _Emitter) -> tuple[ll.Constant, ll.Constant]:
    """ln 2 as hi + lo: hi rounded to the format, lo the rounded remainder."""
    if m.fmt.width == 32:
        hi = struct.unpack("<f", struct.pack("<f", math.log(2)))[0]
        return m.c(hi), m.c(math.log(2) - hi)  # the remainder is exact in double
    return m.c(math.log(2)), m.c(_LN2_LO_F64)


# ln 2 - double(ln 2), from the 60-digit value 0.69314718055994530941723212145817656807...
_LN2_LO_F64 = 2.3190468138462996e-17


# -- exp family ------------------------------------------------------------------

def _exp_reduce(m: _Emitter, x):
    """(k, r, r_lo) with x = k ln2 + r + r_lo, |r| <= ln2/2 (+ rounding), k an
    integer (int type) and r_lo the rounding error of r (|r_lo| <= ulp(r) / 2),
    for |x| < 2^(mantissa - 2). A nan x gives a nan r (and some k).

    k = round(x / ln2) by the shifter trick: adding 1.5 * 2^mantissa makes the
    fma round x log2(e) to an integer, which then sits in the low bits of the
    sum (no rint, no float-to-int conversion, which would be poison for nan).
    Cody-Waite with fma: k ln2_hi is exact inside the fma and x - k ln2_hi is
    exactly representable (both are multiples of ulp(ln2_hi) / 2 and |r| < 1/2),
    so the only rounding is that of the second, small correction, which r_lo
    recovers (r1 - r is exact: Sterbenz).
    """
    ln2_hi, ln2_lo = _ln2(m)
    shifter = 1.5 * 2.0 ** m.fmt.mantissa_bits
    shifted = m.fma(x, m.c(1 / math.log(2)), m.c(shifter))
    n = m.sub(shifted, m.c(shifter))
    k = m.b.sub(m.bits(shifted), m.i(m.fmt.bits_of(shifter)))
    r1 = m.fma(n, m.neg(ln2_hi), x)
    r = m.fma(n, m.neg(ln2_lo), r1)
    r_lo = m.fma(n, m.neg(ln2_lo), m.sub(r1, r))
    return k, r, r_lo


def _exp_poly(m: _Emitter, r, r_lo, *, exact_sum: bool = True):
    """e^(r + r_lo) for |r| <= ln2/2 as 1 + r + t, t = r^2 q(r) + r_lo (e^r_lo =
    1 + r_lo to within 2^-50).

    With ``exact_sum`` 1 + r is summed exactly (Fast2Sum: s + s_lo, as
    1 >= |r|), so the one rounding that matters is the last: within ~0.55 ulp
    of e^r. Without (two operations fewer, ~12% of exp's time), the rounding of
    r + t adds up to 0.35 ulp.
    """
    one = m.c(1.0)
    t = m.fma(m.mul(r, r), m.horner(r, _EXP_Q[m.fmt.width]), r_lo)
    if not exact_sum:
        return m.add(one, m.add(r, t))
    s = m.add(one, r)
    s_lo = m.add(m.sub(one, s), r)
    return m.add(s, m.add(s_lo, t))


def _scale(m: _Emitter, p, k):
    """p * 2**k for an integer ``k`` in [-(2 bias + mantissa), 2 bias + 2].

    With AVX-512 this is ``llvm.ldexp``, which the backend lowers to one
    vscalefps/pd (after converting k): a single rounding, so results in the
    denormal range are correctly rounded from p and overflow gives inf exactly
    when the true product does. Elsewhere (ldexp would become a libm call per
    lane) 2**k is applied as two factors 2**(k >> 1) and 2**(k - (k >> 1)),
    both normal: p * 2**(k >> 1) is exact and the second product rounds once,
    which gives the same results.
    """
    if _has_scalef():
        return m.ldexp(p, k)
    k1 = m.b.ashr(k, m.i(1))
    k2 = m.b.sub(k, k1)
    return m.mul(m.mul(p, m.pow2(k1)), m.pow2(k2))


def _has_scalef() -> bool:
    """Whether the host has AVX-512F (vscalefps): the generated code is for the host."""
    return "+avx512f" in host_target().features.split(",")


def _exp_finite(m: _Emitter, x, *, normal: bool = False, exact_sum: bool = True):
    """e^x for x in [exp_lo, exp_hi] or nan (nan gives nan).

    ``normal=True`` promises a normal result (no overflow, no denormal): one
    scaling multiply instead of two. ``exact_sum``: see _exp_poly.
    """
    k, r, r_lo = _exp_reduce(m, x)
    p = _exp_poly(m, r, r_lo, exact_sum=exact_sum)
    if normal:
        return m.mul(p, m.pow2(k))
    return _scale(m, p, k)


def exp(b: ll.IRBuilder, x: ll.Value) -> ll.Value:
    """e**x (f32 or f64); see the module docstring for accuracy and special values."""
    m = _Emitter(b, x.type)
    x = m.clamp(x, m.fmt.exp_lo, m.fmt.exp_hi)  # +-inf: 0 / inf
    if m.fmt.width == 64:
        return _exp_finite(m, x)
    return _exp_f32(m, x)


def _exp_f32(m: _Emitter, x):
    """f32 e^x for x in [exp_lo, exp_hi] or nan: e^r by plain Horner on
    1 + r + r^2 q(r) and no r_lo (the reduction's rounding, |r_lo| <= 2^-25 |r|,
    moves the result by at most 2^-26 of itself): 15 vector operations instead
    of about 25, still within 1 ulp (0.91 vs exact)."""
    k, r, _ = _exp_reduce(m, x)
    return _scale(m, m.horner(r, (1.0, 1.0, *_EXP_Q[32])), k)


def expm1(b: ll.IRBuilder, x: ll.Value) -> ll.Value:
    """e**x - 1, accurate near 0 (relative error), -0 stays -0."""
    m = _Emitter(b, x.type)
    fmt = m.fmt
    xc = m.clamp(x, fmt.expm1_lo, fmt.exp_hi)
    k, r, r_lo = _exp_reduce(m, xc)
    t = m.fma(m.mul(r, r), m.horner(r, _EXPM1_Q[fmt.width]), r_lo)  # e^r - 1 = r + t
    # e^x - 1 = (2^k - 1) + 2^k r + 2^k t. The first two are summed exactly
    # (Fast2Sum: |2^k - 1| >= |2^k r| for k != 0, and k = 0 adds to 0): the
    # result then has one significant rounding, even for k = +-1 where the
    # terms nearly cancel. 2^k - 1 is exact while it matters (k <= mantissa
    # + 1); 2^k overflows for k = bias + 1, so the sum is formed at half scale
    # there and doubled.
    big = m.b.icmp_signed(">", k, m.i(fmt.bias))
    scale = m.pow2(m.b.sub(k, m.b.zext(big, m.it)))
    a = m.sub(scale, m.select(big, m.c(0.5), m.c(1.0)))
    b_ = m.mul(scale, r)
    s = m.add(a, b_)
    s_lo = m.add(m.sub(a, s), b_)
    y = m.add(s, m.fma(scale, t, s_lo))
    y = m.mul(y, m.select(big, m.c(2.0), m.c(1.0)))
    return m.select(m.eq(x, m.c(0.0)), x, y)  # keeps the sign of zero (nan: r is nan)


# -- log family ------------------------------------------------------------------

def _log_split(m: _Emitter, x):
    """(e, f) with x = 2^e (1 + f), 1 + f in [sqrt(2)/2, sqrt(2)), for positive normal x.

    Subtracting the bits of sqrt(2)/2 makes the exponent field roll over at
    sqrt(2)/2 instead of 1, so |f| <= sqrt(2) - 1 keeps the series short.
    """
    fmt = m.fmt
    offset = m.i(fmt.bits_of(math.sqrt(0.5)))
    ix = m.b.sub(m.bits(x), offset)
    e = m.b.ashr(ix, m.i(fmt.mantissa_bits))
    mantissa = m.b.add(m.b.and_(ix, m.i((1 << fmt.mantissa_bits) - 1)), offset)
    f = m.sub(m.from_bits(mantissa), m.c(1.0))
    return e, f


def _log_combine(m: _Emitter, e, f, correction):
    """e ln2 + log1p(f) + correction, with the small terms summed first.

    log1p(f) = f - (f^2/2 - s (f^2/2 + R(s^2))) with s = f / (2 + f): f is exact,
    f^2/2 is an accurate correction, and the division's error only reaches the
    small term s * (...).
    """
    fmt = m.fmt
    ln2_hi, ln2_lo = _ln2(m)
    s = m.div(f, m.add(m.c(2.0), f))
    z = m.mul(s, s)
    big_r = m.mul(z, m.horner(z, _LOG_R[fmt.width]))
    hfsq = m.mul(m.mul(m.c(0.5), f), f)
    ef = m.to_float(e)
    small = m.fma(ef, ln2_lo, correction)
    tail = m.sub(f, m.sub(hfsq, m.fma(s, m.add(hfsq, big_r), small)))
    return m.fma(ef, ln2_hi, tail)


def log(b: ll.IRBuilder, x: ll.Value) -> ll.Value:
    """Natural logarithm; log(0) = -inf, log(x < 0) = nan, log(inf) = inf."""
    m = _Emitter(b, x.type)
    fmt = m.fmt
    zero = m.c(0.0)
    # Denormals: scale into the normal range first (exact), then undo in e.
    shift = fmt.mantissa_bits + 1
    denormal = m.lt(x, m.c(2.0 ** (1 - fmt.bias)))
    xs = m.select(denormal, m.mul(x, m.c(2.0 ** shift)), x)
    e, f = _log_split(m, xs)
    e = m.b.add(e, m.select(denormal, m.i(-shift), m.i(0)))
    y = _log_combine(m, e, f, zero)
    y = m.select(m.eq(x, m.c(math.inf)), x, y)
    y = m.select(m.eq(x, zero), m.c(-math.inf), y)
    return m.select(m.b.fcmp_unordered("<", x, zero), m.c(math.nan), y)  # x < 0 or nan


def log1p(b: ll.IRBuilder, x: ll.Value) -> ll.Value:
    """log(1 + x), accurate near 0; log1p(-1) = -inf, nan below -1, -0 stays -0."""
    m = _Emitter(b, x.type)
    one = m.c(1.0)
    u = m.add(one, x)
    e, f = _log_split(m, u)
    # log(1 + x) = log(u) + log(1 + c/u), c = (1 + x) - u the rounding error of u.
    # Both forms below are exact in their range (Sterbenz): x - (u - 1) while
    # u < 2 sqrt(2) (e <= 1), 1 - (u - x) above, where x >= 1.8.
    c = m.select(m.b.icmp_signed(">=", e, m.i(2)), m.sub(one, m.sub(u, x)), m.sub(x, m.sub(u, one)))
    y = _log_combine(m, e, f, m.div(c, u))
    y = m.select(m.eq(x, m.c(math.inf)), x, y)
    y = m.select(m.eq(x, m.c(0.0)), x, y)  # keeps the sign of zero
    y = m.select(m.eq(x, m.c(-1.0)), m.c(-math.inf), y)
    return m.select(m.b.fcmp_unordered("<", x, m.c(-1.0)), m.c(math.nan), y)  # x < -1 or nan


# -- hyperbolic ------------------------------------------------------------------

def tanh(b: ll.IRBuilder, x: ll.Value) -> ll.Value:
    """Hyperbolic tangent. f32: (e^2|x| - 1) / (e^2|x| + 1) for every x (_tanh_f32);
    f64: odd polynomial below 0.625, 1 - 2 / (e^2|x| + 1) above."""
    m = _Emitter(b, x.type)
    if m.fmt.width == 32:
        return _tanh_f32(m, x)
    fmt = m.fmt
    a = m.abs(x)
    z = m.mul(a, a)
    small = m.fma(m.mul(a, z), m.horner(z, _TANH_P[fmt.width]), a)
    capped = m.min(a, m.c(fmt.tanh_hi))
    # 2 / (e^2a + 1) damps e^2a's relative error to at most 0.35 times it.
    e2a = _exp_finite(m, m.add(capped, capped), normal=True, exact_sum=False)
    large = m.sub(m.c(1.0), m.div(m.c(2.0), m.add(e2a, m.c(1.0))))
    y = m.select(m.ge(a, m.c(_TANH_SMALL)), large, small)  # nan takes the polynomial: nan
    return m.copysign(y, x)  # odd; keeps -0


def _tanh_f32(m: _Emitter, x):
    """f32 tanh(a) = d / (d + 2), d = e^2a - 1 (a = |x|, then the sign of x): one
    branch-free formula for every x, 21 vector operations (the 1-ulp two-branch
    form of f64 costs 36 here).

    d is formed as 2^k (e^r - 1) + (2^k - 1) with e^r - 1 = r + r^2 q(r), one fma
    and no cancellation for any k, so it keeps its relative accuracy down to the
    denormals (where y = d / 2 = a exactly). The reduction r = 2a - k ln2_hi
    drops Cody-Waite's second step: its error, k |ln2 - ln2_hi| <= 5e-8 at
    k = 26, is damped by 2 / (d + 2) in y. Max 3 ulp (the roundings of d and
    d + 2 where y is just below a power of two; module docstring).

    Measured and rejected (W1 gelu, ms of CPU per 4M elements): a rational
    x P(x^2) / Q(x^2) (~17 operations; the roundings of P and Q in f32 reach 5
    ulp just below 1); the quotient as ``fdiv ninf arcp``, which LLVM turns
    into vrcp14ps + a Newton step (1.95 against vdivps's 1.82: the divider runs
    beside the FMA pipes, which the Newton step's three operations load, and
    the 12-bit vrcpps of the ymm/xmm remainder code is off by 1 ulp more).
    """
    b = m.b
    t = m.min_keep_nan(m.abs(x), _TANH_CLAMP32)  # +-inf -> +-1
    t2 = m.add(t, t)
    shifter = 1.5 * 2.0 ** m.fmt.mantissa_bits
    shifted = m.fma(t2, m.c(1 / math.log(2)), m.c(shifter))
    n = m.sub(shifted, m.c(shifter))
    k = b.sub(m.bits(shifted), m.i(m.fmt.bits_of(shifter)))
    r = m.fma(n, m.neg(_ln2(m)[0]), t2)
    em1 = m.fma(m.mul(r, r), m.horner(r, _EXPM1_Q[32]), r)
    scale = m.pow2(k)
    d = m.fma(scale, em1, m.sub(scale, m.c(1.0)))
    y = m.div(d, m.add(d, m.c(2.0)))
    return m.copysign(y, x)  # odd; keeps -0


def logistic(b: ll.IRBuilder, x: ll.Value) -> ll.Value:
    """1 / (1 + e^-x): 1/(1+e) for x >= 0, e/(1+e) below, e = e^-|x| <= 1 (no overflow).

    f32 divides once, by the rounded 1 + e, with exp's f32 form: 2 ulp (1 for
    x >= 0), 37% faster than f64's form in f32 (1.80 -> 1.15 ms per 4M, one
    thread), which keeps 1 ulp with the exact 1 + e = d + d_lo and a Newton step.
    """
    m = _Emitter(b, x.type)
    minus_a = m.neg(m.abs(x))
    one = m.c(1.0)
    if m.fmt.width == 32:
        e = _exp_f32(m, m.max_keep_nan(minus_a, m.fmt.exp_lo))  # no overflow: e <= 1
        return m.div(m.select(m.ge(x, m.c(0.0)), one, e), m.add(one, e))
    e = _exp_finite(m, m.max_keep_nan(minus_a, m.fmt.exp_lo))  # no overflow: e <= 1
    d = m.add(one, e)
    d_lo = m.sub(e, m.sub(d, one))  # 1 + e = d + d_lo exactly (Fast2Sum, e <= 1)
    # num / (d + d_lo) to ~0.5 ulp: one division, then one Newton step on the
    # exact remainder num - y0 (d + d_lo) (the first fma is exact).
    num = m.select(m.ge(x, m.c(0.0)), one, e)
    inverse = m.div(one, d)
    y0 = m.mul(num, inverse)
    remainder = m.fma(m.neg(y0), d_lo, m.fma(m.neg(y0), d, num))
    return m.fma(remainder, inverse, y0)


# -- trigonometric (f32, evaluated in double) --------------------------------------

def _reduce_pio2(b: ll.IRBuilder, a: ll.Value) -> tuple[ll.Value, ll.Value]:
    """(q, r) with a = (4k + q) pi/2 + r, |r| <= pi/4, q in 0..3 (i64), r a double.

    Payne-Hanek, exact for every finite float32 a >= pi/4: a = M 2^(E-150) with
    a 24-bit integer M, so a * 2/pi mod 4 only needs the 96 bits of 2/pi from
    weight 2^(151-E) down; M times that window is a 120-bit fixed-point number
    whose bits 94..95 are q and whose lower bits are the fraction. The window is
    picked with selects and funnel shifts (no table load, no gather), and the
    product is formed from three 32x32->64-bit multiplies.
    """
    bits = b.bitcast(a, I32)
    biased = b.lshr(bits, ll.Constant(I32, 23))
    mantissa = b.or_(b.and_(bits, ll.Constant(I32, 0x7FFFFF)), ll.Constant(I32, 0x800000))
    # First window bit: stream index E - 2 + pad; 0 for a in [0.5, 1) (biased 126).
    start = b.sub(biased, ll.Constant(I32, 152 - _TWO_OVER_PI_PAD))
    start = b.select(b.icmp_signed("<", start, ll.Constant(I32, 0)), ll.Constant(I32, 0), start)
    word = b.lshr(start, ll.Constant(I32, 5))     # 0..4 for finite a
    shift = b.and_(start, ll.Constant(I32, 31))
    is_word = [b.icmp_unsigned("==", word, ll.Constant(I32, k)) for k in range(1, 5)]

    def stream_word(j: int) -> ll.Value:
        value = ll.Constant(I32, _TWO_OVER_PI_WORDS[j])
        for k, hit in enumerate(is_word, start=1):
            value = b.select(hit, ll.Constant(I32, _TWO_OVER_PI_WORDS[k + j]), value)
        return value

    words = [stream_word(j) for j in range(4)]
    window = [call_intrinsic(b, "llvm.fshl", [words[j], words[j + 1], shift]) for j in range(3)]
    m64 = b.zext(mantissa, I64)
    p2, p1, p0 = (b.mul(m64, b.zext(w, I64)) for w in window)
    # P = M * window; top = P >> 32 modulo 2^64 (higher bits are multiples of 4).
    top = b.add(b.add(b.shl(p2, ll.Constant(I64, 32)), p1), b.lshr(p0, ll.Constant(I64, 32)))
    top = b.add(top, ll.Constant(I64, 1 << 61))  # round to the nearest quadrant
    q = b.lshr(top, ll.Constant(I64, 62))
    fraction = b.sub(b.and_(top, ll.Constant(I64, (1 << 62) - 1)), ll.Constant(I64, 1 << 61))
    r = b.fmul(b.sitofp(fraction, F64), ll.Constant(F64, math.pi / 2 * 2.0 ** -62))
    return q, r


def _sincos(b: ll.IRBuilder, x: ll.Value, cosine: bool) -> ll.Value:
    m = _Emitter(b, F64)
    a = call_intrinsic(b, "llvm.fabs", [x])
    q, r = _reduce_pio2(b, a)
    small = b.fcmp_ordered("<", a, ll.Constant(F32, math.pi / 4))
    r = b.select(small, b.fpext(a, F64), r)
    q = b.select(small, ll.Constant(I64, 0), q)
    if cosine:
        q = b.add(q, ll.Constant(I64, 1))  # cos(a) = sin(a + pi/2)
    z = m.mul(r, r)
    sin_r = m.fma(m.mul(r, z), m.horner(z, _SIN_S), r)
    cos_r = m.fma(m.mul(z, z), m.horner(z, _COS_C), m.fma(z, m.c(-0.5), m.c(1.0)))
    odd = b.trunc(q, ll.IntType(1))
    negative = b.icmp_unsigned("!=", b.and_(q, ll.Constant(I64, 2)), ll.Constant(I64, 0))
    y = b.select(odd, cos_r, sin_r)
    y = b.select(negative, b.fneg(y), y)
    if not cosine:  # sin is odd: sin(x) = -sin(|x|) for negative x, and -0 stays -0
        sign = b.icmp_signed("<", b.bitcast(x, I32), ll.Constant(I32, 0))
        y = b.select(sign, b.fneg(y), y)
    result = b.fptrunc(y, F32)
    finite = b.fcmp_ordered("<", a, ll.Constant(F32, math.inf))
    return b.select(finite, result, ll.Constant(F32, math.nan))  # sin/cos(+-inf, nan) = nan


def sin(b: ll.IRBuilder, x: ll.Value) -> ll.Value:
    """Sine of a float32, any finite argument (exact reduction), result <= 1 ulp."""
    return _sincos(b, x, cosine=False)


def cos(b: ll.IRBuilder, x: ll.Value) -> ll.Value:
    """Cosine of a float32, any finite argument (exact reduction), result <= 1 ulp."""
    return _sincos(b, x, cosine=True)


# -- pow (f32, evaluated in double) ------------------------------------------------

def pow(b: ll.IRBuilder, x: ll.Value, y: ll.Value) -> ll.Value:
    """x**y for float32 as exp(y log|x|) in double (error ~2^-45 before the
    final rounding), with the sign and special cases of C99 powf."""
    m = _Emitter(b, F32)
    a = b.fpext(m.abs(x), F64)
    t = b.fmul(b.fpext(y, F64), log(b, a))
    v = b.fptrunc(exp(b, t), F32)
    # y integral (+-inf count as even integers), and odd: |y| < 2^24 and low bit set.
    integral = m.eq(m.rint(y), y)
    representable = m.lt(m.abs(y), m.c(2.0 ** 24))
    safe_y = m.select(representable, y, m.c(0.0))
    low_bit = b.trunc(b.fptosi(safe_y, I32), ll.IntType(1))
    odd = b.and_(b.and_(integral, representable), low_bit)
    negative_base = b.icmp_signed("<", m.bits(x), ll.Constant(I32, 0))  # sign bit, also -0
    v = m.select(b.and_(negative_base, odd), m.neg(v), v)
    finite_negative = b.and_(m.lt(x, m.c(0.0)), b.fcmp_ordered(">", x, m.c(-math.inf)))
    v = m.select(b.and_(finite_negative, b.not_(integral)), m.c(math.nan), v)
    one = m.c(1.0)
    unit = b.or_(b.or_(m.eq(y, m.c(0.0)), m.eq(x, one)),
                 b.and_(m.eq(x, m.c(-1.0)), m.eq(m.abs(y), m.c(math.inf))))
    return m.select(unit, one, v)


# -- dispatch ----------------------------------------------------------------------

# op name -> (emitter over operand values, dtypes it covers). The others keep libm.
VECTOR_FUNCTIONS = {
    "exp": (lambda b, xs: exp(b, *xs), ("f32", "f64")),
    "log": (lambda b, xs: log(b, *xs), ("f32", "f64")),
    "expm1": (lambda b, xs: expm1(b, *xs), ("f32", "f64")),
    "log1p": (lambda b, xs: log1p(b, *xs), ("f32", "f64")),
    "tanh": (lambda b, xs: tanh(b, *xs), ("f32", "f64")),
    "logistic": (lambda b, xs: logistic(b, *xs), ("f32", "f64")),
    "sin": (lambda b, xs: sin(b, *xs), ("f32",)),
    "cos": (lambda b, xs: cos(b, *xs), ("f32",)),
    "pow": (lambda b, xs: pow(b, *xs), ("f32",)),
}

_TYPE_NAMES = {str(F32): "f32", str(F64): "f64"}


def has_vector_version(op: str, type_: ll.Type) -> bool:
    """Whether ``op`` on register type ``type_`` is emitted by this module."""
    entry = VECTOR_FUNCTIONS.get(op)
    return entry is not None and _TYPE_NAMES.get(str(type_)) in entry[1]


def emit(b: ll.IRBuilder, op: str, operands: list) -> ll.Value:
    """Emit the vector-friendly ``op`` over scalar operand values."""
    return VECTOR_FUNCTIONS[op][0](b, operands)
