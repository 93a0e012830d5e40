"""exp, log, power and tan that round the same on every CPU.

numpy picks its float64 exp, log, power and tan kernels (and its float32 power) by the CPU's SIMD:
on AVX-512 they differ from the AVX2 ones in the last bit, and a last bit is enough to move a grey
level across a rounding boundary (43 of the 1,650 clips of `lumos data synth --seed 0` differed
between the two). These are built from additions, multiplications, divisions, `rint` and `ldexp`
alone, which IEEE 754 rounds exactly, and from numpy's float64 sine and cosine, which are the same
on every dispatch level (tests/training/test_synth.py checks the benchmark's bytes under numpy held
to AVX2). They are accurate to a few units in the last place of float64, and return float64.
"""

import math

import numpy as np

_LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts: k * _LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_EXP_TERMS = [1 / math.factorial(n) for n in range(14)]
"""Taylor coefficients of exp to degree 13: below 1e-17 of relative error for |r| <= ln2 / 2."""
_LOG_TERMS = [2 / (2 * n + 1) for n in range(12)]
"""log m = 2 atanh s, s = (m - 1) / (m + 1), |s| <= 0.172 for m in [1/sqrt 2, sqrt 2)."""


def _horner(x: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """The polynomial at `x`, computed in place: the same roundings as `total * x + c`, without
    a new array per term."""
    total = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        total *= x
        total += c
    return total


def exp(x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    k = np.rint(x / math.log(2))
    r = (x - k * _LN2_HI) - k * _LN2_LO
    return np.ldexp(_horner(r, _EXP_TERMS), k.astype(np.int32))


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural logarithm of positive `x`."""
    mantissa, exponent = np.frexp(np.asarray(x, dtype=np.float64))
    low = mantissa < math.sqrt(0.5)
    mantissa = np.where(low, 2 * mantissa, mantissa)
    k = (exponent - low).astype(np.float64)
    s = (mantissa - 1) / (mantissa + 1)
    return k * _LN2_HI + (s * _horner(s * s, _LOG_TERMS) + k * _LN2_LO)


def power(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """`x ** y` for `x >= 0` (0 for x = 0, as for the positive exponents the generator uses)."""
    x = np.asarray(x, dtype=np.float64)
    positive = x > 0
    return np.where(positive, exp(np.asarray(y) * log(np.where(positive, x, 1.0))), 0.0)


def tan(x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.sin(x) / np.cos(x)
