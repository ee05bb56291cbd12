"""Ed25519 signatures on revoke commands, so a gateway or credential broker acts only on
commands the monitor issued, and exactly as issued; and on learned-model snapshots, so a worker
restores only models its own key saved.

The signature covers the canonical serialisation of the whole command except the `signature`
field itself: orjson with sorted keys (at every depth). That includes `key_id`, so a command
cannot be re-attributed to another key, and `expires_at` and `credential_ids`, so it cannot be
stretched or pointed at other credentials. Ed25519 is deterministic (RFC 8032): the same command
and key always give the same signature, which keeps replays of a trace byte-identical.

Consumers verify with `monitor.enforcement.Verifier`.

A model snapshot's signature covers `snapshot_message(name, value)`: a fixed context (which no
command's canonical JSON, always starting with "{", can equal), the detector name's length (4
bytes, big-endian) and UTF-8 bytes, then the snapshot record's value exactly as sent. So a
signature cannot be moved to another detector's record, nor a command's to a snapshot.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_FIELD = "signature"
KEY_ID_FIELD = "key_id"
SIGNATURE_BYTES = 64
SNAPSHOT_CONTEXT = b"intentwatch model snapshot v1\0"

KeySource = bytes | str | os.PathLike


# -- keys ---------------------------------------------------------------------------------------
def generate_key_pair() -> tuple[bytes, bytes]:
    """A fresh (private PEM, public PEM) pair, for tests and development deployments."""
    key = Ed25519PrivateKey.generate()
    return private_key_pem(key), public_key_pem(key.public_key())


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    # Unencrypted PKCS#8: protect the file with permissions or a secret store, not a passphrase.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(source: KeySource, password: bytes | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM bytes, PEM text, or the path of a PEM file."""
    key = serialization.load_pem_private_key(_pem(source), password=password)
    if not isinstance(key, Ed25519PrivateKey):
        # Refuse RSA/EC keys outright rather than sign with an algorithm consumers don't expect.
        raise TypeError(f"not an Ed25519 private key: {type(key).__name__}")
    return key


def load_public_key(source: KeySource) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes, PEM text, or the path of a PEM file."""
    key = serialization.load_pem_public_key(_pem(source))
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError(f"not an Ed25519 public key: {type(key).__name__}")
    return key


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """First 16 hex digits of sha256 of the raw public key: stable, short, and not secret."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _pem(source: KeySource) -> bytes:
    # bytes are PEM; a str is PEM text if it looks like it, otherwise a path (like a PathLike).
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode()
    return Path(source).read_bytes()


# -- commands -----------------------------------------------------------------------------------
def canonical_bytes(command: dict) -> bytes:
    """What is signed: the command without its signature, keys sorted at every depth."""
    body = {k: v for k, v in command.items() if k != SIGNATURE_FIELD}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sign_command(command: dict, key: Ed25519PrivateKey, key_id: str) -> dict:
    """A copy of `command` carrying `key_id` and an Ed25519 `signature` (unpadded base64url).

    Any previous signature is dropped and replaced; the input is not modified.
    """
    if not isinstance(key_id, str) or not key_id:
        raise ValueError("key_id must be a non-empty string")
    # orjson writes NaN and infinities as null: the consumer would then verify something other
    # than what was meant, so such a command is refused here instead.
    _require_finite(command)
    signed = {k: v for k, v in command.items() if k != SIGNATURE_FIELD}
    signed[KEY_ID_FIELD] = key_id
    signed[SIGNATURE_FIELD] = b64url_encode(key.sign(canonical_bytes(signed)))
    return signed


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def signature_ok(key: Ed25519PublicKey, signature: str, message: bytes) -> bool:
    """Whether `signature` (unpadded base64url) is `key`'s over `message`."""
    if not signature.isascii():
        return False
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (binascii.Error, ValueError):
        return False
    # Only the one canonical encoding counts: the decoder skips stray characters and ignores
    # trailing bits, so several strings could otherwise stand for one signature. Nothing here is
    # secret (the signature is public), compare_digest just keeps the comparison timing-neutral.
    if len(raw) != SIGNATURE_BYTES or not hmac.compare_digest(b64url_encode(raw), signature):
        return False
    try:
        key.verify(raw, message)  # OpenSSL: constant-time, rejects non-canonical S (malleability)
    except InvalidSignature:
        return False
    return True


# -- model snapshots ----------------------------------------------------------------------------
def snapshot_message(name: str, value: bytes) -> bytes:
    """What a model snapshot's signature covers (see the module doc)."""
    raw = name.encode()
    return SNAPSHOT_CONTEXT + len(raw).to_bytes(4, "big") + raw + value


def sign_snapshot(name: str, value: bytes, key: Ed25519PrivateKey) -> str:
    """The signature (unpadded base64url) of detector `name`'s snapshot record value."""
    return b64url_encode(key.sign(snapshot_message(name, value)))


def _require_finite(value) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a command cannot carry NaN or infinite numbers")
    if isinstance(value, dict):
        for v in value.values():
            _require_finite(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _require_finite(v)
