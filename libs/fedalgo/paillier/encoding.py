"""Fixed-point encoding of floats as signed integer mantissas, and packing of several into one.

A value ``v`` at ``exponent`` e is the mantissa ``round(v * 16**-e)``; it decodes to
``mantissa * 16**e``, so the absolute error of a round trip is at most ``16**e / 2`` (e = -8:
2**-33). Exponents count hex digits, as in python-paillier, so a product of values at e1 and e2
is at e1 + e2. Mantissas of encoded arrays are int64 and must stay below 2**62 in magnitude
(room for the sums the callers compute in numpy); a value that does not fit raises
OverflowError, a NaN or infinity ValueError. Arithmetic on ciphertexts may grow mantissas
beyond int64: :func:`decode` takes Python integers of any size.

Packing puts ``k`` signed integers of at most ``slot_bits - 1`` bits (plus sign) into one
``sum_j s_j * 2**(j * slot_bits)``. Adding packed values or multiplying them by one integer acts on
every slot at once, as long as no slot leaves its range; :func:`unpack` recovers the slots with
borrows, so negative slots need no offset. The caller proves the bound; pack checks its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BASE = 16
MAX_MANTISSA_BITS = 62
MAX_EXPONENT = 64  # |exponent| beyond this is a protocol error, never a real precision


def _check_exponent(exponent: int) -> None:
    if isinstance(exponent, bool) or not isinstance(exponent, int) or abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"exponent must be an integer in [-64, 64], got {exponent!r}")


def encode(values: np.ndarray | Sequence[float], exponent: int) -> np.ndarray:
    """Fixed-point mantissas ``round(v * 16**-exponent)`` as int64, same shape as ``values``."""
    _check_exponent(exponent)
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("cannot encode NaN or infinity")
    scaled = np.rint(array * float(BASE) ** -exponent)
    if scaled.size and np.abs(scaled).max() >= 2.0**MAX_MANTISSA_BITS:
        raise OverflowError(
            f"values up to {np.abs(array).max():.3g} do not fit at exponent {exponent} "
            f"(mantissas are limited to {MAX_MANTISSA_BITS} bits); scale the features first"
        )
    return scaled.astype(np.int64)


def decode(mantissas: Sequence[int] | np.ndarray, exponent: int) -> np.ndarray:
    """Mantissas (Python ints of any size) to floats ``m * 16**exponent``, correctly rounded."""
    _check_exponent(exponent)
    if exponent >= 0:
        scale = BASE**exponent
        return np.array([float(int(m) * scale) for m in mantissas], dtype=np.float64)
    denominator = BASE**-exponent
    return np.array([int(m) / denominator for m in mantissas], dtype=np.float64)


def slots_per_plaintext(max_int: int, slot_bits: int) -> int:
    """How many slots of ``slot_bits`` fit in a signed plaintext bounded by ``max_int``."""
    if slot_bits < 2:
        raise ValueError(f"slot_bits must be at least 2, got {slot_bits}")
    return (max_int.bit_length() - 1) // slot_bits


def pack(slots: Sequence[int] | np.ndarray, slot_bits: int) -> int:
    """``sum_j slots[j] * 2**(j * slot_bits)``; each |slot| must be below 2**(slot_bits - 1)."""
    if slot_bits < 2:
        raise ValueError(f"slot_bits must be at least 2, got {slot_bits}")
    limit = 1 << (slot_bits - 1)
    total = 0
    for j, s in enumerate(slots):
        value = int(s)
        if not -limit < value < limit:
            raise OverflowError(f"slot value {value} does not fit in {slot_bits} signed bits")
        total += value << (j * slot_bits)
    return total


def unpack(packed: int, slot_bits: int, count: int) -> list[int]:
    """The ``count`` signed slots of ``packed``; raises OverflowError if anything is left over."""
    if slot_bits < 2:
        raise ValueError(f"slot_bits must be at least 2, got {slot_bits}")
    mask, half = (1 << slot_bits) - 1, 1 << (slot_bits - 1)
    out = []
    rest = int(packed)
    for _ in range(count):
        s = rest & mask
        if s >= half:
            s -= 1 << slot_bits
        out.append(s)
        rest = (rest - s) >> slot_bits
    if rest:
        raise OverflowError("the packed value holds more than its slots: a slot overflowed")
    return out
