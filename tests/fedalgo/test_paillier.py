"""The Paillier engine: keys, encryption modes, homomorphisms, wire checks, the process pool."""

from __future__ import annotations

import logging
from functools import cache

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedalgo import paillier
from fedalgo.computing import LocalComputing
from fedalgo.errors import ProtocolError
from real_parts import not_applicable

CRYPTO = settings(max_examples=25, deadline=None)
ints64 = st.integers(min_value=-(2**40), max_value=2**40)


@cache
def keys() -> tuple[paillier.PublicKey, paillier.PrivateKey]:
    return paillier.generate_keypair(1024)


@cache
def encryptor(mode: str = "djn", with_private_key: bool = True) -> paillier.Encryptor:
    pk, sk = keys()
    randomness: paillier.Randomness = "djn" if mode == "djn" else "standard"
    return paillier.Encryptor(
        pk, private_key=sk if with_private_key else None, randomness=randomness
    )


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [512, 1023, 3072, 4096, "2048", True, None])
def test_unsupported_key_sizes_are_refused(bits: object) -> None:
    with pytest.raises(ValueError, match="must be 1024 or 2048 bits"):
        paillier.generate_keypair(bits)  # type: ignore[arg-type]


def test_1024_bits_warn_and_2048_is_the_quiet_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fedalgo.paillier"):
        pk, sk = paillier.generate_keypair()
        assert pk.key_bits == 2048 and not caplog.records
        assert paillier.generate_keypair(1024)[0].key_bits == 1024
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "1024" in caplog.records[0].message
    assert str(sk.p) not in repr(sk) and str(sk.q) not in repr(sk)


_PRIME_512 = int(gmpy2.next_prime(3 * 2**510))


@pytest.mark.parametrize(
    "n",
    [
        2**1023 + 2,  # even
        int(gmpy2.next_prime(2**1023)),  # prime
        _PRIME_512**2,  # a square: p == q
        7 * 11,  # too short
        1.5,
    ],
)
def test_public_keys_that_cannot_be_paillier_moduli_are_refused(n: object) -> None:
    with pytest.raises(ValueError):
        paillier.PublicKey(n)  # type: ignore[arg-type]


def test_private_key_must_factor_the_modulus() -> None:
    pk, sk = keys()
    with pytest.raises(ValueError, match="factors"):
        paillier.PrivateKey(pk, sk.p, sk.p)


# -- encoding and packing (pure integer arithmetic: many examples) ---------------------------


@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), max_size=30),
    st.integers(min_value=-10, max_value=-1),
)
def test_encoding_round_trips_within_half_a_step(values: list[float], exponent: int) -> None:
    array = np.array(values, dtype=np.float64)
    decoded = paillier.decode(paillier.encode(array, exponent).tolist(), exponent)
    # Half a step of fixed point, plus float64 rounding of the scaled value.
    tolerance = 16.0**exponent / 2 + np.abs(array) * 2**-52
    assert np.all(np.abs(decoded - array) <= tolerance)


