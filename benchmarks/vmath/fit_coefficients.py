"""Fit the polynomial coefficients of compiler/codegen/vmath.py (minimax, Remez exchange).

Run ``python benchmarks/vmath/fit_coefficients.py`` to print every table; vmath.py holds the
printed values. Each fit minimises the maximum *relative* error of the whole
approximated function (not of the polynomial alone), in 60-digit arithmetic
(mpmath), and the coefficients are then rounded to the target precision: the
error actually delivered is measured on compiled code by tests/compiler/test_vmath.py.

Every fit is ``f(t) ~= sum_k c_k * t**k`` over a list of powers, with a weight
``w(t)`` turning the polynomial's error into the function's relative error.
"""

from __future__ import annotations

import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 60


def remez(target, weight, powers, lo, hi, *, grid=3000, iterations=60):
    """Coefficients minimising ``max |w(t) * (sum c_k t**k - target(t))|`` on [lo, hi].

    Returns (coefficients, levelled error). The extrema are searched on a
    Chebyshev grid of ``grid`` points (second-order effect on the error).
    """
    lo, hi = mp.mpf(lo), mp.mpf(hi)
    half = mp.mpf(0.5)
    ts = [(lo + hi) / 2 - (hi - lo) / 2 * mp.cos(mp.pi * (i + half) / grid) for i in range(grid)]
    values = [target(t) for t in ts]
    weights = [abs(weight(t)) for t in ts]  # the sign of the error does not matter
    rows = [[t ** k for k in powers] for t in ts]
    n = len(powers)
    reference = [round(i * (grid - 1) / n) for i in range(n + 1)]
    level = mp.mpf(0)
    for _ in range(iterations):
        a = mp.matrix(n + 1, n + 1)
        rhs = mp.matrix(n + 1, 1)
        for row, i in enumerate(reference):
            for col in range(n):
                a[row, col] = weights[i] * rows[i][col]
            a[row, n] = (-1) ** row
            rhs[row] = weights[i] * values[i]
        solution = mp.lu_solve(a, rhs)
        coefficients = [solution[k] for k in range(n)]
        level = abs(solution[n])
        errors = [w * (mp.fsum(c * p for c, p in zip(coefficients, row, strict=True)) - v)
                  for w, row, v in zip(weights, rows, values, strict=True)]
        reference = _alternating_extrema(errors, n + 1)
        worst = max(abs(e) for e in errors)
        if worst <= level * (1 + mp.mpf("1e-9")):
            break
    return coefficients, worst


def _alternating_extrema(errors, count):
    """Indices of the largest |error| in each run of one sign, trimmed to ``count``."""
    runs = []
    for i, e in enumerate(errors):
        sign = e >= 0
        if runs and runs[-1][0] == sign:
            if abs(e) > abs(errors[runs[-1][1]]):
                runs[-1][1] = i
        else:
            runs.append([sign, i])
    picks = [i for _, i in runs]
    while len(picks) > count:  # drop the smaller end: alternation is kept
        if abs(errors[picks[0]]) < abs(errors[picks[-1]]):
            picks.pop(0)
        else:
            picks.pop()
    if len(picks) < count:
        raise RuntimeError(f"only {len(picks)} alternations for {count} points: lower the degree")
    return picks


def _series_safe(fn, t, small, series):
    """``fn(t)``, or its series near 0 where ``fn`` cancels catastrophically."""
    return series(t) if abs(t) < small else fn(t)


# -- the fitted functions ------------------------------------------------------

R_MAX = 0.3466 * 1.002  # |r| <= ln2/2 after exp's reduction, with slack for rounding


def exp_q(degree):
    # e^r = 1 + r + r^2 q(r)
    def target(r):
        return _series_safe(lambda r: (mp.exp(r) - 1 - r) / r ** 2, r, mp.mpf("1e-20"),
                            lambda r: mp.mpf(1) / 2 + r / 6)
    return remez(target, lambda r: r ** 2 / mp.exp(r), range(degree + 1), -R_MAX, R_MAX)


