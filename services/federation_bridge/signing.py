"""Ed25519 keys that sign and verify bridge batches.

Threat model: the network between bridges is untrusted. Each batch body is signed by the sending
party's private key; the receiver verifies it with the public key it was configured with for the
party named in ``X-Tessera-Party``. A valid signature proves who sent the exact bytes, not that
they are fresh: replays are handled by the receiver's de-duplication and batch age limit.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyFileError(ValueError):
    """A key file is missing, unreadable or not an Ed25519 PEM key."""


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new key pair as ``out_dir/private.pem`` (mode 0600) and ``out_dir/public.pem``.

    Refuses to overwrite an existing private key: losing it would cut the party off its peers.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / "private.pem", out_dir / "public.pem"
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    os.chmod(private_path, 0o600)  # O_CREAT's mode is filtered by the umask
    public_path.write_bytes(public_pem)
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot load the private key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot load the public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, body: bytes) -> str:
    """The base64 signature of ``body``, for the ``X-Tessera-Signature`` header."""
    return base64.b64encode(key.sign(body)).decode("ascii")


def verify(key: Ed25519PublicKey, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64) is ``key``'s signature of exactly ``body``."""
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
        key.verify(raw, body)
    except (InvalidSignature, binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return True