@given(st.floats(min_value=1.0, max_value=1e30), st.integers(min_value=-12, max_value=-1))
def test_encoding_refuses_what_does_not_fit(value: float, exponent: int) -> None:
    fits = abs(round(value * 16.0**-exponent)) < 2**62
    for v in (value, -value):
        if fits:
            paillier.encode(np.array([v]), exponent)
        else:
            with pytest.raises(OverflowError, match="scale the features"):
                paillier.encode(np.array([v]), exponent)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_encoding_refuses_non_finite_values(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or infinity"):
        paillier.encode(np.array([0.0, bad]), -8)


@pytest.mark.parametrize("exponent", [65, -65, 1.5, True])
def test_bad_exponents_are_refused(exponent: object) -> None:
    with pytest.raises(ValueError, match="exponent"):
        paillier.encode(np.array([1.0]), exponent)  # type: ignore[arg-type]


@st.composite
def slot_data(draw: st.DrawFn) -> tuple[int, list[int], list[int], int]:
    bits = draw(st.integers(min_value=8, max_value=90))
    count = draw(st.integers(min_value=1, max_value=12))
    # Leave two bits of headroom so a + b and small multiples stay inside the slot.
    limit = 2 ** (bits - 3) - 1
    slots = st.lists(st.integers(-limit, limit), min_size=count, max_size=count)
    return bits, draw(slots), draw(slots), draw(st.integers(-2, 2))


@given(slot_data())
def test_packing_round_trips_and_is_linear_slot_by_slot(
    data: tuple[int, list[int], list[int], int],
) -> None:
    bits, a, b, k = data
    pa, pb = paillier.pack(a, bits), paillier.pack(b, bits)
    assert paillier.unpack(pa, bits, len(a)) == a
    assert paillier.unpack(pa + pb, bits, len(a)) == [x + y for x, y in zip(a, b, strict=True)]
    assert paillier.unpack(k * pa, bits, len(a)) == [k * x for x in a]


@given(st.integers(min_value=4, max_value=64), st.integers(min_value=1, max_value=8))
def test_packing_detects_slot_overflow(bits: int, count: int) -> None:
    with pytest.raises(OverflowError, match="does not fit"):
        paillier.pack([0] * (count - 1) + [2 ** (bits - 1)], bits)
    # A sum that carried out of the top slot leaves something behind, which unpack refuses.
    top = paillier.pack([0] * (count - 1) + [2 ** (bits - 1) - 1], bits)
    with pytest.raises(OverflowError, match="overflowed"):
        paillier.unpack(top + top, bits, count)


def test_packing_parameters() -> None:
    with pytest.raises(ValueError, match="slot_bits"):
        paillier.pack([1], 1)
    assert paillier.slots_per_plaintext(2**100, 10) == 10


# -- encryption, decryption, homomorphisms --------------------------------------------------


@pytest.mark.parametrize("mode", ["djn", "standard"])
@pytest.mark.parametrize("with_private_key", [True, False])
def test_every_encryption_mode_round_trips(mode: str, with_private_key: bool) -> None:
    _, sk = keys()
    values = np.array([0.0, 1.0, -1.0, 0.123456789, -0.999999, 1e-9])
    enc = encryptor(mode, with_private_key).encrypt(values, -8)
    assert np.allclose(paillier.decrypt(sk, enc), values, atol=2**-33)


@pytest.mark.parametrize("mode", ["djn", "standard"])
@pytest.mark.parametrize("with_private_key", [True, False])
def test_obfuscators_are_fresh_nth_residues(mode: str, with_private_key: bool) -> None:
    # Encryptions of 0 are bare obfuscators; n-th residues are exactly the x with x^phi(n) = 1.
    pk, sk = keys()
    phi = (sk.p - 1) * (sk.q - 1)
    cts = encryptor(mode, with_private_key).encrypt_ints([0] * 6).ciphertexts
    assert len(set(cts)) == 6
    assert all(pow(int(c), phi, int(pk.nsquare)) == 1 for c in cts)
    assert pow(pk.n + 2, phi, int(pk.nsquare)) != 1  # a non-residue fails the check


@pytest.mark.parametrize("window_bits", [1, 8, 11])
def test_the_fixed_base_table_is_exponentiation(window_bits: int) -> None:
    modulus = gmpy2.mpz(2**127 - 1)
    table = paillier.FixedBaseTable(3, modulus, exponent_bits=32, window_bits=window_bits)
    mask = (1 << window_bits) - 1
    exps = (0, 1, 255, 256, 2**32 - 1, 0x01020304)
    digits = np.array(
        [[(e >> (window_bits * i)) & mask for i in range(table.digits)] for e in exps]
    )
    assert table.powers(digits) == [pow(3, e, int(modulus)) for e in exps]
    assert table.powers(digits[:, :1]) == [pow(3, int(d), int(modulus)) for d in digits[:, 0]]
    with pytest.raises(ValueError, match="digits"):
        table.powers(np.ones((1, table.digits + 1), dtype=np.uint16))
    if window_bits < 16:
        with pytest.raises(ValueError, match="digits"):
            table.powers(np.array([[1 << window_bits]]))


def test_random_exponents_cover_every_digit_uniformly() -> None:
    table = paillier.FixedBaseTable(3, gmpy2.mpz(2**127 - 1), exponent_bits=1024)
    digits = table.random_exponents(2000)
    assert digits.shape == (2000, 94) and table.digits * table.window_bits >= 1024
    assert digits.min() == 0 and digits.max() == 2**11 - 1
    # 188 000 draws over 2048 values: each value's count is close to its mean of ~92.
    counts = np.bincount(digits.ravel(), minlength=2**11)
    assert 40 < counts.min() and counts.max() < 160


def test_ciphertexts_are_standard_paillier() -> None:
    # phe (python-paillier) is an independent implementation: it must decrypt ours.
    phe = pytest.importorskip("phe.paillier")
    pk, sk = keys()
    theirs = phe.PaillierPrivateKey(phe.PaillierPublicKey(pk.n), sk.p, sk.q)
    for mode in ("djn", "standard"):
        for c, m in zip(
            encryptor(mode, False).encrypt_ints([5, -7]).ciphertexts, [5, -7], strict=True
        ):
            assert theirs.raw_decrypt(int(c)) == m % pk.n


@CRYPTO
@given(st.lists(st.tuples(ints64, ints64, ints64), min_size=1, max_size=6))
def test_homomorphisms_on_signed_integers(rows: list[tuple[int, int, int]]) -> None:
    _, sk = keys()
    a, b, k = (list(col) for col in zip(*rows, strict=True))
    enc = encryptor()
    ea, eb = enc.encrypt_ints(a, -2), enc.encrypt_ints(b, -2)
    assert paillier.decrypt_ints(sk, ea + eb) == [x + y for x, y in zip(a, b, strict=True)]
    assert paillier.decrypt_ints(sk, ea.add_ints(b)) == [x + y for x, y in zip(a, b, strict=True)]
    product = ea.mul_ints(k, -3)
    assert product.exponent == -5
    assert paillier.decrypt_ints(sk, product) == [x * y for x, y in zip(a, k, strict=True)]
    dot = ea.dot_ints(np.array(k, dtype=np.int64), -1)
    assert paillier.decrypt_ints(sk, dot) == [sum(x * y for x, y in zip(a, k, strict=True))]
    rerandomised = enc.rerandomise(ea)
    assert set(rerandomised.ciphertexts).isdisjoint(ea.ciphertexts)
    assert paillier.decrypt_ints(sk, rerandomised) == a


@CRYPTO
@given(
    st.lists(st.floats(min_value=-100, max_value=100, allow_nan=False), min_size=1, max_size=5),
    st.floats(min_value=-100, max_value=100, allow_nan=False),
)
def test_float_vectors_add_align_exponents_and_multiply(values: list[float], k: float) -> None:
    _, sk = keys()
    x = np.array(values)
    a = encryptor().encrypt(x, -4)
    b = encryptor().encrypt(x, -6)
    total = a + b
    assert total.exponent == -6
    assert np.allclose(paillier.decrypt(sk, total), 2 * x, atol=2 * 16.0**-4)
    assert np.allclose(paillier.decrypt(sk, a + x), 2 * x, atol=16.0**-4)
    scaled = a.mul(np.full(len(x), k), -3)
    assert np.allclose(paillier.decrypt(sk, scaled), x * k, atol=1e-2 + 1e-4 * abs(k))


@CRYPTO
@given(
    st.integers(min_value=1, max_value=5),
    st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=8),
    st.data(),
)
def test_packed_ciphertexts_fold_every_slot_at_once(
    slots: int, weights: list[int], data: st.DataObject
) -> None:
    # [[pack(x_i)]]^w_i multiplied over rows is [[pack(sum_i w_i x_i)]]: one fold, every slot.
    pk, sk = keys()
    x = np.array(
        data.draw(
            st.lists(
                st.lists(st.integers(-(2**30), 2**30), min_size=slots, max_size=slots),
                min_size=len(weights),
                max_size=len(weights),
            )
        ),
        dtype=np.int64,
    ).reshape(len(weights), slots)
    slot_bits = 30 + 21 + 4 + 2
    assert paillier.slots_per_plaintext(pk.max_int, slot_bits) >= slots
    packed = encryptor().encrypt_ints([paillier.pack(row, slot_bits) for row in x])
    folded = packed.dot_ints(np.array(weights, dtype=np.int64))
    got = paillier.unpack(paillier.decrypt_ints(sk, folded)[0], slot_bits, slots)
    assert got == (np.array(weights, dtype=object) @ x.astype(object)).tolist()


