"""Vectorised Paillier: agreement with phe, CRT encryption, X^T [[d]], masking, wire checks."""

from __future__ import annotations

import numpy as np
import pytest
from phe import paillier as phe

from fedalgo import paillier
from fedalgo.errors import ProtocolError


@pytest.fixture(scope="module")
def keys() -> tuple[paillier.PublicKey, paillier.PrivateKey]:
    return paillier.generate_keypair(1024)


@pytest.mark.parametrize("with_private_key", [True, False])
def test_encrypt_decrypt_round_trip(keys, with_private_key: bool) -> None:
    pk, sk = keys
    values = np.array([0.0, 1.0, -1.0, 0.123456789, -0.999999, 1e-9])
    enc = paillier.encrypt(pk, values, -8, private_key=sk if with_private_key else None)
    assert np.allclose(paillier.decrypt(sk, enc), values, atol=2**-32)


def test_vectors_are_phe_encrypted_numbers(keys) -> None:
    pk, sk = keys
    values = np.array([0.5, -0.25, 3.0])
    enc = paillier.encrypt(pk, values, -8, private_key=sk)
    assert [sk.decrypt(x) for x in enc.to_phe()] == pytest.approx(values.tolist())
    numbers = [pk.encrypt(v) for v in (0.5, -2.0, 7)]
    back = paillier.EncryptedVector.from_phe(numbers)
    assert paillier.decrypt(sk, back).tolist() == pytest.approx([0.5, -2.0, 7.0])


def test_crt_ciphertexts_are_fresh(keys) -> None:
    pk, sk = keys
    a = paillier.encrypt(pk, np.zeros(4), -8, private_key=sk)
    b = paillier.encrypt(pk, np.zeros(4), -8, private_key=sk)
    assert len(set(a.ciphertexts) | set(b.ciphertexts)) == 8


def test_matvec_t_matches_numpy(keys) -> None:
    pk, sk = keys
    rng = np.random.default_rng(1)
    d = rng.uniform(-1, 1, 200)
    x = rng.normal(scale=3, size=(200, 7))
    x[:, 3] = 0.0  # an all-zero column
    enc = paillier.encrypt(pk, d, -8, private_key=sk)
    product = paillier.matvec_t(paillier.encode(x, -6), enc, -6)
    assert product.exponent == -14
    assert np.allclose(paillier.decrypt(sk, product), x.T @ d, atol=1e-5)


def test_add_mantissas_masks_and_rerandomises(keys) -> None:
    pk, sk = keys
    enc = paillier.encrypt(pk, np.array([0.5, -0.5]), -8, private_key=sk)
    masks = [2**150 + 3, 7]
    masked = paillier.add_mantissas(enc, masks)
    assert paillier.decrypt_mantissas(sk, masked) == [2**31 + masks[0], -(2**31) + 7]
    assert set(masked.ciphertexts).isdisjoint(enc.ciphertexts)


def test_wire_round_trip_and_validation(keys) -> None:
    pk, sk = keys
    enc = paillier.encrypt(pk, np.array([0.25]), -8, private_key=sk)
    wire = enc.to_wire()
    assert all(type(c) is int for c in wire["ciphertexts"])
    back = paillier.EncryptedVector.from_wire(pk, wire, expected_len=1)
    assert paillier.decrypt(sk, back).tolist() == [0.25]
    bad = [
        {"ciphertexts": [0], "exponent": -8},
        {"ciphertexts": [pk.nsquare], "exponent": -8},
        {"ciphertexts": [1.5], "exponent": -8},
        {"ciphertexts": wire["ciphertexts"], "exponent": "x"},
        {"ciphertexts": wire["ciphertexts"]},
    ]
    for wire_value in bad:
        with pytest.raises(ProtocolError):
            paillier.EncryptedVector.from_wire(pk, wire_value)
    with pytest.raises(ProtocolError, match="expected 2"):
        paillier.EncryptedVector.from_wire(pk, wire, expected_len=2)


def test_decrypting_an_out_of_range_value_fails(keys) -> None:
    pk, sk = keys
    enc = paillier.encrypt_mantissas(pk, [pk.n // 2], 0)
    with pytest.raises(OverflowError):
        paillier.decrypt_mantissas(sk, enc)


def test_encode_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(OverflowError, match="scale the features"):
        paillier.encode(np.array([1e12]), -6)


def test_decrypting_with_another_key_is_refused(keys) -> None:
    pk, _ = keys
    _, other = phe.generate_paillier_keypair(n_length=1024)
    with pytest.raises(ValueError, match="another key"):
        paillier.decrypt(other, paillier.encrypt(pk, np.array([1.0]), -8))


def test_crt_obfuscators_are_nth_residues_like_phes(keys) -> None:
    # Encryptions of 0 are bare obfuscators; n-th residues are exactly the x with x^phi(n) = 1.
    pk, sk = keys
    phi = (sk.p - 1) * (sk.q - 1)
    for c in paillier.encrypt_mantissas(pk, [0] * 8, 0, private_key=sk).ciphertexts:
        assert pow(int(c), phi, pk.nsquare) == 1
    assert pow(pk.raw_encrypt(0), phi, pk.nsquare) == 1
    assert pow(pk.n + 2, phi, pk.nsquare) != 1  # a non-residue fails the check
