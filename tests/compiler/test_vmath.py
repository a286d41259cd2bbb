"""Accuracy and vectorisation of the vector transcendentals (compiler/codegen/vmath.py).

Every function is compiled through the real pipeline (``jit`` of the front-end
function over a big array) and compared with a reference computed in higher
precision and rounded once: float64 numpy for f32, long double (x87, 64-bit
mantissa) numpy for f64. The error is the distance in ulps between the result
and that correctly rounded reference; nan, infinity and zero-sign positions
must match exactly.

Inputs, per function (about 1.5M f32 and 0.5M f64 values each): random bit
patterns over every finite float of both signs (all magnitudes, denormals
included); dense sweeps of the interesting range (e.g. [-104, 89] for f32
exp); the 64 floats on either side of every threshold (overflow to inf,
underflow to denormals and to 0, saturation of tanh/logistic/expm1, the
tanh branch switch, multiples of pi/2 for sin/cos, 0 and -1 for log1p);
and the special values.

The bounds asserted here are the table in compiler/codegen/vmath.py's docstring
(max ulp distance from the correctly rounded result).

The f32 unary maxima are those of benchmarks/vmath/check_exhaustive.py over all
2^32 inputs (0.1% to 1.7% of results 1 ulp off; sin/cos 1e-5, from double
rounding; f32 tanh: 3.9% 1 ulp or more off, 0.03% 2, 18 inputs 3, and f32
logistic 2.9% 1 or more, traded for speed, see vmath._tanh_f32 and logistic).
The asserted bounds are ``BOUNDS`` below (1 ulp everywhere but f32 tanh's 3 and
logistic's 2), within the issue's 4 ulp.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

import compiler as xp
from compiler import jit
from compiler.codegen import lower_function, vmath
from compiler.codegen.llvm_types import F64
from ir import Builder, TensorType

pytestmark = pytest.mark.llvm

BOUNDS = {  # max ulp distance from the correctly rounded result, asserted
    ("exp", "f32"): 1, ("log", "f32"): 1, ("expm1", "f32"): 1, ("log1p", "f32"): 1,
    ("tanh", "f32"): 3, ("logistic", "f32"): 2, ("sin", "f32"): 1, ("cos", "f32"): 1,
    ("pow", "f32"): 1,
    ("exp", "f64"): 1, ("log", "f64"): 1, ("expm1", "f64"): 1, ("log1p", "f64"): 1,
    ("tanh", "f64"): 1, ("logistic", "f64"): 1,
}

FRONT_END = {
    "exp": xp.exp, "log": xp.log, "expm1": xp.expm1, "log1p": xp.log1p, "tanh": xp.tanh,
    "logistic": xp.sigmoid, "sin": xp.sin, "cos": xp.cos, "pow": xp.power,
}
_JITTED = {op: jit(fn) for op, fn in FRONT_END.items()}


def _logistic(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


REFERENCE = {
    "exp": np.exp, "log": np.log, "expm1": np.expm1, "log1p": np.log1p, "tanh": np.tanh,
    "logistic": _logistic, "sin": np.sin, "cos": np.cos, "pow": np.power,
}
WIDER = {np.float32: np.float64, np.float64: np.longdouble}


# -- inputs --------------------------------------------------------------------

def _bits_type(dtype):
    return np.uint32 if dtype == np.float32 else np.uint64


def _all_magnitudes(rng, dtype, n):
    """Uniformly random bit patterns of finite floats of both signs."""
    info = np.finfo(dtype)
    top = np.array(info.max, dtype).view(_bits_type(dtype))
    bits = rng.integers(0, int(top), n, dtype=_bits_type(dtype), endpoint=True)
    values = bits.view(dtype)
    return np.where(rng.random(n) < 0.5, -values, values)


def _around(points, dtype, k=64):
    """The 2k + 1 floats centred on each of ``points`` (as rounded to dtype)."""
    base = np.asarray(points, dtype).view(_bits_type(dtype)).astype(np.int64)
    steps = np.arange(-k, k + 1)
    out = []
    for b, p in zip(base, np.asarray(points, dtype), strict=True):
        if p == 0:  # both sides of zero: positive and negative denormals
            out.append(np.arange(k + 1).astype(_bits_type(dtype)).view(dtype))
            out.append(-out[-1])
        else:
            out.append((b + steps).astype(_bits_type(dtype)).view(dtype))
    return np.concatenate(out)


def _special(dtype):
    info = np.finfo(dtype)
    tiny_denormal = np.array(1, _bits_type(dtype)).view(dtype)
    values = [0.0, np.inf, np.nan, 1.0, 0.5, 2.0, info.max, info.tiny, tiny_denormal,
              info.tiny - tiny_denormal, info.eps, 1e-30, 1e30]
    values = np.array(values, dtype)
    return np.concatenate([values, -values])


def _dense(lo, hi, n, dtype):
    return np.linspace(lo, hi, n).astype(dtype)


def _log_spaced(rng, lo, hi, n, dtype):
    """Positive floats with log uniform in [lo, hi] (natural log)."""
    with np.errstate(all="ignore"):
        return np.exp(rng.uniform(lo, hi, n)).astype(dtype)


def _inputs(op: str, dtype) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{op} {dtype.__name__}".encode()))
    wide = dtype == np.float64
    n = 200_000 if wide else 600_000
    parts = [_all_magnitudes(rng, dtype, n), _special(dtype), _around([0.0], dtype, 256)]
    exp_hi = 709.79 if wide else 88.7229
    exp_lo = -745.14 if wide else -103.98
    denormal = -708.4 if wide else -87.34
    if op in ("exp", "expm1", "logistic"):
        parts += [_dense(exp_lo - 1, exp_hi + 1, n, dtype), _dense(-1, 1, n // 4, dtype),
                  _around([exp_hi, exp_lo, denormal, -exp_hi, -exp_lo, -denormal], dtype)]
    if op == "expm1":
        parts += [_dense(-1e-3, 1e-3, n // 4, dtype),
                  _around([-17.33, -37.43, 0.3466, -0.3466], dtype)]
    if op == "logistic":
        parts += [_around([17.33, 36.74, -17.33, -36.74], dtype)]
    if op in ("log", "log1p"):
        lo = -745.1 if wide else -103.9
        parts += [_log_spaced(rng, lo, exp_hi, n, dtype), _dense(0.5, 2.0, n // 2, dtype),
                  _around([1.0, 2.0 ** 0.5, 0.5 ** 0.5], dtype)]
    if op == "log1p":
        parts += [_dense(-1, -0.5, n // 4, dtype), _dense(-1e-3, 1e-3, n // 4, dtype),
                  _around([-1.0, 2 ** 0.5 - 1, 2 * 2 ** 0.5 - 1], dtype)]
    if op == "tanh":
        parts += [_dense(-10, 10, n, dtype), _dense(-1, 1, n // 4, dtype),
                  _around([0.625, -0.625, 9.01, -9.01, 9.1, -9.1, 19.06, -19.06,
                           0.03126, 0.3466, 0.6931], dtype)]
    if op in ("sin", "cos"):
        multiples = np.arange(1, 2000) * (np.pi / 2)
        parts += [_dense(-10, 10, n, dtype), _dense(-1e5, 1e5, n, dtype),
                  _around(np.concatenate([multiples, -multiples, [1e22, 16367173 * 2.0 ** 72]]),
                          dtype, 8)]
    return np.concatenate(parts).astype(dtype)


# -- measuring -------------------------------------------------------------------

def _ordered(a: np.ndarray) -> np.ndarray:
    """Integers in the order of the floats: adjacent floats differ by 1."""
    bits = a.view(np.int32 if a.dtype == np.float32 else np.int64).astype(np.int64)
    magnitude = bits & np.int64(np.iinfo(bits.dtype).max)
    return np.where(bits < 0, -magnitude, magnitude)


def ulp_distance(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units in the last place (0 where both are nan).

    Zeros of opposite sign count as 0 here; signs are checked separately.
    """
    og, ow = _ordered(got), _ordered(want)
    with np.errstate(over="ignore"):
        distance = np.abs(og - ow).astype(np.float64)
    far = (og < 0) != (ow < 0)  # different signs: the int difference may overflow
    distance = np.where(far, np.abs(og.astype(np.float64) - ow.astype(np.float64)), distance)
    both_nan = np.isnan(got) & np.isnan(want)
    return np.where(both_nan, 0.0, np.where(np.isnan(got) | np.isnan(want), np.inf, distance))