def test_overflow_is_refused_at_encryption_and_decryption() -> None:
    pk, sk = keys()
    with pytest.raises(OverflowError, match="max_int"):
        encryptor().encrypt_ints([pk.max_int + 1])
    near = encryptor().encrypt_ints([pk.max_int])
    with pytest.raises(OverflowError, match="outside the signed plaintext range"):
        paillier.decrypt_ints(sk, near + near)
    assert paillier.decrypt_ints(sk, encryptor().encrypt_ints([-pk.max_int])) == [-pk.max_int]


def test_decrypting_with_another_key_is_refused() -> None:
    _, other = paillier.generate_keypair(1024)
    with pytest.raises(ValueError, match="another key"):
        paillier.decrypt(other, encryptor().encrypt(np.array([1.0]), -8))


def test_bad_encryptor_parameters() -> None:
    pk, _ = keys()
    _, other = paillier.generate_keypair(1024)
    with pytest.raises(ValueError, match="randomness"):
        paillier.Encryptor(pk, randomness="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not belong"):
        paillier.Encryptor(pk, private_key=other)
    with pytest.raises(ValueError, match="h_s"):
        paillier.Encryptor(pk, h_s=pk.n)


def test_wire_round_trip_and_validation() -> None:
    pk, sk = keys()
    enc = encryptor().encrypt(np.array([0.25]), -8)
    wire = enc.to_wire()
    assert all(type(c) is int for c in wire["ciphertexts"])
    back = paillier.EncryptedVector.from_wire(pk, wire, expected_len=1)
    assert paillier.decrypt(sk, back).tolist() == [0.25]
    bad = [
        {"ciphertexts": [0], "exponent": -8},
        {"ciphertexts": [int(pk.nsquare)], "exponent": -8},
        {"ciphertexts": [sk.p], "exponent": -8},  # shares a factor with n
        {"ciphertexts": [1.5], "exponent": -8},
        {"ciphertexts": wire["ciphertexts"], "exponent": "x"},
        {"ciphertexts": wire["ciphertexts"], "exponent": 100},
        {"ciphertexts": wire["ciphertexts"]},
    ]
    for wire_value in bad:
        with pytest.raises(ProtocolError):
            paillier.EncryptedVector.from_wire(pk, wire_value)
    with pytest.raises(ProtocolError, match="expected 2"):
        paillier.EncryptedVector.from_wire(pk, wire, expected_len=2)