def expm1_q(degree):
    # e^r - 1 = r + r^2 q(r)
    def target(r):
        return _series_safe(lambda r: (mp.exp(r) - 1 - r) / r ** 2, r, mp.mpf("1e-20"),
                            lambda r: mp.mpf(1) / 2 + r / 6)
    return remez(target, lambda r: r ** 2 / mp.expm1(r), range(degree + 1), -R_MAX, R_MAX)


S_MAX = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)  # |f / (2 + f)| for f in [sqrt(2)/2 - 1, sqrt(2) - 1]


def log_r(degree):
    # log1p(f) = 2s + s R(z), s = f / (2 + f), z = s^2, R(z) = sum_{k>=1} c_k z^k
    def target(z):
        s = mp.sqrt(z)
        return (2 * mp.atanh(s) - 2 * s) / s
    def weight(z):
        s = mp.sqrt(z)
        return s / (2 * mp.atanh(s))
    return remez(target, weight, range(1, degree + 1), mp.mpf("1e-30"), S_MAX ** 2 * 1.0001)


def tanh_p(degree, bound):
    # tanh(x) = x + x^3 P(x^2)
    def target(z):
        x = mp.sqrt(z)
        return (mp.tanh(x) - x) / x ** 3
    def weight(z):
        x = mp.sqrt(z)
        return x ** 3 / mp.tanh(x)
    return remez(target, weight, range(degree + 1), mp.mpf("1e-30"), mp.mpf(bound) ** 2)


def sin_s(degree):
    # sin(r) = r + r^3 S(r^2) on |r| <= pi/4
    def target(z):
        r = mp.sqrt(z)
        return (mp.sin(r) - r) / r ** 3
    return remez(target, lambda z: mp.sqrt(z) ** 3 / mp.sin(mp.sqrt(z)), range(degree + 1),
                 mp.mpf("1e-30"), (mp.pi / 4) ** 2 * 1.0001)


def cos_c(degree):
    # cos(r) = 1 - r^2/2 + r^4 C(r^2) on |r| <= pi/4
    def target(z):
        r = mp.sqrt(z)
        return (mp.cos(r) - 1 + z / 2) / z ** 2
    return remez(target, lambda z: z ** 2 / mp.cos(mp.sqrt(z)), range(degree + 1),
                 mp.mpf("1e-30"), (mp.pi / 4) ** 2 * 1.0001)


def _rounded(coefficients, dtype):
    return [float(dtype(float(c))) for c in coefficients]


FITS = {
    # name: (fit, (dtype, args))
    "EXP_Q_F32": (exp_q, np.float32, (4,)),
    "EXP_Q_F64": (exp_q, np.float64, (9,)),
    "EXPM1_Q_F32": (expm1_q, np.float32, (4,)),
    "EXPM1_Q_F64": (expm1_q, np.float64, (10,)),
    "LOG_R_F32": (log_r, np.float32, (3,)),
    "LOG_R_F64": (log_r, np.float64, (7,)),
    "TANH_P_F32": (tanh_p, np.float32, (5, "0.625")),
    "TANH_P_F64": (tanh_p, np.float64, (11, "0.625")),
    "SIN_S_F64": (sin_s, np.float64, (3,)),
    "COS_C_F64": (cos_c, np.float64, (3,)),
}


def main(names):
    for name in names or FITS:
        fit, dtype, args = FITS[name]
        coefficients, error = fit(*args)
        printed = ", ".join(repr(dtype(c).item()) if dtype is np.float64 else
                            np.format_float_scientific(dtype(float(c)), unique=True)
                            for c in coefficients)
        print(f"{name} = ({printed})  # max rel err {mp.nstr(error, 3)}"
              f" = 2^{mp.nstr(mp.log(error, 2), 4)}")


if __name__ == "__main__":
    main(sys.argv[1:])
