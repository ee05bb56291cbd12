"""Snapshots of the learned detectors as plain, versioned JSON documents: data, never code.

A snapshot is the orjson document {"format": "intentwatch.<detector>", "version": N, ...}
whose other fields hold only numbers, strings, lists and objects (numeric arrays as base64 of
their little-endian bytes, see `pack`). `load` refuses with a `SnapshotError` saying why:
bytes over MAX_BYTES, a pickle (the format before this one: refused unread, by its protocol
header), bytes that are not JSON (orjson also refuses NaN and infinities as it parses, so every
number it returns is finite), another detector's document, an unknown version. Each detector
then reads its fields with `field`, `items` and `unpack`, which refuse a missing field, a wrong
type or an array of the wrong length or with a non-finite value, and checks what its model
needs (ranges, sizes): a snapshot either builds a model that can score, or is refused.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import orjson

FORMAT_PREFIX = "intentwatch."
MAX_BYTES = 32 * 2**20   # a snapshot's JSON; the largest (the text model's buffer) is ~17 MB
PICKLE_HEADER = b"\x80"  # pickle protocols 2 and above start with PROTO (0x80)
# The JSON types a field may have; float also takes a JSON integer (as a float).
KINDS = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
         list: "a list", dict: "an object"}


class SnapshotError(ValueError):
    """A snapshot that is not loaded; `reason` says why (for the log and the operator)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def dump(kind: str, version: int, body: dict) -> bytes:
    return orjson.dumps({"format": FORMAT_PREFIX + kind, "version": version, **body})


def load(blob: bytes, kind: str, version: int) -> dict:
    """The document in `blob` if it is a `kind` snapshot of `version`, else SnapshotError."""
    if not isinstance(blob, bytes):
        raise SnapshotError(f"not bytes but {type(blob).__name__}")
    if len(blob) > MAX_BYTES:
        raise SnapshotError(f"{len(blob)} bytes, over the limit of {MAX_BYTES}")
    if blob.startswith(PICKLE_HEADER):
        raise SnapshotError("a pickled snapshot (the format before this one): pickles are no "
                            "longer loaded, the model relearns")
    try:
        doc = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SnapshotError("not a JSON object")
    expected = FORMAT_PREFIX + kind
    if doc.get("format") != expected:
        raise SnapshotError(f"format {short(doc.get('format'))}, expected {expected!r}")
    if not _is(doc.get("version"), int) or doc["version"] != version:
        raise SnapshotError(f"unknown version {short(doc.get('version'))} of {expected} "
                            f"(this one reads version {version})")
    return doc


def check(condition: bool, reason: str) -> None:
    if not condition:
        raise SnapshotError(reason)


def field(doc: dict, name: str, kind: type):
    """doc[name], which must be of `kind` (an int is never a bool; a float may be written as
    an integer)."""
    if not isinstance(doc, dict):
        raise SnapshotError(f"{name}: its parent is not an object")
    if name not in doc:
        raise SnapshotError(f"missing field {name!r}")
    value = doc[name]
    if not _is(value, kind):
        raise SnapshotError(f"{name!r} is not {KINDS[kind]}")
    return float(value) if kind is float else value


def items(values: list, kind: type, name: str) -> list:
    """`values`, each of which must be of `kind` (floats as floats)."""
    if not all(_is(v, kind) for v in values):
        raise SnapshotError(f"{name} hold something that is not {KINDS[kind]}")
    return [float(v) for v in values] if kind is float else values


def pack(array: np.ndarray) -> dict:
    """A numeric array as a plain object: its dtype (little-endian), length, base64 bytes."""
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"dtype": little.dtype.str, "length": int(array.size),
            "data": base64.b64encode(little.tobytes()).decode("ascii")}


def unpack(doc: dict, name: str, dtype: str, max_length: int) -> np.ndarray:
    """The array `pack` wrote in doc[name]: it must have exactly `dtype` (no other is taken),
    at most max_length values, as many bytes as it says, and (floats) finite values."""
    packed = field(doc, name, dict)
    check(field(packed, "dtype", str) == dtype, f"{name}: dtype must be {dtype!r}")
    length = field(packed, "length", int)
    check(0 <= length <= max_length, f"{name}: length {length} not in [0, {max_length}]")
    data = field(packed, "data", str)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SnapshotError(f"{name}: data is not base64") from None
    array = np.frombuffer(raw, dtype=np.dtype(dtype)) if len(raw) % np.dtype(dtype).itemsize \
        == 0 else None
    check(array is not None and array.size == length, f"{name}: not {length} values of {dtype}")
    check(array.dtype.kind != "f" or bool(np.isfinite(array).all()),
          f"{name}: a value is not finite")
    return array.astype(array.dtype.newbyteorder("="))  # native order, and writable


def _is(value, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def short(value) -> str:
    """A value of a hostile document, short enough for a log line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