def _reference(op: str, *arrays):
    dtype = arrays[0].dtype.type
    with np.errstate(all="ignore"):
        return REFERENCE[op](*(a.astype(WIDER[dtype]) for a in arrays)).astype(dtype)


def _run(op: str, *arrays) -> np.ndarray:
    return np.asarray(_JITTED[op](*arrays).numpy())


def check(op: str, *arrays) -> float:
    """The max ulp distance; fails on any nan/inf/zero-sign mismatch."""
    got = _run(op, *arrays)
    want = _reference(op, *arrays)
    x = arrays[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want),
                                  err_msg=f"{op}: nan positions differ")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want),
                                  err_msg=f"{op}: +inf positions differ")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want),
                                  err_msg=f"{op}: -inf positions differ")
    zero = want == 0
    bad_sign = zero & (np.signbit(got) != np.signbit(want))
    assert not bad_sign.any(), f"{op}: zero sign differs at x={x[bad_sign][:5]}"
    distance = ulp_distance(got, want)
    worst = int(np.argmax(distance))
    bound = BOUNDS[(op, np.dtype(x.dtype).name.replace("float", "f"))]
    assert distance[worst] <= bound, (
        f"{op}({x[worst]!r}{', ' + repr(arrays[1][worst]) if len(arrays) > 1 else ''}) = "
        f"{got[worst]!r}, correctly rounded {want[worst]!r}: {distance[worst]} ulp > {bound}")
    return float(distance[worst])


