"""The tokens a task has read, as a small layered Bloom filter in plain data.

A task remembers the tokens of the clean content it read, so that argument grounding can tell
later whether a call's target came from there. Kept as a list of strings they were the largest
part of a task's state (about 900 bytes on average, 3 KB at the cap) and merging each result into
them was the costliest step of reading it. A Bloom filter takes about 11 bits per token at a
0.8 % false-positive rate, merging a result into it is one OR of two integers, and re-reading the
same content adds nothing.

A task's filter is a list of layers (a scalable Bloom filter): a layer takes tokens until
FILL_MAX of its bits are set; then a new layer, at least twice as large up to MAX_BITS (and as
large as the content that starts it needs), starts. Past MAX_LAYERS, or MAX_CHARS in all, the
oldest layer is dropped: the task forgets what it read first, as the bounded token list did.
Layers are base64 strings, so the state stays JSON; a task that reads little keeps a small
filter.

A false positive makes a target look grounded when it is not, so each layer's rate is bounded
(FILL_MAX ** K); with every layer at that bound it is at most MAX_LAYERS times that.

The positions of a token come from one crc32 (deterministic across processes, unlike hash()):
h1 = crc32, h2 = the high half of h1 * MIX (odd), position i = (h1 + i * h2) mod m (Kirsch and
Mitzenmacher). (Not the low half: its low bits depend only on h1's low bits, so every position
would be a function of h1 mod m, a single hash.)
`positions` (one token, Python ints) and `spread` (many tokens, numpy, for `bits_of` and
`contains_many`) compute the same positions.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Callable

import numpy as np

K = 4                       # positions per token
FILL_MAX = 0.3              # share of a layer's bits set before a new layer starts
FIRST_BITS = 512            # the smallest layer: 64 bytes, about 45 tokens
MAX_BITS = 4096             # layers double up to this size (bits, a power of two)
MAX_LAYERS = 4
MAX_CHARS = 1400            # of all layers' base64 (8,192 bits: about 730 tokens)
MIX = 0x9E3779B1            # h2 = (h1 * MIX) >> 32 | 1 (the product fits in 64 bits)
_HASHES: dict[str, int] = {}
_MAX_HASHES = 1 << 18       # cached token hashes (tokens recur across results)


def capacity(m: int) -> int:
    """Tokens a layer of m bits takes before FILL_MAX of its bits are set (expected)."""
    return int(-math.log(1.0 - FILL_MAX) * m / K)


def token_hash(token: str) -> int:
    h = _HASHES.get(token)
    if h is None:
        if len(_HASHES) >= _MAX_HASHES:
            _HASHES.clear()
        h = _HASHES[token] = zlib.crc32(token.encode())
    return h


def positions(token: str, m: int) -> list[int]:
    h1 = token_hash(token)
    h2 = (h1 * MIX) >> 32 | 1
    return [(h1 + i * h2) & (m - 1) for i in range(K)]


def hashes(tokens) -> np.ndarray:
    """uint64 array of the tokens' hashes (the input of bits_of)."""
    return np.fromiter(map(token_hash, tokens), dtype=np.uint64)


def bits_of(token_hashes: np.ndarray, m: int) -> int:
    """The filter of m bits holding these tokens, as an int (bit p = position p)."""
    if not token_hashes.size:
        return 0
    bitmap = np.zeros(m, dtype=bool)
    bitmap[(spread(token_hashes) & (m - 1)).ravel()] = True
    return int.from_bytes(np.packbits(bitmap, bitorder="little").tobytes(), "little")


def _decode(layer: str) -> tuple[int, int]:
    known = _DECODED.get(layer)
    if known is None:
        raw = base64.b64decode(layer)
        known = int.from_bytes(raw, "little"), 8 * len(raw)
    return known


def _encode(bits: int, m: int) -> str:
    layer = base64.b64encode(bits.to_bytes(m // 8, "little")).decode()
    if len(_DECODED) >= _MAX_DECODED:
        del _DECODED[next(iter(_DECODED))]   # the oldest (dicts keep insertion order)
    _DECODED[layer] = bits, m   # the same task reads the layer back at its next result
    return layer


_DECODED: dict[str, tuple[int, int]] = {}
_MAX_DECODED = 1 << 14


def add(layers: list[str], bits_for: Callable[[int], int]) -> list[str]:
    """The layers with some tokens added; `bits_for(m)` gives those tokens' bits in a layer of
    m bits (at most capacity(m) of them: a huge result must not fill a layer on its own)."""
    if layers:
        current, m = _decode(layers[-1])
        merged = current | bits_for(m)
        if merged == current:  # (content read before: nothing new)
            return layers
        if merged.bit_count() <= FILL_MAX * m:
            return [*layers[:-1], _encode(merged, m)]
        m = min(2 * m, MAX_BITS)
    else:
        m = FIRST_BITS
    bits = bits_for(m)
    while bits.bit_count() > FILL_MAX * m and m < MAX_BITS:  # sized to what it takes
        m *= 2
        bits = bits_for(m)
    layers = [*layers, _encode(bits, m)][-MAX_LAYERS:]
    while len(layers) > 1 and sum(len(layer) for layer in layers) > MAX_CHARS:
        layers = layers[1:]   # the oldest goes
    return layers


def of(tokens) -> list[str]:
    """A new filter holding these tokens."""
    h = hashes(tokens)
    return add([], lambda m: bits_of(h, m))


def reader(layers: list[str]) -> Callable[[str], bool]:
    """A membership test over the layers (decoded once, for several tokens)."""
    decoded = [_decode(layer) for layer in layers]
    if not decoded:
        return _nowhere
    widest = max(m for _, m in decoded)

    def contains(token: str) -> bool:
        # m is a power of two, so a position mod a smaller layer's m is a mask of it mod widest
        wide = positions(token, widest)
        return any(all(bits >> (p & (m - 1)) & 1 for p in wide) for bits, m in decoded)
    return contains


def spread(token_hashes: np.ndarray) -> np.ndarray:
    """(n, K) uint64 array of the tokens' positions before the modulo of a layer: position i
    of a token in a layer of m bits is spread(...)[., i] & (m - 1)."""
    h1 = token_hashes[:, None]
    return h1 + np.arange(K, dtype=np.uint64) * ((h1 * MIX) >> 32 | 1)


def contains_many(layers: list[str], spread_positions: np.ndarray) -> np.ndarray:
    """reader(layers)(t) for many tokens at once, given spread() of their hashes."""
    found = np.zeros(len(spread_positions), dtype=bool)
    for layer in layers:
        bits, m = _decode(layer)
        bitmap = np.unpackbits(np.frombuffer(bits.to_bytes(m // 8, "little"), dtype=np.uint8),
                               bitorder="little").view(bool)
        found |= bitmap[spread_positions & (m - 1)].all(axis=1)
    return found


def _nowhere(token: str) -> bool:
    return False
