"""Tessera's Paillier engine on gmpy2: keys, fixed-point encoding, packing, vectors.

    public_key, private_key = generate_keypair(2048)          # 1024: allowed, logs a warning
    encryptor = Encryptor(public_key, private_key=private_key)  # DJN randomness, CRT with sk
    enc = encryptor.encrypt(np.array([0.5, -1.25]), exponent=-8)  # pool=: fedalgo.computing
    total = (enc + enc).mul(np.array([2.0, 3.0]), exponent=-2)   # [[2*1.0, 3*-2.5]]
    decrypt(private_key, total)                                  # array([ 2. , -7.5])

Threat model (what the engine itself guarantees, against semi-honest parties):

* Whoever holds only the public key (n) learns nothing from ciphertexts (IND-CPA under the
  decisional composite residuosity assumption; with the default DJN randomness also under the
  short-exponent assumption stated in :mod:`fedalgo.paillier.encryptor`).
* Homomorphic results carry the randomness of their inputs. A party that computes on a peer's
  ciphertexts and sends the result back to the key holder must call
  :meth:`Encryptor.rerandomise` first, or the key holder may learn how it was computed. That
  encryptor must use ``randomness="standard"``: DJN's h_s^a is only indistinguishable from
  uniform to someone who cannot factor n, and the key holder can (it sees, for instance, the
  quadratic character of the randomness it is meant not to learn about).
* The key holder learns every plaintext it decrypts, exactly: protocols mask or aggregate
  before anything reaches it. Decryption refuses values outside [-max_int, max_int] (overflow),
  but cannot notice an overflow that wrapped all the way round; callers bound their values.
* Not covered: malicious peers (chosen ciphertexts, keys generated to leak), side channels
  (neither gmpy2 nor the C loops are constant-time: a fixed-base table is indexed by the secret
  exponent's digits, so cache timing on a shared machine could leak randomness). Ciphertexts
  from peers are checked for range and invertibility (:meth:`EncryptedVector.from_wire`), not
  for well-formedness of their plaintext.
"""

from fedalgo.paillier.encoding import (
    BASE,
    decode,
    encode,
    pack,
    slots_per_plaintext,
    unpack,
)
from fedalgo.paillier.encryptor import RANDOMNESS, Encryptor, Randomness
from fedalgo.paillier.keys import (
    DEFAULT_KEY_BITS,
    KEY_BITS,
    KeyBits,
    PrivateKey,
    PublicKey,
    check_key_bits,
    generate_keypair,
)
from fedalgo.paillier.montgomery import FixedBaseTable, Modulus
from fedalgo.paillier.vector import (
    EncryptedVector,
    check_parts,
    check_product,
    check_wire,
    ciphertext_product,
    decrypt,
    decrypt_ints,
    multi_exp,
    product_or_error,
    wire_parts,
)

__all__ = [
    "BASE",
    "DEFAULT_KEY_BITS",
    "KEY_BITS",
    "RANDOMNESS",
    "EncryptedVector",
    "Encryptor",
    "FixedBaseTable",
    "KeyBits",
    "Modulus",
    "PrivateKey",
    "PublicKey",
    "Randomness",
    "check_key_bits",
    "check_parts",
    "check_product",
    "check_wire",
    "ciphertext_product",
    "decode",
    "decrypt",
    "decrypt_ints",
    "encode",
    "generate_keypair",
    "multi_exp",
    "pack",
    "product_or_error",
    "slots_per_plaintext",
    "unpack",
    "wire_parts",
]