# -- accuracy --------------------------------------------------------------------

UNARY_F32 = ["exp", "log", "expm1", "log1p", "tanh", "logistic", "sin", "cos"]
UNARY_F64 = ["exp", "log", "expm1", "log1p", "tanh", "logistic"]


@pytest.mark.parametrize("op", UNARY_F32)
def test_f32_within_bound(op):
    check(op, _inputs(op, np.float32))


@pytest.mark.parametrize("op", UNARY_F64)
def test_f64_within_bound(op):
    check(op, _inputs(op, np.float64))


def test_f32_pow_within_bound():
    rng = np.random.default_rng(7)
    n = 400_000
    x = np.concatenate([_log_spaced(rng, -20, 20, n, np.float32),
                        -_log_spaced(rng, -5, 5, n // 4, np.float32),
                        _all_magnitudes(rng, np.float32, n // 4)])
    y = np.concatenate([rng.uniform(-8, 8, n), rng.integers(-40, 40, n // 4),
                        rng.uniform(-2, 2, n // 4)]).astype(np.float32)
    check("pow", x, y)


def test_f32_pow_special_cases_match_numpy():
    """C99 Annex F, as numpy's float32 power: every pair of special operands."""
    values = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, np.inf, -np.inf,
                       np.nan, 1e-40, -1e-40, 1e30, -8.0, 1 / 3, 2.5, -2.5, 2.0 ** 24,
                       2.0 ** 24 + 2, 2.0 ** 25, -(2.0 ** 25), 0.9999999, 1.0000001, 126.0,
                       -150.0, 200.0, -200.0], np.float32)
    x, y = (a.ravel() for a in np.meshgrid(values, values, indexing="ij"))
    got = _run("pow", x, y)
    with np.errstate(all="ignore"):
        want = np.power(x, y)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.signbit(got), np.signbit(want)) or np.all(
        np.isnan(want[np.signbit(got) != np.signbit(want)]))
    assert ulp_distance(got, want).max() <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    inf, nan = np.inf, np.nan
    cases = {  # op: [(x, expected)], compared bit for bit (nan as nan)
        "exp": [(inf, inf), (-inf, 0.0), (nan, nan), (0.0, 1.0), (-0.0, 1.0), (1e4, inf),
                (-1e4, 0.0)],
        "log": [(0.0, -inf), (-0.0, -inf), (-1.0, nan), (-inf, nan), (inf, inf), (1.0, 0.0),
                (nan, nan)],
        "expm1": [(inf, inf), (-inf, -1.0), (-0.0, -0.0), (0.0, 0.0), (-1e4, -1.0),
                  (1e4, inf), (nan, nan)],
        "log1p": [(-1.0, -inf), (-2.0, nan), (-inf, nan), (inf, inf), (-0.0, -0.0),
                  (0.0, 0.0), (nan, nan)],
        "tanh": [(inf, 1.0), (-inf, -1.0), (1e4, 1.0), (-1e4, -1.0), (-0.0, -0.0), (nan, nan)],
        "logistic": [(inf, 1.0), (-inf, 0.0), (1e4, 1.0), (-1e4, 0.0), (0.0, 0.5), (-0.0, 0.5),
                     (nan, nan)],
    }
    if dtype == np.float32:
        cases["sin"] = [(inf, nan), (-inf, nan), (nan, nan), (-0.0, -0.0), (0.0, 0.0)]
        cases["cos"] = [(inf, nan), (-inf, nan), (nan, nan), (-0.0, 1.0)]
    for op, pairs in cases.items():
        x = np.array([p[0] for p in pairs], dtype)
        want = np.array([p[1] for p in pairs], dtype)
        got = _run(op, x)
        same = ((got == want) & (np.signbit(got) == np.signbit(want))
                | np.isnan(got) & np.isnan(want))
        assert same.all(), f"{op}: x={x[~same]} gave {got[~same]}, expected {want[~same]}"


def test_denormal_results_and_tiny_arguments_are_exact():
    tiny = np.array([1e-45, -1e-45, 1e-40, -3e-39, 1e-30], np.float32)
    for op in ("expm1", "log1p", "tanh", "sin"):  # f(x) = x for tiny x
        np.testing.assert_array_equal(_run(op, tiny), tiny, err_msg=op)
    # exp(x) underflows through every denormal: 2^-149 is the last non-zero result
    x = np.log(np.array([2.0 ** -149, 2.0 ** -140, 2.0 ** -127], np.float64)).astype(np.float32)
    assert np.all(_run("exp", x) > 0)
    np.testing.assert_array_equal(_run("exp", np.float32([-103.98, -110.0])), [0.0, 0.0])


def test_two_over_pi_table():
    """The Payne-Hanek window of sin/cos holds the right bits of 2/pi."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 100
    bits = 32 * len(vmath._TWO_OVER_PI_WORDS) - vmath._TWO_OVER_PI_PAD
    stream = int(mpmath.floor(2 / mpmath.pi * mpmath.mpf(2) ** bits))
    words = [(stream >> (32 * (len(vmath._TWO_OVER_PI_WORDS) - 1 - k))) & 0xFFFFFFFF
             for k in range(len(vmath._TWO_OVER_PI_WORDS))]
    assert tuple(words) == vmath._TWO_OVER_PI_WORDS


# -- vectorisation -----------------------------------------------------------------

def test_exp_loop_is_vector_code_without_libm_calls():
    x = np.linspace(-5, 5, 1 << 16).astype(np.float32)
    asm = jit(xp.exp).lower(x).as_text("asm")
    assert re.search(r"%[yz]mm\d+", asm), "no ymm/zmm registers in the exp kernel"
    assert re.search(r"\bv(fmadd|fnmadd)\w*ps\b", asm), "no vector FMA in the exp kernel"
    assert "expf" not in asm


def _host_features() -> set[str]:
    from runtime.target import host_target
    return {f[1:] for f in host_target().features.split(",") if f.startswith("+")}


@pytest.mark.parametrize("op", ["exp", "tanh", "logistic"])
def test_results_do_not_depend_on_the_vector_width(op):
    """The main loop (zmm), its vector epilogue (ymm) and scalar remainders give the
    same bits: no per-width approximations (such as vrcpps against vrcp14ps)."""
    x = np.random.default_rng(5).uniform(-12, 12, 4099).astype(np.float32)
    whole = _run(op, x)
    pieces = np.concatenate([_run(op, x[i:i + 3]) for i in range(0, 4099, 3)])
    assert whole.tobytes() == pieces.tobytes()


@pytest.mark.skipif("avx512f" not in _host_features(), reason="vscalefps is AVX-512")
def test_f32_exp_scales_with_vscalef():
    """_scale is llvm.ldexp on AVX-512 hosts: one vscalefps instead of integer scaling."""
    asm = jit(xp.exp).lower(np.zeros(4096, np.float32)).as_text("asm")
    assert re.search(r"\bvscalefps\b", asm)


def _kernel_ir(op: str, dtype: str, arity: int = 1) -> str:
    b = Builder(op)
    params = [b.param(TensorType(dtype, (1024,))) for _ in range(arity)]
    return lower_function(b.finish([getattr(b, op)(*params)])).replace('"', "")


@pytest.mark.parametrize("op,dtype", [(op, "f32") for op in UNARY_F32 + ["pow"]]
                         + [(op, "f64") for op in UNARY_F64])
def test_vmath_ops_vectorise(op, dtype):
    """Every covered op compiles to a loop over <N x float|double> vectors, no libm."""
    arity = 2 if op == "pow" else 1
    fn = jit(FRONT_END[op])
    arrays = [np.linspace(0.5, 2, 1024).astype(dtype.replace("f", "float")) for _ in range(arity)]
    optimized = fn.lower(*arrays).as_text("optimized-llvm")
    assert re.search(r"<(8|16) x (float|double)>", optimized), f"{op} {dtype} did not vectorise"
    defined = set(re.findall(r'define [^@]*@"?([\w.]+)', optimized))
    calls = set(re.findall(r'call [^@]*@"?([\w.]+)', optimized)) - defined
    libm = {c for c in calls if not c.startswith("llvm.")
            or c.split(".")[1] in ("exp", "log", "sin", "cos", "tanh", "pow")}
    assert not libm, f"{op} {dtype} calls {libm}"


def test_coverage_and_libm_fallback(monkeypatch):
    """f64 sin/cos/pow keep libm; XLAC_SCALAR_LIBM=1 brings libm back for all."""
    assert not vmath.has_vector_version("sin", F64)
    assert "@llvm.sin.f64" in _kernel_ir("sin", "f64")
    assert "@llvm.exp.f32" not in _kernel_ir("exp", "f32")
    monkeypatch.setenv("XLAC_SCALAR_LIBM", "1")
    assert "@llvm.exp.f32" in _kernel_ir("exp", "f32")
    assert "@expm1f" in _kernel_ir("expm1", "f32")
