"""The C loops (``fedalgo.paillier._montgomery``) against Python's own modular arithmetic."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedalgo.paillier import _montgomery
from fedalgo.paillier.montgomery import FixedBaseTable, Modulus, bin_products

# Odd moduli from one limb to past a 4096-bit n^2, with full and partial top limbs.
moduli = st.integers(min_value=3, max_value=2**4200).map(lambda m: m | 1)


@settings(max_examples=60, deadline=None)
@given(
    modulus=moduli,
    base=st.integers(min_value=0, max_value=2**4300),
    window_bits=st.integers(min_value=1, max_value=9),
    data=st.data(),
)
def test_fixed_base_powers_are_pow(modulus: int, base: int, window_bits: int, data) -> None:
    table = FixedBaseTable(base, modulus, exponent_bits=40, window_bits=window_bits)
    exponents = data.draw(
        st.lists(
            st.integers(min_value=0, max_value=2 ** (window_bits * table.digits) - 1),
            min_size=1,
            max_size=6,
        )
    )
    mask = (1 << window_bits) - 1
    digits = np.array(
        [[(e >> (window_bits * i)) & mask for i in range(table.digits)] for e in exponents]
    )
    assert table.powers(digits) == [pow(base, e, modulus) for e in exponents]


@settings(max_examples=60, deadline=None)
@given(modulus=moduli, data=st.data())
def test_bin_products_multiply_each_bins_rows(modulus: int, data) -> None:
    rows = data.draw(st.integers(min_value=0, max_value=12))
    columns = data.draw(st.integers(min_value=0, max_value=3))
    total = data.draw(st.integers(min_value=1, max_value=6))
    values = data.draw(st.lists(st.integers(0, modulus - 1), min_size=rows, max_size=rows))
    bins = np.array(
        data.draw(
            st.lists(
                st.lists(st.integers(0, total - 1), min_size=columns, max_size=columns),
                min_size=rows,
                max_size=rows,
            )
        ),
        dtype=np.int64,
    ).reshape(rows, columns)
    expected = [1] * total
    for value, row in zip(values, bins.tolist(), strict=True):
        for b in row:
            expected[b] = expected[b] * value % modulus
    m = Modulus(modulus)
    got = m.residues_of(bin_products(m.limbs_of(values), bins, total, m))
    assert got == expected


def test_residues_round_trip_through_limbs() -> None:
    m = Modulus(gmpy2.mpz(2) ** 2048 - 159)
    values = [0, 1, 2**64, int(m.value) - 1]
    limbs = m.limbs_of(values)
    assert limbs.shape == (4, 32) and limbs.dtype == np.dtype("<u8")
    assert m.residues_of(limbs) == values


@pytest.mark.parametrize("bad", [0, 1, 2, 2**64, -7])
def test_a_modulus_must_be_odd_and_above_one(bad: int) -> None:
    with pytest.raises(ValueError, match="odd"):
        Modulus(bad)


def test_the_c_functions_refuse_bad_input() -> None:
    m = Modulus(2**127 - 1)
    one_row = np.zeros((1, 1), dtype=np.int64)
    with pytest.raises(ValueError, match="not below the modulus"):
        _montgomery.bin_products(m.raw, one_row, 1, 1, m.raw)  # the modulus itself as a value
    with pytest.raises(ValueError, match=r"bin 5 of row 0 is not in \[0, 3\)"):
        bin_products(m.limbs_of([2]), np.array([[5]]), 3, m)
    with pytest.raises(ValueError, match="bins must be"):
        bin_products(m.limbs_of([2, 3]), np.array([[0]]), 3, m)
    with pytest.raises(ValueError, match="odd"):
        _montgomery.bin_products(b"", b"", 0, 1, (2**64).to_bytes(16, "little"))
    with pytest.raises(ValueError, match="whole 64-bit limbs"):
        _montgomery.fixed_base_table(b"\x02" * 8, b"\x03" * 12, 1, 4)
    with pytest.raises(ValueError, match="window_bits"):
        _montgomery.fixed_base_table(b"\x02" + b"\0" * 15, m.raw, 1, 17)
    table = _montgomery.fixed_base_table(b"\x02" + b"\0" * 15, m.raw, 3, 4)
    with pytest.raises(ValueError, match="rows of 3 digits"):
        _montgomery.fixed_base_pow(table, m.raw, 4, np.zeros(4, dtype=np.uint16))
    with pytest.raises(ValueError, match="not whole rows"):
        _montgomery.fixed_base_pow(table[:-8], m.raw, 4, np.zeros(3, dtype=np.uint16))