def test_indexing_takes_sub_vectors() -> None:
    _, sk = keys()
    enc = encryptor().encrypt_ints([10, 11, 12, 13])
    assert paillier.decrypt_ints(sk, enc[np.array([3, 0])]) == [13, 10]
    assert paillier.decrypt_ints(sk, enc[1:3]) == [11, 12]
    assert enc.shape == (4,)


# -- the local engine's process pool -----------------------------------------------------------


def test_pool_spreads_work_and_closes() -> None:
    _, sk = keys()
    enc = encryptor()
    with LocalComputing(max_workers=2, min_items=4) as pool:
        if not pool.splits(8):
            not_applicable("one core: the pool never leaves the calling process")
        vector = enc.encrypt_ints(list(range(-4, 4)), pool=pool)
        assert paillier.decrypt_ints(sk, vector) == list(range(-4, 4))
        weights = np.arange(8, dtype=np.int64)
        folded = vector.dot_ints(weights, pool=pool)
        assert paillier.decrypt_ints(sk, folded) == [int(np.arange(-4, 4) @ weights)]
    pool.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        enc.encrypt_ints(list(range(8)), pool=pool)


def test_pool_parameters() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        LocalComputing(max_workers=0)
    with pytest.raises(ValueError, match="min_items"):
        LocalComputing(min_items=0)
